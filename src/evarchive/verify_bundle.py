#!/usr/bin/env python3
"""Verify an evarchive citation bundle with nothing but Python's standard library (3.8+).

Run it inside the bundle (``python3 verify_bundle.py``) or give the bundle's folder. It checks:

1. every file against SHA256SUMS, and that no file is missing or unlisted;
2. the WACZ package: datapackage-digest.json, every resource's size and SHA-256, stored
   (uncompressed) WARC entries;
3. every exhibit record: its exact bytes cut out of the WARC inside the WACZ, their SHA-256,
   the WARC record inside (record id, block and payload digests), and that each WARC file holds
   its warcinfo record and the listed records and nothing else;
4. the custody log: every entry's hash, the chain up to the head, Ed25519 signatures, and that
   each record is the one its custody entry recorded at capture (id, SHA-256, original place);
5. RFC 3161 tokens: their hash, and that their imprint is the custody-log entry they cover
   (with --tsa-root, openssl checks their signatures too);
6. the live state shown for each source ("since changed or vanished") is its latest check, as
   the custody log recorded it;
7. the exhibit index: exhibits.csv, exhibits.html and exhibits.txt state the same hashes and
   locations as the records and the custody log.

Exit status: 0 when everything matches, 1 when anything does not (each failure names the file
and record), 2 when the bundle cannot be read at all. Written for evarchive bundles; it does
not import evarchive.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib

CHUNK = 1 << 20
SIGNING_CONTEXT = b"evarchive custody entry v1\n"
GENESIS = "0" * 64
OS_LITTER = (".DS_Store", "Thumbs.db", "desktop.ini")  # file browsers add these when a folder is opened


class Report:
    """Collects results; every failure is printed at once so a long run shows progress."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.failures = 0

    def ok(self, text: str) -> None:
        if not self.quiet:
            print("ok    " + text)

    def note(self, text: str) -> None:
        if not self.quiet:
            print("note  " + text)

    def fail(self, text: str) -> None:
        self.failures += 1
        print("FAIL  " + text)


# --------------------------------------------------------------------------- hashing helpers

def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_at(fh, offset: int, length: int):  # type: ignore[no-untyped-def]
    """The bytes [offset, offset + length) in pieces (records may be large)."""
    fh.seek(offset)
    while length > 0:
        chunk = fh.read(min(CHUNK, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


def warc_digest_hex(value: str | None) -> str | None:
    """Hex SHA-256 from a WARC digest header (sha256:BASE32 or sha256:hex); None otherwise."""
    if not value or not value.lower().startswith("sha256:"):
        return None
    text = value[7:].strip()
    if len(text) == 64:
        return text.lower()
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8)).hex()
    except ValueError:
        return None


# --------------------------------------------------------------------------- Ed25519 (RFC 8032)
# Verification only, in plain integers: the standard library has no Ed25519.

