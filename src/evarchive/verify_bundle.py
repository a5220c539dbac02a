#!/usr/bin/env python3
"""Verify an evarchive citation bundle with nothing but Python's standard library (3.8+).

Run it inside the bundle (``python3 verify_bundle.py``) or give the bundle's folder. It checks:

1. every file against SHA256SUMS, and that no file is missing or unlisted;
2. the WACZ package: datapackage-digest.json and its anonymous ECDSA signature (Webrecorder's
   WACZ Signing and Verification; the key's fingerprint goes in the verdict), every resource's
   size and SHA-256, stored (uncompressed) WARC entries;
3. every exhibit record: its exact bytes cut out of the WARC inside the WACZ, their SHA-256,
   the WARC record inside (record id, block and payload digests), and that each WARC file holds
   its warcinfo record and the listed records and nothing else;
4. the custody log: every entry's hash, the chain up to the head, Ed25519 signatures, and that
   each record is the one its custody entry recorded at capture (id, SHA-256, original place);
5. RFC 3161 tokens: their hash, and that their imprint is the custody-log entry they cover
   (with --tsa-root, openssl checks their signatures too), and that no exhibit's WARC-Date is
   after the time (genTime) of a token covering it;
6. the live state shown for each source ("since changed or vanished") is its latest check, as
   the custody log recorded it;
7. the exhibit index: exhibits.csv, exhibits.html and exhibits.txt state the same hashes and
   locations as the records and the custody log;
8. everything a reader is shown: every fact of bundle.json that the index and report.html show is
   derived again from what the custody log vouches for (capture and check rows, the report's
   import entry, witness entries), and each of those files is rendered again from the vouched
   facts and compared with the file, naming the file, exhibit or claim, and fact that differ.

Anchors: a bundle only proves itself against facts from outside it. The key the archive handed
over separately (--public-key), the log head it published (--head) and the trusted roots of a
timestamp authority (--tsa-root) each anchor the exhibits when they vouch for every exhibit's
custody entry. The verdict says BUNDLE VERIFIED AND ANCHORED, naming each anchor, or BUNDLE
CONSISTENT, NOT ANCHORED: the keys inside the bundle prove nothing against someone who rebuilt it.

Exit status: 0 when everything matches (anchored or not; --require-anchor makes an unanchored
bundle exit 1), 1 when anything does not (each failure names the file and record), 2 when the
bundle cannot be read at all, 3 when the run spent its inflation budget (--inflate-budget) before
every record was inflated and checked, and found nothing wrong in what it did check. Written
for evarchive bundles; it does not import evarchive. A large bundle's records are inflated and
hashed by worker processes (--jobs) while the other checks run; the findings are the same.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import csv
import datetime
import hashlib
import html
import io
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
import zlib
from typing import Any
from urllib.parse import urlencode

CHUNK = 1 << 20
SIGNING_CONTEXT = b"evarchive custody entry v1\n"
GENESIS = "0" * 64
OS_LITTER = (".DS_Store", "Thumbs.db", "desktop.ini")  # file browsers add these when a folder is opened


class Report:
    """Collects results; every failure is printed at once so a long run shows progress (or, while
    held, once the steps reported before it are)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.held: list | None = None  # lines of steps run early, printed after the steps before them
        self.failures = 0
        self.anchors: list = []  # facts from outside the bundle that the exhibits were checked against
        self.wacz_signature = ""  # what the WACZ's own signature says, for the verdict
        self.not_inflated = 0  # records checked only against their SHA-256: the inflation budget was spent
        self.not_checked: list = []  # steps the budget stopped

    def anchor(self, text: str) -> None:
        self.anchors.append(text)
        self.ok("ANCHORED: " + text)

    def ok(self, text: str) -> None:
        if not self.quiet:
            self._print("ok    " + text)

    def note(self, text: str) -> None:
        if not self.quiet:
            self._print("note  " + text)

    def fail(self, text: str) -> None:
        self.failures += 1
        self._print("FAIL  " + text)

    def _print(self, line: str) -> None:
        if self.held is None:
            print(line)
        else:
            self.held.append(line)

    def hold(self) -> None:
        self.held = []

    def release(self) -> list:  # type: ignore[type-arg]
        lines, self.held = self.held or [], None
        return lines


# --------------------------------------------------------------------------- reading a hostile bundle
# A bundle comes from the other side. Nothing in it is followed, blocked on or trusted for size:
# no symlink is followed (a link to /dev/zero would be read for ever), no FIFO or device is
# opened (a FIFO blocks the reader), no name leaves the bundle, and every file read whole is
# read only up to a cap, so a hostile bundle ends with a verdict, never a hang or a traceback.

MAX_WHOLE_FILE = 64 << 20  # JSON, CSV, HTML and PEM files are read whole, up to this
MAX_HEADER = 1 << 20  # a WARC or HTTP header longer than this is not a record evarchive wrote
MAX_RATIO = 200  # a member may inflate to 64 MiB, or 200 times its size, and no more
MAX_FLOOR = 64 << 20
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
BINARY = getattr(os, "O_BINARY", 0)


class Unsafe(Exception):
    """A file of the bundle that must not be read: outside it, a link, a FIFO, too large."""


def inside(root: str, name: str) -> str:
    """The path of a bundle-relative name; names that could leave the bundle are refused."""
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or any(
            p in ("", ".", "..") for p in parts):
        raise Unsafe(f"{name!r} is not a plain path inside the bundle (refused)")
    return os.path.join(root, *parts)


def _refuse_links(root: str, name: str) -> str:
    path = root
    for part in name.replace("\\", "/").split("/"):
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise Unsafe(f"{name}: missing") from None
        if stat.S_ISLNK(mode):
            raise Unsafe(f"{name}: is a symbolic link (refused, not followed)")
    return path


def open_bundle_file(root: str, name: str):  # type: ignore[no-untyped-def]
    """Open a regular file of the bundle for reading, refusing links, FIFOs and devices."""
    path = inside(root, name)
    _refuse_links(root, name)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | NONBLOCK | BINARY)
    except OSError as exc:
        raise Unsafe(f"{name}: cannot be opened ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unsafe(f"{name}: is not a regular file (refused, not read)")
    return os.fdopen(fd, "rb")


def read_bundle_file(root: str, name: str, limit: int = MAX_WHOLE_FILE) -> bytes:
    with open_bundle_file(root, name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise Unsafe(f"{name}: larger than {limit} bytes, more than any bundle file read whole")
    return data


def read_bundle_text(root: str, name: str) -> str:
    try:
        return read_bundle_file(root, name).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unsafe(f"{name}: is not UTF-8 text") from None


def file_kind(path: str) -> str | None:
    """None for a regular file; otherwise what it is, in words."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a device or socket"


# --------------------------------------------------------------------------- hashing helpers

def sha256_file(root: str, name: str) -> str:
    digest = hashlib.sha256()
    with open_bundle_file(root, name) as fh:
        hash_stream(fh, digest)
    return digest.hexdigest()


def hash_stream(fh, digest, length: int | None = None) -> int:  # type: ignore[no-untyped-def]
    """Feed ``digest`` from the file's position, ``length`` bytes or to its end, through one
    buffer (a fresh megabyte for every read costs page faults); returns the bytes fed."""
    view, fed = memoryview(bytearray(CHUNK)), 0
    while length is None or fed < length:
        got = fh.readinto(view if length is None or length - fed >= CHUNK else view[:length - fed])
        if not got:
            break
        digest.update(view[:got])
        fed += got
    return fed


def read_at(fh, offset: int, length: int):  # type: ignore[no-untyped-def]
    """The bytes [offset, offset + length) in pieces (records may be large)."""
    fh.seek(offset)
    while length > 0:
        chunk = fh.read(min(CHUNK, length))
        if not chunk:
            return
        length -= len(chunk)
        yield chunk


_B32_SHA256 = re.compile(r"[A-Z2-7]{52}====\Z")  # 256 bits in base32: 52 digits, 4 bits and "====" to spare
_B32_AS_INT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghijklmnopqrstuv")


def warc_digest_hex(value: str | None) -> str | None:
    """Hex SHA-256 from a WARC digest header (sha256:BASE32 or sha256:hex); None otherwise."""
    if not value or not value.lower().startswith("sha256:"):
        return None
    text = value[7:].strip()
    if len(text) == 64:
        return text.lower()
    if _B32_SHA256.match(text.upper()):  # the form every WARC writer uses, decoded without a loop in Python
        return (int(text[:52].upper().translate(_B32_AS_INT), 32) >> 4).to_bytes(32, "big").hex()
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


# --------------------------------------------------------------------------- ECDSA P-256 / P-384 (FIPS 186-4)
# Verification only, in plain integers, for the WACZ's own signature (datapackage-digest.json).
# Both curves are y^2 = x^3 - 3x + b over GF(p), with a base point G of prime order n and
# cofactor 1, so a point that satisfies the equation is in the group; affine coordinates and
# Python's modular inverse keep it short (a verification takes milliseconds).

EC_PUBLIC_KEY_OID = bytes.fromhex("2a8648ce3d0201")  # id-ecPublicKey
CURVES = {  # DER of the named curve's OID: (name, p, b, Gx, Gy, n)
    bytes.fromhex("2a8648ce3d030107"): (
        "P-256",
        0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff,
        0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b,
        0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
        0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5,
        0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551),
    bytes.fromhex("2b81040022"): (
        "P-384",
        0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff,
        0xb3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef,
        0xaa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7,
        0x3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f,
        0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973),
}


def _der(data: bytes, pos: int = 0) -> tuple:  # type: ignore[type-arg]
    """One DER element at ``pos``: (tag, content, next position). Strict: a definite, minimally
    encoded length that stays inside ``data``; anything else raises ValueError."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, pos = data[pos], data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4 or pos + count > len(data) or data[pos] == 0:
            raise ValueError("bad DER length")
        length, pos = int.from_bytes(data[pos:pos + count], "big"), pos + count
        if length < 0x80:
            raise ValueError("non-minimal DER length")
    if pos + length > len(data):
        raise ValueError("DER element runs past the end")
    return tag, data[pos:pos + length], pos + length


def _der_only(data: bytes, tag: int) -> bytes:
    """The content of ``data``, which must be exactly one element with ``tag``."""
    found, content, end = _der(data)
    if found != tag or end != len(data):
        raise ValueError(f"expected one DER element of tag {tag:#x}")
    return content


def ec_public_key(spki: bytes) -> tuple:  # type: ignore[type-arg]
    """(curve, (x, y)) from a SubjectPublicKeyInfo DER; ValueError unless it is an uncompressed
    point on P-256 or P-384."""
    body = _der_only(spki, 0x30)
    tag, algorithm, pos = _der(body)
    tag2, bits, end = _der(body, pos)
    if tag != 0x30 or tag2 != 0x03 or end != len(body):
        raise ValueError("not a SubjectPublicKeyInfo")
    tag, oid, pos = _der(algorithm)
    tag2, curve_oid, end = _der(algorithm, pos)
    if (tag, tag2, end) != (0x06, 0x06, len(algorithm)) or oid != EC_PUBLIC_KEY_OID:
        raise ValueError("not an elliptic-curve key")
    if curve_oid not in CURVES:
        raise ValueError("not a P-256 or P-384 key")
    curve = CURVES[curve_oid]
    p, b, size = curve[1], curve[2], (curve[1].bit_length() + 7) // 8
    if len(bits) != 2 + 2 * size or bits[:2] != b"\x00\x04":
        raise ValueError("not an uncompressed point")
    x, y = int.from_bytes(bits[2:2 + size], "big"), int.from_bytes(bits[2 + size:], "big")
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
        raise ValueError("the point is not on the curve")
    return curve, (x, y)


def ecdsa_signature(raw: bytes, curve: tuple) -> tuple:  # type: ignore[type-arg]
    """(r, s) from raw r || s (IEEE P1363, as WebCrypto writes) or DER SEQUENCE{r, s} (as OpenSSL
    writes); ValueError when it is neither, or a value is out of range."""
    size = (curve[1].bit_length() + 7) // 8
    if len(raw) == 2 * size:
        r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
    else:
        body = _der_only(raw, 0x30)
        values, pos = [], 0
        while pos < len(body):
            tag, content, pos = _der(body, pos)
            if tag != 0x02 or not content or content[0] & 0x80 or (
                    len(content) > 1 and content[0] == 0 and not content[1] & 0x80):
                raise ValueError("not a positive, minimally encoded DER INTEGER")
            values.append(int.from_bytes(content, "big"))
        if len(values) != 2:
            raise ValueError("a DER signature is two INTEGERs")
        r, s = values
    if not (0 < r < curve[5] and 0 < s < curve[5]):
        raise ValueError("r or s out of range")
    return r, s


def _ec_add(a, b, p):  # type: ignore[no-untyped-def]
    """Affine point addition (None is the point at infinity), for a = -3."""
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0]:
        if (a[1] + b[1]) % p == 0:
            return None
        slope = (3 * a[0] * a[0] - 3) * pow(2 * a[1], -1, p) % p
    else:
        slope = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
    x = (slope * slope - a[0] - b[0]) % p
    return x, (slope * (a[0] - x) - a[1]) % p


def _ec_mul(k: int, point, p: int):  # type: ignore[no-untyped-def]
    result = None
    while k:
        if k & 1:
            result = _ec_add(result, point, p)
        point = _ec_add(point, point, p)
        k >>= 1
    return result


def ecdsa_verify(spki: bytes, message: bytes, signature: bytes) -> bool:
    """ECDSA with SHA-256 (FIPS 186-4, 6.4.2); ValueError for a key or signature that is malformed."""
    curve, q = ec_public_key(spki)
    r, s = ecdsa_signature(signature, curve)
    p, g, n = curve[1], (curve[3], curve[4]), curve[5]
    e = int.from_bytes(hashlib.sha256(message).digest(), "big") >> max(0, 256 - n.bit_length())
    w = pow(s, -1, n)
    point = _ec_add(_ec_mul(e * w % n, g, p), _ec_mul(r * w % n, q, p), p)
    return point is not None and point[0] % n == r


# --------------------------------------------------------------------------- 1. files

def check_manifest(root: str, report: Report) -> None:
    listed = {}
    for line in read_bundle_text(root, "SHA256SUMS").splitlines():
        digest, _, name = line.partition("  ")
        listed[name.lstrip("*")] = digest
    bad = 0
    for name, digest in sorted(listed.items()):
        try:
            if sha256_file(root, name) != digest:
                report.fail(f"{name}: its SHA-256 differs from SHA256SUMS (the file was changed)")
                bad += 1
        except Unsafe as exc:
            report.fail(f"{exc} (listed in SHA256SUMS)")
            bad += 1
    bad += _unlisted(root, listed, report)
    if not bad:
        report.ok(f"{len(listed)} files match SHA256SUMS")


def _unlisted(root: str, listed: dict, report: Report) -> int:  # type: ignore[type-arg]
    """Files, links and anything else in the bundle that SHA256SUMS does not list."""
    bad = 0
    for dirpath, dirs, files in os.walk(root):  # never descends into a linked folder
        for f in sorted(dirs + files):
            full = os.path.join(dirpath, f)
            name = os.path.relpath(full, root).replace(os.sep, "/")
            kind = file_kind(full)
            if kind == "a folder" or (kind is None and (name in listed or name == "SHA256SUMS")):
                continue
            if kind is None and (f in OS_LITTER or "__pycache__" in name):
                report.note(f"{name}: not part of the bundle (left by the operating system or Python)")
            elif kind is None:
                report.fail(f"{name}: not listed in SHA256SUMS (added after export)")
                bad += 1
            elif name not in listed:
                report.fail(f"{name}: {kind}, not part of the bundle (added after export; not followed)")
                bad += 1
    return bad


# --------------------------------------------------------------------------- 2. the WACZ

def data_offsets(fh) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Where each zip entry's bytes start (after its local header). A name that appears twice
    would let one reader see one entry and another reader the other: refused."""
    out = {}
    with zipfile.ZipFile(fh) as zf:
        names = [info.filename for info in zf.infolist()]
        twice = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if twice:
            raise ValueError(f"entries named twice in the zip: {', '.join(twice[:5])}")
        for info in zf.infolist():
            fh.seek(info.header_offset)
            head = fh.read(30)
            if head[:4] != b"PK\x03\x04":
                continue
            name_len, extra_len = struct.unpack("<HH", head[26:30])
            out[info.filename] = (info.header_offset + 30 + name_len + extra_len, info)
    return out


def _zip_member(zf: zipfile.ZipFile, name: str, limit: int = MAX_WHOLE_FILE) -> bytes:
    with zf.open(name) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{name} inflates past {limit} bytes")
    return data


def check_wacz(root: str, wacz: str, report: Report) -> dict:  # type: ignore[type-arg]
    """The package's own fixity (datapackage.json); returns where each entry's bytes are."""
    name = os.path.basename(wacz)
    try:
        with open_bundle_file(root, wacz) as fh:
            entries = data_offsets(fh)
            with zipfile.ZipFile(fh) as zf:
                package_bytes = _zip_member(zf, "datapackage.json")
                digest = json.loads(_zip_member(zf, "datapackage-digest.json"))
        package = json.loads(package_bytes)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error, Unsafe) as exc:
        report.fail(f"{name}: cannot read the WACZ package ({exc})")
        return {}
    path = inside(root, wacz)
    before = report.failures
    if digest.get("hash") != "sha256:" + hashlib.sha256(package_bytes).hexdigest():
        report.fail(f"{name}: datapackage.json does not match datapackage-digest.json")
    check_wacz_signature(digest, package, "sha256:" + hashlib.sha256(package_bytes).hexdigest(), name, report)
    if package.get("wacz_version") != "1.1.1":
        report.fail(f"{name}: datapackage.json does not say wacz_version 1.1.1")
    _check_resources(path, package, entries, name, report)
    if report.failures == before:
        report.ok(f"{name}: WACZ {package.get('wacz_version')} package, "
                  f"{len(package['resources'])} resources match their hashes")
    return entries


SIGNED_DATA = ("hash", "created", "software", "version", "signature", "publicKey")


def check_wacz_signature(digest: dict, package: dict, package_hash: str, name: str,  # type: ignore[type-arg]
                         report: Report) -> None:
    """The WACZ's own anonymous signature (Webrecorder's WACZ Signing and Verification): signedData
    holds only the spec's properties, signs the hash of datapackage.json as it is, was made when
    the package was, and verifies with its publicKey (ECDSA,
    SHA-256). The key's fingerprint is reported: only a copy obtained out of band says whose it is."""
    signed = digest.get("signedData")
    where = f"{name} > datapackage-digest.json"
    if signed is None:
        report.wacz_signature = "the WACZ carries no signature of its own (datapackage-digest.json has no signedData)"
        report.note(report.wacz_signature)
        return
    if not isinstance(signed, dict) or not all(isinstance(signed.get(k), str)
                                               for k in ("hash", "signature", "publicKey")):
        report.fail(f"{where}: signedData is not an anonymous signature (hash, signature, publicKey)")
        return
    before = report.failures
    extra = sorted(set(signed) - set(SIGNED_DATA))
    if extra:
        report.fail(f"{where}: signedData has properties the spec does not allow: {', '.join(extra)}")
    if signed["hash"] != package_hash:
        report.fail(f"{where}: signedData signs the hash {signed['hash']}, not datapackage.json's {package_hash}")
    if signed.get("created") != package.get("created"):
        report.fail(f"{where}: signedData was created {signed.get('created')}, "
                    f"datapackage.json {package.get('created')}")
    try:
        spki = base64.b64decode(signed["publicKey"], validate=True)
        curve = ec_public_key(spki)[0][0]
        valid = ecdsa_verify(spki, signed["hash"].encode("utf-8"), base64.b64decode(signed["signature"], validate=True))
    except ValueError as exc:  # binascii.Error is a ValueError
        report.fail(f"{where}: the WACZ signature cannot be checked: {exc}")
        report.wacz_signature = "the WACZ's own signature is NOT valid: malformed"
        return
    fingerprint = hashlib.sha256(spki).hexdigest()
    if not valid:
        report.fail(f"{where}: the WACZ signature does not verify with its publicKey "
                    f"({curve}, fingerprint {fingerprint})")
        report.wacz_signature = f"the WACZ's own signature is NOT valid (key fingerprint SHA-256 {fingerprint})"
        return
    if report.failures != before:
        report.wacz_signature = (f"the WACZ's own signature is NOT valid for this datapackage.json (key fingerprint "
                                 f"SHA-256 {fingerprint})")
        return
    report.wacz_signature = (f"the WACZ's own signature (WACZ Signing and Verification, anonymous ECDSA {curve}) is "
                             f"valid, key fingerprint SHA-256 {fingerprint}")
    report.ok(report.wacz_signature)


