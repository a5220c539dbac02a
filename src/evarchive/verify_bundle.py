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
   (with --tsa-root, openssl checks their signatures too);
6. the live state shown for each source ("since changed or vanished") is its latest check, as
   the custody log recorded it;
7. the exhibit index: exhibits.csv, exhibits.html and exhibits.txt state the same hashes and
   locations as the records and the custody log.

Anchors: a bundle only proves itself against facts from outside it. The key the archive handed
over separately (--public-key), the log head it published (--head) and the trusted roots of a
timestamp authority (--tsa-root) each anchor the exhibits when they vouch for every exhibit's
custody entry. The verdict says BUNDLE VERIFIED AND ANCHORED, naming each anchor, or BUNDLE
CONSISTENT, NOT ANCHORED: the keys inside the bundle prove nothing against someone who rebuilt it.

Exit status: 0 when everything matches (anchored or not; --require-anchor makes an unanchored
bundle exit 1), 1 when anything does not (each failure names the file and record), 2 when the
bundle cannot be read at all, 3 when the run spent its inflation budget (--inflate-budget) before
every record was inflated and checked, and found nothing wrong in what it did check. Written
for evarchive bundles; it does not import evarchive.
"""

from __future__ import annotations

import argparse
import base64
import csv
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
        self.anchors: list = []  # facts from outside the bundle that the exhibits were checked against
        self.wacz_signature = ""  # what the WACZ's own signature says, for the verdict
        self.not_inflated = 0  # records checked only against their SHA-256: the inflation budget was spent
        self.not_checked: list = []  # steps the budget stopped

    def anchor(self, text: str) -> None:
        self.anchors.append(text)
        self.ok("ANCHORED: " + text)

    def ok(self, text: str) -> None:
        if not self.quiet:
            print("ok    " + text)

    def note(self, text: str) -> None:
        if not self.quiet:
            print("note  " + text)

    def fail(self, text: str) -> None:
        self.failures += 1
        print("FAIL  " + text)


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
        for chunk in read_at(fh, start, info.compress_size):
            digest.update(chunk)
            size += len(chunk)
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


def _inflate_bounded(chunks, limit_of):  # type: ignore[no-untyped-def]
    """Inflate a stream piece by piece, never more than CHUNK at a time; raises ValueError once
    the output passes ``limit_of(bytes read so far)``. Yields (inflater, output)."""
    inflater = zlib.decompressobj(wbits=31)
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
            BUDGET.spend(len(data))
            if produced > limit_of(read):
                raise ValueError(f"it inflates more than {MAX_RATIO} times its size (a decompression bomb?)")
            yield inflater, data


DECODED_LIMIT = 64 << 20  # the decoded content of a page is hashed up to this size, as at export
CONTENT_CODINGS = ("gzip", "x-gzip", "deflate")


class ContentDecoder:
    """The SHA-256 of a response's content with its gzip/deflate coding undone, fed the payload as
    it streams past (so a record is read and inflated once): the rules evarchive's export follows,
    so both reach the same hash or the same reason why not."""

    def __init__(self) -> None:
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
        self.decoder = zlib.decompressobj(wbits)

    def _decode(self, data: bytes) -> None:
        try:
            while data:
                if self.decoder.eof:
                    self.why = f"not computed: bytes follow the end of the {self.coding} stream"
                    return
                out = self.decoder.decompress(data, CHUNK)
                data = self.decoder.unconsumed_tail or self.decoder.unused_data
                self.produced += len(out)
                BUDGET.spend(len(out))
                if self.produced > DECODED_LIMIT:
                    self.why = f"not computed: larger than {DECODED_LIMIT >> 20} MiB decoded"
                    return
                self.digest.update(out)
        except zlib.error as exc:
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


def check_decoded(ex: dict, rec: dict, decoder: ContentDecoder, report: Report) -> None:  # type: ignore[type-arg]
    """The decoded-content hash the index shows is the one the record's own bytes give (a page
    served without content coding: the payload hash itself)."""
    where = f"exhibit {ex['exhibit']} ({rec['record_id']})"
    shown = (ex.get("decoded_sha256"), ex.get("decoded_note"))
    if (ex.get("content_encoding") or "").strip().lower() != decoder.coding:
        report.fail(f"{where}: the record was served with Content-Encoding {decoder.coding or 'none'!r}, "
                    f"the index says {ex.get('content_encoding') or 'none'!r}")
        return
    found = (rec["payload_sha256"], None) if decoder.coding in ("", "identity") else decoder.result()
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


def check_records(root: str, data: dict, entries: dict, log: dict, report: Report) -> None:  # type: ignore[type-arg]
    wacz = data["wacz"]
    count, before = 0, report.failures
    with open_bundle_file(root, wacz) as fh:
        for ex in data["exhibits"]:
            entry = log.get(ex["custody_seq"])
            for rec in ex["records"]:
                count += 1
                where = (f"exhibit {ex['exhibit']} record {rec['record_id']} ({rec['record_type']}) in "
                         f"{data['wacz']} > {rec['bundle_file']} at offset {rec['bundle_offset']}")
                main = rec is main_record(ex)
                decoder = ContentDecoder() if main and ex["kind"] == "capture" and \
                    rec["record_type"] == "response" else None
                fields = _check_record(fh, entries, rec, where, report, decoder)
                if fields is not None and rec["record_id"] == ex.get("main_record"):
                    _check_record_date(ex, fields, where, report)
                if fields is not None and decoder is not None:
                    check_decoded(ex, rec, decoder, report)
                _check_vouched(ex, rec, entry, where, report)
            _check_exhibit_fields(ex, entry, report)
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


def _check_record(fh, entries, rec, where, report, decoder=None):  # type: ignore[no-untyped-def]
    """The record's bytes and WARC digests; its WARC header fields when they could be read (and
    inflated within the run's budget). A response's content streams through ``decoder`` on the way."""
    start = entries.get(rec["bundle_file"], (None,))[0]
    if start is None:
        report.fail(f"{where}: that WARC file is not in the package")
        return None
    if start + rec["bundle_offset"] != rec["wacz_offset"]:
        report.fail(f"{where}: bundle.json gives a different offset in the .wacz")
    # One pass: the bytes as stored are hashed as they stream into the inflater (and the page's
    # content coding is undone on the way), never held whole: a record may be as large as its page.
    digest = hashlib.sha256()

    def hashed():  # type: ignore[no-untyped-def]
        for chunk in read_at(fh, start + rec["bundle_offset"], rec["length"]):
            digest.update(chunk)
            yield chunk

    chunks, parsed = hashed(), None
    if not BUDGET.exceeded:
        try:
            parsed = parse_member(chunks, decoder)
        except OutOfBudget:
            parsed = None
    for _ in chunks:  # the bytes after the point where inflating stopped
        pass
    if digest.hexdigest() != rec["member_sha256"]:
        report.fail(f"{where}: its bytes differ from the recorded SHA-256 {rec['member_sha256']}")
        return None
    if parsed is None:
        report.not_inflated += 1
        return None
    fields, block, payload, error = parsed
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


CAPTURE_FIELDS = (("captured_at", "started_at"), ("final_url", "final_url"), ("http_status", "http_status"),
                  ("server_ip", "server_ip"), ("payload_sha256", "payload_sha256"), ("url_requested", "url_requested"),
                  ("content_verdict", "content_verdict"), ("wall", "wall"))


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
    # Support follows from the vouched verdict: the page itself, or not classified (made before
    # evarchive classified captures), and no wall.
    page = row.get("content_verdict") in (None, "page") and not row.get("wall")
    if ex.get("supports") is not page:
        wrong.append("whether it counts as support")
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
    body = {"seq": entry["seq"], "at": entry["at"], "event": entry["event"], "subject": entry["subject"],
            "details": json.loads(entry["details"]), "prev_hash": entry["prev_hash"]}
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


TOKENS = re.compile(r"<urn:uuid:[0-9a-fA-F-]{36}>|(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


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
        shown = set(TOKENS.findall(html.unescape(read_bundle_text(root, name))))  # one pass, not one per value
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
    args = parser.parse_args(argv)
    if args.inflate_budget is not None and args.inflate_budget < 0:
        parser.error("--inflate-budget must be 0 or more (MiB)")
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
    try:
        data = json.loads(read_bundle_text(root, "bundle.json"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (Unsafe, ValueError) as exc:
        return _unreadable(f"cannot read {os.path.join(root, 'bundle.json')}: {exc}")
    set_budget(root, data, args.inflate_budget)
    run_checks(root, data, args, report)
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


def run_checks(root: str, data: dict, args: argparse.Namespace, report: Report) -> None:  # type: ignore[type-arg]
    """Each step on its own: a step that meets a file it cannot read fails with a reason, and the
    others still run, so a damaged bundle is described whole and always ends with a verdict."""
    found = {"entries": {}, "log": {}}

    def wacz() -> None:
        found["entries"] = check_wacz(root, data["wacz"], report)

    def log() -> None:
        found["log"] = check_log(root, data, load_keys(root, args.public_key, report), args, report)

    def records() -> None:
        if found["entries"]:
            check_records(root, data, found["entries"], found["log"], report)

    def artefacts() -> None:
        if found["entries"]:
            check_artefacts(root, data, found["entries"], report)

    steps = (("files", lambda: check_manifest(root, report)), ("WACZ", wacz), ("custody log", log),
             ("records", records), ("screenshots", artefacts),
             ("timestamps", lambda: check_timestamps(root, data, found["log"], args.tsa_root, report)),
             ("claims", lambda: check_claims(data, found["log"], report)),
             ("live state", lambda: check_live(data, found["log"], report)),
             ("exhibit index", lambda: check_index(root, data, report)))
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
