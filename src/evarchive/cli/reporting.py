"""Commands about reports and their claims: import, reports, claims."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..archive import CATALOGUE_NAME, default_archive_path
from ..queries import witness_corroboration
from .app import app, err, out
from .common import (ArchiveOpt, JsonOpt, QuietOpt, TitleOpt, browsed_archive, claim_where, open_archive,
                     print_json, shorten)

# The report readers (lxml, docx, PDF) are imported inside the commands: `evarchive.reports`
# costs about 35 ms of start-up that `sources`, `verify` or `check` never need.

def print_import_result(result: Any, quiet: bool) -> None:
    for skipped in result.skipped_urls:
        err.print(f"[yellow]skipped[/] {claim_where(skipped)}: {escape(skipped['url'])}: {escape(skipped['reason'])}")
    if quiet:
        return  # an unchanged file is not a problem: a nightly `import --quiet` stays silent
    if result.status == "unchanged":
        err.print(escape(f"unchanged: this file is already imported as {result.title!r} version {result.version}"))
    table = Table(title=escape(f"report {result.report_id}: {result.title}"))
    table.add_column("")
    table.add_column("", justify="right")
    for label, value in (("version", result.version), ("status", result.status),
                         ("claims", result.claims), ("citations", result.citations),
                         ("distinct sources", result.sources),
                         ("sources already archived", result.sources_archived),
                         ("sources new to the catalogue", result.sources_new)):
        table.add_row(label, str(value))
    out.print(table)
    if result.changes is not None:
        print_changes(result.changes, result.previous_version)


_CHANGE_LABELS = (("claims_added", "claim added"), ("claims_removed", "claim removed"),
                  ("claims_edited", "claim edited"), ("citations_added", "citation added"),
                  ("citations_removed", "citation removed"), ("citations_edited", "citation edited"))


def _count(n: int, label: str) -> str:
    noun, verb = label.split(" ")
    return f"{n} {noun}{'' if n == 1 else 's'} {verb}"


def print_changes(changes: dict[str, list[dict[str, Any]]], previous: int | None, limit: int = 50) -> None:
    counts = ", ".join(_count(len(changes[key]), label) for key, label in _CHANGE_LABELS)
    out.print(f"changes since version {previous}: {counts}")
    for key, label in _CHANGE_LABELS:
        for item in changes[key][:limit]:
            out.print(f"  {label}: {escape(_describe_change(key, item))}")
        if len(changes[key]) > limit:
            out.print(f"  ... and {_count(len(changes[key]) - limit, label)} more (--json lists all)")


def _describe_change(key: str, item: dict[str, Any]) -> str:
    if key == "claims_edited":
        old, new = shorten(item["old"]["text"], 80), shorten(item["new"]["text"], 80)
        return f"{claim_where(item['new'])}: {old!r} -> {new!r}"
    if key.startswith("claims"):
        return f"{claim_where(item)}: {shorten(item['text'], 120)!r}"
    if key == "citations_edited":
        return f"{claim_where(item['claim'])}: {item['old_url']} -> {item['url']}"
    return f"{claim_where(item['claim'])}: {item['url']}"


def check_report_before_creating_archive(archive: Path | None, report: Path, max_bytes: int | None) -> Any:
    """Unusable input must not leave a new, empty archive behind: read it before creating one
    (what was read is returned, so that the import does not read it again)."""
    from ..reports import check_report

    if not ((archive or default_archive_path()) / CATALOGUE_NAME).is_file():
        return check_report(report, max_bytes)
    return None


@app.command("import")
def import_cmd(
    report: Annotated[Path, typer.Argument(metavar="REPORT", help="Report file: .txt, .md, .html, .docx or .pdf.")],
    title: TitleOpt = None,
    max_size: Annotated[int | None, typer.Option(metavar="MIB", help="Refuse files larger than this many MiB "
                                                      "(default 32 for text, 256 for docx/PDF).")] = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Import a report: every claim with the URLs it cites. A changed file becomes a new version.

    The same file imported again changes nothing. A changed file with the same --title (or from
    the same path) becomes the next version; the old one is kept, and the claims and citations
    added, removed and edited are printed.

    Exit 0 when imported (or already imported); 2 for a file that cannot be used (unreadable,
    binary, empty, no URLs, encrypted PDF, too large, malformed docx): the catalogue is then
    untouched.
    """
    from ..reports import import_report

    max_bytes = max_size * 2**20 if max_size else None
    prepared = check_report_before_creating_archive(archive, report, max_bytes)
    result = import_report(open_archive(archive).db, report, title, max_bytes, prepared)
    if as_json:
        print_json(result.as_dict())
    else:
        print_import_result(result, quiet)


@app.command("reports")
def reports_cmd(archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """List imported reports with their latest version and how many claims are preserved.

    Exit 0; 2 when there is no archive at the given path.
    """
    from ..reports import list_reports

    arch = browsed_archive(archive)
    rows = list_reports(arch.db, arch.warcs_dir)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} reports")
    for column in ("id", "title", "version", "format", "imported (UTC)", "claims", "preserved",
                   "citations", "sources", "archived"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["id"]), escape(row["title"]), f"{row['version']} of {row['versions']}",
                      row["format"], row["imported_at"][:16].replace("T", " "), str(row["claims"]),
                      str(row["claims_preserved"]), str(row["citations"]), str(row["sources"]),
                      str(row["sources_archived"]))
    out.print(table)


def claims_table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, show_lines=True)
    for column in ("report", "where", "claim", "sources", "preserved"):
        table.add_column(column, overflow="fold")
    for row in rows:
        sources = "\n".join(("\u2713 " if s["preserved"] else "\u2717 ") + escape(s["url"])
                            + (" (capture damaged)" if s.get("damaged") else "")
                            + (f" (captured, but not the page: {escape(s['not_the_page'])})"
                               if s.get("not_the_page") else "")
                            + witness_words(s.get("witness")) for s in row["sources"])
        table.add_row(str(row["report_id"]), claim_where(row), escape(shorten(row["text"], 300)), sources,
                      "[green]yes[/]" if row["preserved"] else "[red]NO[/]")
    return table


def witness_words(witness: dict[str, Any] | None) -> str:
    """How an independent witness's copy compared with our capture, for a claims table."""
    if witness is None:
        return ""
    verdict = witness["corroboration"] or "not compared yet"
    score = witness["similarity"]
    return escape(f" (witness: {verdict}" + (f", similarity {score:.2f})" if score is not None and score < 1 else ")"))


def attach_witnesses(db: Any, rows: list[dict[str, Any]]) -> None:
    """Give every source of claim ``rows`` its ``witness``: the latest archived witness copy and
    its corroboration of our capture, or None."""
    found = witness_corroboration(db, [s["source_id"] for row in rows for s in row["sources"]])
    for row in rows:
        for source in row["sources"]:
            source["witness"] = found.get(source["source_id"])


@app.command("claims")
def claims_cmd(
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Report id, title or path.")] = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List claims (latest version of each report) with their sources, whether each is preserved,
    and whether an independent witness's copy corroborates our capture (`evarchive witness`).

    Exit 0; 2 when the report (or the archive) is unknown.
    """
    from ..reports import report_claims

    arch = browsed_archive(archive)
    rows = report_claims(arch.db, report, arch.warcs_dir)
    attach_witnesses(arch.db, rows)
    if as_json:
        print_json(rows)
        return
    preserved = sum(r["preserved"] for r in rows)
    out.print(claims_table(rows, f"{len(rows)} claims, {preserved} preserved"))