P = 2 ** 255 - 19
L = 2 ** 252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _add(a: tuple, b: tuple) -> tuple:  # type: ignore[type-arg]
    """Point addition in extended coordinates (X, Y, Z, T) on the twisted Edwards curve."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    pa = (y1 - x1) * (y2 - x2) % P
    pb = (y1 + x1) * (y2 + x2) % P
    pc = t1 * 2 * D * t2 % P
    pd = z1 * 2 * z2 % P
    e, f, g, h = pb - pa, pd - pc, pd + pc, pb + pa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar: int, point: tuple) -> tuple:  # type: ignore[type-arg]
    result = (0, 1, 1, 0)
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _same(a: tuple, b: tuple) -> bool:  # type: ignore[type-arg]
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _decode_point(data: bytes) -> tuple | None:  # type: ignore[type-arg]
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else (0, y, 1, 0)
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


BASE = _decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    if len(public) != 32 or len(signature) != 64:
        return False
    a, r = _decode_point(public), _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= L:
        return False
    h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % L
    return _same(_mul(s, BASE), _add(r, _mul(h, a)))  # type: ignore[arg-type]


SPKI_ED25519 = bytes.fromhex("302a300506032b6570032100")


def public_key_from_pem(text: str) -> bytes | None:
    body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
    try:
        der = base64.b64decode(body)
    except ValueError:
        return None
    return der[12:] if der.startswith(SPKI_ED25519) and len(der) == 44 else None


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


# --------------------------------------------------------------------------- 1. files

def check_manifest(root: str, report: Report) -> None:
    path = os.path.join(root, "SHA256SUMS")
    listed = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            digest, _, name = line.rstrip("\n").partition("  ")
            listed[name.lstrip("*")] = digest
    bad = 0
    for name, digest in sorted(listed.items()):
        full = os.path.join(root, *name.split("/"))
        if not os.path.isfile(full):
            report.fail(f"{name}: listed in SHA256SUMS but missing")
            bad += 1
        elif sha256_file(full) != digest:
            report.fail(f"{name}: its SHA-256 differs from SHA256SUMS (the file was changed)")
            bad += 1
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            name = os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/")
            if name in listed or name == "SHA256SUMS":
                continue
            if f in OS_LITTER or "__pycache__" in name:
                report.note(f"{name}: not part of the bundle (left by the operating system or Python)")
            else:
                report.fail(f"{name}: not listed in SHA256SUMS (added after export)")
                bad += 1
    if not bad:
        report.ok(f"{len(listed)} files match SHA256SUMS")


# --------------------------------------------------------------------------- 2. the WACZ

def data_offsets(path: str) -> dict:  # type: ignore[type-arg]
    """Where each zip entry's bytes start (after its local header)."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            head = fh.read(30)
            if head[:4] != b"PK\x03\x04":
                continue
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            out[info.filename] = (info.header_offset + 30 + name_len + extra_len, info)
    return out


def check_wacz(path: str, report: Report) -> dict:  # type: ignore[type-arg]
    """The package's own fixity (datapackage.json); returns where each entry's bytes are."""
    name = os.path.basename(path)
    try:
        entries = data_offsets(path)
        with zipfile.ZipFile(path) as zf:
            package_bytes = zf.read("datapackage.json")
            digest = json.loads(zf.read("datapackage-digest.json"))
        package = json.loads(package_bytes)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        report.fail(f"{name}: cannot read the WACZ package ({exc})")
        return {}
    before = report.failures
    if digest.get("hash") != "sha256:" + hashlib.sha256(package_bytes).hexdigest():
        report.fail(f"{name}: datapackage.json does not match datapackage-digest.json")
    if package.get("wacz_version") != "1.1.1":
        report.fail(f"{name}: datapackage.json does not say wacz_version 1.1.1")
    _check_resources(path, package, entries, name, report)
    if report.failures == before:
        report.ok(f"{name}: WACZ {package.get('wacz_version')} package, "
                  f"{len(package['resources'])} resources match their hashes")
    return entries


def _entry_digest(path: str, start: int, info: zipfile.ZipInfo) -> tuple:  # type: ignore[type-arg]
    """SHA-256 and size of an entry's content. Stored entries are read in place (a damaged
    byte must be reported as a hash mismatch, not stop the run as a zip CRC error)."""
    digest, size = hashlib.sha256(), 0
    if info.compress_type == zipfile.ZIP_STORED:
        with open(path, "rb") as fh:
            for chunk in read_at(fh, start, info.compress_size):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size
    try:
        with zipfile.ZipFile(path) as zf, zf.open(info) as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
    except (zipfile.BadZipFile, zlib.error, OSError):
        return None, -1
    return digest.hexdigest(), size


def _check_resources(path, package, entries, name, report):  # type: ignore[no-untyped-def]
    listed = set()
    for res in package.get("resources", []):
        rpath = res.get("path")
        listed.add(rpath)
        if rpath not in entries:
            report.fail(f"{name}: resource {rpath} is missing")
            continue
        start, info = entries[rpath]
        if rpath.startswith("archive/") and info.compress_type != zipfile.ZIP_STORED:
            report.fail(f"{name}: {rpath} is compressed in the zip (WACZ wants it stored)")
        digest, size = _entry_digest(path, start, info)
        if res.get("hash") != f"sha256:{digest}" or res.get("bytes") != size:
            report.fail(f"{name} > {rpath}: its SHA-256 or size differs from datapackage.json")
    for rpath in entries:
        if rpath not in listed and rpath not in ("datapackage.json", "datapackage-digest.json"):
            report.fail(f"{name}: {rpath} is in the zip but not listed in datapackage.json")


# --------------------------------------------------------------------------- 3. records

