"""The one exception family evarchive raises; the CLI maps each to an exit code."""

from __future__ import annotations


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


class ArchiveLockedError(CouldNotRunError):
    """Another process holds a lock this command needs."""


def shown(path: object) -> str:
    """A path as it can be printed: bytes that are not UTF-8 appear as \\xNN escapes."""
    import os

    return os.fsencode(path).decode("utf-8", "backslashreplace")  # type: ignore[arg-type]
