"""A local replay viewer inside a citation bundle: ReplayWeb.page, copied from its npm package.

ReplayWeb.page is a static web app (``ui.js``, plus ``sw.js``, the service worker that reads the
WACZ in the browser); served from the bundle folder by any static web server, it replays the
exhibits offline. evarchive never downloads it: the export copies it from a package folder the
operator installed (``npm install replaywebpage``, or ``npm pack`` and unpack), unchanged, with
its licence (AGPL-3.0-or-later, which allows verbatim copies with the licence and a pointer to
the source), and lists the files in SHA256SUMS like every other file of the bundle.
"""

from __future__ import annotations

import html
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .verify_bundle import VIEWER_PAGE as PAGE
from .verify_bundle import replay_link

PACKAGE = "replaywebpage"
FOLDER = "viewer"  # in the bundle: the package's files
COPIED = ("ui.js", "sw.js", "LICENSE", "package.json")
SOURCE = "https://github.com/webrecorder/replayweb.page"


@dataclass
class Viewer:
    folder: Path
    version: str
    licence: str


def find_viewer(folder: Path) -> Viewer:
    """The npm package at ``folder`` (node_modules/replaywebpage), checked before anything is
    written: a wrong folder is a usage error, not a bundle without its viewer."""
    try:
        meta = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--viewer {folder}: not an npm package folder of {PACKAGE} "
                         f"(cannot read package.json: {exc})") from None
    if not isinstance(meta, dict) or meta.get("name") != PACKAGE:
        name = meta.get("name") if isinstance(meta, dict) else None
        raise UsageError(f"--viewer {folder}: package.json names {name!r}, not {PACKAGE}")
    missing = [name for name in COPIED if not (folder / name).is_file()]
    if missing:
        raise UsageError(f"--viewer {folder}: the package lacks {', '.join(missing)}")
    return Viewer(folder, str(meta.get("version", "?")), str(meta.get("license", "see LICENSE")))


def write_viewer(viewer: Viewer, staging: Path, wacz: str, exhibits: list[dict[str, Any]]) -> None:
    """Copy the viewer's files unchanged and write the page that opens the bundle's WACZ in it."""
    (staging / FOLDER).mkdir()
    for name in COPIED:
        shutil.copyfile(viewer.folder / name, staging / FOLDER / name)
    (staging / PAGE).write_text(replay_page(viewer, wacz, exhibits), encoding="utf-8")


def replay_page(viewer: Viewer, wacz: str, exhibits: list[dict[str, Any]]) -> str:
    items = "".join(f'<li><a href="{html.escape(replay_link(ex))}">Exhibit {ex["exhibit"]}</a>: '
                    f'<code>{html.escape(ex["source_url"])}</code></li>'
                    for ex in exhibits if ex["kind"] == "capture")
    # The page picks the exhibit from its query (?url=...&ts=...); without one the viewer lists
    # the pages of the WACZ. The service worker must live under replayBase, here viewer/.
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Replay of the exhibits</title>
<script src="{FOLDER}/ui.js"></script>
<style>body{{margin:0;font-family:sans-serif}}nav{{padding:.4rem .8rem;font-size:.9em;background:#f2f2f2}}
nav ul{{margin:.2rem 0;padding-left:1.2rem}}
replay-web-page{{display:block;height:85vh;border-top:1px solid #999}}</style>
</head><body>
<nav><strong>Replay of the exhibits</strong> (from <code>{html.escape(wacz)}</code>, read in this browser; nothing
is fetched from the web). Viewer: ReplayWeb.page {html.escape(viewer.version)} ({html.escape(viewer.licence)},
source {SOURCE}; licence in <code>{FOLDER}/LICENSE</code>). Served from the bundle folder with
<code>python3 -m http.server --bind 127.0.0.1 8000</code>, opened at <code>http://127.0.0.1:8000/{PAGE}</code>.
<ul>{items}</ul></nav>
<script>
const query = new URLSearchParams(location.search);
function show() {{
  const viewer = document.createElement("replay-web-page");
  viewer.setAttribute("source", {json.dumps(wacz)});
  viewer.setAttribute("replayBase", "{FOLDER}/");
  for (const name of ["url", "ts"]) {{ if (query.get(name)) viewer.setAttribute(name, query.get(name)); }}
  document.body.appendChild(viewer);
}}
// The viewer's frame only works once its service worker is active, and the viewer retries only a
// few times, 100 ms apart: on a slow machine that is too soon. So the worker (the same script URL
// and scope the viewer registers) is installed and activated first.
async function activated() {{
  const reg = await navigator.serviceWorker.register("{FOLDER}/sw.js?serveIndex=1", {{scope: "{FOLDER}/"}});
  const worker = reg.installing || reg.waiting || reg.active;
  if (worker && worker.state !== "activated") {{
    await new Promise(done => worker.addEventListener("statechange",
      () => {{ if (["activated", "redundant"].includes(worker.state)) done(); }}));
  }}
}}
(navigator.serviceWorker ? activated() : Promise.resolve()).catch(() => null).then(show);
</script>
</body></html>
"""
