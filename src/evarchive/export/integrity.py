"""Before anything is written, every chosen exhibit is checked: its catalogue rows against its
custody entry, and its bytes on disk against the SHA-256 recorded at capture. What fails is
named in the index but never exported. The same pass reads the heads the index needs."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import custody, decoded
from ..archive import Archive
from ..catalogue import to_json
from ..decoded import read_span as read_span  # one reader of a record's span, shared with wacz
from .model import HEAD_LIMIT, HEAD_STEP, Exhibit, Plan, Record

DECODE_THREADS = 2  # pages decoded at once when no value is stored (measured: bench/bundle_times.py)

# --------------------------------------------------------------------------- integrity

def check_integrity(archive: Archive, plan: Plan) -> None:
    """Mark every exhibit whose rows, custody entry or bytes disagree: such evidence is named in
    the index but never exported, since the bundle asserts that every byte in it is as captured."""
    for exhibit in plan.exhibits:
        exhibit.problems += _entry_problems(exhibit)
    known = decoded.stored(archive.db, [e.main_record.member_sha256 for e in plan.exhibits
                                        if e.kind == "capture" and not e.problems and e.main_record])
    to_decode: list[tuple[Path, Record]] = []
    for exhibit in plan.exhibits:  # bytes only for what the rows still vouch for
        if not exhibit.problems:
            exhibit.problems += _byte_problems(archive, exhibit, known, to_decode)
    computed = _decode_all(to_decode)
    if computed and not archive.read_only:  # so that the next export of these pages is fast
        decoded.store(archive.db, computed)
    by_capture = {e.row["id"]: e for e in plan.exhibits if e.kind == "capture"}
    for exhibit in plan.exhibits:
        original = by_capture.get(exhibit.original_of) if exhibit.original_of else None
        if exhibit.original_of and (original is None or not original.intact) and exhibit.intact:
            exhibit.problems.append(f"it is a revisit of capture {exhibit.original_of}, whose payload "
                                    "is not intact")


def _entry_problems(exhibit: Exhibit) -> list[str]:
    entry, what = exhibit.entry, f"{exhibit.kind} {exhibit.row['id']}"
    if not exhibit.records:
        return [f"{what} has no WARC records in the catalogue"]
    if entry is None:
        return [f"no custody-log entry vouches for {what}"]
    if custody.entry_hash(entry["seq"], entry["at"], entry["event"], entry["subject"], entry["details"],
                          entry["prev_hash"]) != entry["entry_hash"]:
        return [f"custody-log entry {entry['seq']} for {what} was edited (its hash no longer matches)"]
    details = json.loads(entry["details"])
    if exhibit.kind == "check":
        return _check_entry_problems(exhibit, details)
    problems = [f"captures.{k} differs from custody-log entry {entry['seq']}"
                for k, v in (details.get("capture") or {}).items() if exhibit.row.get(k) != v]
    vouched = {r.get("record_id"): r for r in details.get("records") or []}
    for rec in exhibit.records:
        expected = vouched.pop(rec.record_id, None)
        if expected is None:
            problems.append(f"record {rec.record_id} is not in custody-log entry {entry['seq']}")
            continue
        problems += [f"capture_records.{k} of {rec.record_id} differs from custody-log entry {entry['seq']}"
                     for k, v in expected.items() if getattr(rec, k, v) != v]
    problems += [f"record {rid} of custody-log entry {entry['seq']} is missing from the catalogue"
                 for rid in vouched]
    return problems


def _check_entry_problems(exhibit: Exhibit, details: dict[str, Any]) -> list[str]:
    """A check's entry carries the SHA-256 of its whole row and of each record it wrote."""
    mine = next((c for c in details.get("checks") or [] if c.get("check_id") == exhibit.row["id"]), {})
    problems = [] if mine.get("row_sha256") == hashlib.sha256(to_json(exhibit.row).encode()).hexdigest() else [
        f"checks row {exhibit.row['id']} differs from its custody-log entry {exhibit.entry['seq']}"]  # type: ignore[index]
    vouched = list(mine.get("records") or [])
    return problems + [f"record {r.record_id} of check {exhibit.row['id']} is not vouched for by its "
                       "custody-log entry" for r in exhibit.records if r.member_sha256 not in vouched]


