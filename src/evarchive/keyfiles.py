"""Private key files on disk: written 0600 from their creation, read only while no one else can.

Both signing keys (the custody log's Ed25519 key, the WACZ's ECDSA key) are kept this way; each
caller checks the kind of key it got and names the file in its own words.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from .errors import InputError


def write_private_file(path: Path, data: bytes, tmp: Path, *, keep_existing: bool) -> None:
    """Write ``data`` to ``path`` through ``tmp``, created 0600.

    O_EXCL + mode at creation: the secret never exists with wider permissions. With
    ``keep_existing`` the file is linked into place, so a key another process wrote meanwhile is
    kept and this one dropped; otherwise it replaces whatever is at ``path``.
    """
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if not keep_existing:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # never replaces a key already there
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def read_private_pem(path: Path, name: str, cannot_read: str) -> PrivateKeyTypes:
    """The unencrypted PEM private key at ``path``, refused when group or others may read it.

    ``name`` is what the key is called in the mode message ("signing key"), ``cannot_read`` in
    the message when the file cannot be read ("the WACZ signing key").
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {cannot_read} {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"{name} {path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path} is not an unencrypted PEM private key") from exc
