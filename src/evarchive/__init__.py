"""evarchive: capture, verify and export web evidence cited by reports.

The public library API (the CLI is a thin layer over exactly these)::

    from evarchive import Archive, import_report, capture_urls, verify_archive, export_bundle

    archive = Archive.open("archive")                  # creates it on first use
    result = import_report(archive.db, "report.md", title="Our report 2024")
    outcomes = capture_urls(archive, ["https://example.org/a"])
    assert verify_archive(archive, deep=True).intact
    export_bundle(archive, Path("bundle"), report="Our report 2024")

Errors are the ``EvarchiveError`` family; each carries the CLI's ``exit_code``.
Names are loaded on first use, so ``import evarchive`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_PUBLIC = {
    "Archive": "archive",
    "CaptureSettings": "capture", "CaptureOutcome": "capture", "capture_urls": "capture",
    "import_report": "reports", "ImportResult": "reports",
    "verify_archive": "verify", "VerifyResult": "verify",
    "CheckSettings": "check.settings", "CheckReport": "check.results",
    "select_sources": "check.run", "check_sources": "check.run",
    "export_bundle": "export", "ExportResult": "export",
    "EvarchiveError": "errors", "UsageError": "errors", "InputError": "errors",
    "FindingsError": "errors", "CouldNotRunError": "errors", "ArchiveLockedError": "errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'evarchive' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
