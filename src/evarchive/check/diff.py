"""What changed in a source's main text: a capture against a check's evidence, or the page now."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import textdiff
from ..archive import Archive
from ..capture import CaptureSettings, build_client, classify_exception
from ..catalogue import find_source, last_good_capture, one, utc_now
from ..client import redact_proxy
from ..errors import FindingsError, UsageError
from ..textdiff import PageText
from .baselines import capture_text, read_response_payload
from .fetch import MethodFetcher, observation_of
from .settings import check_capture_settings

@dataclass
class DiffResult:
    url: str
    source_id: int
    old_label: str
    new_label: str
    old: PageText
    new: PageText
    similarity: float
    stored: bool  # the new side is evidence in the archive (False: fetched live, not kept)

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "source_id": self.source_id, "old": self.old_label,
                "new": self.new_label, "similarity": round(self.similarity, 4),
                "stored": self.stored,
                "changes": [{"kind": c.kind, "old": list(c.old), "new": list(c.new)}
                            for c in textdiff.changes(self.old, self.new)]}

    def render(self) -> str:
        return textdiff.render_diff(self.old, self.new)

    def unified(self) -> str:
        return textdiff.unified(self.old, self.new, self.old_label, self.new_label)


def diff_source(archive: Archive, url: str, live: bool = False,
                network: CaptureSettings | None = None) -> DiffResult:
    """What changed in a source's main text: by default between the capture
    the latest check compared with and the answer that check kept as
    evidence; with ``live``, between the last capture and the page now."""
    db = archive.db
    source = find_source(db, url)
    if source is None:
        raise UsageError(f"no source {url!r} in the catalogue")
    evidence = None if live else one(db, """
        SELECT k.id AS check_id, k.checked_at, k.verdict, k.baseline_capture_id, k.content_type,
               r.warc_file, r.offset, r.length
        FROM checks k JOIN check_records r ON r.check_id = k.id
        WHERE k.source_id = ? AND r.role = 'answer' AND r.record_type = 'response'
          AND k.baseline_capture_id IS NOT NULL
        ORDER BY k.id DESC, r.id DESC LIMIT 1""", [source["id"]])
    if evidence:
        capture = one(db, "SELECT * FROM captures WHERE id = ?", [evidence["baseline_capture_id"]])
    else:
        capture = last_good_capture(db, source["id"])
    if capture is None:
        raise UsageError(f"{url} has no capture to compare with: capture it first")
    old = _capture_page(archive, capture)
    if evidence:
        body = read_response_payload(archive, evidence, textdiff.MAX_HTML_BYTES) or b""
        new = textdiff.page_of(body, evidence["content_type"])
        new_label = (f"live answer of check {evidence['check_id']} at {evidence['checked_at']} "
                     f"({evidence['verdict']}; {evidence['warc_file']})")
        stored = True
    else:
        new = asyncio.run(_fetch_page(source["url"], network or check_capture_settings(),
                                      archive.tmp_dir))
        new_label, stored = f"live now ({utc_now()}; fetched for this diff, not stored)", False
    old_label = f"capture {capture['id']} of {capture['started_at']}" + _cut_label(old)
    return DiffResult(source["url"], source["id"], old_label, new_label + _cut_label(new), old, new,
                      textdiff.similarity(old, new), stored)


def _cut_label(page: PageText) -> str:
    return f" (only its start is compared: {page.cut})" if page.cut else ""


def _capture_page(archive: Archive, capture: dict[str, Any]) -> PageText:
    page = capture_text(archive, capture)
    if page is None:
        raise FindingsError(f"capture {capture['id']}: its response record cannot be read")
    return page


async def _fetch_page(url: str, network: CaptureSettings, tmp_dir: Path) -> PageText:
    async with build_client(network) as client:
        fetcher = MethodFetcher(client, network, tmp_dir)
        try:
            hops = await fetcher.fetch_chain(url)
        except Exception as exc:  # noqa: BLE001 - reported as a finding
            raise FindingsError(f"{url}: {redact_proxy(classify_exception(exc)[1], network.proxy)}") from None
        try:
            obs = observation_of(url, hops)
            return obs.page()
        finally:
            for hop in hops:
                hop.body.close()