def _entry_digest(fh, start: int, info: zipfile.ZipInfo, expected: int) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """SHA-256 and size of an entry's content. Stored entries are read in place (a damaged
    byte must be reported as a hash mismatch, not stop the run as a zip CRC error); inflation
    stops one chunk past the size datapackage.json gives, or past MAX_RATIO times the entry's
    compressed size (size -2: a bomb), and draws on the run's budget."""
    digest, size = hashlib.sha256(), 0
    if info.compress_type == zipfile.ZIP_STORED:
        fh.seek(start)
        size = hash_stream(fh, digest, info.compress_size)
        return digest.hexdigest(), size
    try:
        with zipfile.ZipFile(fh) as zf, zf.open(info) as entry:
            for chunk in iter(lambda: entry.read(CHUNK), b""):
                digest.update(chunk)
                size += len(chunk)
                BUDGET.spend(len(chunk))
                if size > max(MAX_FLOOR, MAX_RATIO * info.compress_size):
                    return None, -2
                if size > expected:
                    return None, -1
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError):
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
        expected = res.get("bytes") if isinstance(res.get("bytes"), int) else 0
        try:
            with open(path, "rb") as fh:
                digest, size = _entry_digest(fh, start, info, expected)
        except OutOfBudget:
            report.not_checked.append(f"WACZ resource {rpath}")
            continue
        if size == -2:
            report.fail(f"{name} > {rpath}: it inflates more than {MAX_RATIO} times its size (a decompression "
                        "bomb?); not inflated further")
        elif res.get("hash") != f"sha256:{digest}" or res.get("bytes") != size:
            report.fail(f"{name} > {rpath}: its SHA-256 or size differs from datapackage.json")
    for rpath in entries:
        if rpath not in listed and rpath not in ("datapackage.json", "datapackage-digest.json"):
            report.fail(f"{name}: {rpath} is in the zip but not listed in datapackage.json")


# --------------------------------------------------------------------------- 3. records

class OutOfBudget(Exception):
    """The run has inflated as many bytes as its budget allows (not a ValueError: no reader
    mistakes it for a damaged record)."""


class Budget:
    """The bytes the whole run may inflate, WARC members and decoded pages together. Each record
    is capped on its own, but a hostile bundle of many moderately compressed records would still
    keep the verifier busy for minutes; past the budget nothing more is inflated, every record's
    bytes are still hashed, and the verdict says what was not checked."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.exceeded = False

    def spend(self, count: int) -> None:
        self.used += count
        if self.used > self.limit:
            self.exceeded = True
            raise OutOfBudget(f"the run's inflation budget of {self.limit >> 20} MiB is spent")


# A budget of 128 MiB (two pages at the per-record cap), or 32 times the WACZ, whichever is more:
# evarchive's own bundles inflate 4-10 times (HTML, then its content coding), and the work stays in
# proportion to the bytes the bundle ships, however they were crafted.
BUDGET_FLOOR = 128 << 20
BUDGET_RATIO = 32
BUDGET = Budget(BUDGET_FLOOR)  # set for each run by main(); functions below draw on it
UNBOUNDED = 1 << 62  # for export, which decodes its own archive's pages, not a stranger's bundle


def _inflate_bounded(chunks, limit_of, budget=None, inflate=zlib):  # type: ignore[no-untyped-def]
    """Inflate a stream piece by piece, never more than CHUNK at a time; raises ValueError once
    the output passes ``limit_of(bytes read so far)``. Yields (inflater, output). What it inflates
    is drawn on ``budget``, by default the run's BUDGET. ``inflate``: a module with zlib's
    ``decompressobj`` (evarchive passes a faster one; the bytes out are the same)."""
    inflater = inflate.decompressobj(wbits=31)
    read = produced = 0
    for chunk in chunks:
        read += len(chunk)
        while chunk:
            if inflater.eof:
                yield inflater, b""
                return
            data = inflater.decompress(chunk, CHUNK)
            chunk = inflater.unconsumed_tail
            produced += len(data)
            (budget or BUDGET).spend(len(data))
            if produced > limit_of(read):
                raise ValueError(f"it inflates more than {MAX_RATIO} times its size (a decompression bomb?)")
            yield inflater, data


DECODED_LIMIT = 64 << 20  # the decoded content of a page is hashed up to this size, as at export
CONTENT_CODINGS = ("gzip", "x-gzip", "deflate")


class ContentDecoder:
    """The SHA-256 of a response's content with its gzip/deflate coding undone, fed the payload as
    it streams past (so a record is read and inflated once): the rules evarchive's export follows,
    so both reach the same hash or the same reason why not."""

    def __init__(self, budget: Budget | None = None, inflate=zlib) -> None:  # type: ignore[no-untyped-def]
        self.budget = budget  # None: the run's BUDGET, looked up when spent (main() replaces it)
        self.inflate = inflate  # zlib, or a module with its interface (see _inflate_bounded)
        self.coding = ""
        self.digest = hashlib.sha256()
        self.decoder = None
        self.start = b""  # deflate's first two bytes say whether it is zlib-wrapped
        self.produced = 0
        self.why = None

    def headers(self, http_head: bytes) -> None:
        self.coding = _warc_fields(http_head).get("content-encoding", "").strip().lower()
        if self.coding not in ("", "identity") and self.coding not in CONTENT_CODINGS:
            self.why = f"not computed: evarchive does not decode the {self.coding!r} content coding"

    def feed(self, data: bytes) -> None:
        if self.why or self.coding in ("", "identity") or not data:
            return
        if self.decoder is None:
            self.start += data
            if len(self.start) < 2:
                return
            data, self.start = self.start, b""
            self._open(data)
        self._decode(data)

    def _open(self, start: bytes) -> None:
        wbits = 31
        if self.coding == "deflate":
            zlib_header = len(start) >= 2 and start[0] & 0x0F == 8 and ((start[0] << 8) | start[1]) % 31 == 0
            wbits = 15 if zlib_header else -15
        self.decoder = self.inflate.decompressobj(wbits)

    def _decode(self, data: bytes) -> None:
        try:
            while data:
                if self.decoder.eof:
                    self.why = f"not computed: bytes follow the end of the {self.coding} stream"
                    return
                out = self.decoder.decompress(data, CHUNK)
                data = self.decoder.unconsumed_tail or self.decoder.unused_data
                self.produced += len(out)
                (self.budget or BUDGET).spend(len(out))
                if self.produced > DECODED_LIMIT:
                    self.why = f"not computed: larger than {DECODED_LIMIT >> 20} MiB decoded"
                    return
                self.digest.update(out)
        except (zlib.error, self.inflate.error) as exc:
            self.why = f"not computed: the body does not decode as {self.coding} ({exc})"

    def result(self) -> tuple:  # type: ignore[type-arg]
        """(decoded SHA-256, None) or (None, why not), for a coded response."""
        if self.start and not self.why:  # a body of one byte
            data, self.start = self.start, b""
            self._open(data)
            self._decode(data)
        if self.why:
            return None, self.why
        if self.decoder is None or not self.decoder.eof:
            return None, f"not computed: the {self.coding} stream is incomplete"
        return self.digest.hexdigest(), None


def parse_member(chunks, decoder: ContentDecoder | None = None) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """Inflate one gzip member: (WARC header fields, block sha256, payload sha256, error). A
    response's payload also streams through ``decoder``, when one is given."""
    inflater = None
    head = b""
    fields = None
    remaining = 0
    block = hashlib.sha256()
    payload = None
    http_head = b""
    trailer = b""
    try:
        for inflater, data in _inflate_bounded(chunks, lambda read: max(MAX_FLOOR, MAX_RATIO * read)):
            if inflater.eof and not data and inflater.unused_data:
                return fields, None, None, "bytes after the end of the gzip member"
            while data:
                if fields is None:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        if len(head) > MAX_HEADER:
                            return None, None, None, "no end of the WARC header within 1 MiB"
                        data = b""
                        continue
                    fields = _warc_fields(head[:end])
                    remaining = int(fields.get("content-length", "0"))
                    data, head = head[end + 4:], b""
                    http = fields.get("content-type", "").startswith("application/http")
                    if not http and fields.get("warc-type") != "revisit":
                        payload = block
                    if fields.get("warc-type") != "response":
                        decoder = None
                    continue
                take = data[:remaining]
                if take:
                    block.update(take)
                    if payload is None and fields.get("warc-type") in ("response", "request"):
                        http_head += take
                        split = http_head.find(b"\r\n\r\n")
                        if split < 0 and len(http_head) > MAX_HEADER:
                            return fields, None, None, "no end of the HTTP header within 1 MiB"
                        if split >= 0:
                            payload = hashlib.sha256(http_head[split + 4:])
                            if decoder is not None:
                                decoder.headers(http_head[:split])
                                decoder.feed(http_head[split + 4:])
                            http_head = b""
                    elif payload is not None and payload is not block:
                        payload.update(take)
                        if decoder is not None:
                            decoder.feed(take)
                    remaining -= len(take)
                trailer += data[len(take):]
                data = b""
                if len(trailer) > 4:
                    return fields, None, None, "more bytes than its Content-Length"
        if inflater is None or not inflater.eof or inflater.unused_data:
            return fields, None, None, "not exactly one complete gzip member"
    except (zlib.error, ValueError) as exc:
        return fields, None, None, f"cannot inflate ({exc})"
    if fields is None or remaining or trailer != b"\r\n\r\n":
        return fields, None, None, "not a complete WARC record"
    return fields, block.hexdigest(), payload.hexdigest() if payload is not None else None, None


def payload_and_coding(chunks, budget=None, inflate=zlib):  # type: ignore[no-untyped-def]
    """The Content-Encoding of a response record, then (as a generator) its HTTP payload."""
    head = b""
    left = -1
    for _, data in _inflate_bounded(chunks, lambda read: max(MAX_FLOOR, MAX_RATIO * read), budget, inflate):
        if left < 0:
            head += data
            warc_end = head.find(b"\r\n\r\n")
            http_end = head.find(b"\r\n\r\n", warc_end + 4) if warc_end >= 0 else -1
            if http_end < 0:
                if len(head) > 2 * MAX_HEADER:
                    raise ValueError("no end of the WARC and HTTP headers within 2 MiB")
                continue
            block = int(_warc_fields(head[:warc_end]).get("content-length", "0") or 0)
            http = _warc_fields(head[warc_end + 4:http_end])
            yield http.get("content-encoding", "").strip().lower()
            left = block - (http_end - warc_end)
            data, head = head[http_end + 4:], b""
        take = data[:left]
        left -= len(take)
        if take:
            yield take


