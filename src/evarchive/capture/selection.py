"""The URLs a capture command works on: given, listed in a file, pending or all, validated first."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..archive import Archive
from ..catalogue import sources_without_capture
from ..errors import InputError, shown
from ..records import record_intact
from ..urls import validate_url


def read_url_list(urls: Iterable[str] = (), from_file: Path | None = None) -> list[str]:
    """The URLs given and those in ``from_file``, validated: call it before creating an archive."""
    chosen: list[str] = list(urls)
    if from_file is not None:
        try:
            text = from_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read URL list {shown(from_file)}: {exc}") from None
        chosen += [line.strip() for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    _refuse_invalid(chosen)
    return chosen


def select_urls(archive: Archive, urls: Iterable[str] = (), from_file: Path | None = None,
                pending: bool = False, everything: bool = False) -> list[str]:
    """The URLs a capture command works on, validated before anything is written."""
    chosen = read_url_list(urls, from_file)
    if pending:
        chosen += [row["url"] for row in _sources_without_good_capture(archive)]
    if everything:
        chosen += [row["url"] for row in archive.db.query("SELECT url FROM sources ORDER BY id")]
    _refuse_invalid(chosen)
    unique = list(dict.fromkeys(chosen))
    return unique


def _refuse_invalid(urls: list[str]) -> None:
    refused = []
    for url in urls:
        try:
            validate_url(url)
        except InputError as exc:
            refused.append(exc.message)
    if refused:
        raise InputError("nothing was captured:\n  " + "\n  ".join(refused))


def _sources_without_good_capture(archive: Archive) -> list[dict[str, Any]]:
    """Sources with no good capture, and sources whose last good capture is not intact."""
    rows = sources_without_capture(archive.db)
    damaged = _sources_with_damaged_capture(archive)
    if damaged:
        rows += [dict(row) for row in archive.db.query(
            f"SELECT * FROM sources WHERE id IN ({','.join('?' * len(damaged))}) ORDER BY id",
            sorted(damaged))]
    return rows


def _sources_with_damaged_capture(archive: Archive) -> set[int]:
    """Sources whose last good capture has a record that is not whole at its offsets.

    Only files a failed or killed run left (``interrupted``) are read: a cleanly closed file
    was written and fsynced in full before its captures were committed, whereas a run stopped
    by a failed write (by an older evarchive, before writes stopped at the first failure) could
    commit offsets that name the wrong bytes. ``verify --deep`` checks every file.
    """
    rows = archive.db.query(
        "SELECT c.source_id, r.warc_file, r.offset, r.length, r.member_sha256 "
        "FROM (SELECT source_id, MAX(id) AS id FROM captures WHERE status = 'ok' "
        "      GROUP BY source_id) c "
        "JOIN capture_records r ON r.capture_id = c.id "
        "JOIN warc_files w ON w.name = r.warc_file WHERE w.status = 'interrupted'")
    return {row["source_id"] for row in rows if not record_intact(archive.warcs_dir, row)}
