"""Writing a bundle: the entry point, the files in a staging folder, the manifest, the custody
entry of the export, and publishing the finished bundle at OUT without ever overwriting."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import bundle_anchors, publishing, verify_bundle
from ..archive import Archive
from ..errors import UsageError, shown
from ..viewer import PAGE as VIEWER_PAGE
from ..viewer import Viewer, find_viewer, write_viewer
from .custodyfiles import write_custody
from .indexdata import bundle_data
from .integrity import check_integrity
from .model import COPY_CHUNK, MANIFEST_NAME, VERIFY_SCRIPT, WACZ_NAME, ZIP_STAGED, ExportResult, Plan, write_text
from .render import REPORT_PAGE, render_csv, render_html, render_report, render_text
from .selection import not_exported, number_exhibits, select
from .verifymd import render_verify
from .wacz import write_artefacts, write_wacz

# --------------------------------------------------------------------------- entry point

def export_bundle(archive: Archive, out: Path, *, report: str | None = None, urls: Iterable[str] = (),
                  latest: bool = False, checks: bool = False, redact_log: bool = False,
                  viewer: Path | None = None, timestamp: list[str] | None = None) -> ExportResult:
    """Write the bundle to `out` (a new directory, or a .zip) and log the export.

    Unusable input (unknown report, URL without capture, existing `out`) raises UsageError
    before anything is written. The caller decides what an unsupported claim means (exit 1).
    `viewer` is the folder of ReplayWeb.page's npm package, copied into the bundle to replay it.
    `timestamp` (TSA URLs; empty: the configured ones) takes a token now if an exhibit has none.
    """
    urls = list(urls)
    replay_viewer = find_viewer(viewer) if viewer is not None else None
    if report and urls:
        raise UsageError("give URLs or --report, not both")
    is_zip = _check_out(out)
    plan = select(archive, report, urls, latest, checks)
    plan.log_scope = "entries" if redact_log else "chain"
    check_integrity(archive, plan)
    number_exhibits(plan)
    plan.time_anchors = bundle_anchors.settle(archive, plan, timestamp)
    plan.created = _now_seconds()
    housekeeping = ([] if archive.read_only else publishing.reconcile(archive.db)) + \
        publishing.remove_abandoned_in(out.parent)
    staging = publishing.make_staging(out)
    try:
        manifest_sha, wacz_sha, files = build(archive, plan, staging.path, replay_viewer)
        publishing.pause_point("built")
        if is_zip:  # zipped before the entry: between entry and publishing only a link is made
            _zip_dir(staging.path, staging.path / ZIP_STAGED, out.stem)
        _check_out(out)  # again: building took a while, and an entry for a refused bundle is noise
        if archive.read_only:  # a read-only mount: the bundle is written, no entry can be
            entry = None
            _publish(staging.path, out, is_zip)
        else:
            # The entry is committed before the bundle appears at OUT, so no bundle ever sits there
            # unknown to the log; its outcome entry follows (or the next export records it).
            entry = publishing.log_prepared(archive.db, shown(out.name),
                                            _export_details(out, plan, manifest_sha, wacz_sha), staging.path, out)
            publishing.pause_point("before-publish")
            try:
                _publish(staging.path, out, is_zip)
            except BaseException:
                publishing.log_outcome(archive.db, entry["seq"], later_run=False)  # it says what is at OUT
                raise
            publishing.pause_point("after-publish")
            publishing.log_outcome(archive.db, entry["seq"], later_run=False)
    finally:
        staging.close()
    return ExportResult(out, len(plan.exported), sum(len(e.records) for e in plan.exported),
                        len(plan.claims), plan.unsupported, plan.unpreserved_sources, not_exported(plan),
                        manifest_sha, wacz_sha, entry["seq"] if entry else None, plan.head, files, housekeeping,
                        plan.time_anchors)


def _check_out(out: Path) -> bool:
    """OUT must not exist (nothing is ever overwritten) and its parent must. True for a .zip."""
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} already exists; an export never overwrites anything")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory")
    if out.suffix.lower() == ".wacz":
        raise UsageError("OUT is the bundle (a directory, or NAME.zip); the WACZ is one file inside it")
    return out.suffix.lower() == ".zip"


def _now_seconds() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- writing

def build(archive: Archive, plan: Plan, staging: Path, viewer: Viewer | None = None) -> tuple[str, str, list[str]]:
    """Write every file of the bundle into `staging`; returns the SHA-256 of the manifest and
    of the WACZ, and the bundle's file names."""
    write_wacz(archive, plan, staging / WACZ_NAME)
    write_custody(archive.db, plan, staging / "custody")
    write_artefacts(archive, plan, staging)
    data = bundle_data(plan)
    if viewer is not None:
        write_viewer(viewer, staging, WACZ_NAME, data["exhibits"])
        data["viewer"] = {"page": VIEWER_PAGE, "software": f"ReplayWeb.page {viewer.version}",
                          "licence": viewer.licence}
    write_text(staging / "bundle.json", _readable_json(data))
    write_text(staging / "exhibits.html", render_html(data))
    write_text(staging / "exhibits.txt", render_text(data))
    write_text(staging / "exhibits.csv", render_csv(data))
    write_text(staging / "VERIFY.md", render_verify(data))
    if data["claims"]:
        write_text(staging / REPORT_PAGE, render_report(data))
    shutil.copyfile(verify_bundle.__file__, staging / VERIFY_SCRIPT)
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    manifest = "".join(f"{_file_sha256(staging / name)}  {name}\n" for name in files)
    write_text(staging / MANIFEST_NAME, manifest)
    wacz_sha = next(line.split()[0] for line in manifest.splitlines() if line.endswith("  " + WACZ_NAME))
    return hashlib.sha256(manifest.encode()).hexdigest(), wacz_sha, [*files, MANIFEST_NAME]


