"""What every command shares: the archive openers, JSON printing, the common options, and how a
claim is shown to people."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..archive import Archive
from ..errors import EvarchiveError, UsageError

ArchiveOpt = Annotated[Path | None, typer.Option(
    "--archive", "-a", envvar="EVARCHIVE_ARCHIVE", metavar="DIR",
    help="Archive directory (default ./archive; env EVARCHIVE_ARCHIVE).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems (for cron).")]
MementosOpt = Annotated[bool, typer.Option(
    "--mementos", help="Also ask public web archives (Memento TimeMaps) for their copies, nearest the moment "
                       "that matters. Off by default: the lookup tells the archives which URLs you care about.")]
TimemapOpt = Annotated[list[str] | None, typer.Option(
    "--timemap", metavar="URL", envvar="EVARCHIVE_TIMEMAPS",
    help="TimeMap URL of an archive or aggregator, {url} standing for the source (repeatable; "
         "default: the archive's `settings timemaps`, else the Internet Archive's).")]
WitnessOpt = Annotated[str | None, typer.Option(
    "--witness", metavar="wayback", envvar="EVARCHIVE_WITNESS",
    help="Also ask an independent archive to capture each page (wayback: the Internet Archive's Save Page "
         "Now; keys in EVARCHIVE_SPN2_KEYS; none: not this run). Never without this option or the archive's "
         "`settings witness`: submitting discloses the URLs.")]
TitleOpt = Annotated[str | None, typer.Option(
    metavar="TITLE", help="Report title; versions of one report share it (default: the file's own title or name).")]
TsaRootsOpt = Annotated[Path | None, typer.Option(
    "--tsa-roots", envvar="EVARCHIVE_TSA_ROOTS",
    help="PEM file of trusted TSA root certificates (default keys/tsa-roots.pem).")]
TsaOpt = Annotated[list[str] | None, typer.Option(
    "--tsa", metavar="URL",
    help="RFC 3161 timestamping authority; repeat for fallbacks, tried in order (default: EVARCHIVE_TSA, "
         "then the list in the archive's keys folder). With one configured, capture, archive and check end "
         "by timestamping the log head (a TSA failure is a finding, which the next run retries).")]


def open_archive(path: Path | None) -> Archive:
    """For commands that add evidence: the archive is created on first use (input validated first)."""
    return Archive.open(path)


def existing_archive(path: Path | None, error: type[EvarchiveError] = UsageError,
                     write: bool = False) -> Archive:
    """Open an archive that must already exist (commands that re-check or export what it holds)."""
    return Archive.existing(path, missing=error, write=write)


def browsed_archive(path: Path | None) -> Archive:
    """An existing archive for a command that only shows what it holds: no damage check on opening
    (its cost grows with the catalogue); damage such a command reads is still exit 3."""
    return Archive.existing(path, check=False)


def timemaps_to_ask(arch: Archive, given: list[str] | None) -> list[str]:
    """The archives a Memento lookup asks: --timemap (or EVARCHIVE_TIMEMAPS), else the archive's
    stored ``timemaps`` setting, else the Internet Archive alone."""
    from ..memento import DEFAULT_TIMEMAPS  # lazy: memento pulls httpx, only a lookup needs it
    from ..settings import TIMEMAPS, stored  # lazy: see configuring.py

    return list(given or stored(arch.db, TIMEMAPS) or DEFAULT_TIMEMAPS)


def json_text(value: Any) -> str:
    """One JSON document; a file name that is not UTF-8 appears as \\udcNN escapes, which JSON
    readers decode back to the same (surrogate-escaped) name instead of failing on the bytes."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def print_json(value: Any) -> None:
    sys.stdout.write(json_text(value) + "\n")


def print_json_lines(values: list[Any]) -> None:
    for value in values:
        sys.stdout.write(json_text(value) + "\n")


def shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def claim_where(row: dict[str, Any]) -> str:
    """A claim's position in a terminal's few columns ("p.3 \u00b62 (line 5)"); the exhibit
    index spells it out in words instead (``export.where``: "p. 3, para. 2, line 5")."""
    where = f"p.{row['page']} \u00b6{row['paragraph']}" if row.get("page") else f"\u00b6{row['paragraph']}"
    return f"{where} (line {row['line']})" if row.get("line") else where

