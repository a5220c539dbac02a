"""The archive directory: where the catalogue and the evidence live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from .catalogue import open_database, open_read_only
from .errors import CouldNotRunError, EvarchiveError, UsageError, shown

DEFAULT_ARCHIVE = "archive"
ENV_ARCHIVE = "EVARCHIVE_ARCHIVE"
CATALOGUE_NAME = "catalogue.sqlite"


def default_archive_path() -> Path:
    return Path(os.environ.get(ENV_ARCHIVE) or DEFAULT_ARCHIVE)


@dataclass
class Archive:
    path: Path
    db: sqlite_utils.Database = field(repr=False)
    # True when the archive's storage cannot be written (a read-only mount): readers still work,
    # and whatever they would record (a verification run, an export) is reported as not recorded.
    read_only: bool = False

    @classmethod
    def open(cls, path: Path | str | None = None) -> Archive:
        """Open (creating on first use) the archive at ``path`` or the default location.

        For commands that add evidence. Their input must already be validated: a refused command
        leaves nothing behind.
        """
        root = _root(path)
        if _has_catalogue(root):
            return cls._open_existing(root, write=True)
        _refuse_lost_catalogue(root)
        try:
            for sub in ("", "warcs", "tmp", "locks"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create archive at {shown(root)}: {exc.strerror}") from None
        return cls(path=root, db=open_database(root / CATALOGUE_NAME, create=True))

    @classmethod
    def existing(cls, path: Path | str | None = None, *, missing: type[EvarchiveError] = UsageError,
                 write: bool = False, check: bool = True) -> Archive:
        """Open an archive that must already exist; ``missing`` is raised when there is none.

        Creating one at a mistyped path would print an empty, all-is-well answer, which a cron
        job would then repeat every night without anyone noticing. Readers (``write=False``)
        also work on a read-only archive, and those that only browse may skip the catalogue's
        damage check (``check=False``): writers never do.
        """
        root = _root(path)
        if not _has_catalogue(root):
            _refuse_lost_catalogue(root)
            raise missing(f"no archive at {shown(root)}: give --archive DIR or set {ENV_ARCHIVE} "
                          "(`evarchive archive`, `import` and `capture` create one)")
        return cls._open_existing(root, write=write, check=write or check)

    @classmethod
    def _open_existing(cls, root: Path, *, write: bool, check: bool = True) -> Archive:
        catalogue = root / CATALOGUE_NAME
        if _writable(root) and _writable(catalogue):
            return cls(path=root, db=open_database(catalogue, check=check))
        if write:
            raise CouldNotRunError(f"the archive at {shown(root)} is read-only: this command writes "
                                   "to it (mount it read-write)")
        return cls(path=root, db=open_read_only(catalogue, check=check), read_only=True)

    @property
    def warcs_dir(self) -> Path:
        return self.path / "warcs"

    @property
    def tmp_dir(self) -> Path:
        return self.path / "tmp"

    @property
    def locks_dir(self) -> Path:
        return self.path / "locks"

    @property
    def keys_dir(self) -> Path:
        """Private keys (mode 0600) and their public halves: never in the catalogue."""
        return self.path / "keys"

    def close(self) -> None:
        self.db.conn.close()


def _root(path: Path | str | None) -> Path:
    root = Path(path) if path is not None else default_archive_path()
    if root.exists() and not root.is_dir():
        raise UsageError(f"archive path {shown(root)} exists and is not a directory")
    return root


def _writable(path: Path) -> bool:
    """False on a read-only mount (access(2) says so even to root) or for a read-only file."""
    return os.access(path, os.W_OK)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _has_catalogue(root: Path) -> bool:
    """A catalogue with content: a new database's first commits may still be only in its WAL."""
    catalogue = root / CATALOGUE_NAME
    if not catalogue.is_file():
        return False
    return _size(catalogue) > 0 or _size(catalogue.with_name(CATALOGUE_NAME + "-wal")) > 0


def _refuse_lost_catalogue(root: Path) -> None:
    """A missing or empty catalogue is never re-created over an archive that holds anything.

    A new, empty catalogue would call every existing WARC file unknown and start a new custody
    log, hiding that the record of the evidence was lost.
    """
    catalogue = root / CATALOGUE_NAME
    try:
        warcs = sum(1 for _ in (root / "warcs").iterdir()) if (root / "warcs").is_dir() else 0
    except OSError:
        warcs = 0
    empty = catalogue.is_file()
    if not (warcs or empty):
        return
    state = "is empty (0 bytes)" if empty else "is missing"
    beside = f" beside {warcs} file(s) in {shown(root / 'warcs')}" if warcs else ""
    advice = ("Restore catalogue.sqlite from a backup; evarchive will not create a new one, which "
              "would disown that evidence and start a new custody log." if warcs else
              "Restore catalogue.sqlite from a backup, or, if this archive never held anything, "
              "delete the empty file and run the command again.")
    raise CouldNotRunError(f"the catalogue {shown(catalogue)} {state}{beside}. {advice}")