def _readable_json(data: dict[str, Any]) -> str:
    """One top-level key a line and one list item (exhibit, claim...) a line: readable in any
    editor, and written by the C encoder (json's indent= falls back to pure Python: 10x slower)."""
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            inner = ",\n  ".join(dump(v) for v in value)
            parts.append(f" {dump(key)}: [\n  {inner}\n ]")
        else:
            parts.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _publish(staging: Path, out: Path, is_zip: bool) -> None:
    """Move the finished bundle into place without ever replacing something at OUT."""
    if is_zip:
        tmp = staging / ZIP_STAGED
        try:
            os.link(tmp, out)  # atomic, and fails if OUT appeared meanwhile: never overwrite
        except FileExistsError:
            raise UsageError(f"{out} already exists; an export never overwrites anything") from None
        except OSError:  # no hard links here (FAT/exFAT media): copy, still refusing to overwrite
            _copy_exclusive(tmp, out)
        return
    if out.exists():
        raise UsageError(f"{out} already exists; an export never overwrites anything")
    staging.rename(out)


def _copy_exclusive(src: Path, dest: Path) -> None:
    try:
        with open(src, "rb") as fin, open(dest, "xb") as fout:
            shutil.copyfileobj(fin, fout, COPY_CHUNK)
            fout.flush()
            os.fsync(fout.fileno())
    except FileExistsError:
        raise UsageError(f"{dest} already exists; an export never overwrites anything") from None
    except BaseException:
        dest.unlink(missing_ok=True)  # ours, half written
        raise


def _zip_dir(src: Path, dest: Path, top: str) -> None:
    """A plain zip (stored: the WACZ inside is already compressed) with one top-level folder."""
    with zipfile.ZipFile(dest, "x", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file() and p != dest):
            zf.write(path, f"{top}/{path.relative_to(src).as_posix()}")


def _export_details(out: Path, plan: Plan, manifest_sha: str, wacz_sha: str) -> dict[str, Any]:
    """The export is itself an event: which evidence left the archive, when, in which bundle."""
    return {
        "bundle": shown(out.resolve()), "manifest_sha256": manifest_sha, "wacz_sha256": wacz_sha,
        "selection": plan.mode, "report_id": plan.report["id"] if plan.report else None,
        "version_id": plan.version["id"] if plan.version else None,
        "captures": [e.row["id"] for e in plan.exported if e.kind == "capture"],
        "checks": [e.row["id"] for e in plan.exported if e.kind == "check"],
        "not_exported": [[e.kind, e.row["id"]] for e in plan.exhibits if not e.number],
        "unsupported_claims": [c["id"] for c in plan.unsupported],
        "log_head_seq": plan.head["seq"] if plan.head else 0, "log_scope": plan.log_scope}