def decoded_sha256(chunks, coding: str, inflate=zlib) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """(SHA-256 of the content with its gzip/deflate coding undone, None) or (None, why not), for
    export: the same decoder as the verifier's, outside the verifier's run budget."""
    decoder = ContentDecoder(Budget(UNBOUNDED), inflate)
    decoder.coding = coding
    for chunk in chunks:
        decoder.feed(chunk)
    return decoder.result()


def decoded_content(coding: str, payload_sha256, payload, inflate=zlib) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """(SHA-256 of a response's decoded content, None) or (None, why not), given the coding it was
    served with and its payload's chunks (read only when the coding must be undone). Without a
    content coding the decoded content is the payload as served. evarchive's export uses this too."""
    if coding in ("", "identity"):
        return payload_sha256, None
    if coding not in CONTENT_CODINGS:
        return None, f"not computed: evarchive does not decode the {coding!r} content coding"
    return decoded_sha256(payload, coding, inflate)


def record_block(chunks, limit: int = MAX_HEADER) -> bytes:  # type: ignore[no-untyped-def]
    """The first ``limit`` bytes of a record's block (a metadata record's fields), inflated bounded."""
    head, block = b"", b""
    for _, data in _inflate_bounded(chunks, lambda read: max(MAX_FLOOR, MAX_RATIO * read)):
        if not block and b"\r\n\r\n" not in head:
            head += data
            if b"\r\n\r\n" not in head:
                if len(head) > MAX_HEADER:
                    raise ValueError("no end of the WARC header within 1 MiB")
                continue
            head, _, data = head.partition(b"\r\n\r\n")
        block += data
        if len(block) >= limit:
            break
    size = int(_warc_fields(head).get("content-length", "0") or 0)
    return block[:min(size, limit)]


def warc_field(block: bytes, name: str) -> str | None:
    """One field of an application/warc-fields block (a capture's provenance), or None."""
    for line in block.decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def check_chromium(fh, start: int, ex: dict, report: Report) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The Chromium version the index shows for a browser capture is the one its own metadata record gives."""
    meta = next((r for r in ex["records"] if r["record_type"] == "metadata"), None)
    found = None
    if meta is not None:
        found = warc_field(record_block(read_at(fh, start + meta["bundle_offset"], meta["length"])),
                           "browser-chromium-version")
    if found != ex.get("chromium_version"):
        report.fail(f"exhibit {ex['exhibit']}: the Chromium version shown, {ex.get('chromium_version')}, is not the "
                    f"{found} its metadata record gives")


def check_decoded(ex: dict, rec: dict, decoded: tuple, report: Report) -> None:  # type: ignore[type-arg]
    """The decoded-content hash the index shows is the one the record's own bytes give (a page
    served without content coding: the payload hash itself). ``decoded`` is (the coding the record
    was served with, (decoded SHA-256, why not) when that coding had to be undone)."""
    where = f"exhibit {ex['exhibit']} ({rec['record_id']})"
    shown = (ex.get("decoded_sha256"), ex.get("decoded_note"))
    coding, result = decoded
    if (ex.get("content_encoding") or "").strip().lower() != coding:
        report.fail(f"{where}: the record was served with Content-Encoding {coding or 'none'!r}, "
                    f"the index says {ex.get('content_encoding') or 'none'!r}")
        return
    found = (rec["payload_sha256"], None) if coding in ("", "identity") else result
    if found != shown:
        report.fail(f"{where}: the decoded content's SHA-256 is {found[0] or found[1]}, "
                    f"the index says {shown[0] or shown[1]}")


def _warc_fields(raw: bytes) -> dict:  # type: ignore[type-arg]
    lines = raw.decode("utf-8", "replace").split("\r\n")
    out = {"_version": lines[0]}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            out.setdefault(key.strip().lower(), value.strip())
    return out


def check_records(root: str, data: dict, entries: dict, log: dict, report: Report,  # type: ignore[type-arg]
                  inspected: Inspection | None = None) -> None:
    """Every record against the index and the custody log. What each record's bytes say comes from
    ``inspected`` (worker processes started by start_inspection) when given, else is read here."""
    wacz = data["wacz"]
    count, before = 0, report.failures
    stamps = token_times(root, data, report)
    facts = inspected.results(entries, report) if inspected is not None else {}
    with open_bundle_file(root, wacz) as fh:
        for number, (ex, rec, decode) in enumerate(_record_order(data)):
            entry = log.get(ex["custody_seq"])
            count += 1
            where = (f"exhibit {ex['exhibit']} record {rec['record_id']} ({rec['record_type']}) in "
                     f"{data['wacz']} > {rec['bundle_file']} at offset {rec['bundle_offset']}")
            start = entries.get(rec["bundle_file"], (None,))[0]
            found = facts.get(number)
            if found is None and start is not None:
                found = inspect_record(fh, start + rec["bundle_offset"], rec["length"], decode)
            fields = _check_record(start, found, rec, where, report)
            if fields is not None and rec["record_id"] == ex.get("main_record"):
                _check_record_date(ex, fields, where, report)
                _check_token_time(ex, fields, stamps, where, report)
            if fields is not None and decode:
                check_decoded(ex, rec, found[1][4:], report)
            _check_vouched(ex, rec, entry, where, report)
            if rec is ex["records"][-1]:
                _check_exhibit_record_facts(fh, entries, ex, entry, report)
        numbered = {ex["exhibit"]: ex for ex in data["exhibits"]}
        for ex in data["exhibits"]:  # a revisit's decoded content is its original's
            original = numbered.get(ex.get("revisit_of_exhibit"))
            if original and (ex.get("decoded_sha256"), ex.get("decoded_note")) != (
                    original.get("decoded_sha256"), original.get("decoded_note")):
                report.fail(f"exhibit {ex['exhibit']}: its decoded SHA-256 differs from that of exhibit "
                            f"{original['exhibit']}, whose payload it revisits")
    _check_tiling((root, wacz), data, entries, report)
    if report.failures == before:
        report.ok(f"{count} exhibit records: bytes, WARC digests and custody entries agree")


def _record_order(data: dict):  # type: ignore[no-untyped-def,type-arg]
    """(exhibit, record, whether its decoded content is hashed) for every record, in index order:
    the one order in which records are inspected, judged and numbered, in this process or in workers."""
    for ex in data["exhibits"]:
        main = main_record(ex)
        for rec in ex["records"]:
            yield ex, rec, rec is main and ex["kind"] == "capture" and rec["record_type"] == "response"


def _check_exhibit_record_facts(fh, entries: dict, ex: dict, entry, report: Report) -> None:  # type: ignore[no-untyped-def,type-arg]
    _check_exhibit_fields(ex, entry, report)
    start = entries.get(main_record(ex)["bundle_file"], (None,))[0]
    if ex.get("engine") == "browser" and start is not None:
        check_chromium(fh, start, ex, report)


# --------------------------------------------------------------------------- records in worker processes
# Inflating and hashing the records is most of a large bundle's run, so it is spread over worker
# processes while this process checks the files, the custody log and the index. The workers start
# before bundle.json is read (so they carry no copy of it); once it is, they get the records in
# batches of (offset, length), take batches in turn from a shared counter, open the WACZ themselves
# by the same safe opener, and send back only what each record's bytes say (digests, WARC fields).
# This process takes batches from the same counter once its own steps are done. Every judgement
# stays here, in index order, so the findings and their order are those of a run in one process.
# A worker that stops or fails costs only time: the batch it held is inspected here instead.

PARALLEL_MIN_BYTES = 16 << 20  # a WACZ, and records, of this size pay for the workers' start
MAX_JOBS = 4
MAX_GIVEN_JOBS = 16  # each worker is a process of its own, with its own memory
WORKER_HEAP = 8 << 20
MAX_PARALLEL_RECORDS = 100_000  # each worker gets the list of records: past this, this process reads them
BATCHES_PER_JOB = 16  # small batches: whoever is free takes the next, so all end together


def default_jobs() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_JOBS))


def _inspect_batch(root: str, wacz: str, batch: list) -> tuple:  # type: ignore[type-arg]
    """inspect_record for each (number, offset, length, decode) of the batch: (number -> what it
    found, bytes inflated, whether the budget is spent)."""
    used = BUDGET.used
    with open_bundle_file(root, wacz) as fh:
        found = {number: inspect_record(fh, offset, length, decode) for number, offset, length, decode in batch}
    return found, BUDGET.used - used, BUDGET.exceeded


def _claim(counter, count: int) -> int | None:  # type: ignore[no-untyped-def]
    """The next batch nobody has taken, or None."""
    with counter.get_lock():
        if counter.value >= count:
            return None
        counter.value += 1
        return counter.value - 1


def _worker(conn, counter) -> None:  # type: ignore[no-untyped-def]
    """A worker process: waits for (bundle, WACZ, batches, its share of the inflation budget), or
    None, then inspects batches until none is left, announcing each before it starts (so that the
    batch of a worker that dies is known) and sending what it found."""
    global BUDGET
    try:
        task = conn.recv()
        if task is None:  # the bundle turned out too small for workers
            return
        root, wacz, batches, share = task
        BUDGET = Budget(share)
        # A fresh process's allocator (glibc's) hands freed megabytes back to the system and faults
        # them in again for the next record; freeing one large block first makes it keep them.
        bytes(WORKER_HEAP)
        while (number := _claim(counter, len(batches))) is not None:
            conn.send(("start", number))
            try:
                conn.send(("done", number, *_inspect_batch(root, wacz, batches[number])))
            except Exception as exc:  # reported as a failed batch; this process inspects it again
                conn.send(("failed", number, f"{type(exc).__name__}: {exc}"))
    except BaseException:  # this process is gone, or interrupted, or we failed: it inspects what is left
        pass
    finally:
        conn.close()


def _pool_context():  # type: ignore[no-untyped-def]
    """fork where it is safe and cheap (Linux); elsewhere the platform's default (spawn), for which
    everything a worker runs is a top-level function of this file, guarded by ``__main__``."""
    import multiprocessing

    fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if fork else None)


class Workers:
    """``jobs`` worker processes, started before the bundle is read, and what they were given."""

    def __init__(self, jobs: int) -> None:
        context = _pool_context()
        self.jobs, self.counter, self.batches = jobs, context.Value("i", 0), []
        self.conns, self.procs, self.collector = [], [], None
        try:
            for _ in range(jobs):
                ours, theirs = context.Pipe()
                proc = context.Process(target=_worker, args=(theirs, self.counter), daemon=True)
                proc.start()
                theirs.close()
                self.conns.append(ours)
                self.procs.append(proc)
        except BaseException:
            self.stop()
            raise

    def give(self, root: str, wacz: str, batches: list) -> None:  # type: ignore[type-arg]
        """The batches to inspect, each worker with its share of the run's budget (this process keeps
        one share too; the workers' are set aside until they say what they spent). A thread takes
        in what they send as they send it, so that no worker waits on a full pipe."""
        import threading

        share = max(0, BUDGET.limit - BUDGET.used) // (self.jobs + 1)
        self.root, self.wacz, self.batches, self.reserved = root, wacz, batches, share * self.jobs
        self.found, self.used, self.spent, self.why = {}, 0, False, []  # type: ignore[var-annotated]
        for conn in self.conns:
            try:
                conn.send((root, wacz, batches, share))
            except OSError:  # a worker already gone: the others and this process take its part
                pass
        BUDGET.used += self.reserved
        self.collector = threading.Thread(target=self._collect, daemon=True)
        self.collector.start()

    def _collect(self) -> None:
        from multiprocessing.connection import wait

        held = {}  # worker -> the batch it said it started
        running = {conn: worker for worker, conn in enumerate(self.conns)}
        try:
            while running:
                for conn in wait(list(running)):
                    worker = running[conn]
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):  # it ended: its work done, or killed
                        del running[conn]
                        self.procs[worker].join(5)
                        if worker in held:
                            self.why.append(f"exit code {self.procs[worker].exitcode}")
                        continue
                    if message[0] == "start":
                        held[worker] = message[1]
                    elif message[0] == "done":
                        self.found.update(message[2])
                        self.used, self.spent = self.used + message[3], self.spent or message[4]
                        del held[worker]
                    else:
                        self.why.append(message[2])
                        del held[worker]
        except (OSError, ValueError):  # the pipes were closed under it: the run is ending
            pass

    def results(self, report: Report) -> dict:  # type: ignore[type-arg]
        """number -> what inspect_record found, for every record of every batch that was inspected
        (here, once this process has nothing else to do, or by a worker). The records of a batch
        whose worker died or failed are left out: check_records inspects them itself."""
        found = {}
        while (number := _claim(self.counter, len(self.batches))) is not None:
            found.update(_inspect_batch(self.root, self.wacz, self.batches[number])[0])
        self.collector.join()
        found.update(self.found)
        BUDGET.used += self.used - self.reserved
        BUDGET.exceeded = BUDGET.exceeded or self.spent
        self.reserved = 0
        report.note(f"records: inflated and hashed by {self.jobs} worker processes and this one")
        missing = sum(1 for batch in self.batches for item in batch if item[0] not in found)
        if missing:
            report.note(f"records: a worker process could not finish ({self.why[0] if self.why else 'it stopped'}); "
                        f"the {missing} record(s) left to it are inspected in this process instead")
        return found

    def stop(self) -> None:
        """No batch is taken after this; workers end after the one they hold (killed if they do not)."""
        with self.counter.get_lock():
            self.counter.value = 1 << 30
        for conn in self.conns:
            try:
                conn.send(None)  # for a worker still waiting for its task
            except OSError:
                pass
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        if self.collector is not None:
            self.collector.join(10)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs, self.collector = [], [], None


def start_workers(root: str, jobs: int | None) -> Workers | None:
    """Worker processes for the records, started now, or None: --jobs 1, or --jobs not given and a
    WACZ too small to need them (its size read without following a link), or a system where
    processes cannot be started (one process then does everything)."""
    chosen, jobs = jobs is not None, jobs or default_jobs()
    try:
        if jobs <= 1 or (not chosen and os.lstat(os.path.join(root, WACZ_NAME)).st_size < PARALLEL_MIN_BYTES):
            return None
        return Workers(jobs)
    except Exception:  # no WACZ, no processes or semaphores on this system: one process does it all
        return None


def stop_workers(workers: Workers | None) -> None:
    if workers is not None:
        workers.stop()


class Inspection:
    """The bundle's records handed to the workers in batches (start_inspection)."""

    def __init__(self, workers: Workers, starts: dict) -> None:  # type: ignore[type-arg]
        self.workers, self.starts = workers, starts

    def results(self, entries: dict, report: Report) -> dict:  # type: ignore[type-arg]
        """number -> what inspect_record found; empty when the WACZ's entries are not those the
        workers were given (every record is then read again by check_records)."""
        found = self.workers.results(report)
        return found if {name: start for name, (start, _) in entries.items()} == self.starts else {}


def start_inspection(root: str, data: dict, jobs: int | None,  # type: ignore[type-arg]
                     workers: Workers | None) -> Inspection | None:
    """The records handed to the workers of start_workers, in batches, or None when this process is
    to read them all: no workers, or records too few for them (unless --jobs was given)."""
    if workers is None:
        return None
    try:
        with open_bundle_file(root, data["wacz"]) as fh:
            entries = data_offsets(fh)
        work = []
        for number, (_, rec, decode) in enumerate(_record_order(data)):
            start = entries.get(rec["bundle_file"], (None,))[0]
            if start is not None:
                work.append((number, start + int(rec["bundle_offset"]), int(rec["length"]), bool(decode)))
        total = sum(max(0, length) for _, _, length, _ in work)
        if not work or len(work) > MAX_PARALLEL_RECORDS or (total < PARALLEL_MIN_BYTES and jobs is None):
            return None
        size = total // (workers.jobs * BATCHES_PER_JOB) + 1
        batches, batch, filled = [], [], 0
        for item in work:
            batch.append(item)
            filled += max(0, item[2])
            if filled >= size:
                batches.append(batch)
                batch, filled = [], 0
        batches += [batch] if batch else []
        workers.give(root, data["wacz"], batches)
        return Inspection(workers, {name: start for name, (start, _) in entries.items()})
    except Exception:  # any reason at all: this process reads every record, and names any problem itself
        return None