INFLATE_STEP = 1 << 20  # bytes inflated at a time: a small member may inflate a thousandfold


def _inflate_steps(inflater, chunks):  # type: ignore[no-untyped-def]
    """The member's inflated bytes, at most INFLATE_STEP at a time; None for bytes after its end."""
    for chunk in chunks:
        if inflater.eof:
            yield None
            return
        pending = chunk
        while pending:
            yield inflater.decompress(pending, INFLATE_STEP)
            pending = inflater.unconsumed_tail


def parse_member(chunks) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """Inflate one gzip member: (WARC header fields, block sha256, payload sha256, error)."""
    inflater = zlib.decompressobj(wbits=31)
    head = b""
    fields = None
    remaining = 0
    block = hashlib.sha256()
    payload = None
    http_head = b""
    trailer = b""
    try:
        for data in _inflate_steps(inflater, chunks):
            if data is None:
                return fields, None, None, "bytes after the end of the gzip member"
            while data:
                if fields is None:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0 and len(head) > INFLATE_STEP:
                        return None, None, None, "no end of the WARC header in its first MiB"
                    if end < 0:
                        data = b""
                        continue
                    fields = _warc_fields(head[:end])
                    remaining = int(fields.get("content-length", "0"))
                    data, head = head[end + 4:], b""
                    http = fields.get("content-type", "").startswith("application/http")
                    if not http and fields.get("warc-type") != "revisit":
                        payload = block
                    continue
                take = data[:remaining]
                if take:
                    block.update(take)
                    if payload is None and fields.get("warc-type") in ("response", "request"):
                        http_head += take
                        split = http_head.find(b"\r\n\r\n")
                        if split >= 0:
                            payload = hashlib.sha256(http_head[split + 4:])
                            http_head = b""
                        elif len(http_head) > INFLATE_STEP:
                            return fields, None, None, "no end of the HTTP header in its first MiB"
                    elif payload is not None and payload is not block:
                        payload.update(take)
                    remaining -= len(take)
                trailer += data[len(take):]
                if len(trailer) > 4:
                    return fields, None, None, "not a complete WARC record"
                data = b""
        if not inflater.eof or inflater.unused_data:
            return fields, None, None, "not exactly one complete gzip member"
    except (zlib.error, ValueError) as exc:
        return fields, None, None, f"cannot inflate ({exc})"
    if fields is None or remaining or trailer != b"\r\n\r\n":
        return fields, None, None, "not a complete WARC record"
    return fields, block.hexdigest(), payload.hexdigest() if payload is not None else None, None


