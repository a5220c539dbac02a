"""Reading a catalogued record back: do its bytes still hash as the catalogue recorded?

A record row names a WARC file, the offset and length of its gzip member, and the SHA-256 of
those exact bytes (``member_sha256``). This is the one place that answers "is that record still
intact on disk" for the commands that need a yes or no (capture's revisits, claims' preserved
status); verify and export read members their own, faster way because they also inflate them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

CHUNK = 1 << 20


def member_sha256(fh: IO[bytes], offset: int, length: int) -> str | None:
    """SHA-256 of ``length`` bytes at ``offset``; None when the file ends first."""
    fh.seek(offset)
    digest, left = hashlib.sha256(), length
    while left > 0:
        chunk = fh.read(min(left, CHUNK))
        if not chunk:
            return None
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def record_intact(warcs_dir: Path, record: dict[str, Any]) -> bool:
    """The record's member still has the SHA-256 the catalogue recorded for it (a missing or
    unreadable file, or a row without a hash, is not intact)."""
    if not record.get("member_sha256"):
        return False
    try:
        with open(warcs_dir / record["warc_file"], "rb") as fh:
            return member_sha256(fh, int(record["offset"]), int(record["length"])) == record["member_sha256"]
    except OSError:
        return False