def _check_record_date(ex: dict, fields: dict, where: str, report: Report) -> None:  # type: ignore[type-arg]
    """The time the index shows is the record's own: the page's WARC-Date falls within the
    capture's start and end as the index shows them (compared to the second, the precision every
    WARC-Date has), so an index back-dated after the fact fails."""
    if ex.get("kind") != "capture":
        return
    date = (fields.get("warc-date") or "")[:19]
    start, end = (ex.get("captured_at") or "")[:19], (ex.get("capture_ended_at") or "~")[:19]
    if not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", date) or not start <= date <= end:
        report.fail(f"{where}: its WARC-Date {fields.get('warc-date')} is not within the capture time the index "
                    f"shows ({ex.get('captured_at')} to {ex.get('capture_ended_at')})")


# A capture's machine and the TSA keep their own clocks: a WARC-Date this much after the time of
# the token covering it is still taken as clock difference, not as a capture made after the token.
CLOCK_ALLOWANCE = 120


def token_times(root: str, data: dict, report: Report) -> list:  # type: ignore[type-arg]
    """(covers_seq, genTime, token file) for each token, genTime read from the signed token itself
    (not from bundle.json), sorted by the log entry it covers."""
    out = []
    for ts in data["custody"]["timestamps"]:
        try:
            token = read_bundle_file(root, ts["token"])
        except (OSError, Unsafe) as exc:
            report.fail(f"{ts['token']}: cannot be read ({exc})")
            continue
        when = token_gen_time(token, bytes.fromhex(ts["digest"]))
        if when is None:
            report.fail(f"{ts['token']}: its time (genTime) cannot be read from the token")
            continue
        if when.strftime("%Y-%m-%dT%H:%M:%S") != (ts.get("gen_time") or "")[:19]:
            report.fail(f"{ts['token']}: bundle.json gives its time as {ts.get('gen_time')}, the token says "
                        f"{when:%Y-%m-%dT%H:%M:%SZ}")
        out.append((ts["covers_seq"], when, ts["token"]))
    return sorted(out, key=lambda t: t[0])


def token_gen_time(token: bytes, digest: bytes):  # type: ignore[no-untyped-def]
    """The genTime of the TSTInfo whose imprint is `digest`: in DER the imprint's OCTET STRING is
    followed by serialNumber (INTEGER), then genTime (GeneralizedTime, YYYYMMDDHHMMSS[.f]Z)."""
    at = token.find(b"\x04" + bytes([len(digest)]) + digest)
    if at < 0:
        return None
    pos = at + 2 + len(digest)
    for tag in (0x02, 0x18):
        if pos + 2 > len(token) or token[pos] != tag:
            return None
        size, pos = token[pos + 1], pos + 2
        if size & 0x80:  # long form: the next (size & 0x7f) bytes give the length
            count = size & 0x7F
            size, pos = int.from_bytes(token[pos:pos + count], "big"), pos + count
        value, pos = token[pos:pos + size], pos + size
    match = re.match(rb"^(\d{14})(\.\d+)?Z$", value)
    if not match:
        return None
    try:
        return datetime.datetime.strptime(match.group(1).decode(), "%Y%m%d%H%M%S")  # UTC, as genTime is
    except ValueError:
        return None


def _check_token_time(ex: dict, fields: dict, stamps: list, where: str, report: Report) -> None:  # type: ignore[type-arg]
    """A token covering the capture's entry was taken after it: the record cannot be dated later."""
    if ex.get("kind") != "capture" or ex.get("custody_seq") is None:
        return
    covering = [(when, name) for seq, when, name in stamps if seq >= ex["custody_seq"]]
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", fields.get("warc-date") or "")
    if not covering or not match:
        return  # a WARC-Date that cannot be read is already a failure of its own
    date = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")  # UTC, as WARC-Date is
    when, name = min(covering)
    if (date - when).total_seconds() > CLOCK_ALLOWANCE:
        report.fail(f"{where}: its WARC-Date {fields.get('warc-date')} is after {when:%Y-%m-%dT%H:%M:%SZ}, the "
                    f"time of {name}, which covers its custody-log entry {ex['custody_seq']}: a token cannot "
                    "vouch for a capture made after it")


def inspect_record(fh, offset: int, length: int, decode: bool) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    """What a record's bytes say, judged by nobody yet (so a worker process can do it): (SHA-256 of
    the bytes as stored, None when they were not inflated because the run's budget is spent, else
    (WARC header fields, block SHA-256, payload SHA-256, error, content coding, decoded result)).
    One pass: the bytes are hashed as they stream into the inflater and a response's content coding
    is undone on the way (``decode``), never held whole: a record may be as large as its page."""
    digest = hashlib.sha256()

    def hashed():  # type: ignore[no-untyped-def]
        for chunk in read_at(fh, offset, length):
            digest.update(chunk)
            yield chunk

    chunks, parsed = hashed(), None
    decoder = ContentDecoder() if decode else None
    if not BUDGET.exceeded:
        try:
            fields, block, payload, error = parse_member(chunks, decoder)
            coding = decoded = None
            if decoder is not None and not error:
                coding = decoder.coding
                decoded = None if coding in ("", "identity") else decoder.result()
            parsed = (fields, block, payload, error, coding, decoded)
        except OutOfBudget:
            parsed = None
    for _ in chunks:  # the bytes after the point where inflating stopped
        pass
    return digest.hexdigest(), parsed


def _check_record(start, found, rec, where, report):  # type: ignore[no-untyped-def]
    """The record's bytes and WARC digests, from what inspect_record found; its WARC header fields
    when they could be read (and inflated within the run's budget)."""
    if start is None:
        report.fail(f"{where}: that WARC file is not in the package")
        return None
    if start + rec["bundle_offset"] != rec["wacz_offset"]:
        report.fail(f"{where}: bundle.json gives a different offset in the .wacz")
    member, parsed = found
    if member != rec["member_sha256"]:
        report.fail(f"{where}: its bytes differ from the recorded SHA-256 {rec['member_sha256']}")
        return None
    if parsed is None:
        report.not_inflated += 1
        return None
    fields, block, payload, error = parsed[:4]
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
    return None if error else fields


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


def _check_check_fields(ex, entry, report) -> None:  # type: ignore[no-untyped-def]
    """A check exhibit shows its check's row, whose SHA-256 the custody entry recorded."""
    row = ex.get("check_row") or {}
    mine = [c for c in entry["_details"].get("checks", []) if c.get("check_id") == ex["check_id"]]
    if not mine or mine[0].get("row_sha256") != hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest():
        report.fail(f"exhibit {ex['exhibit']}: check {ex['check_id']} is not the one custody-log entry "
                    f"{entry['seq']} recorded")
    elif differing(ex, check_facts(row)):
        report.fail(f"exhibit {ex['exhibit']}: {', '.join(differing(ex, check_facts(row)))} differ from check "
                    f"{ex['check_id']}")


def _check_exhibit_fields(ex, entry, report) -> None:  # type: ignore[no-untyped-def]
    """What the index says about a capture (or check) is what its custody entry recorded."""
    if entry is None:
        return
    if ex["kind"] == "check":
        _check_check_fields(ex, entry, report)
        return
    details = entry["_details"]
    row = details.get("capture") or {}
    wrong = differing(ex, capture_facts(row))
    if ex.get("source_id") != row.get("source_id"):
        wrong.append("source")
    if ex.get("custody_entry_hash") != entry["entry_hash"]:
        wrong.append("custody-log entry hash")
    vouched = {a.get("record_id"): a for a in details.get("artefacts") or []}
    for art in ex.get("artefacts") or []:
        wrong += [f"{art.get('kind')} {k}" for k in ("kind", "sha256", "size", "content_type", "width", "height")
                  if art.get(k) != (vouched.get(art.get("record_id")) or {}).get(k)]
    if wrong:
        report.fail(f"exhibit {ex['exhibit']}: {', '.join(wrong)} differ from custody-log entry {entry['seq']}")


def _check_tiling(wacz: tuple, data: dict, entries: dict, report: Report) -> None:  # type: ignore[type-arg]
    """Each WARC in the package: a warcinfo record, then exactly the listed records, in order."""
    listed = {}
    for ex in data["exhibits"]:
        for rec in ex["records"]:
            listed.setdefault(rec["bundle_file"], {})[rec["record_id"]] = rec
    with open_bundle_file(wacz[0], wacz[1]) as fh:
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
    details = entry["_details"] if "_details" in entry else json.loads(entry["details"])  # parsed once, by check_log
    body = {"seq": entry["seq"], "at": entry["at"], "event": entry["event"], "subject": entry["subject"],
            "details": details, "prev_hash": entry["prev_hash"]}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_keys(root: str, given: list, report: Report) -> dict:  # type: ignore[type-arg]
    """Trusted public keys by key id: --public-key files, else custody/keys/*.pem."""
    paths = list(given)
    folder = os.path.join(root, "custody", "keys")
    texts = []
    for path in paths:  # the clerk's own files, named on the command line
        with open(path, encoding="ascii", errors="replace") as fh:
            texts.append((path, fh.read(MAX_HEADER)))
    if not paths and os.path.isdir(folder) and not os.path.islink(folder):
        for f in sorted(os.listdir(folder)):
            if f.endswith(".pem"):
                texts.append((f"custody/keys/{f}", read_bundle_file(root, f"custody/keys/{f}", MAX_HEADER)
                              .decode("ascii", "replace")))
    keys = {}
    for path, text in texts:
        raw = public_key_from_pem(text)
        if raw is None:
            report.fail(f"{path}: not an Ed25519 public key")
        else:
            keys[key_id(raw)] = raw
    return keys


def check_log(root: str, data: dict, keys: dict, args: argparse.Namespace, report: Report) -> dict:  # type: ignore[type-arg]
    custody = data["custody"]
    log = {}
    for line in read_bundle_text(root, custody["log"]).splitlines():
        if line.strip():
            entry = json.loads(line)
            entry["_details"] = json.loads(entry["details"])
            log[entry["seq"]] = entry
    before = report.failures
    _check_chain(log, custody, report)
    cited = {ex["custody_seq"] for ex in data["exhibits"]}
    cited |= {seq for seq, e in log.items() if e["event"] in ("keys-generate", "timestamp")}
    verified = _check_signatures(log, keys, cited, args.all_signatures, report)
    signed = len(verified)
    head = _check_head(root, log, custody, args.head, report)
    if head is not None and report.failures == before and _reaches_exhibits(head, data, custody):
        report.anchor(f"the log agrees with the head {head} you gave, which vouches for every exhibit's entry")
    if args.public_key and report.failures == before:
        reached = [seq for seq in verified if _reaches_exhibits(seq, data, custody)]
        if reached:
            report.anchor(f"custody-log entry {max(reached)} is signed by the key you gave, and it vouches "
                          "for every exhibit's entry")
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


def _reaches_exhibits(seq: int, data: dict, custody: dict) -> bool:  # type: ignore[type-arg]
    """An entry anchored from outside vouches for every exhibit: it comes at or after each
    exhibit's entry and the log's chain links them (a redacted log cannot link them)."""
    wanted = {ex["custody_seq"] for ex in data["exhibits"]}
    return bool(wanted) and (wanted == {seq} or (custody.get("scope") == "chain" and seq >= max(wanted)))


def _check_signatures(log: dict, keys: dict, cited: set, every: bool, report: Report) -> list:  # type: ignore[type-arg]
    """Signatures of the entries the bundle relies on and of the last signed entry (which, through
    the chain, vouches for every entry before it); --all-signatures checks every one (slower:
    about 5 ms each in pure Python)."""
    valid = []
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
            valid.append(seq)
    return valid


def _check_head(root: str, log: dict, custody: dict, anchor: str | None,  # type: ignore[type-arg]
                report: Report) -> int | None:
    """Check head.txt against bundle.json; the seq of the --head given when the log agrees."""
    head = custody["head"]
    text = read_bundle_file(root, "custody/head.txt", MAX_HEADER).decode("ascii", "replace").split()
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
            return int(seq)
    return None


# --------------------------------------------------------------------------- 5. timestamps

def check_timestamps(root: str, data: dict, log: dict, tsa_root: str | None, report: Report) -> None:  # type: ignore[type-arg]
    for ts in data["custody"]["timestamps"]:
        token = read_bundle_file(root, ts["token"])
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
            if tsa_root and covered is not None and _reaches_exhibits(ts["covers_seq"], data, data["custody"]):
                report.anchor(f"every exhibit existed by {ts['gen_time']}: {ts['token']}, checked with openssl "
                              f"against the TSA roots you gave, covers log entry {ts['covers_seq']}")


def check_time_anchors(data: dict, report: Report) -> None:  # type: ignore[type-arg]
    """What the index says about time (which token covers which exhibits, which none does) follows
    from the tokens the bundle carries and the exhibits' custody entries."""
    anchors = data.get("time_anchors")
    if anchors is None:  # a bundle from before evarchive said this
        return
    stamps = sorted(data["custody"]["timestamps"], key=lambda t: (t["covers_seq"], t["id"]))
    keys = [t["covers_seq"] for t in stamps]
    covers, uncovered = {}, []  # type: ignore[var-annotated]
    for ex in data["exhibits"]:
        at = bisect.bisect_left(keys, ex["custody_seq"]) if ex.get("custody_seq") is not None else len(keys)
        token = stamps[at] if at < len(keys) else None
        if token is None:
            uncovered.append(ex["exhibit"])
        else:
            covers.setdefault(token["id"], []).append(ex["exhibit"])
    times = {t["id"]: t["gen_time"] for t in stamps}
    shown = {t["timestamp_id"]: (sorted(t["exhibits"]), t["gen_time"]) for t in anchors.get("tokens", [])}
    expected = {tid: (sorted(nums), times[tid]) for tid, nums in covers.items()}
    if shown != expected or sorted(anchors.get("uncovered", [])) != sorted(uncovered):
        report.fail("bundle.json time_anchors: the exhibits it says each timestamp covers (or none does) are "
                    "not those the bundle's tokens and custody entries give")
    elif anchors.get("tokens") or uncovered:
        report.ok(f"timestamps cover {sum(map(len, covers.values()))} exhibit(s), as the index says; "
                  f"{len(uncovered)} covered by none")


def _openssl_ts(root: str, ts: dict, tsa_root: str, report: Report) -> None:  # type: ignore[type-arg]
    openssl = shutil.which("openssl")
    if not openssl:
        report.fail(f"{ts['token']}: --tsa-root given but no openssl on PATH")
        return
    for name in (ts["token"], ts["chain"]):
        open_bundle_file(root, name).close()  # regular files inside the bundle, or refused
    run = subprocess.run([openssl, "ts", "-verify", "-token_in", "-in", inside(root, ts["token"]),
                          "-digest", ts["digest"], "-CAfile", tsa_root,
                          "-untrusted", inside(root, ts["chain"])],
                         capture_output=True, text=True)
    if "Verification: OK" not in run.stdout:
        report.fail(f"{ts['token']}: openssl ts -verify failed: {(run.stdout + run.stderr).strip()[:300]}")


# --------------------------------------------------------------------------- claims