def _warc_fields(raw: bytes) -> dict:  # type: ignore[type-arg]
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out = {"_version": lines[0]}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def check_records(root: str, data: dict, entries: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    wacz = os.path.join(root, data["wacz"])
    count, before = 0, report.failures
    with open(wacz, "rb") as fh:
        for ex in data["exhibits"]:
            entry = log.get(ex["custody_seq"])
            for rec in ex["records"]:
                count += 1
                where = (f"exhibit {ex['exhibit']} record {rec['record_id']} ({rec['record_type']}) in "
                         f"{data['wacz']} > {rec['bundle_file']} at offset {rec['bundle_offset']}")
                _check_record(fh, entries, rec, where, report)
                _check_vouched(ex, rec, entry, where, report)
            _check_exhibit_fields(ex, entry, report)
    _check_tiling(wacz, data, entries, report)
    if report.failures == before:
        report.ok(f"{count} exhibit records: bytes, WARC digests and custody entries agree")


def _check_record(fh, entries, rec, where, report) -> None:  # type: ignore[no-untyped-def]
    start = entries.get(rec["bundle_file"], (None,))[0]
    if start is None:
        report.fail(f"{where}: that WARC file is not in the package")
        return
    if start + rec["bundle_offset"] != rec["wacz_offset"]:
        report.fail(f"{where}: bundle.json gives a different offset in the .wacz")
    digest = hashlib.sha256()
    pieces = []
    for chunk in read_at(fh, start + rec["bundle_offset"], rec["length"]):
        digest.update(chunk)
        pieces.append(chunk)
    if digest.hexdigest() != rec["member_sha256"]:
        report.fail(f"{where}: its bytes differ from the recorded SHA-256 {rec['member_sha256']}")
        return
    fields, block, payload, error = parse_member(pieces)
    if error:
        report.fail(f"{where}: {error}")
    elif fields.get("warc-record-id") != rec["record_id"]:
        report.fail(f"{where}: the record inside is {fields.get('warc-record-id')}")
    elif warc_digest_hex(fields.get("warc-block-digest")) not in (None, block) or block != rec["block_sha256"]:
        report.fail(f"{where}: the WARC block digest does not match the block")
    elif fields.get("warc-type") != "revisit" and payload is not None and (
            warc_digest_hex(fields.get("warc-payload-digest")) not in (None, payload)
            or rec["payload_sha256"] not in (None, payload)):
        report.fail(f"{where}: the WARC payload digest does not match the payload")


def _check_vouched(ex, rec, entry, where, report) -> None:  # type: ignore[no-untyped-def]
    """The record is the one the custody log recorded when it was captured (or checked)."""
    if entry is None:
        report.fail(f"{where}: its custody-log entry {ex['custody_seq']} is not in custody/log.jsonl")
        return
    details = entry["_details"]
    if ex["kind"] == "check":
        mine = [c for c in details.get("checks", []) if c.get("check_id") == ex["check_id"]]
        if not mine or rec["member_sha256"] not in mine[0].get("records", []):
            report.fail(f"{where}: not vouched for by custody-log entry {entry['seq']}")
        return
    if details.get("capture_id") != ex["capture_id"]:
        report.fail(f"{where}: custody-log entry {entry['seq']} is about another capture")
        return
    vouched = [r for r in details.get("records", []) if r.get("record_id") == rec["record_id"]]
    expect = {"member_sha256": rec["member_sha256"], "warc_file": rec["original_file"],
              "offset": rec["original_offset"], "length": rec["length"], "block_sha256": rec["block_sha256"]}
    if not vouched or any(vouched[0].get(k) != v for k, v in expect.items()):
        report.fail(f"{where}: differs from what custody-log entry {entry['seq']} recorded at capture")


CAPTURE_FIELDS = (("captured_at", "started_at"), ("final_url", "final_url"), ("http_status", "http_status"),
                  ("server_ip", "server_ip"), ("payload_sha256", "payload_sha256"), ("url_requested", "url_requested"))


CHECK_FIELDS = ("checked_at", "verdict", "reason", "http_status", "final_url", "server_ip", "payload_sha256")


def _check_check_fields(ex, entry, report) -> None:  # type: ignore[no-untyped-def]
    """A check exhibit shows its check's row, whose SHA-256 the custody entry recorded."""
    row = ex.get("check_row") or {}
    mine = [c for c in entry["_details"].get("checks", []) if c.get("check_id") == ex["check_id"]]
    if not mine or mine[0].get("row_sha256") != hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest():
        report.fail(f"exhibit {ex['exhibit']}: check {ex['check_id']} is not the one custody-log entry "
                    f"{entry['seq']} recorded")
    elif any(ex.get(k) != row.get(k) for k in CHECK_FIELDS) or row.get("id") != ex["check_id"]:
        report.fail(f"exhibit {ex['exhibit']}: what it shows differs from check {ex['check_id']}")


def _check_exhibit_fields(ex, entry, report) -> None:  # type: ignore[no-untyped-def]
    """What the index says about a capture (or check) is what its custody entry recorded."""
    if entry is None:
        return
    if ex["kind"] == "check":
        _check_check_fields(ex, entry, report)
        return
    row = entry["_details"].get("capture") or {}
    pairs = list(CAPTURE_FIELDS)
    wrong = [mine for mine, theirs in pairs if ex.get(mine) != row.get(theirs)]
    if (ex.get("tls") or {}).get("cert_sha256") != row.get("cert_sha256"):
        wrong.append("tls certificate")
    chain = json.loads(row["redirect_chain"]) if row.get("redirect_chain") else []
    if chain != ex.get("redirect_chain"):
        wrong.append("redirect_chain")
    if wrong:
        report.fail(f"exhibit {ex['exhibit']}: {', '.join(wrong)} differ from custody-log entry {entry['seq']}")


def _check_tiling(wacz: str, data: dict, entries: dict, report: Report) -> None:  # type: ignore[type-arg]
    """Each WARC in the package: a warcinfo record, then exactly the listed records, in order."""
    listed = {}
    for ex in data["exhibits"]:
        for rec in ex["records"]:
            listed.setdefault(rec["bundle_file"], {})[rec["record_id"]] = rec
    with open(wacz, "rb") as fh:
        for name, (start, info) in sorted(entries.items()):
            if not name.startswith("archive/"):
                continue
            recs = sorted(listed.get(name, {}).values(), key=lambda r: r["bundle_offset"])
            pos = _warcinfo_length(fh, start, info.file_size, name, report)
            for rec in recs:
                if rec["bundle_offset"] != pos:
                    report.fail(f"{name}: bytes {pos}..{rec['bundle_offset']} are not a listed record")
                pos = rec["bundle_offset"] + rec["length"]
            if pos != info.file_size:
                report.fail(f"{name}: {info.file_size - pos} bytes after the last listed record")


def _warcinfo_length(fh, start: int, size: int, name: str, report: Report) -> int:  # type: ignore[no-untyped-def]
    fh.seek(start)
    data = fh.read(min(size, 1 << 20))
    inflater = zlib.decompressobj(wbits=31)
    try:
        text = inflater.decompress(data, 1 << 20)  # a warcinfo record is a few hundred bytes
    except zlib.error:
        text = b""
    if not inflater.eof or b"WARC-Type: warcinfo" not in text.split(b"\r\n\r\n")[0]:
        report.fail(f"{name}: does not start with a warcinfo record")
        return 0
    return len(data) - len(inflater.unused_data)


# --------------------------------------------------------------------------- 4. custody log

def canonical_hash(entry: dict) -> str:  # type: ignore[type-arg]
    body = {"seq": entry["seq"], "at": entry["at"], "event": entry["event"], "subject": entry["subject"],
            "details": json.loads(entry["details"]), "prev_hash": entry["prev_hash"]}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_keys(root: str, given: list, report: Report) -> dict:  # type: ignore[type-arg]
    """Trusted public keys by key id: --public-key files, else custody/keys/*.pem."""
    paths = list(given)
    folder = os.path.join(root, "custody", "keys")
    if not paths and os.path.isdir(folder):
        paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".pem")]
    keys = {}
    for path in paths:
        with open(path, encoding="ascii") as fh:
            raw = public_key_from_pem(fh.read())
        if raw is None:
            report.fail(f"{path}: not an Ed25519 public key")
        else:
            keys[key_id(raw)] = raw
    return keys


