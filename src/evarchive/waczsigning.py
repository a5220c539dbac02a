"""The WACZ's own signature, as Webrecorder's "WACZ Signing and Verification" (wacz-auth 0.1.0)
describes it: ``datapackage-digest.json`` carries the SHA-256 of ``datapackage.json`` and a
``signedData`` block, so that Webrecorder's tools see a signed WACZ, beside (not instead of) the
Ed25519 custody log.

This is the spec's *anonymous* form: the signature and the public key travel in the file, and
only a fingerprint obtained out of band says whose key it is. What is signed is the text of
``hash`` (``sha256:<hex>``, UTF-8) with ECDSA and SHA-256; the signature is the raw ``r || s``
pair (IEEE P1363), as ArchiveWeb.page writes and ReplayWeb.page checks with WebCrypto, and the
public key is base64 SubjectPublicKeyInfo DER.

The curve is P-384 because that is the one ReplayWeb.page imports an anonymous key as: WebCrypto
refuses a P-256 key there ("Named curve mismatch"), so a P-256 signature would never show as
verified in Webrecorder's own viewer. ``verify_bundle.py`` checks P-256 and P-384 alike.

The private key lives in the archive's keys folder (mode 0600, its public half beside it as
``.public.pem``), made on first export; it is never written to the catalogue or the bundle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from . import __version__
from .errors import InputError
from .keyfiles import read_private_pem, write_private_file

CURVE = ec.SECP384R1
KEY_STEM = "wacz-ecdsa-p384"
SPEC_VERSION = "0.1.0"  # the wacz-auth version whose SignatureData this is
PACKAGE = "datapackage.json"


def digest_file(archive: Any, package: bytes, created: str) -> bytes:
    """The bytes of ``datapackage-digest.json`` for ``package``, signed when the archive has (or
    can make) its WACZ key; ``created`` must be the package's own ``created`` (py-wacz compares them)."""
    digest: dict[str, Any] = {"path": PACKAGE, "hash": "sha256:" + hashlib.sha256(package).hexdigest()}
    key = archive_key(archive)
    if key is not None:
        digest["signedData"] = signed_data(key, digest["hash"], created)
    return json.dumps(digest, indent=2).encode() + b"\n"


def signed_data(key: ec.EllipticCurvePrivateKey, hash_text: str, created: str) -> dict[str, str]:
    """The spec's anonymous SignatureData: exactly these six properties, no others."""
    der = key.sign(hash_text.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return {"hash": hash_text, "created": created, "software": f"evarchive {__version__}",
            "version": SPEC_VERSION,
            "signature": base64.b64encode(r.to_bytes(size, "big") + s.to_bytes(size, "big")).decode("ascii"),
            "publicKey": base64.b64encode(public_der(key.public_key())).decode("ascii")}


def public_der(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public: ec.EllipticCurvePublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER, in hex: what verify_bundle.py prints."""
    return hashlib.sha256(public_der(public)).hexdigest()


def key_path(archive: Any) -> Path:
    return archive.keys_dir / f"{KEY_STEM}.key"


def public_path(private: Path) -> Path:
    """Not ``.pub``: that suffix is the custody log's, whose readers take every ``*.pub`` for Ed25519."""
    return private.with_name(f"{KEY_STEM}.public.pem")


def archive_key(archive: Any) -> ec.EllipticCurvePrivateKey | None:
    """The archive's WACZ signing key, made on first use; None when it has none and cannot make
    one (a read-only archive), so the WACZ goes out unsigned rather than not at all."""
    path = key_path(archive)
    if not path.exists():
        if archive.read_only:
            return None
        _create(path)
    return _load(path)


def _create(path: Path) -> None:
    """Write a new key, 0600 from its creation; if another export made one meanwhile, keep theirs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(CURVE())
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    write_private_file(path, data, path.with_name(f"{path.name}.{os.getpid()}.tmp"), keep_existing=True)
    pub = public_path(path)
    if not pub.exists():
        pub.write_bytes(_load(path).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _load(path: Path) -> ec.EllipticCurvePrivateKey:
    key = read_private_pem(path, "WACZ signing key", "the WACZ signing key")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
        raise InputError(f"{path} is not an ECDSA P-256 or P-384 key")
    return key
