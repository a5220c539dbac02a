"""The stored decoded-content hashes (decoded.py) against the bytes they were derived from.

Export shows a page's stored decoded-content SHA-256 without inflating the page again, so a
wrong stored value would reach a court bundle (where the clerk's verifier would then reject
it). Deep verify recomputes each one from its record and reports a value that differs. They are
derived data: the finding says so, and how to have it recomputed. Records whose bytes changed
are left to the file checks, which already report them.

Decoding every page again with Python's zlib would triple the time of a deep run over an archive
of compressed pages, so a stored hash is first confirmed by verify_bundle.py's own rules run
with the scan's faster inflater (the same bytes out, so the same SHA-256); what that does not
confirm (a note, whose words are zlib's, or a difference) is decided again with zlib.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import decoded
from ..records import member_sha256
from .findings import Findings
from .scan import _inflate_mod
from .scope import Scope
from .sql import columns_of, dict_rows

_STORED = ("SELECT r.capture_id, r.warc_file, r.offset, r.length, r.record_id, r.payload_sha256, d.member_sha256, "
           "d.decoded_sha256, d.decoded_note FROM capture_records r "
           "JOIN decoded_contents d ON d.member_sha256 = r.member_sha256 "
           "WHERE r.record_type = 'response' ORDER BY r.warc_file, r.offset")


class DecodedChecks:
    """The stored-value checks of one deep run."""

    def __init__(self, db: Any, warcs_dir: Path, scope: Scope, findings: Findings, workers: int) -> None:
        self.db = db
        self.warcs_dir = warcs_dir
        self.scope = scope
        self.add = findings.add
        self.workers = workers

    def run(self) -> None:
        if not columns_of(self.db, "decoded_contents"):
            return  # a read-only catalogue from before the table (it is never migrated)
        rows = [r for r in dict_rows(self.db, _STORED)
                if self.scope.captures is None or r["capture_id"] in self.scope.captures]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:  # zlib and hashlib release the GIL
            found = list(pool.map(self._found, rows))
        for row, value in zip(rows, found, strict=True):
            if value is not None and value != (row["decoded_sha256"], row["decoded_note"]):
                self._wrong(row, value)

    def _found(self, row: dict[str, Any]) -> tuple[str | None, str | None] | None:
        """The value the record's bytes give; None when they are not the bytes it was stored for."""
        try:
            fd = os.open(self.warcs_dir / row["warc_file"], os.O_RDONLY)
        except OSError:
            return None  # a missing file is the file checks' finding
        try:
            stored = row["decoded_sha256"], row["decoded_note"]
            fast = decoded.recomputed(fd, row["offset"], row["length"], row["payload_sha256"], _inflate_mod)
            if fast == stored and fast[0] is not None:
                return stored  # a hash agrees: the same bytes out of either inflater
            # A note (its words may be the faster library's) or a difference: zlib decides, as the
            # bundle's verifier would.
            value = decoded.recomputed(fd, row["offset"], row["length"], row["payload_sha256"])
            if value == stored:
                return value
            # Only a disagreement costs a second read: is it the stored value, or the bytes?
            with os.fdopen(os.dup(fd), "rb") as fh:
                intact = member_sha256(fh, row["offset"], row["length"]) == row["member_sha256"]
            return value if intact else None
        finally:
            os.close(fd)

    def _wrong(self, row: dict[str, Any], value: tuple[str | None, str | None]) -> None:
        stored = row["decoded_sha256"] or row["decoded_note"]
        self.add("decoded-hash-wrong",
                 f"the decoded-content SHA-256 stored for record {row['record_id']} of capture {row['capture_id']} "
                 f"is {stored}, but the record's bytes give {value[0] or value[1]}. It is derived data, not "
                 "evidence (the record itself is intact), but an export would show the stored value: delete "
                 "the row (DELETE FROM decoded_contents WHERE member_sha256 = "
                 f"'{row['member_sha256']}') and the next export computes it again",
                 file=row["warc_file"], offset=row["offset"], record_id=row["record_id"], table="decoded_contents")