def check_log(root: str, data: dict, keys: dict, args: argparse.Namespace, report: Report) -> dict:  # type: ignore[type-arg]
    custody = data["custody"]
    log = {}
    with open(os.path.join(root, *custody["log"].split("/")), encoding="utf-8") as fh:
        for line in fh:
            entry = json.loads(line)
            entry["_details"] = json.loads(entry["details"])
            log[entry["seq"]] = entry
    before = report.failures
    _check_chain(log, custody, report)
    cited = {ex["custody_seq"] for ex in data["exhibits"]}
    cited |= {seq for seq, e in log.items() if e["event"] in ("keys-generate", "timestamp")}
    signed = _check_signatures(log, keys, cited, args.all_signatures, report)
    _check_head(root, log, custody, args.head, report)
    if report.failures == before:
        scope = "chain recomputed to the head" if custody["scope"] == "chain" else "entries only (redacted log)"
        report.ok(f"custody log: {len(log)} entries, hashes match ({scope}), {signed} signatures valid, "
                  f"head {custody['head']['seq']} {custody['head']['entry_hash']}")
    return log


def _check_chain(log: dict, custody: dict, report: Report) -> None:  # type: ignore[type-arg]
    previous = None
    for seq in sorted(log):
        entry = log[seq]
        if canonical_hash(entry) != entry["entry_hash"]:
            report.fail(f"custody/log.jsonl entry {seq} ({entry['event']} {entry['subject']}): its hash "
                        "does not match its contents (edited)")
        if seq == 1 and entry["prev_hash"] != GENESIS:
            report.fail("custody/log.jsonl entry 1 does not start the chain")
        if previous is not None and seq == previous["seq"] + 1 and entry["prev_hash"] != previous["entry_hash"]:
            report.fail(f"custody/log.jsonl entry {seq} is not chained to entry {previous['seq']}")
        elif previous is not None and seq != previous["seq"] + 1 and custody["scope"] == "chain":
            report.fail(f"custody/log.jsonl: entries {previous['seq'] + 1}..{seq - 1} are missing")
        previous = entry


