"""records.py: whether a catalogued record's bytes still hash as recorded, on real WARC files
written by the project's own writer."""

from __future__ import annotations

from pathlib import Path

import evidence

from evarchive.records import record_intact


def first_record(root: Path) -> tuple[Path, dict]:
    arch = evidence.build(root / "archive", pages=1, seed=3)
    row = dict(next(arch.db.query("SELECT warc_file, offset, length, member_sha256 FROM capture_records "
                                  "ORDER BY id LIMIT 1")))
    warcs = arch.warcs_dir
    arch.close()
    return warcs, row


def test_an_untouched_record_is_intact(tmp_path: Path) -> None:
    warcs, row = first_record(tmp_path)
    assert record_intact(warcs, row)


def test_one_flipped_byte_inside_the_member_is_not_intact(tmp_path: Path) -> None:
    warcs, row = first_record(tmp_path)
    path = warcs / row["warc_file"]
    data = bytearray(path.read_bytes())
    data[row["offset"] + row["length"] // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert not record_intact(warcs, row)


def test_a_file_cut_short_a_missing_file_and_a_row_without_hash_are_not_intact(tmp_path: Path) -> None:
    warcs, row = first_record(tmp_path)
    path = warcs / row["warc_file"]
    path.write_bytes(path.read_bytes()[: row["offset"] + row["length"] - 1])
    assert not record_intact(warcs, row)
    assert not record_intact(warcs, {**row, "warc_file": "gone.warc.gz"})
    assert not record_intact(warcs, {**row, "member_sha256": None})