def _byte_problems(archive: Archive, exhibit: Exhibit, known: dict[str, decoded.Decoded],
                   to_decode: list[tuple[Path, Record]]) -> list[str]:
    """Hash every member as it is on disk now, and read the heads the index needs. The main
    record's decoded content is taken from ``known`` (stored under the member SHA-256 just
    verified), or the record is added to ``to_decode``."""
    problems = []
    by_file: dict[str, list[Record]] = {}
    for rec in exhibit.records:
        by_file.setdefault(rec.warc_file, []).append(rec)
    for name, recs in by_file.items():
        path = archive.warcs_dir / name
        try:
            with open(path, "rb", buffering=0) as fh:
                for rec in recs:
                    digest, head = _inspect_member(fh.fileno(), rec.offset, rec.length)
                    if digest != rec.member_sha256:
                        problems.append(f"record {rec.record_id} in {name} at offset {rec.offset}: its bytes "
                                        "differ from the SHA-256 recorded at capture")
                    else:
                        _parse_heads(rec, head)
                        if exhibit.kind == "capture" and rec is exhibit.main_record:
                            _decoded_content(path, rec, known, to_decode)
        except OSError as exc:
            problems.append(f"WARC file {name} cannot be read ({exc.strerror or exc})")
    return problems


def _inspect_member(fd: int, offset: int, length: int) -> tuple[str, bytes]:
    """SHA-256 of the member's exact bytes, and its first inflated bytes: enough for the WARC
    head and an HTTP head (inflating whole bodies would double the cost of an export)."""
    digest = hashlib.sha256()
    inflater = zlib.decompressobj(wbits=31)
    head = b""
    for chunk in read_span(fd, offset, length):
        digest.update(chunk)
        pending = chunk
        while pending and not _heads_complete(head) and not inflater.eof:
            try:
                head += inflater.decompress(pending, HEAD_STEP)
            except zlib.error:
                head, pending = head or b"-", b""
                break
            pending = inflater.unconsumed_tail
    return digest.hexdigest(), head


def _heads_complete(head: bytes) -> bool:
    """Both heads in hand (the WARC head and, if any, the HTTP head after it), or the limit hit."""
    return len(head) >= HEAD_LIMIT or head.count(b"\r\n\r\n") >= 2


def _parse_heads(rec: Record, data: bytes) -> None:
    """WARC-Date, payload digest and, for HTTP records, status and MIME type (for the CDXJ index)."""
    warc_head, _, block = data.partition(b"\r\n\r\n")
    fields = _fields(warc_head.decode("utf-8", "replace").split("\r\n")[1:])
    rec.warc_date = fields.get("warc-date")
    rec.payload_digest = fields.get("warc-payload-digest")
    rec.warc_content_type = fields.get("content-type")
    if rec.record_type in ("response", "revisit") and (rec.warc_content_type or "").startswith("application/http"):
        raw_head = block.partition(b"\r\n\r\n")[0]
        http_head = raw_head.decode("latin-1").split("\r\n")
        parts = http_head[0].split(" ", 2)
        rec.http_status = parts[1] if len(parts) > 1 and parts[1].isdigit() else None
        rec.mime = _mime(_fields(http_head[1:]).get("content-type"))
        # read as the bundle's verifier reads it (UTF-8, a stray byte replaced), which compares it
        rec.content_encoding = _fields(raw_head.decode("utf-8", "replace").split("\r\n")[1:]).get("content-encoding")
    else:
        rec.mime = _mime(rec.warc_content_type)
    if rec.record_type == "revisit":
        rec.mime = "warc/revisit"


def _decoded_content(path: Path, rec: Record, known: dict[str, decoded.Decoded],
                     to_decode: list[tuple[Path, Record]]) -> None:
    """The SHA-256 of the page as a browser (or someone saving it) sees it: the payload with its
    gzip/deflate coding undone, as stored at capture for these exact member bytes, or computed
    (by ``_decode_all``) for a capture made before values were stored."""
    if rec.record_type == "response" and rec.member_sha256 in known:
        rec.decoded_sha256, rec.decoded_note = known[rec.member_sha256]
    else:
        to_decode.append((path, rec))


def _decode_all(to_decode: list[tuple[Path, Record]]) -> dict[str, decoded.Decoded]:
    """Decode the pages that have no stored value, two at a time (zlib and hashlib let go of the
    interpreter while they work); returns the values of the responses among them, to store."""
    if not to_decode:
        return {}
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        values = list(pool.map(_decode_one, to_decode))
    computed: dict[str, decoded.Decoded] = {}
    for (_, rec), value in zip(to_decode, values, strict=True):
        rec.decoded_sha256, rec.decoded_note = value
        if rec.record_type == "response":
            computed[rec.member_sha256] = value
    return computed


def _decode_one(item: tuple[Path, Record]) -> decoded.Decoded:
    """Only content-coded responses are inflated: for the rest the decoded content is the
    payload as served, whose SHA-256 the catalogue already has."""
    path, rec = item
    coding = (rec.content_encoding or "").strip().lower() if rec.record_type == "response" else ""
    try:
        with open(path, "rb", buffering=0) as fh:
            return decoded.of_member(fh.fileno(), rec.offset, rec.length, coding, rec.payload_sha256)
    except OSError as exc:
        return None, f"not computed: the record cannot be read ({exc.strerror or exc})"


def _fields(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _mime(value: str | None) -> str | None:
    return re.split(r"[;\s]", value.strip(), maxsplit=1)[0] if value and value.strip() else None