def _check_signatures(log: dict, keys: dict, cited: set, every: bool, report: Report) -> int:  # type: ignore[type-arg]
    """Signatures of the entries the bundle relies on and of the last signed entry (which, through
    the chain, vouches for every entry before it); --all-signatures checks every one (slower:
    about 5 ms each in pure Python)."""
    valid = 0
    signed = [seq for seq in sorted(log) if log[seq].get("signature")]
    wanted = set(signed) if every else (cited | set(signed[-1:])) & set(signed)
    for seq in sorted(log):
        entry = log[seq]
        if entry["event"] == "keys-generate" and entry["subject"] in keys:
            pem_raw = public_key_from_pem(entry["_details"].get("public_key_pem") or "")
            if pem_raw != keys[entry["subject"]]:
                report.fail(f"custody/log.jsonl entry {seq}: introduces a different key {entry['subject']}")
        if seq not in wanted:
            continue
        try:
            scheme, kid, b64 = entry["signature"].split(":", 2)
            raw = base64.b64decode(b64)
        except ValueError:
            report.fail(f"custody/log.jsonl entry {seq}: malformed signature")
            continue
        if scheme != "ed25519" or kid not in keys:
            report.fail(f"custody/log.jsonl entry {seq}: signed by key {kid}, which is not a trusted key")
        elif not ed25519_verify(keys[kid], SIGNING_CONTEXT + entry["entry_hash"].encode("ascii"), raw):
            report.fail(f"custody/log.jsonl entry {seq}: the signature does not verify")
        else:
            valid += 1
    return valid


def _check_head(root: str, log: dict, custody: dict, anchor: str | None, report: Report) -> None:  # type: ignore[type-arg]
    head = custody["head"]
    with open(os.path.join(root, "custody", "head.txt"), encoding="ascii") as fh:
        text = fh.read().split()
    if text != [str(head["seq"]), head["entry_hash"]]:
        report.fail("custody/head.txt differs from bundle.json")
    last = log.get(head["seq"])
    if log and (last is None or last["entry_hash"] != head["entry_hash"] or max(log) != head["seq"]):
        report.fail(f"custody/log.jsonl does not end at the head {head['seq']} {head['entry_hash']}")
    if anchor:
        seq, _, digest = anchor.partition(":")
        entry = log.get(int(seq)) if seq.isdigit() else None
        if entry is None:
            report.fail(f"--head {anchor}: entry {seq} is not in this bundle's log, so it cannot be checked")
        elif entry["entry_hash"] != digest.strip().lower():
            report.fail(f"--head {anchor}: the bundle's entry {seq} has hash {entry['entry_hash']}")
        else:
            report.ok(f"the log agrees with the head given on the command line ({seq})")


# --------------------------------------------------------------------------- 5. timestamps

def check_timestamps(root: str, data: dict, log: dict, tsa_root: str | None, report: Report) -> None:  # type: ignore[type-arg]
    for ts in data["custody"]["timestamps"]:
        path = os.path.join(root, *ts["token"].split("/"))
        with open(path, "rb") as fh:
            token = fh.read()
        before = report.failures
        if hashlib.sha256(token).hexdigest() != ts["token_sha256"]:
            report.fail(f"{ts['token']}: its SHA-256 is not the one recorded when it was obtained")
        if b"\x04\x20" + bytes.fromhex(ts["digest"]) not in token:
            report.fail(f"{ts['token']}: its imprint is not {ts['digest']}")
        covered = log.get(ts["covers_seq"])
        if covered is not None and covered["entry_hash"] != ts["digest"]:
            report.fail(f"{ts['token']}: covers entry {ts['covers_seq']}, whose hash differs in the log")
        stamp = [e for e in log.values() if e["event"] == "timestamp" and e["_details"].get("timestamp_id") == ts["id"]]
        if stamp and stamp[0]["_details"].get("token_sha256") != ts["token_sha256"]:
            report.fail(f"{ts['token']}: differs from the token its custody-log entry {stamp[0]['seq']} recorded")
        if tsa_root:
            _openssl_ts(root, ts, tsa_root, report)
        if report.failures == before:
            report.ok(f"{ts['token']}: imprint is log entry {ts['covers_seq']}; stamped {ts['gen_time']} by "
                      f"{ts['tsa_subject']}" + ("" if tsa_root else " (signature: see VERIFY.md, openssl ts)"))