def check_claims(data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """The claims shown are the claims imported: each claim's text hashes to its SHA-256, and the
    claims with their citations hash to what the report's import entry recorded (so an edited
    claim, or a citation moved to another claim, fails)."""
    rep = data.get("report")
    if not rep or not data.get("claims"):
        return
    entries = [e for e in log.values() if e["event"] == "report-imported"
               and e["_details"].get("report_id") == rep["id"] and e["_details"].get("version") == rep["version"]]
    before = report.failures
    for claim in data["claims"]:
        if hashlib.sha256(claim["text"].encode("utf-8")).hexdigest() != claim["sha256"]:
            report.fail(f"claim {claim['claim']}: its text does not hash to its SHA-256 {claim['sha256']}")
    if not entries:
        report.fail(f"report {rep['id']} version {rep['version']}: its import entry is not in custody/log.jsonl, "
                    "so nothing vouches for the claims shown")
        return
    body = [[c["sha256"], c["paragraph"], c["offset"],
             [[x["url"], x["via"], x["paragraph"], x["offset"]] for x in c["citations"]]] for c in data["claims"]]
    if hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest() != entries[-1]["_details"].get("claims_sha256"):
        report.fail(f"claims: the claims and citations shown are not those custody-log entry {entries[-1]['seq']} "
                    "recorded at import (a claim or a citation was edited, added, removed or moved)")
    elif report.failures == before:
        report.ok(f"{len(data['claims'])} claims and their citations are those imported "
                  f"(custody-log entry {entries[-1]['seq']})")


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
            if live != live_state(None, False, None):
                report.fail(f"source {src['url']}: says '{live.get('text')}' without the check behind it")
            continue
        if not live.get("vouched"):
            if live != live_state(row, False, live.get("custody_seq")):
                report.fail(f"source {src['url']}: an unvouched live check is not shown as UNVERIFIED")
            continue
        entry = log.get(live["custody_seq"])
        mine = [c for c in (entry or {}).get("_details", {}).get("checks", []) if c.get("check_id") == row["id"]]
        if not mine or mine[0].get("row_sha256") != hashlib.sha256(canonical_json(row).encode("utf-8")).hexdigest():
            report.fail(f"source {src['url']}: its live check {row['id']} is not the one custody-log entry "
                        f"{live['custody_seq']} recorded")
        elif row["source_id"] != src["source_id"] or live != live_state(row, True, live["custody_seq"]):
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
              ("content_encoding", lambda ex, rec: ex.get("content_encoding") or ""),
              ("decoded_sha256", lambda ex, rec: ex.get("decoded_sha256") or ex.get("decoded_note") or ""),
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


URN_TOKENS = re.compile(r"<urn:uuid:[0-9a-fA-F-]{36}>")
_HEX_MASK = bytes(0x78 if chr(b) in "0123456789abcdef" else 0x20 for b in range(256))  # hex: "x", else " "
_HEX_RUN = b"x" * 64


def shown_tokens(text: str) -> set:  # type: ignore[type-arg]
    """The record ids (<urn:uuid:...>) and SHA-256 values (64 hex digits, no hex digit on either
    side) a text states. The SHA-256 values are found in a mask of the text (hex digit or not,
    made by a byte table) with a substring search, not by a regular expression tried at every
    position of a text of megabytes; a byte of UTF-8 above 0x7f is never a hex digit."""
    raw = text.encode("utf-8", "surrogatepass")
    mask = raw.translate(_HEX_MASK)
    found = set(URN_TOKENS.findall(text))
    at = mask.find(_HEX_RUN)
    while at >= 0:  # ``at`` starts a run of hex digits: the search resumes after the previous run
        end = mask.find(b" ", at + 64)
        end = len(mask) if end < 0 else end
        if end - at == 64:
            found.add(raw[at:end].decode("ascii"))
        at = mask.find(_HEX_RUN, end)
    return found


def csv_value(cell: str | None) -> str | None:
    """A cell as exported: the apostrophe that keeps spreadsheets from running a formula removed."""
    if cell and cell[0] == "'" and cell[1:2] in ("=", "+", "-", "@", "\t", "\r"):
        return cell[1:]
    return cell


def check_artefacts(root: str, data: dict, entries: dict, report: Report) -> None:  # type: ignore[type-arg]
    """The screenshots and PDFs the index shows are the bytes of their exhibits' resource records:
    each file's SHA-256 is the one the index states, and the block digest of the record in the WACZ."""
    before, count = report.failures, 0
    with open_bundle_file(root, data["wacz"]) as fh:
        for ex in data["exhibits"]:
            records = {r["record_id"]: r for r in ex["records"]}
            for art in ex.get("artefacts") or []:
                count += 1
                where = f"exhibit {ex['exhibit']}: {art['file']} ({art['kind']})"
                rec = records.get(art["record_id"])
                if rec is None:
                    report.fail(f"{where}: its record {art['record_id']} is not one of the exhibit's records")
                    continue
                found = sha256_file(root, art["file"])
                if found != art["sha256"]:
                    report.fail(f"{where}: its SHA-256 {found} is not the {art['sha256']} the index states")
                start = entries.get(rec["bundle_file"], (None,))[0]
                block = None
                if start is not None:
                    block = parse_member(read_at(fh, start + rec["bundle_offset"], rec["length"]))[1]
                if block != found:
                    report.fail(f"{where}: its bytes are not the block of resource record {rec['record_id']} "
                                f"in {data['wacz']} (a swapped file?)")
    if count and report.failures == before:
        report.ok(f"{count} screenshots and PDFs: each is the block of its resource record in {data['wacz']}")


def main_record(ex: dict) -> dict:  # type: ignore[type-arg]
    return next((r for r in ex["records"] if r["record_id"] == ex["main_record"]), ex["records"][-1])


def check_index(root: str, data: dict, report: Report) -> None:  # type: ignore[type-arg]
    before = report.failures
    exhibits = {ex["exhibit"]: ex for ex in data["exhibits"]}
    seen = set()
    rows = csv.DictReader(io.StringIO(read_bundle_text(root, "exhibits.csv"), newline=""))
    for line, row in enumerate(rows, start=2):
        if not row.get("exhibit"):
            continue
        ex = exhibits.get(int(row["exhibit"]))
        if ex is None:
            report.fail(f"exhibits.csv line {line}: exhibit {row['exhibit']} is not in the bundle")
            continue
        seen.add(ex["exhibit"])
        rec = main_record(ex)
        wrong = [name for name, value in CSV_FIELDS if csv_value(row.get(name)) != value(ex, rec)]
        if wrong:
            report.fail(f"exhibits.csv line {line} (exhibit {ex['exhibit']}): {', '.join(wrong)} "
                        "differ from the records and the custody log")
    for number in sorted(set(exhibits) - seen):
        report.fail(f"exhibits.csv: exhibit {number} is not listed")
    for claim in data["claims"]:  # supported: some exhibit of the claim holds the cited page
        holding = [n for n in claim["exhibits"] if n in exhibits and exhibits[n].get("supports")]
        if claim.get("supported") is not bool(holding) or claim.get("supporting_exhibits") != holding:
            report.fail(f"claim {claim['claim']}: the index says it is {'' if claim.get('supported') else 'NOT '}"
                        f"supported, its exhibits say {'' if holding else 'NOT '}supported")
    for name in ("exhibits.html", "exhibits.txt"):
        shown = shown_tokens(html.unescape(read_bundle_text(root, name)))  # one pass, not one per value
        for ex in data["exhibits"]:
            rec = main_record(ex)
            shots = [a["sha256"] for a in ex.get("artefacts") or []]
            for value in (rec["record_id"], rec["member_sha256"], ex.get("payload_sha256"), ex.get("decoded_sha256"),
                          *shots):
                if value and value not in shown:
                    report.fail(f"{name}: exhibit {ex['exhibit']} does not show {value}")
    if report.failures == before:
        claims = len(data["claims"])
        report.ok(f"exhibit index: {len(exhibits)} exhibits" + (f" for {claims} claims" if claims else "")
                  + " state the verified hashes and locations")


# --------------------------------------------------------------------------- 7. what the index shows
# evarchive's export renders exhibits.csv, exhibits.txt, exhibits.html and report.html with the
# functions below, from facts it derives with the functions below. The verifier derives the same
# facts again from what the custody log vouches for (each capture's and check's row, the claims of
# the report's import entry, the witnesses' entries), checks bundle.json against them, renders
# every human-readable file again and compares it with the file: whatever a reader is shown is
# then vouched for, and a difference is named by file, exhibit or claim, and fact.

WACZ_NAME = "evidence.wacz"
VIEWER_PAGE = "replay.html"  # in the bundle: the page that embeds the replay viewer
REPORT_PAGE = "report.html"
PAGE_VERDICT = "page"  # a capture classified as the cited page itself
DNS_NAMES = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
             "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}


def _der_span(data: bytes, pos: int) -> tuple:  # type: ignore[type-arg]
    """(tag, start, end) of the content of the DER element at ``pos`` (read strictly by ``_der``)."""
    tag, content, end = _der(data, pos)
    return tag, end - len(content), end


def _der_items(data: bytes, start: int, end: int) -> list:  # type: ignore[type-arg]
    items = []
    while start < end:
        items.append(_der_span(data, start))
        start = items[-1][2]
    return items


def _oid(raw: bytes) -> str:
    first = min(raw[0] // 40, 2)
    parts, value = [first, raw[0] - 40 * first], 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _dn_value(value: str) -> str:
    """RFC 4514 escaping, as OpenSSL and Python's cryptography print a name."""
    for char in ("\\", '"', "+", ",", ";", "<", ">"):
        value = value.replace(char, "\\" + char)
    value = value.replace("\0", "\\00")
    if value[:1] in ("#", " "):
        value = "\\" + value
    return value[:-1] + "\\ " if value.endswith(" ") else value


def _dn(data: bytes, start: int, end: int) -> str:
    rdns = []
    for _, s, e in _der_items(data, start, end):
        parts = []
        for _, s2, e2 in _der_items(data, s, e):
            (_, os_, oe), (tag, vs, ve) = _der_items(data, s2, e2)[:2]
            codec = {0x1E: "utf-16-be", 0x1C: "utf-32-be"}.get(tag, "utf-8")
            oid = _oid(data[os_:oe])
            parts.append(f"{DNS_NAMES.get(oid, oid)}={_dn_value(data[vs:ve].decode(codec, 'replace'))}")
        rdns.append("+".join(parts))
    return ",".join(reversed(rdns))


def _der_time(data: bytes, tag: int, start: int, end: int) -> str:
    text = data[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime: two-digit years, 50-99 meaning 19xx
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}Z"


def certificate_summary(pem: str) -> dict:  # type: ignore[type-arg]
    """Subject, issuer and validity of a PEM certificate ({} when it cannot be read), read from
    its DER with the standard library only."""
    try:
        der = base64.b64decode("".join(ln for ln in pem.strip().splitlines() if not ln.startswith("-----")))
        _, start, end = _der_span(der, 0)
        _, start, end = _der_span(der, start)  # tbsCertificate
        items = _der_items(der, start, end)
        items = items[1:] if items[0][0] == 0xA0 else items  # the explicit version
        issuer, validity, subject = items[2], items[3], items[4]
        (t1, s1, e1), (t2, s2, e2) = _der_items(der, validity[1], validity[2])[:2]
        return {"subject": _dn(der, subject[1], subject[2]), "issuer": _dn(der, issuer[1], issuer[2]),
                "not_before": _der_time(der, t1, s1, e1), "not_after": _der_time(der, t2, s2, e2)}
    except (ValueError, IndexError, UnicodeDecodeError):
        return {}


def not_support_reason(capture: dict) -> str | None:  # type: ignore[type-arg]
    """Why a capture does not support a claim, in a clerk's words; None when it does."""
    if capture.get("status") != "ok":
        status = capture.get("http_status")
        return f"HTTP {status} page" if status and status >= 400 else "the capture failed"
    verdict = capture.get("content_verdict")
    if verdict and verdict != PAGE_VERDICT:
        return verdict
    if capture.get("wall"):
        kind, sep, reason = capture["wall"].partition(": ")  # 'consent: consent wall (...)': the reason alone
        return reason if sep and kind in ("consent", "login", "captcha") else capture["wall"]
    return None


def tls_facts(row: dict) -> dict | None:  # type: ignore[type-arg]
    if not row.get("tls_version") and not row.get("cert_sha256"):
        return None
    tls = {"version": row.get("tls_version"), "cipher": row.get("tls_cipher"), "cert_sha256": row.get("cert_sha256"),
           "validated": {1: True, 0: False}.get(row.get("cert_validated")), "insecure": bool(row.get("insecure"))}
    chain = json.loads(row["cert_chain_pem"]) if row.get("cert_chain_pem") else []
    if chain:
        tls.update(certificate_summary(chain[0]))
    return tls


def capture_facts(row: dict) -> dict:  # type: ignore[type-arg]
    """What the index shows of a capture, from its row alone (the row its custody entry carries)."""
    reason = not_support_reason(row)
    return {"captured_at": row.get("started_at"), "capture_ended_at": row.get("ended_at"),
            "warc_date": row.get("warc_date"), "url_requested": row.get("url_requested"),
            "final_url": row.get("final_url"),
            "redirect_chain": json.loads(row["redirect_chain"]) if row.get("redirect_chain") else [],
            "http_status": row.get("http_status"), "http_version": row.get("http_version"),
            "server_ip": row.get("server_ip"), "server_port": row.get("server_port"),
            "proxy_used": bool(row.get("proxy_used")), "content_type": row.get("content_type"),
            "payload_size": row.get("payload_size"), "payload_sha256": row.get("payload_sha256"),
            "truncated": bool(row.get("truncated")), "kind_of_record": row.get("kind"), "tls": tls_facts(row),
            "content_verdict": row.get("content_verdict"), "wall": row.get("wall"),
            "supports": reason is None, "not_support_reason": reason, "engine": row.get("engine") or "http"}


def check_facts(row: dict) -> dict:  # type: ignore[type-arg]
    """What the index shows of a live check, from its row (whose SHA-256 its custody entry carries)."""
    return {"check_id": row.get("id"), "checked_at": row.get("checked_at"), "verdict": row.get("verdict"),
            "confirmed": bool(row.get("confirmed")), "reason": row.get("reason"),
            "http_status": row.get("http_status"), "final_url": row.get("final_url"),
            "redirect_chain": json.loads(row["redirect_chain"]) if row.get("redirect_chain") else [],
            "server_ip": row.get("server_ip"), "payload_sha256": row.get("payload_sha256"),
            "similarity": row.get("similarity"), "check_row": row}


LIVE_WORDS = {
    "ok": "live page unchanged",
    "drifted": "live page has CHANGED since capture",
    "moved": "live page has MOVED (permanent redirect)",
    "gone": "live page has VANISHED",
    "soft-404": "live page has VANISHED (the site answers 'not found')",
    "blocked": "live page could not be seen (blocked)",
    "unreachable": "live site unreachable",
}


def live_state(check: dict | None, vouched: bool, custody_seq: int | None) -> dict:  # type: ignore[type-arg]
    """What a source's latest live check said, in words a judge can read, and whether the custody
    log vouches for that check."""
    if check is None:
        return {"state": "unchecked", "text": "not re-checked since capture"}
    words = LIVE_WORDS.get(check["verdict"], check["verdict"])
    extra = []
    if check["verdict"] in ("gone", "soft-404", "unreachable"):
        extra.append("confirmed" if check["confirmed"] else f"not yet confirmed ({check['strikes']} failing "
                                                            "check(s) in a row)")
    if check["similarity"] is not None and check["verdict"] == "drifted":
        extra.append(f"main-text similarity {check['similarity']:.2f}")
    if not vouched:
        extra.append("UNVERIFIED: this check does not match the custody log")
    text = f"{words} at last check {check['checked_at'][:19].replace('T', ' ')} UTC"
    if extra:
        text += " (" + "; ".join(extra) + ")"
    return {"state": check["verdict"], "text": text, "checked_at": check["checked_at"], "check_id": check["id"],
            "reason": check["reason"], "http_status": check["http_status"], "confirmed": bool(check["confirmed"]),
            "vouched": vouched, "custody_seq": custody_seq}


def where(claim: dict) -> str:  # type: ignore[type-arg]
    """A claim's position for people: page and paragraph, and the line in text files."""
    place = f"p. {claim['page']}, para. {claim['paragraph']}" if claim.get("page") else f"para. {claim['paragraph']}"
    return f"{place}, line {claim['line']}" if claim.get("line") else place


def why_no_exhibit(attempt: dict | None) -> str:  # type: ignore[type-arg]
    """Why a cited source has no intact capture in the bundle, from its latest capture's row."""
    if attempt is None:
        return "never captured"
    if attempt.get("status") != "ok":
        status = f" (HTTP {attempt['http_status']})" if attempt.get("http_status") else ""
        return (f"the latest capture, {attempt.get('started_at')}, failed{status}: {attempt.get('error_class')}: "
                f"{attempt.get('error_message')}")
    return "its captures did not pass the integrity check at export (see 'not exported')"


def witness_facts(row: dict, compared: dict | None) -> dict:  # type: ignore[type-arg]
    """An independent witness's public copy of a source and how it compares with our capture,
    from its custody entries (the witness's, and the comparison's when there is one)."""
    return {"witness_id": row.get("id"), "service": row.get("service"), "capture_id": row.get("capture_id"),
            "memento_url": row.get("memento_url"), "archived_at": row.get("archived_at"),
            "corroboration": (compared or {}).get("corroboration"), "similarity": (compared or {}).get("similarity")}


def robust_link(url: str, text: str, version_url: str | None, version_date: str | None) -> str:
    """One Robust Link in HTML (the URL as cited is the link; the version is carried beside it)."""
    attrs = [f'href="{html_text(url)}"', f'data-originalurl="{html_text(url)}"']
    if version_url:
        attrs.append(f'data-versionurl="{html_text(version_url)}"')
    if version_date:
        attrs.append(f'data-versiondate="{html_text(version_date)}"')
    return f"<a {' '.join(attrs)}>{html_text(text)}</a>"


def replay_link(ex: dict) -> str:  # type: ignore[type-arg]
    """The viewer page opened at an exhibit's page, as captured (relative to the bundle)."""
    ts = "".join(c for c in str(ex.get("warc_date") or ex.get("captured_at") or "") if c.isdigit())[:14]
    return f"{VIEWER_PAGE}?" + urlencode({"url": ex["url_requested"], "ts": ts})


# The renderings of bundle.json (export writes them; the verifier writes them again and compares).

CSV_COLUMNS = ("claim", "where", "claim_text", "cited_url", "exhibit", "kind", "captured_utc", "final_url",
               "redirect_chain", "http_status", "server_ip", "tls_cert_sha256", "tls_validated",
               "tls_not_before", "tls_not_after", "content_type", "payload_bytes", "payload_sha256",
               "content_encoding", "decoded_sha256",
               "warc_file", "warc_offset", "record_id", "record_sha256", "original_warc_file",
               "original_offset", "custody_seq", "live_now", "counts_as_support", "independent_witness")


def _chain_text(chain: list[dict[str, Any]]) -> str:
    return " -> ".join(f"{hop['url']} [{hop['status']}]" for hop in chain)


def _csv_row(claim: dict[str, Any] | None, cited: str, ex: dict[str, Any] | None, why: str = "") -> list[Any]:
    head = [claim["claim"], claim["where"], claim["text"]] if claim else ["", "", ""]
    if ex is None:
        return [*head, cited, "", f"NO INTACT CAPTURE: {why}"] + [""] * (len(CSV_COLUMNS) - 6)
    rec, tls = main_record(ex), ex.get("tls") or {}
    return [*head, cited, ex["exhibit"], ex["kind"] if ex["kind"] == "capture" else f"check: {ex['verdict']}",
            ex.get("captured_at") or ex.get("checked_at"), ex["final_url"] or "",
            _chain_text(ex["redirect_chain"]), ex["http_status"] or "", ex["server_ip"] or "",
            tls.get("cert_sha256") or "", "" if not tls else {True: "yes", False: "NO"}.get(tls.get("validated"), ""),
            tls.get("not_before", ""), tls.get("not_after", ""), ex.get("content_type") or "",
            ex.get("payload_size") if ex.get("payload_size") is not None else "", ex["payload_sha256"] or "",
            ex.get("content_encoding") or "", ex.get("decoded_sha256") or ex.get("decoded_note") or "",
            rec["bundle_file"], rec["bundle_offset"], rec["record_id"], rec["member_sha256"],
            rec["original_file"], rec["original_offset"], ex["custody_seq"], ex["live"]["text"],
            support_words(ex) if ex["kind"] == "capture" else "",
            witness_words(ex["witness"]) if ex.get("witness") else ""]


# A cell starting with one of these is a formula to spreadsheet programs (=HYPERLINK(...) in a
# claim would run on opening the file): such cells get a leading apostrophe, which spreadsheets
# show as text and verify_bundle.py removes again before comparing.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def render_csv(data: dict[str, Any]) -> str:
    """One row per claim and exhibit (a claim without evidence gets a row saying so). UTF-8 with a
    byte-order mark: spreadsheet programs otherwise garble non-ASCII claims and URLs."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    rows = []
    if data["claims"]:
        for claim in data["claims"]:
            for cit in claim["citations"]:
                numbers = cit["exhibits"] + [n for n in claim["check_exhibits"]
                                             if exhibits[n]["source_id"] == cit["source_id"]]
                rows += [_csv_row(claim, cit["url"], exhibits.get(n) if n else None, cit.get("why_no_exhibit", ""))
                         for n in numbers or [None]]
    else:
        rows = [_csv_row(None, ex["source_url"], ex) for ex in data["exhibits"]]
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buf.getvalue()


def _exhibit_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the HTML and text renderings of one exhibit."""
    rec = main_record(ex)
    rows: list[tuple[str, str]] = [("URL as cited", "; ".join(ex["cited_as"]))]
    if ex["kind"] == "capture":
        rows.append(("Counts as support", support_words(ex)))
        rows += [("Captured (UTC)", f"{ex['captured_at']} to {ex['capture_ended_at']}"),
                 ("Requested URL", ex["url_requested"]), ("Final URL", ex["final_url"] or "-"),
                 ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", f"{ex['http_status']} ({ex['http_version']})"),
                 ("Server IP", f"{ex['server_ip']}:{ex['server_port']}" if ex["server_ip"]
                  else ("not known (captured through a proxy)" if ex["proxy_used"] else "-"))]
        rows += _tls_lines(ex.get("tls"))
        rows += [("Content type", ex["content_type"] or "-"),
                 ("Payload", f"{ex['payload_size']} bytes"
                  + (" (TRUNCATED at the size limit)" if ex["truncated"] else ""))]
        rows += _hash_lines(ex)
        if ex["revisit_of_exhibit"]:
            rows.append(("Revisit", f"payload identical to exhibit {ex['revisit_of_exhibit']}; this capture "
                                    "stores the response head, the body is in that exhibit"))
        rows += _artefact_lines(ex)
    else:
        rows += [("Checked (UTC)", ex["checked_at"]),
                 ("Verdict", ex["verdict"] + (" (confirmed)" if ex["confirmed"] else "") + f": {ex['reason']}"),
                 ("Final URL", ex["final_url"] or "-"), ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", str(ex["http_status"] or "-")), ("Server IP", ex["server_ip"] or "-"),
                 ("Payload SHA-256", ex["payload_sha256"] or "-")]
    rows += [("WARC file (bundle)", f"{WACZ_NAME} > {rec['bundle_file']}"),
             ("Record offset", f"{rec['bundle_offset']} in that file ({rec['wacz_offset']} in {WACZ_NAME}), "
                               f"{rec['length']} bytes"),
             ("WARC-Record-ID", rec["record_id"]), ("Record SHA-256", rec["member_sha256"]),
             ("Archive original", f"{rec['original_file']} at offset {rec['original_offset']}"),
             ("Custody-log entry", f"{ex['custody_seq']} ({ex['custody_entry_hash']})"),
             ("Live page now", ex["live"]["text"])]
    if ex.get("witness"):
        rows.append(("Independent witness", witness_words(ex["witness"])))
    return rows


ARTEFACT_LABELS = {"screenshot-full": "Screenshot, full page", "screenshot-viewport": "Screenshot, viewport",
                   "pdf": "PDF print"}


def _artefact_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    if ex.get("engine") != "browser":
        return []
    rows = [("Engine", f"browser: Chromium {ex.get('chromium_version') or '(version not recorded)'}, "
                       f"page loaded and its artefacts made during the capture, {ex['captured_at']} (UTC)")]
    for art in ex.get("artefacts", []):
        size = f"{art['width']}x{art['height']} px, " if art.get("width") else ""
        rows.append((ARTEFACT_LABELS.get(art["kind"], art["kind"]),
                     f"{art['file']} ({size}{art['size']} bytes), SHA-256 {art['sha256']}, "
                     f"record {art['record_id']}"))
    return rows


def _html_artefacts(ex: dict[str, Any]) -> str:
    """A thumbnail of the page as captured (the viewport screenshot, scaled by the browser),
    linking to the full-page screenshot and the PDF: files of the bundle, so it works offline."""
    files = {a["kind"]: a["file"] for a in ex.get("artefacts", [])}
    thumb = files.get("screenshot-viewport") or files.get("screenshot-full")
    if not thumb:
        return ""
    links = " &middot; ".join(f"<a href=\"{_h(files[k])}\">{label}</a>" for k, label in
                              (("screenshot-full", "full-page screenshot (PNG)"), ("pdf", "PDF print"))
                              if k in files)
    return (f"<figure class=\"shot\"><a href=\"{_h(files.get('screenshot-full', thumb))}\">"
            f"<img src=\"{_h(thumb)}\" width=\"320\" alt=\"Screenshot of exhibit {ex['exhibit']} as captured\">"
            f"</a><figcaption>As captured {_h(ex['captured_at'])} (UTC) by Chromium "
            f"{_h(ex.get('chromium_version') or '(version not recorded)')}: {links}</figcaption></figure>")


def _html_replay(ex: dict[str, Any]) -> str:
    if ex["kind"] != "capture":
        return ""
    return (f"<p class=\"small\"><a href=\"{_h(replay_link(ex))}\">Replay this exhibit</a> in the viewer "
            f"of this bundle (serve the folder first: see VERIFY.md, section 6)</p>")


def support_words(ex: dict[str, Any]) -> str:
    if not ex["supports"]:
        return f"NO: this capture is not the cited page ({ex['not_support_reason']})"
    if ex.get("content_verdict") is None:
        return "yes (not classified: captured before evarchive checked captures for soft 404s and walls)"
    return "yes"


def _hash_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """The two hashes of a page, each saying which bytes it is of: a saved copy of the page matches
    the decoded one, never the served one when the server compressed the page."""
    coding = ex.get("content_encoding")
    served = ex["payload_sha256"] or "-"
    if coding:
        served += f" (the body's bytes as served, with Content-Encoding: {coding})"
    else:
        served += " (the body's bytes as served, with no Content-Encoding)"
    if ex.get("decoded_sha256"):
        decoded = ex["decoded_sha256"] + (f" (the content with the {coding} coding undone: what a browser shows "
                                          "and a saved copy of the page hashes to)" if coding
                                          else " (no content coding: the same bytes as served)")
    else:
        decoded = ex.get("decoded_note") or "not computed"
    return [("SHA-256 as served", served), ("SHA-256 decoded", decoded)]


def _tls_lines(tls: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not tls:
        return [("TLS", "none (plain HTTP)")]
    valid = {True: "validated", False: "NOT validated"}.get(tls["validated"], "validation unknown")
    if tls["insecure"]:
        valid += " (captured with --insecure)"
    rows = [("TLS", f"{tls['version']} {tls['cipher']}"),
            ("Certificate SHA-256", f"{tls['cert_sha256']} ({valid})")]
    if tls.get("not_before"):
        rows.append(("Certificate validity", f"{tls['not_before']} to {tls['not_after']}; "
                                             f"subject {tls['subject']}; issuer {tls['issuer']}"))
    return rows


def _headline(data: dict[str, Any]) -> str:
    rep = data["report"]
    if rep:
        return f"Exhibit index: {rep['title']} (version {rep['version']})"
    return "Exhibit index"


AT_EXPORT = ("taken when this bundle was exported: it proves these exhibits existed no later than the "
             "export, not at the time of capture")


def ranges(numbers: list[int]) -> str:
    """1, 2, 3, 5 -> '1-3, 5': a list a reader can take in at 2,000 exhibits."""
    parts: list[str] = []
    run: list[int] = []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [n]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


def time_anchor_rows(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The exhibit index's lines about time: each token, what it covers, and what nothing covers."""
    anchors = data.get("time_anchors")
    if not anchors:
        return []
    rows = []
    for t in anchors["tokens"]:
        caveat = f"; {AT_EXPORT}" if t["taken_at_export"] else ""
        rows.append((f"Timestamp token {t['timestamp_id']} (RFC 3161)",
                     f"{t['gen_time']} by {t['tsa_subject']}: exhibit{'s' if len(t['exhibits']) > 1 else ''} "
                     f"{ranges(t['exhibits'])} existed no later than this time{caveat}"))
    if anchors["uncovered"]:
        rows.append(("Not covered by any timestamp",
                     f"exhibit{'s' if len(anchors['uncovered']) > 1 else ''} {ranges(anchors['uncovered'])}: "
                     "no RFC 3161 token vouches for when they were captured (only the custody log does)"))
    if anchors.get("export_timestamp_failed"):
        rows.append(("Timestamp at export", f"asked for, not obtained: {anchors['export_timestamp_failed']['error']}"))
    return rows


def _summary_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    head = data["custody"]["head"]
    rows = []
    if data["report"]:
        rep = data["report"]
        rows += [("Report", f"{rep['title']}, version {rep['version']}, file {rep['file']} ({rep['format']})"),
                 ("Report SHA-256", rep["sha256"]), ("Imported (UTC)", rep["imported_at"])]
        supported = sum(c["supported"] for c in data["claims"])
        rows.append(("Claims", f"{len(data['claims'])}, of which {supported} supported by at least one exhibit"))
    rows += [("Exhibits", str(len(data["exhibits"]))), ("Bundle created (UTC)", data["created"]),
             ("Custody-log head", f"entry {head['seq']}, {head['entry_hash']}"),
             ("Software", data["software"])]
    return rows + time_anchor_rows(data)


def render_text(data: dict[str, Any]) -> str:
    """The plain-text twin of exhibits.html."""
    out = [_headline(data), "=" * len(_headline(data)), ""]
    out += [f"{label}: {value}" for label, value in _summary_lines(data)] + [""]
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    if data["claims"]:
        out += ["CLAIMS", "------", ""]
        for claim in data["claims"]:
            out += textwrap.wrap(f"Claim {claim['claim']} ({claim['where']}): {claim['text']}", 100,
                                 subsequent_indent="    ")
            for cit in claim["citations"]:
                ex_text = ", ".join(f"exhibit {n}" for n in cit["exhibits"])
                why = cit.get("why_no_exhibit", "")
                ex_text = f"{ex_text} (DOES NOT COUNT: {why})" if ex_text and why else \
                    (ex_text or f"NO INTACT CAPTURE: {why}")
                out.append(f"    cited: {cit['url']}  ->  {ex_text}")
            if not claim["supported"]:
                out.append("    !! NOT SUPPORTED: no intact capture of the cited page from any source this claim cites")
            out.append("")
    out += ["EXHIBITS", "--------", ""]
    for n in sorted(exhibits):
        ex = exhibits[n]
        out.append(f"Exhibit {n}: {ex['source_url']}" + ("" if ex["kind"] == "capture" else " (live-check evidence)"))
        out += [f"    {label}: {value}" for label, value in _exhibit_lines(ex)] + [""]
    out += _not_exported_text(data)
    out += ["VERIFYING", "---------", "", "See VERIFY.md: sha256sum -c SHA256SUMS, then python3 verify_bundle.py", ""]
    return "\n".join(out)


def _not_exported_text(data: dict[str, Any]) -> list[str]:
    out = []
    if data["unpreserved_sources"]:
        out += ["SOURCES WITHOUT AN INTACT CAPTURE", "-" * 33, ""]
        out += [f"    {u['url']}" for u in data["unpreserved_sources"]] + [""]
    if data["not_exported"]:
        out += ["NOT EXPORTED (evidence that failed its integrity check)", "-" * 55, ""]
        for item in data["not_exported"]:
            out.append(f"{item['kind']} {item['id']} of {item['url']}:")
            out += [f"    {p}" for p in item["problems"]]
        out.append("")
    return out


HTML_STYLE = """
body{font-family:Georgia,'Times New Roman',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
 color:#111;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #999;margin-top:2rem}
h3{font-size:1.05rem;margin-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem}
td,th{border:1px solid #bbb;padding:.25rem .4rem;vertical-align:top;text-align:left}
th{background:#f2f2f2;width:13rem;font-weight:normal}
code,.hash{font-family:'DejaVu Sans Mono',Consolas,monospace;font-size:.85em;word-break:break-all}
.claim{margin:.8rem 0;padding:.5rem .7rem;border-left:4px solid #2a6}
.claim.unsupported{border-color:#c22;background:#fff4f4}
.bad{color:#b00;font-weight:bold}.small{font-size:.9em;color:#444}
figure.shot{margin:.3rem 0}figure.shot img{border:1px solid #999;height:auto;max-width:100%}
figcaption{font-size:.9em;color:#444}
@media print{body{margin:0;max-width:none}.exhibit{page-break-inside:avoid}}
"""


# Code points HTML forbids in a document even as character references (controls other than
# whitespace, noncharacters, lone surrogates): a report's text may carry them from a PDF or a paste.
_NOT_IN_HTML = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
                          + "".join(chr(plane + 0xFFFE) + chr(plane + 0xFFFF) for plane in range(0, 0x110000, 0x10000))
                          + "]")


def html_text(value: Any) -> str:
    """Text escaped for HTML; code points HTML forbids shown as U+FFFD (bundle.json keeps them)."""
    text = "" if value is None else str(value)
    if not text.isprintable():  # every code point HTML forbids is unprintable: most text needs no scan
        text = _NOT_IN_HTML.sub("\ufffd", text)
    return html.escape(text)


_h = html_text


def render_html(data: dict[str, Any]) -> str:
    """One page that prints well: no scripts, nothing from outside the bundle (a browser capture's
    thumbnail is the bundle's own artefacts/ file)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_h(_headline(data))}</title>"
             f"<style>{HTML_STYLE}</style></head><body>\n<h1>{_h(_headline(data))}</h1>",
             _html_table(_summary_lines(data))]
    if data["claims"]:
        parts.append("<h2>Claims and the exhibits supporting them</h2>")
        parts += [_html_claim(c) for c in data["claims"]]
    parts.append("<h2>Exhibits</h2>")
    for ex in data["exhibits"]:
        label = "" if ex["kind"] == "capture" else " (live-check evidence)"
        parts.append(f"<div class=\"exhibit\" id=\"exhibit-{ex['exhibit']}\"><h3>Exhibit {ex['exhibit']}: "
                     f"<code>{_h(ex['source_url'])}</code>{label}</h3>{_html_artefacts(ex)}"
                     f"{_html_replay(ex) if data.get('viewer') else ''}"
                     f"{_html_table(_exhibit_lines(ex))}</div>")
    if data["unpreserved_sources"]:
        parts.append("<h2>Sources without an intact capture</h2><ul>")
        parts += [f"<li class=\"bad\"><code>{_h(u['url'])}</code></li>" for u in data["unpreserved_sources"]]
        parts.append("</ul>")
    if data["not_exported"]:
        parts.append("<h2>Not exported: evidence that failed its integrity check</h2><ul>")
        parts += [f"<li>{_h(i['kind'])} {_h(i['id'])} of <code>{_h(i['url'])}</code>: "
                  f"<span class=\"bad\">{_h('; '.join(i['problems']))}</span></li>" for i in data["not_exported"]]
        parts.append("</ul>")
    parts.append("<h2>Verifying this bundle</h2><p>Every file of the bundle is listed with its SHA-256 in "
                 "<code>SHA256SUMS</code>. <code>VERIFY.md</code> gives the steps, with standard tools only: "
                 "<code>sha256sum -c SHA256SUMS</code>, then <code>python3 verify_bundle.py</code>, which "
                 "re-hashes every file and every exhibit record and checks them against the custody log "
                 "and this index.</p></body></html>\n")
    return "\n".join(parts)


_HASH_LIKE = re.compile(r"^[0-9a-f]{64}$|^<urn:|sha256", re.I)


def _hash_like(value: str) -> bool:
    # Only a value of 64 characters (65 with a newline), one starting "<" or one holding "256" can
    # match: the expression is tried on those alone.
    return (len(value) in (64, 65) or value[:1] == "<" or "256" in value) and bool(_HASH_LIKE.search(value))


def _html_table(rows: list[tuple[str, str]]) -> str:
    mono = ' class="hash"'
    cells = "".join(f"<tr><th>{_h(k)}</th><td{mono if _hash_like(str(v)) else ''}>{_h(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _html_claim(claim: dict[str, Any]) -> str:
    items = []
    for cit in claim["citations"]:
        links = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in cit["exhibits"])
        missing = f'<span class="bad">no intact capture: {_h(cit.get("why_no_exhibit", ""))}</span>'
        if links and cit.get("why_no_exhibit"):
            links += f' <span class="bad">does not count: {_h(cit["why_no_exhibit"])}</span>'
        items.append(f"<li>cited: <code>{_h(cit['url'])}</code> &rarr; {links or missing}</li>")
    checks = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in claim["check_exhibits"])
    if checks:
        items.append(f"<li>live-check evidence: {checks}</li>")
    status = ("" if claim["supported"] else
              "<p class=\"bad\">NOT SUPPORTED: no intact capture of the cited page from any source this claim "
              "cites.</p>")
    css = "claim" if claim["supported"] else "claim unsupported"
    return (f"<div class=\"{css}\"><strong>Claim {claim['claim']}</strong> <span class=\"small\">"
            f"({_h(claim['where'])}; text SHA-256 <span class=\"hash\">{_h(claim['sha256'])}</span>)</span>"
            f"<p>{_h(claim['text'])}</p><ul>{''.join(items)}</ul>{status}</div>")


WITNESS_SERVICES = {"wayback": "Internet Archive"}


def witness_words(witness: dict[str, Any]) -> str:
    """An independent witness's copy, and whether it corroborates our capture, in words."""
    verdict, capture = witness.get("corroboration"), witness.get("capture_id")
    if verdict == "identical":
        found = f"the same payload bytes as our capture {capture}"
    elif verdict in ("similar", "differs"):
        found = f"{'similar to' if verdict == 'similar' else 'DIFFERS from'} our capture {capture} (main-text " \
                f"similarity {witness.get('similarity') or 0:.2f})"
    else:
        found = verdict or "not compared with our capture yet"
    service = WITNESS_SERVICES.get(witness.get("service"), witness.get("service"))
    return f"{service} copy {witness.get('memento_url')}, archived {witness.get('archived_at')}: {found}"


def cited_target(cited: str) -> str:
    """Where a citation as written points: a URL broken across lines joined again, and http://
    before a bare www. name (as an href either would be a broken or a relative link)."""
    joined = "".join(cited.split())
    return joined if "://" in joined else f"http://{joined}"


def render_report(data: dict[str, Any]) -> str:
    """The report's claims with every citation as a Robust Link: href and data-originalurl the URL
    as cited, data-versionurl its exhibit in this bundle, data-versiondate the capture's date; a
    public copy made by an independent witness is linked beside it (Robust Links, as the
    exhibit index's evidence stands behind each one)."""
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    witnesses = {s["source_id"]: s["witness"] for s in data["sources"] if s.get("witness")}
    title = (data.get("report") or {}).get("title") or "Report"
    # The page's own words are English, as in the exhibit index; the report's title and claims are
    # in whatever language the author wrote, which evarchive does not know: lang="" says "unknown".
    parts = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{_h(title)}: citations as Robust Links</title></head><body>", f"<h1 lang=\"\">{_h(title)}</h1>"]
    for claim in data["claims"]:
        links = []
        for cit in claim["citations"]:
            number = next(iter(cit["exhibits"]), None)
            exhibit = exhibits.get(number) if number is not None else None
            # the URL its exhibit captured (vouched by the capture's entry), else the citation's own
            target = (exhibit or {}).get("url_requested") or cited_target(cit["url"])
            if exhibit:
                links.append(robust_link(target, target, f"exhibits.html#exhibit-{number}",
                                         (exhibit["captured_at"] or "")[:10]))
            else:  # nothing preserved to point to: a plain link, not a Robust Link without a version
                links.append(f"<a href=\"{_h(target)}\">{_h(target)}</a> (no intact capture in this bundle)")
            copy = witnesses.get(cit["source_id"])
            if copy:
                made = _h((copy["archived_at"] or "")[:10])
                links.append(f"(<a href=\"{_h(copy['memento_url'])}\">public copy, {made}</a>)")
        parts.append(f"<p lang=\"\" id=\"claim-{claim['claim']}\">{_h(claim['text'])} {' '.join(links)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- 8. every fact shown is vouched for

FACT_NAMES = {"supports": "whether it counts as support", "not_support_reason": "why it does not count",
              "tls": "tls certificate", "captured_at": "capture time", "server_ip": "server IP"}
RENDERINGS = (("exhibits.csv", lambda data: render_csv(data)), ("exhibits.txt", lambda data: render_text(data)),
              ("exhibits.html", lambda data: render_html(data)), (REPORT_PAGE, lambda data: render_report(data)))


def differing(shown: dict, expected: dict) -> list:  # type: ignore[type-arg]
    """The names of the facts ``shown`` states otherwise than ``expected``."""
    return [FACT_NAMES.get(k, k) for k, v in expected.items() if shown.get(k) != v]


def check_shown(root: str, data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """What a reader is shown: bundle.json's facts that do not come from a record (the report, the
    claims' places and links, revisits, witnesses) against the custody log; then every
    human-readable file against a fresh rendering of bundle.json, whose facts are now vouched."""
    before = report.failures
    _check_report_facts(data, log, report)
    _check_links(data, log, report)
    _check_witnesses(data, log, report)
    for name, render in RENDERINGS:
        if name == REPORT_PAGE and not data["claims"]:
            continue
        _compare_rendering(name, read_bundle_text(root, name), render(data), report)
    if report.failures == before:
        files = "exhibits.csv, exhibits.txt, exhibits.html" + (" and report.html" if data["claims"] else "")
        report.ok(f"every fact {files} show is the one the custody log vouches for")


def _import_entry(data: dict, log: dict) -> dict | None:  # type: ignore[type-arg]
    rep = data.get("report") or {}
    found = [e for e in log.values() if e["event"] == "report-imported"
             and e["_details"].get("report_id") == rep.get("id") and e["_details"].get("version") == rep.get("version")]
    return found[-1] if found else None


def _check_report_facts(data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """The report's name, version, file and hash, and each claim's place, as the import entry
    recorded them (check_claims covers the claims' text and citations)."""
    rep, entry = data.get("report"), _import_entry(data, log)
    if not rep or entry is None:
        return
    got = entry["_details"]
    expected = {"title": got.get("title"), "version": got.get("version"), "sha256": got.get("sha256"),
                "format": got.get("format"), "size": got.get("size"),
                "file": re.split(r"[\\/]", got.get("path") or "")[-1], "imported_at": entry["at"]}
    wrong = differing(rep, expected)
    if wrong:
        report.fail(f"report: {', '.join(wrong)} differ from custody-log entry {entry['seq']}, which recorded its "
                    "import")
    for claim in data["claims"]:
        if claim.get("where") != where(claim):
            report.fail(f"claim {claim['claim']}: its place shown, {claim.get('where')!r}, is not where its page, "
                        "paragraph and line put it")
    if "claim_rows_sha256" not in got:
        report.note(f"claims: custody-log entry {entry['seq']} predates the record of each claim's page and line and "
                    "of the source each citation names, so those two facts are shown unvouched")
        return
    body = [[c["claim"], c.get("page"), c.get("line"), [x["source_id"] for x in c["citations"]]]
            for c in data["claims"]]
    if hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest() != got["claim_rows_sha256"]:
        report.fail(f"claims: the page, line or cited source shown for a claim is not what custody-log entry "
                    f"{entry['seq']} recorded at import")


def _check_links(data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """Which exhibits each citation and each claim lists, and why they do not count, follow from
    the sources the exhibits are of (their vouched rows) and the claims' vouched citations."""
    captures, checks = {}, {}
    by_capture = {ex.get("capture_id"): ex["exhibit"] for ex in data["exhibits"] if ex["kind"] == "capture"}
    for ex in data["exhibits"]:
        (captures if ex["kind"] == "capture" else checks).setdefault(ex["source_id"], []).append(ex)
    cited: dict = {}  # type: ignore[type-arg]
    attempts = _latest_attempts(log)
    for claim in data["claims"]:
        for cit in claim["citations"]:
            cited.setdefault(cit["source_id"], {})[cit["url"]] = None
            mine = sorted(captures.get(cit["source_id"], []), key=lambda e: e["exhibit"])
            if not mine and cit.get("why_no_exhibit") != why_no_exhibit(attempts.get(cit["source_id"])):
                report.fail(f"claim {claim['claim']}: why {cit['url']} has no exhibit is not what the custody log "
                            "recorded of its latest capture")
            if cit.get("exhibits") != [e["exhibit"] for e in mine]:
                report.fail(f"claim {claim['claim']}: the exhibits listed for {cit['url']} are not the captures of "
                            "the source it cites")
            elif mine and all(not e.get("supports") for e in mine) and cit.get("why_no_exhibit") != (
                    "captured, but not the cited page: " + "; ".join(
                        f"exhibit {e['exhibit']}: {e.get('not_support_reason')}" for e in mine)):
                report.fail(f"claim {claim['claim']}: why the exhibits of {cit['url']} do not count differs from "
                            "their vouched verdicts")
            elif mine and any(e.get("supports") for e in mine) and cit.get("why_no_exhibit"):
                report.fail(f"claim {claim['claim']}: says the exhibits of {cit['url']} do not count, but one does")
        sources = dict.fromkeys(c["source_id"] for c in claim["citations"])
        numbers = sorted(e["exhibit"] for sid in sources for e in captures.get(sid, []))
        check_numbers = sorted(e["exhibit"] for sid in sources for e in checks.get(sid, []))
        if claim.get("exhibits") != numbers or claim.get("check_exhibits") != check_numbers:
            report.fail(f"claim {claim['claim']}: its exhibits are not the captures and checks of the sources it cites")
    for ex in data["exhibits"]:
        row = ((log.get(ex.get("custody_seq")) or {}).get("_details") or {}).get("capture") or {}
        refers = row.get("refers_to_capture_id")
        if ex["kind"] == "capture" and ex.get("revisit_of_exhibit") != (by_capture.get(refers) if refers else None):
            report.fail(f"exhibit {ex['exhibit']}: the exhibit shown as holding its payload is not the capture it "
                        "revisits")
        if ex["kind"] == "check" and (ex.get("check_row") or {}).get("source_id") != ex["source_id"]:
            report.fail(f"exhibit {ex['exhibit']}: the source shown is not the one its check was of")
        expected = list(cited.get(ex["source_id"], {})) or [ex.get("source_url")]
        if ex.get("cited_as") != expected:
            report.fail(f"exhibit {ex['exhibit']}: the URL shown as cited is not how the claims cite its source")
        if ex["kind"] == "capture" and ex.get("source_url") not in (ex.get("url_requested"), *expected):
            # The source's first spelling, from another report or capture: nothing in the bundle vouches for it.
            report.note(f"exhibit {ex['exhibit']}: its heading URL {ex.get('source_url')} is neither the URL captured "
                        "nor a URL cited here, so nothing in the bundle vouches for it")


def _latest_attempts(log: dict) -> dict:  # type: ignore[type-arg]
    """source id -> the row of its latest capture in the log (in a whole chain, none can be left out)."""
    found = {}
    for seq in sorted(log):
        row = log[seq]["_details"].get("capture") if log[seq]["event"] == "capture" else None
        if isinstance(row, dict):
            found[row.get("source_id")] = row
    return found


WITNESS_DONE = "archived"  # a witness job that made a public copy


def _check_witnesses(data: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    """Each source's latest public copy made by an independent witness, and how it compares with our
    capture, as the custody log recorded them: the one shown, and none left out (a whole chain
    holds every witness entry after the first exhibit's)."""
    latest, compared = {}, {}
    for seq in sorted(log):
        entry, details = log[seq], log[seq]["_details"]
        row = details.get("witness") if entry["event"] == "witness" else None
        if isinstance(row, dict) and row.get("status") == WITNESS_DONE:
            latest[row.get("source_id")] = entry
        elif entry["event"] == "witness-compared":
            compared[details.get("witness_id")] = entry
    capture_sources = {e["source_id"] for e in data["exhibits"] if e["kind"] == "capture"}
    shown = [(f"source {s['url']}", s["source_id"], s.get("witness")) for s in data["sources"]]
    shown += [(f"exhibit {e['exhibit']}", e["source_id"], e.get("witness")) for e in data["exhibits"]
              if e["kind"] == "capture"]
    for label, source_id, witness in shown:
        entry = latest.get(source_id)
        if entry is None:
            if witness:
                report.fail(f"{label}: no custody-log entry records the independent witness it shows")
            continue
        if not witness:
            if data["custody"].get("scope") == "chain" and source_id in capture_sources:
                report.fail(f"{label}: the independent witness of custody-log entry {entry['seq']} is not shown")
            continue
        details = entry["_details"]
        check = compared.get(details.get("witness_id"))
        expected = {**witness_facts({**details["witness"], "id": details.get("witness_id")},
                                    check["_details"] if check else None),
                    "custody_seq": entry["seq"], "compared_seq": check["seq"] if check else None}
        wrong = differing(witness, expected)
        if wrong:
            report.fail(f"{label}: independent witness {', '.join(wrong)} differ from custody-log entry "
                        f"{entry['seq']}" + (f" and {check['seq']}" if check else ""))


def _compare_rendering(name: str, shown: str, expected: str, report: Report) -> None:
    """Name the first fact where a file differs from its rendering of the vouched data."""
    expected = expected.lstrip("\ufeff")
    if shown == expected:
        return
    if name.endswith(".csv"):
        _compare_csv(name, shown, expected, report)
        return
    units_s, units_e = _units(name, shown), _units(name, expected)
    at = next((i for i in range(min(len(units_s), len(units_e))) if units_s[i] != units_e[i]),
              min(len(units_s), len(units_e)))
    mine, theirs = (units_s[at] if at < len(units_s) else ""), (units_e[at] if at < len(units_e) else "")
    context = next((_context(u) for u in reversed(units_e[:at + 1]) if _context(u)), "")
    report.fail(f"{name}: {context}{_fact(mine, theirs)}: shows {_clip(mine)} where the vouched data gives "
                f"{_clip(theirs)}")


def _compare_csv(name: str, shown: str, expected: str, report: Report) -> None:
    """Row by row, streamed: the cells are the facts (line endings and quoting may differ)."""
    rows_s = csv.reader(io.StringIO(shown, newline=""))
    rows_e = csv.reader(io.StringIO(expected, newline=""))
    header: list = []  # type: ignore[type-arg]
    line = 0
    while True:
        mine, theirs = next(rows_s, None), next(rows_e, None)
        line += 1
        header = header or theirs or []
        if mine == theirs:
            if mine is None:
                return
            continue
        if mine is None or theirs is None:
            report.fail(f"{name}: line {line} " + ("is missing" if mine is None else "is not in the vouched data"))
            return
        cols = [i for i in range(max(len(mine), len(theirs))) if mine[i:i + 1] != theirs[i:i + 1]]
        names = ", ".join(header[i] if i < len(header) else f"column {i + 1}" for i in cols)
        report.fail(f"{name} line {line}: {names}: shows {_clip(mine[cols[0]] if cols[0] < len(mine) else '')} "
                    f"where the vouched data gives {_clip(theirs[cols[0]] if cols[0] < len(theirs) else '')}")
        return


HTML_UNITS = re.compile(r"(?=<(?:tr|p|li|h1|h2|h3|a|div|figure|title)\b)")


def _units(name: str, text: str) -> list:  # type: ignore[type-arg]
    return HTML_UNITS.split(text) if name.endswith(".html") else text.split("\n")


def _context(unit: str) -> str:
    found = re.search(r'id="exhibit-(\d+)"|^Exhibit (\d+):', unit)
    if found:
        return f"exhibit {found.group(1) or found.group(2)}, "
    found = re.search(r'id="claim-(\d+)"|<strong>Claim (\d+)</strong>|^Claim (\d+) \(', unit)
    return f"claim {next(g for g in found.groups() if g)}, " if found else ""


def _fact(mine: str, theirs: str) -> str:
    """The name of the fact a line or HTML fragment states: its label, or a Robust Link's attribute."""
    if theirs.startswith("<a ") or mine.startswith("<a "):
        attrs = [re.findall(r'([\w-]+)="([^"]*)"', unit.split(">", 1)[0]) for unit in (mine, theirs)]
        names = sorted({k for k, _ in set(attrs[0]) ^ set(attrs[1])})
        kind = "Robust Link" if "data-originalurl=" in theirs else "public copy" if ">public copy" in theirs else "link"
        return f"{kind} {', '.join(names) if names else 'text'}"
    for unit in (theirs, mine):
        if re.match(r"\s{4}cited: |<li>cited: ", unit):
            return "citation"
        found = re.match(r"<tr><th>(.*?)</th>", unit) or re.match(r"\s{4}([^:]{1,40}): ", unit)
        if found:
            return html.unescape(found.group(1))
        if re.match(r'<p (?:lang="" )?id="claim-|<p>|Claim \d+ \(', unit):
            return "claim text"
    return "text"


def _clip(text: str) -> str:
    return repr(text if len(text) <= 160 else text[:157] + "...")
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
    parser.add_argument("--require-anchor", action="store_true",
                        help="exit 1 unless a key, head or timestamp given here anchors the exhibits")
    parser.add_argument("--inflate-budget", type=int, metavar="MIB",
                        help=f"MiB the run may inflate in all (default: {BUDGET_FLOOR >> 20}, or {BUDGET_RATIO} "
                             "times the WACZ when more), so a hostile bundle cannot keep it busy for long")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help=f"worker processes that inflate and hash the records (default: one per core, at most "
                             f"{MAX_JOBS}, for a bundle of more than {PARALLEL_MIN_BYTES >> 20} MiB of records; "
                             "1: none, all in this process)")
    args = parser.parse_args(argv)
    if args.inflate_budget is not None and args.inflate_budget < 0:
        parser.error("--inflate-budget must be 0 or more (MiB)")
    if args.jobs is not None and not 1 <= args.jobs <= MAX_GIVEN_JOBS:
        parser.error(f"--jobs must be from 1 to {MAX_GIVEN_JOBS}")
    root = args.bundle
    try:
        kind = file_kind(root)
    except OSError as exc:
        return _unreadable(f"cannot read {root}: {exc.strerror}")
    if kind is None:
        return _verify_zip(root, args)
    if kind != "a folder":
        return _unreadable(f"{root} is {kind}, not a bundle folder or .zip (refused, not opened)")
    report = Report(args.quiet)
    workers = start_workers(root, args.jobs)  # before bundle.json is read: small workers
    try:
        data = json.loads(read_bundle_text(root, "bundle.json"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (Unsafe, ValueError) as exc:
        stop_workers(workers)
        return _unreadable(f"cannot read {os.path.join(root, 'bundle.json')}: {exc}")
    set_budget(root, data, args.inflate_budget)
    run_checks(root, data, args, report, workers)
    signature = f" ({report.wacz_signature})" if report.wacz_signature else ""
    skipped = [f"{report.not_inflated} record(s) were checked only against their SHA-256, not inflated"] \
        if report.not_inflated else []
    skipped = "; ".join(skipped + [f"{name} was not checked in full" for name in report.not_checked])
    if report.failures:
        spent = f"; the inflation budget of {BUDGET.limit >> 20} MiB was spent: {skipped}" if BUDGET.exceeded else ""
        print(f"\n{report.failures} problem(s): this bundle is NOT as exported{signature}{spent}")
        return 1
    if BUDGET.exceeded:
        print(f"\nNOT VERIFIED IN FULL: the run spent its inflation budget of {BUDGET.limit >> 20} MiB (a hostile "
              f"bundle, or a very large one): {skipped}. Nothing it checked was wrong; run it again with a larger "
              f"--inflate-budget to check everything.{signature}")
        return 3
    if report.anchors:
        print("\nBUNDLE VERIFIED AND ANCHORED: every file, record, custody entry and index line matches, "
              "and " + "; ".join(report.anchors) + signature)
        return 0
    print("\nBUNDLE CONSISTENT, NOT ANCHORED: every file, record, custody entry and index line agree with "
          "one another, but nothing ties them to a key, a published log head or a timestamp obtained "
          "outside the bundle, so a bundle rebuilt and re-signed by someone else would pass this too. "
          f"Anchor it with --public-key, --head or --tsa-root (see VERIFY.md).{signature}")
    return 1 if args.require_anchor else 0


def set_budget(root: str, data: dict, mib: int | None) -> None:  # type: ignore[type-arg]
    """This run's inflation budget: the one given, else the floor or BUDGET_RATIO times the WACZ."""
    global BUDGET
    if mib is not None:
        BUDGET = Budget(mib << 20)
        return
    try:
        size = os.lstat(inside(root, str(data.get("wacz")))).st_size
    except (OSError, Unsafe):
        size = 0
    BUDGET = Budget(max(BUDGET_FLOOR, BUDGET_RATIO * size))


def _unreadable(message: str) -> int:
    print(message, file=sys.stderr)
    print("\nNOT VERIFIED: the bundle cannot be read")
    return 2


def run_checks(root: str, data: dict, args: argparse.Namespace, report: Report,  # type: ignore[type-arg]
               workers: Workers | None = None) -> None:
    """Each step on its own: a step that meets a file it cannot read fails with a reason, and the
    others still run, so a damaged bundle is described whole and always ends with a verdict.
    ``workers`` (start_workers) inspect the records meanwhile, when the bundle is large enough."""
    found = {"entries": {}, "log": {}, "inspection": start_inspection(root, data, args.jobs, workers)}

    def wacz() -> None:
        found["entries"] = check_wacz(root, data["wacz"], report)

    def log() -> None:
        found["log"] = check_log(root, data, load_keys(root, args.public_key, report), args, report)

    def records() -> None:
        if found["entries"]:
            check_records(root, data, found["entries"], found["log"], report, found["inspection"])

    def artefacts() -> None:
        if found["entries"]:
            check_artefacts(root, data, found["entries"], report)

    first = (("files", lambda: check_manifest(root, report)), ("WACZ", wacz), ("custody log", log))
    records_steps = (("records", records), ("screenshots", artefacts))
    rest = (("timestamps", lambda: check_timestamps(root, data, found["log"], args.tsa_root, report)),
            ("time anchors", lambda: check_time_anchors(data, report)),
            ("claims", lambda: check_claims(data, found["log"], report)),
            ("live state", lambda: check_live(data, found["log"], report)),
            ("exhibit index", lambda: check_index(root, data, report)),
            ("what the index shows", lambda: check_shown(root, data, found["log"], report)))
    # The steps after the records run while workers inspect them, their lines held back, so the
    # report reads in the same order however many processes did the work.
    try:
        _run_steps(first, report)
        report.hold()
        _run_steps(rest, report)
        held = report.release()
        _run_steps(records_steps, report)
    finally:
        report.release()
        stop_workers(workers)
    for line in held:
        print(line)


def _run_steps(steps: tuple, report: Report) -> None:  # type: ignore[type-arg]
    for name, step in steps:
        try:
            step()
        except OutOfBudget as exc:
            report.not_checked.append(f"the {name} step")
            report.note(f"{name}: not checked in full: {exc}")
        except Unsafe as exc:
            report.fail(f"{name}: {exc}")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                zipfile.BadZipFile, zlib.error, RecursionError) as exc:
            report.fail(f"{name}: cannot be checked, the bundle is malformed ({type(exc).__name__}: {exc})")


def _verify_zip(path: str, args: argparse.Namespace) -> int:
    """A bundle handed over as one .zip: unpack it to a temporary folder, entry by entry and
    bounded, and verify that folder. The folder is removed afterwards, whatever happens."""
    try:
        with tempfile.TemporaryDirectory(prefix="verify-bundle-") as tmp:
            try:
                with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
                    _unpack(zf, tmp, shutil.disk_usage(tmp).free)
            except (Unsafe, zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
                return _unreadable(f"{os.path.basename(path)}: {exc}; nothing was verified")
            tops = os.listdir(tmp)
            folder = os.path.join(tmp, tops[0]) if len(tops) == 1 else tmp
            rest = (["--quiet"] if args.quiet else []) + (["--all-signatures"] if args.all_signatures else [])
            for key in args.public_key:
                rest += ["--public-key", key]
            rest += ["--head", args.head] if args.head else []
            rest += ["--tsa-root", args.tsa_root] if args.tsa_root else []
            rest += ["--require-anchor"] if args.require_anchor else []
            rest += ["--inflate-budget", str(args.inflate_budget)] if args.inflate_budget is not None else []
            rest += ["--jobs", str(args.jobs)] if args.jobs is not None else []
            return main([folder, *rest])
    except OSError as exc:
        return _unreadable(f"cannot unpack {path}: {exc}")


def _unpack(zf: zipfile.ZipFile, dest: str, free: int) -> None:
    """Every entry checked before anything is written: plain names inside the bundle, no links,
    no name twice, sizes that fit the disk, no entry inflating past MAX_RATIO."""
    infos = zf.infolist()
    names = set()
    for info in infos:
        inside(dest, info.filename.rstrip("/"))  # raises for absolute, drive and ".." names
        if info.filename in names:
            raise Unsafe(f"{info.filename!r} appears twice in the zip (refused)")
        names.add(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Unsafe(f"{info.filename!r} is a symbolic link in the zip (refused)")
        if info.file_size > max(MAX_FLOOR, MAX_RATIO * info.compress_size):
            raise Unsafe(f"{info.filename!r} would inflate more than {MAX_RATIO} times (a zip bomb?)")
    if sum(i.file_size for i in infos) > free:
        raise Unsafe("it would not fit on the disk unpacked")
    for info in infos:
        target = inside(dest, info.filename.rstrip("/"))
        if info.is_dir():
            os.makedirs(target, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # zipfile stops at the declared size and checks the CRC: a lying entry raises.
        with zf.open(info) as src, open(target, "xb") as out:
            shutil.copyfileobj(src, out, CHUNK)


if __name__ == "__main__":
    sys.exit(main())
