"""The one exception family evarchive raises; the CLI maps each to an exit code."""

from __future__ import annotations

import errno
import os
import sqlite3


class EvarchiveError(Exception):
    """Base of every error evarchive reports to a user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(EvarchiveError):
    """The command was called wrongly (bad option, bad URL, missing file)."""

    exit_code = 2


class InputError(EvarchiveError):
    """An input file or value cannot be used (unreadable report, refused URL scheme)."""

    exit_code = 2


class FindingsError(EvarchiveError):
    """The work ran, and found problems (failed captures, broken evidence)."""

    exit_code = 1


class CouldNotRunError(EvarchiveError):
    """The work could not run at all (lock held by another run, archive unusable)."""

    exit_code = 3


class ArchiveWriteError(CouldNotRunError):
    """Writing the archive failed (a full disk, an I/O error): the work stopped, and what it
    committed before the failure is intact. ``reason`` says what failed, for a caller that
    rewords the message (a parallel run counting every worker's captures)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}
SQLITE_FULL, SQLITE_IOERR = 13, 10


def storage_failure(exc: BaseException) -> str | None:
    """What went wrong, when ``exc`` (or what caused it) is the archive's storage failing to
    take a write: a full disk, a quota, a file size limit, an I/O error. None otherwise."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in STORAGE_ERRNOS:
            if seen.errno in (errno.ENOSPC, errno.EDQUOT):
                return f"{seen.strerror}: the disk is full"
            return seen.strerror or str(seen)
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(seen, sqlite3.Error) and code is not None and code & 0xFF == SQLITE_FULL:
            return f"the catalogue could not be written ({seen}): the disk is full"
        if isinstance(seen, sqlite3.Error) and code is not None and code & 0xFF == SQLITE_IOERR:
            return f"the catalogue could not be written ({seen}): the disk is full or failing"
        seen = seen.__cause__ or seen.__context__
    return None


def storage_failure_error(reason: str) -> ArchiveWriteError:
    """The exit-3 error for a command stopped by storage that takes no more writes."""
    return ArchiveWriteError(
        f"writing the archive failed ({reason}); nothing committed before this was lost. Free space "
        "(or fix the disk) and run the command again; `evarchive capture --pending` finishes "
        "interrupted captures.", reason)


class ArchiveLockedError(CouldNotRunError):
    """Another process holds a lock this command needs."""


def shown(path: object) -> str:
    """A path as it can be printed: bytes that are not UTF-8 appear as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")  # type: ignore[arg-type]


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message for a one-line report; its class name when the
    message is empty (ASN.1 decoders raise some errors with no message at all)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
