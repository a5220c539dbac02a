"""The archive directory: where the catalogue and the evidence live."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from .catalogue import open_database
from .errors import UsageError

DEFAULT_ARCHIVE = "archive"
ENV_ARCHIVE = "EVARCHIVE_ARCHIVE"
CATALOGUE_NAME = "catalogue.sqlite"


def default_archive_path() -> Path:
    return Path(os.environ.get(ENV_ARCHIVE) or DEFAULT_ARCHIVE)


@dataclass
class Archive:
    path: Path
    db: sqlite_utils.Database = field(repr=False)

    @classmethod
    def open(cls, path: Path | str | None = None) -> Archive:
        """Open (creating on first use) the archive at ``path`` or the default location."""
        root = Path(path) if path is not None else default_archive_path()
        if root.exists() and not root.is_dir():
            raise UsageError(f"archive path {root} exists and is not a directory")
        try:
            for sub in ("", "warcs", "tmp", "locks"):
                (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create archive at {root}: {exc.strerror}") from None
        return cls(path=root, db=open_database(root / CATALOGUE_NAME))

    @property
    def warcs_dir(self) -> Path:
        return self.path / "warcs"

    @property
    def tmp_dir(self) -> Path:
        return self.path / "tmp"

    @property
    def locks_dir(self) -> Path:
        return self.path / "locks"

    def close(self) -> None:
        self.db.conn.close()
