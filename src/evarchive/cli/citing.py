"""`evarchive cite`: a report's citations as Robust Links, for the next edition."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import UsageError
from .app import app
from .common import ArchiveOpt, browsed_archive


@app.command()
def cite(
    report: Annotated[str, typer.Option("--report", "-r", metavar="REPORT",
                                        help="The report whose citations to print (id, title or path).")],
    fmt: Annotated[str, typer.Option("--format", metavar="html|markdown|csv",
                                     help="html: Robust Links; markdown: links with the archived copy beside "
                                          "them; csv: one row a citation.")] = "html",
    archive: ArchiveOpt = None,
) -> None:
    """Print a report's citations as Robust Links: each URL as cited, with a public copy (an
    independent witness, see `evarchive witness`) and its date, to paste into the next edition.

    Exit 0; 2 for an unknown report or format.
    """
    from ..robustlinks import FORMATS, render, report_citations  # lazy: it reads reports (see reporting.py)

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    arch = browsed_archive(archive)
    sys.stdout.write(render(report_citations(arch.db, arch.warcs_dir, report), fmt))
