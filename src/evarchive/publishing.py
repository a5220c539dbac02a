"""Putting a finished bundle in place so that the custody log always knows it.

An export is built in a hidden staging folder beside OUT (``.OUT.partial-PID-XXXXXXXX``) that its
process holds an exclusive ``flock`` on. The custody entry naming the bundle's path and the
SHA-256 of its ``SHA256SUMS`` is committed *before* the bundle appears at OUT, together with a
``meta`` row marking it pending; once the bundle is in place (or could not be put there) an
outcome entry (``export-published`` / ``export-unpublished``) settles it and removes the mark.
So at no moment does a bundle exist at OUT without an entry for exactly that bundle. A process
killed in between leaves the mark: the next export looks at OUT and records the outcome then.

Staging folders whose process is gone (its pid no longer exists and nobody holds the lock) are
removed by the next export to the same folder, which reports them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from . import custody
from .catalogue import one, to_json, transaction
from .errors import shown

MANIFEST_NAME = "SHA256SUMS"
PENDING_PREFIX = "export-pending:"  # meta key of an export entry whose outcome is not logged yet
PARTIAL_RE = re.compile(r"^\.(?P<out>.+)\.partial-(?P<pid>\d+)-[0-9a-f]{8}$")
OLD_PARTIAL_RE = re.compile(r"^\.(?P<out>.+)\.partial-[0-9a-f]{8}$")  # earlier versions: no owner recorded
# Tests only: "POINT:FILE" makes the export write FILE and block forever at POINT, to be killed there.
PAUSE_ENV = "EVARCHIVE_TEST_PAUSE_AT"


def pause_point(point: str) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    name, _, path = spec.partition(":")
    if name == point and path:
        Path(path).write_text(f"{point} {os.getpid()}\n", encoding="utf-8")
        threading.Event().wait()


# --------------------------------------------------------------------------- staging folders

@dataclass
class Staging:
    path: Path
    lock_fd: int

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self.lock_fd)  # the lock goes last: nobody may judge the folder abandoned before


def make_staging(out: Path) -> Staging:
    """A new hidden folder beside OUT, locked by this process for as long as it lives."""
    path = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return Staging(path, fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def remove_abandoned(path: Path) -> str | None:
    """Remove one staging folder if its export is dead; a line saying what was done, or None.

    Dead means both: the pid in its name no longer exists (a live pid, even a reused one, keeps
    it) and its lock is free (an export on another machine sharing the folder keeps it)."""
    match = PARTIAL_RE.match(path.name)
    if match is None:
        if OLD_PARTIAL_RE.match(path.name) and path.is_dir() and not path.is_symlink():
            return (f"left in place {path}: a staging folder of an interrupted export by an earlier "
                    "evarchive version (no owner recorded); delete it if no export is running")
        return None
    pid = int(match["pid"])
    if pid == os.getpid() or _pid_alive(pid):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None
        size = _tree_size(path)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
    if path.exists():
        return f"could not remove {path}, the staging folder of a killed export (pid {pid}): delete it by hand"
    return f"removed {path} ({size:,} bytes), the staging folder of a killed export (pid {pid})"


def remove_abandoned_in(folder: Path) -> list[str]:
    """Every dead export's staging folder directly in `folder`, removed (or reported)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    notes = []
    for name in names:
        if ".partial-" in name and name.startswith("."):
            note = remove_abandoned(folder / name)
            if note:
                notes.append(note)
    return notes


# --------------------------------------------------------------------------- custody entries

def _path_field(path: Path) -> str:
    # A path's bytes, so that a folder name that is not UTF-8 comes back exactly (JSON and
    # SQLite text hold only valid Unicode).
    return os.fsencode(path.resolve()).hex()


def _path_of(info: dict[str, Any], key: str) -> Path:
    return Path(os.fsdecode(bytes.fromhex(info[f"{key}_fs"])))


