"""Ed25519 keys for signing custody-log entries.

The private key lives in a file (mode 0600) under the archive's ``keys/`` or at
a path the user chooses (``EVARCHIVE_SIGNING_KEY``, e.g. on removable media);
it is never written to the catalogue. The public key is written beside it
(``.pub``) and recorded in the custody log when the key is introduced, so a
verifier can check signatures with a public key obtained out of band.

A signature covers the entry hash, which itself covers the previous entry's
hash: signing an entry vouches for the whole log up to it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .archive import Archive
from .errors import InputError, UsageError
from .keyfiles import read_private_pem, write_private_file

KEY_STEM = "custody-ed25519"
ENV_SIGNING_KEY = "EVARCHIVE_SIGNING_KEY"
# Domain separation: a signature made here can never be replayed as a
# signature over some other evarchive (or foreign) message.
SIGNING_CONTEXT = b"evarchive custody entry v1\n"


@dataclass
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str
    public_pem: str


def key_id(public: Ed25519PublicKey) -> str:
    """A short stable name: the first 16 hex digits of SHA-256 of the raw key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def default_private_path(keys_dir: Path) -> Path:
    return keys_dir / f"{KEY_STEM}.key"


def generate(private_path: Path, *, overwrite: bool = False) -> KeyPair:
    """Write a new key pair. The private file is created 0600 atomically."""
    public_path = private_path.with_suffix(".pub")
    if not overwrite and (private_path.exists() or public_path.exists()):
        raise UsageError(f"a key already exists at {private_path}; refusing to overwrite it")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(private_path, data, private_path.with_name(private_path.name + ".tmp"),
                       keep_existing=False)
    pem = public_pem(key.public_key())
    public_path.write_text(pem, encoding="ascii")
    return KeyPair(private_path, public_path, key_id(key.public_key()), pem)


def load_private(path: Path) -> Ed25519PrivateKey:
    key = read_private_pem(path, "signing key", "signing key")
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path} is not an Ed25519 key")
    return key


def load_public(data: bytes | str) -> Ed25519PublicKey:
    raw = data.encode("ascii") if isinstance(data, str) else data
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as exc:
        raise InputError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("not an Ed25519 public key")
    return key


def load_public_file(path: Path) -> Ed25519PublicKey:
    try:
        return load_public(path.read_bytes())
    except OSError as exc:
        raise InputError(f"cannot read public key {path}: {exc.strerror}") from None


def sign_hash(key: Ed25519PrivateKey, entry_hash: str) -> str:
    """The value stored in custody_log.signature: ``ed25519:<key id>:<base64>``."""
    sig = key.sign(SIGNING_CONTEXT + entry_hash.encode("ascii"))
    return f"ed25519:{key_id(key.public_key())}:{base64.b64encode(sig).decode('ascii')}"


def parse_signature(value: str) -> tuple[str, bytes]:
    """(key id, raw signature); ValueError when the text is not our format."""
    scheme, kid, b64 = value.split(":", 2)
    if scheme != "ed25519":
        raise ValueError(f"unknown signature scheme {scheme}")
    raw = base64.b64decode(b64, validate=True)
    if len(raw) != 64:
        raise ValueError("an Ed25519 signature is 64 bytes")
    return kid, raw


def check_signature(public: Ed25519PublicKey, entry_hash: str, value: str) -> str | None:
    """None when `value` is a valid signature of `entry_hash` by `public`, else why not."""
    try:
        kid, raw = parse_signature(value)
    except ValueError as exc:
        return f"malformed signature ({exc})"
    if kid != key_id(public):
        return f"signed by key {kid}, expected {key_id(public)}"
    try:
        public.verify(raw, SIGNING_CONTEXT + entry_hash.encode("ascii"))
    except InvalidSignature:
        return "signature does not verify"
    return None


def trusted_public_keys(archive: Archive, files: list[Path] | None) -> list[Ed25519PublicKey] | None:
    """Keys given on the command line, else the .pub files in keys/; None when neither."""
    paths = list(files or [])
    if not paths:
        paths = sorted(archive.keys_dir.glob("*.pub")) if archive.keys_dir.is_dir() else []
    return [load_public_file(p) for p in paths] or None