def _openssl_ts(root: str, ts: dict, tsa_root: str, report: Report) -> None:  # type: ignore[type-arg]
    openssl = shutil.which("openssl")
    if not openssl:
        report.fail(f"{ts['token']}: --tsa-root given but no openssl on PATH")
        return
    run = subprocess.run([openssl, "ts", "-verify", "-token_in", "-in", os.path.join(root, *ts["token"].split("/")),
                          "-digest", ts["digest"], "-CAfile", tsa_root,
                          "-untrusted", os.path.join(root, *ts["chain"].split("/"))],
                         capture_output=True, text=True)
    if "Verification: OK" not in run.stdout:
        report.fail(f"{ts['token']}: openssl ts -verify failed: {(run.stdout + run.stderr).strip()[:300]}")


# --------------------------------------------------------------------------- live state

def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_live(data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """"Has the page since changed or vanished": each statement is the source's latest check,
    whose whole catalogue row is hashed into the custody entry that committed it."""
    before, checked = report.failures, 0
    by_source = {}
    for src in data["sources"]:
        by_source[src["source_id"]] = src["live"]
        live, row = src["live"], src.get("latest_check")
        if row is None:
            if live["state"] != "unchecked":
                report.fail(f"source {src['url']}: says '{live['text']}' without the check behind it")
            continue
        if not live.get("vouched"):
            if "UNVERIFIED" not in live["text"]:
                report.fail(f"source {src['url']}: an unvouched live check is not marked UNVERIFIED")
            continue
        entry = log.get(live["custody_seq"])
        mine = [c for c in (entry or {}).get("_details", {}).get("checks", []) if c.get("check_id") == row["id"]]
        if not mine or mine[0].get("row_sha256") != hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest():
            report.fail(f"source {src['url']}: its live check {row['id']} is not the one custody-log entry "
                        f"{live['custody_seq']} recorded")
        elif (row["verdict"], row["checked_at"], row["id"], row["source_id"]) != (
                live["state"], live["checked_at"], live["check_id"], src["source_id"]):
            report.fail(f"source {src['url']}: the live state shown is not what check {row['id']} found")
        else:
            checked += 1
    for ex in data["exhibits"]:
        if ex["live"] != by_source.get(ex["source_id"], ex["live"]):
            report.fail(f"exhibit {ex['exhibit']}: its live state differs from its source's")
    if report.failures == before and checked:
        report.ok(f"live state of {checked} source(s): the latest checks, as the custody log recorded them")


# --------------------------------------------------------------------------- 6. the exhibit index

CSV_FIELDS = (("payload_sha256", lambda ex, rec: ex.get("payload_sha256") or ""),
              ("record_id", lambda ex, rec: rec["record_id"]),
              ("record_sha256", lambda ex, rec: rec["member_sha256"]),
              ("warc_file", lambda ex, rec: rec["bundle_file"]),
              ("warc_offset", lambda ex, rec: str(rec["bundle_offset"])),
              ("original_warc_file", lambda ex, rec: rec["original_file"]),
              ("original_offset", lambda ex, rec: str(rec["original_offset"])),
              ("custody_seq", lambda ex, rec: str(ex["custody_seq"])),
              ("captured_utc", lambda ex, rec: ex.get("captured_at") or ex.get("checked_at")),
              ("final_url", lambda ex, rec: ex.get("final_url") or ""),
              ("http_status", lambda ex, rec: str(ex.get("http_status") or "")),
              ("server_ip", lambda ex, rec: ex.get("server_ip") or ""),
              ("tls_cert_sha256", lambda ex, rec: (ex.get("tls") or {}).get("cert_sha256") or ""),
              ("live_now", lambda ex, rec: ex["live"]["text"]))


TOKENS = re.compile(r"<urn:uuid:[0-9a-fA-F-]{36}>|(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def main_record(ex: dict) -> dict:  # type: ignore[type-arg]
    return next((r for r in ex["records"] if r["record_id"] == ex["main_record"]), ex["records"][-1])


def check_index(root: str, data: dict, report: Report) -> None:  # type: ignore[type-arg]
    before = report.failures
    exhibits = {ex["exhibit"]: ex for ex in data["exhibits"]}
    seen = set()
    with open(os.path.join(root, "exhibits.csv"), encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            if not row.get("exhibit"):
                continue
            ex = exhibits.get(int(row["exhibit"]))
            if ex is None:
                report.fail(f"exhibits.csv line {line}: exhibit {row['exhibit']} is not in the bundle")
                continue
            seen.add(ex["exhibit"])
            rec = main_record(ex)
            wrong = [name for name, value in CSV_FIELDS if row.get(name) != value(ex, rec)]
            if wrong:
                report.fail(f"exhibits.csv line {line} (exhibit {ex['exhibit']}): {', '.join(wrong)} "
                            "differ from the records and the custody log")
    for number in sorted(set(exhibits) - seen):
        report.fail(f"exhibits.csv: exhibit {number} is not listed")
    for name in ("exhibits.html", "exhibits.txt"):
        with open(os.path.join(root, name), encoding="utf-8") as fh:
            shown = set(TOKENS.findall(html.unescape(fh.read())))  # one pass, not one search per value
        for ex in data["exhibits"]:
            rec = main_record(ex)
            for value in (rec["record_id"], rec["member_sha256"], ex.get("payload_sha256")):
                if value and value not in shown:
                    report.fail(f"{name}: exhibit {ex['exhibit']} does not show {value}")
    if report.failures == before:
        claims = len(data["claims"])
        report.ok(f"exhibit index: {len(exhibits)} exhibits" + (f" for {claims} claims" if claims else "")
                  + " state the verified hashes and locations")


# --------------------------------------------------------------------------- main

def main(argv: list | None = None) -> int:  # type: ignore[type-arg]
    parser = argparse.ArgumentParser(description="Verify an evarchive citation bundle (standard library only).")
    parser.add_argument("bundle", nargs="?", default=os.path.dirname(os.path.abspath(__file__)),
                        help="the bundle's folder (default: the folder of this script)")
    parser.add_argument("--public-key", action="append", default=[],
                        help="trusted Ed25519 public key (PEM), obtained from the archive out of band")
    parser.add_argument("--head", help="SEQ:HASH of a custody-log head published by the archive")
    parser.add_argument("--tsa-root", help="PEM file of trusted TSA roots: check tokens with openssl")
    parser.add_argument("--all-signatures", action="store_true",
                        help="check every entry's signature, not only those the bundle relies on")
    parser.add_argument("--quiet", action="store_true", help="print failures only")
    args = parser.parse_args(argv)
    root = args.bundle
    if zipfile.is_zipfile(root):
        return _verify_zip(root, args)
    report = Report(args.quiet)
    try:
        with open(os.path.join(root, "bundle.json"), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        print(f"cannot read {os.path.join(root, 'bundle.json')}: {exc}", file=sys.stderr)
        return 2
    run_checks(root, data, args, report)
    if report.failures:
        print(f"\n{report.failures} problem(s): this bundle is NOT as exported")
        return 1
    print("\nBUNDLE VERIFIED: every file, record, custody entry and index line matches")
    return 0


def run_checks(root: str, data: dict, args: argparse.Namespace, report: Report) -> None:  # type: ignore[type-arg]
    check_manifest(root, report)
    entries = check_wacz(os.path.join(root, data["wacz"]), report)
    log = check_log(root, data, load_keys(root, args.public_key, report), args, report)
    if entries:
        check_records(root, data, entries, log, report)
    check_timestamps(root, data, log, args.tsa_root, report)
    check_live(data, log, report)
    check_index(root, data, report)


def _verify_zip(path: str, args: argparse.Namespace) -> int:
    """A bundle handed over as one .zip: unpack it to a temporary folder and verify that."""
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(path) as zf:
            zf.extractall(tmp)
        tops = os.listdir(tmp)
        folder = os.path.join(tmp, tops[0]) if len(tops) == 1 else tmp
        rest = (["--quiet"] if args.quiet else []) + (["--all-signatures"] if args.all_signatures else [])
        for key in args.public_key:
            rest += ["--public-key", key]
        rest += (["--head", args.head] if args.head else []) + (["--tsa-root", args.tsa_root] if args.tsa_root else [])
        return main([folder, *rest])


if __name__ == "__main__":
    sys.exit(main())
