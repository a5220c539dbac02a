"""What a check compares with: each source's last good capture, read back from the archive.

Captures are only read here, never modified. A capture's main text comes from the
``check_baselines`` cache when an earlier run extracted it, else from its response record.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from warcio.archiveiterator import ArchiveIterator

from .. import textdiff
from ..archive import Archive
from ..catalogue import one, to_json
from ..textdiff import PageText
from .settings import CHECK_MAX_BODY
from .verdicts import Baseline, htmlish


class Baselines:
    """The last good capture of every source a run checks (one query), and each one's main
    text when a comparison first needs it. A text extracted anew goes to ``keep_text``, which
    caches it in the catalogue with the run's next commit."""

    def __init__(self, archive: Archive, source_ids: Iterable[int],
                 keep_text: Callable[[dict[str, Any]], None]) -> None:
        self.archive = archive
        self.keep_text = keep_text
        wanted = set(source_ids)
        self.rows: dict[int, dict[str, Any]] = {
            row["source_id"]: row for row in archive.db.query(
                "SELECT c.* FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures "
                "WHERE status = 'ok' GROUP BY source_id) m ON c.id = m.id")
            if row["source_id"] in wanted}

    def of(self, source_id: int) -> tuple[dict[str, Any] | None, Baseline | None]:
        """The source's last good capture row and the baseline made of it (None, None: none)."""
        row = self.rows.get(source_id)
        if row is None:
            return None, None
        return row, Baseline(row["id"], row["payload_sha256"], row["content_type"],
                             final_url=row["final_url"], loader=lambda: self._page_of(row))

    def _page_of(self, capture_row: dict[str, Any]) -> PageText | None:
        if not htmlish(capture_row["content_type"]):
            return None
        cached = one(self.archive.db, "SELECT * FROM check_baselines WHERE capture_id = ? AND "
                                      "extractor_version = ?",
                     [capture_row["id"], textdiff.EXTRACTOR_VERSION])
        if cached:
            return PageText(cached["title"] or "", cached["h1"] or "",
                            tuple(json.loads(cached["paragraphs"])))
        page = capture_text(self.archive, capture_row)
        if page is None:
            return None
        if page.cut:
            return page  # only its start: not worth keeping as the capture's text
        self.keep_text({
            "capture_id": capture_row["id"], "extractor_version": textdiff.EXTRACTOR_VERSION,
            "text_sha256": textdiff.text_digest(page), "title": page.title, "h1": page.h1,
            "paragraphs": to_json(list(page.paragraphs))})
        return page


def capture_text(archive: Archive, capture_row: dict[str, Any]) -> PageText | None:
    """The capture's main text, from as much of its payload as a page is read."""
    body = read_capture_payload(archive, capture_row, textdiff.MAX_HTML_BYTES)
    return None if body is None else textdiff.page_of(body, capture_row["content_type"])


def read_capture_payload(archive: Archive, capture_row: dict[str, Any],
                         limit: int = CHECK_MAX_BODY) -> bytes | None:
    """The decoded payload of a capture's final response record (following a
    revisit to the original), read from the WARC without modifying it: at
    most ``limit`` + 1 bytes (more means the payload goes on)."""
    capture_id = capture_row["refers_to_capture_id"] or capture_row["id"]
    record = one(archive.db, "SELECT * FROM capture_records WHERE capture_id = ? AND "
                             "record_type = 'response' ORDER BY id DESC LIMIT 1", [capture_id])
    if record is None:
        return None
    return read_response_payload(archive, record, limit)


def read_response_payload(archive: Archive, record: dict[str, Any],
                          limit: int = CHECK_MAX_BODY) -> bytes | None:
    """A response record's payload, content-decoded, at most ``limit`` + 1
    bytes: a gzip body may inflate a thousandfold, and warcio inflates it
    block by block as it is read, so reading less inflates less."""
    path = archive.warcs_dir / record["warc_file"]
    try:
        with open(path, "rb") as fh:
            fh.seek(record["offset"])
            member = fh.read(record["length"])
    except OSError:
        return None
    for warc_record in ArchiveIterator(io.BytesIO(member)):
        if warc_record.rec_type == "response":
            return warc_record.content_stream().read(limit + 1)
    return None
