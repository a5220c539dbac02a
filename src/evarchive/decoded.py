"""The SHA-256 of a page's decoded content (its gzip or deflate coding undone), computed once.

The exhibit index shows it beside the hash of the bytes as served: it is the hash a saved copy
of the page matches. It is a pure function of a record's bytes, so it is computed while those
bytes are in hand (at capture, from the spooled body of the page's final response) and kept in
the catalogue's ``decoded_contents`` table under the SHA-256 of the record's gzip member. An
export that has just checked a member's bytes against that SHA-256 takes the stored value
instead of inflating the page again; without one (an archive made by an older evarchive) it
computes the value as it always did, and stores it for the next export.

It is derived data, not evidence: no custody entry vouches for it, and it never changes a
capture's rows. ``verify --deep`` recomputes each stored value from the record's bytes and
reports one that differs. The rules are verify_bundle.py's own (``decoded_content``), so the
clerk's verifier reaches the same hash, or the same reason why none was computed.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .catalogue import transaction
from .verify_bundle import UNBOUNDED, Budget, decoded_content, payload_and_coding

READ_CHUNK = 1 << 20
Decoded = tuple[str | None, str | None]  # (decoded SHA-256, None) or (None, why it was not computed)


# --------------------------------------------------------------------------- computing

def served_coding(http_head: bytes) -> str:
    """The Content-Encoding a response was served with, read as the bundle's verifier reads it
    from the record: the first field of that name, as UTF-8 (a stray byte replaced), lower-cased;
    "" when there is none. Another reading would name an unknown coding otherwise in the note."""
    for line in http_head.decode("utf-8", "replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "content-encoding":
            return value.strip().lower()
    return ""


def read_span(fd: int, offset: int, length: int) -> Iterator[bytes]:
    pos, end = offset, offset + length
    while pos < end:
        chunk = os.pread(fd, min(READ_CHUNK, end - pos), pos)
        if not chunk:
            return  # the file is shorter than the catalogue says: the hash will not match
        pos += len(chunk)
        yield chunk


def of_member(fd: int, offset: int, length: int, coding: str, payload_sha256: str | None) -> Decoded:
    """The decoded content of the response record whose gzip member is at ``offset`` of ``fd``,
    served with ``coding``: the record is read again only when a coding must be undone (and that
    coding is then read from the record itself, as the verifier reads it)."""
    if coding in ("", "identity"):
        return payload_sha256, None
    return recomputed(fd, offset, length, payload_sha256)


def recomputed(fd: int, offset: int, length: int, payload_sha256: str | None, inflate: Any = zlib) -> Decoded:
    """The decoded content of a response record, its coding read from the record itself (for
    ``verify --deep``, which holds a stored value against the bytes). ``inflate``: zlib, or a
    faster module with its interface (the same bytes out; its error messages may differ)."""
    # the archive's own pages: drawn on no run budget (that bounds a stranger's bundle in the verifier)
    payload = payload_and_coding(read_span(fd, offset, length), Budget(UNBOUNDED), inflate)
    try:
        coding = next(payload, None)
        return decoded_content(coding or "", payload_sha256, payload, inflate)
    except (zlib.error, inflate.error, ValueError) as exc:
        return None, f"not computed: the record cannot be read ({exc})"


def of_body(http_head: bytes, payload_sha256: str, body: IO[bytes]) -> Decoded:
    """The decoded content of a response from its HTTP head and its payload as spooled at
    capture (the bytes its record's payload is made of), read from the start of ``body``."""
    body.seek(0)
    return decoded_content(served_coding(http_head), payload_sha256, iter(lambda: body.read(READ_CHUNK), b""))


def at_capture(hops: list[Any], records: list[Any]) -> dict[str, Decoded]:
    """The stored value of a capture being recorded: for the record an export shows (its last
    response or revisit), when that is the final hop's response, keyed by its member SHA-256.
    Nothing when the record and the hop do not match exactly, or the spool cannot be read: the
    export then computes it from the record, as for an older archive."""
    main = next((r for r in reversed(records) if r.record_type in ("response", "revisit")), None)
    if not hops or main is None or main.record_type != "response":
        return {}
    final = hops[-1]
    if main.target_uri != final.url or main.payload_sha256 != final.payload_sha256:
        return {}
    try:
        return {main.member_sha256: of_body(final.response_head, final.payload_sha256, final.body)}
    except (OSError, ValueError, zlib.error):
        return {}


# --------------------------------------------------------------------------- the catalogue

def stored(db: Any, member_sha256s: Iterable[str]) -> dict[str, Decoded]:
    """The stored values of these members (those that have one)."""
    keys = sorted(set(member_sha256s))
    out: dict[str, Decoded] = {}
    for i in range(0, len(keys), 500):
        part = keys[i:i + 500]
        marks = ",".join("?" for _ in part)
        for key, sha, note in db.execute("SELECT member_sha256, decoded_sha256, decoded_note FROM decoded_contents "
                                         f"WHERE member_sha256 IN ({marks})", part):
            out[key] = (sha, note)
    return out


def store(db: Any, values: dict[str, Decoded]) -> None:
    """Keep computed values (in the caller's transaction, if one is open). A member already
    stored keeps its value: the same bytes give the same value, and verify checks it."""
    if not values:
        return
    with transaction(db):
        db.conn.executemany("INSERT OR IGNORE INTO decoded_contents (member_sha256, decoded_sha256, decoded_note) "
                            "VALUES (?, ?, ?)", [(k, sha, note) for k, (sha, note) in values.items()])