def log_prepared(db: sqlite_utils.Database, subject: str, details: dict[str, Any],
                 staging: Path, bundle: Path) -> dict[str, Any]:
    """Commit the export entry, marked pending, before anything appears at its bundle path."""
    with transaction(db):
        entry = custody.append(db, "export", subject, {**details, "outcome": "logged-separately"})
        db.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                   [f"{PENDING_PREFIX}{entry['seq']}",
                    to_json({"bundle": details["bundle"], "manifest_sha256": details["manifest_sha256"],
                             "bundle_fs": _path_field(bundle), "staging_fs": _path_field(staging)})])
    return entry


def log_outcome(db: sqlite_utils.Database, export_seq: int, later_run: bool) -> dict[str, Any] | None:
    """Record whether export `export_seq`'s bundle is at its path; None if already recorded."""
    with transaction(db):
        pending = one(db, "SELECT value FROM meta WHERE key = ?", [f"{PENDING_PREFIX}{export_seq}"])
        if pending is None:
            return None  # settled by another process meanwhile
        info = json.loads(pending["value"])
        bundle = _path_of(info, "bundle")
        found = bundle_manifest_sha256(bundle)
        published = found == info["manifest_sha256"]
        details: dict[str, Any] = {"export_seq": export_seq, "bundle": info["bundle"],
                                   "manifest_sha256": info["manifest_sha256"]}
        if published:
            details["found"] = "the bundle is at its path" + (", found by a later run (the export was "
                                                               "interrupted after publishing)" if later_run else "")
        else:
            empty = found is None and not bundle.exists() and not bundle.is_symlink()
            details["found"] = "nothing at its path" if empty else "something else at its path (not this bundle)"
            details["reason"] = ("prepared but never published: the export was interrupted"
                                 if later_run else "the bundle could not be put in place")
        event = "export-published" if published else "export-unpublished"
        entry = custody.append(db, event, shown(bundle.name), details)
        db.execute("DELETE FROM meta WHERE key = ?", [f"{PENDING_PREFIX}{export_seq}"])
    return entry


def reconcile(db: sqlite_utils.Database) -> list[str]:
    """Settle the exports a killed process left pending; a line for each."""
    notes = []
    for row in list(db.query("SELECT key, value FROM meta WHERE key LIKE ? ORDER BY key", [f"{PENDING_PREFIX}%"])):
        info = json.loads(row["value"])
        staging = _path_of(info, "staging")
        if _in_progress(staging, _path_of(info, "bundle")):
            continue
        seq = int(row["key"][len(PENDING_PREFIX):])
        entry = log_outcome(db, seq, later_run=True)
        if entry is None:
            continue
        if entry["event"] == "export-published":
            notes.append(f"export of {info['bundle']} (custody-log entry {seq}) was interrupted after "
                         f"publishing; the bundle is in place (custody-log entry {entry['seq']})")
        else:
            notes.append(f"export of {info['bundle']} (custody-log entry {seq}) was prepared but never "
                         f"published; recorded in custody-log entry {entry['seq']}")
        if staging.exists():
            note = remove_abandoned(staging)
            if note:
                notes.append(note)
    return notes


def _in_progress(staging: Path, bundle: Path) -> bool:
    """Its export is still running: its process lives and holds the lock on the staging folder
    (or on the bundle folder, which the staging folder became when it was renamed into place)."""
    match = PARTIAL_RE.match(staging.name)
    if match is None or not _pid_alive(int(match["pid"])):
        return False
    return _locked(staging) or (bundle.is_dir() and _locked(bundle))


def _locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def bundle_manifest_sha256(bundle: Path) -> str | None:
    """SHA-256 of the SHA256SUMS of the bundle at `bundle` (a folder or a .zip), None if unreadable."""
    try:
        if bundle.is_symlink():
            return None
        if bundle.is_dir():
            return hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest()
        if bundle.is_file():
            with zipfile.ZipFile(bundle) as zf:
                return hashlib.sha256(zf.read(f"{bundle.stem}/{MANIFEST_NAME}")).hexdigest()
    except (OSError, KeyError, zipfile.BadZipFile, ValueError):
        return None
    return None
