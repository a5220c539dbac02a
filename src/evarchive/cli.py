"""The evarchive command line: parse, call the library, print. Nothing else lives here.

Data goes to stdout (tables for people, ``--json`` for scripts); messages and progress go to
stderr. Every ``EvarchiveError`` is turned into a message and an exit code in ``main()``:
0 ok, 1 findings, 2 usage or bad input, 3 could not run.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import __version__
from .archive import Archive
from .errors import EvarchiveError, FindingsError, UsageError, storage_failure, storage_failure_error

app = typer.Typer(
    name="evarchive",
    help="Preserve the web pages a report cites, prove they were not altered, watch the live web "
         "for link rot, and export the evidence for a court.\n\n"
         "Exit codes (every command): 0 ok; 1 findings (a failed capture, broken evidence, a claim "
         "left without a preserved source, a source newly dead or drifted); 2 usage error or unusable "
         "input (nothing is written); 3 the work could not run (another run holds the lock, no "
         "archive, no network).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ArchiveOpt = Annotated[Path | None, typer.Option(
    "--archive", "-a", envvar="EVARCHIVE_ARCHIVE", metavar="DIR",
    help="Archive directory (default ./archive; env EVARCHIVE_ARCHIVE).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only problems (for cron).")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", metavar="auto|browser|http", show_default=False,
    help="browser: load each page in Chromium and record every sub-resource, with screenshots, PDF "
         "and rendered page; http: fetch the document only; auto (default, or EVARCHIVE_ENGINE): "
         "the browser when Chromium is found.")]
ChromiumOpt = Annotated[str | None, typer.Option(
    "--chromium", metavar="PATH", show_default=False,
    help="The Chromium executable (default: EVARCHIVE_CHROMIUM, then chromium on PATH).")]


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


def version_callback(value: bool) -> None:
    if value:
        out.print(f"evarchive {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option("--version", callback=version_callback,
                                               is_eager=True, help="Show the version and exit.")] = False
         ) -> None:
    """evarchive: the command line (its help is the Typer app's ``help`` above)."""


# --------------------------------------------------------------------------- capture

def _parse_resolve(values: list[str]) -> dict[str, tuple[str, int]]:
    mapping = {}
    for value in values:
        try:
            host, address, port = value.rsplit(":", 2)
            mapping[host] = (address, int(port))
        except ValueError:
            raise UsageError(f"--resolve wants HOST:ADDRESS:PORT, not {value!r}") from None
    return mapping


def capture_settings(concurrency: int, per_host: int, timeout: float, read_timeout: float,
                     connect_timeout: float, max_body: int, retries: int, user_agent: str | None,
                     proxy: str | None, insecure: bool, ca_file: Path | None,
                     resolve: list[str], warc_size: int, workers: int | None = None) -> Any:
    from .capture import DEFAULT_USER_AGENT, CaptureSettings

    return CaptureSettings(  # validates every value (UsageError)
        concurrency=concurrency, per_host=per_host, total_timeout=timeout,
        read_timeout=read_timeout, connect_timeout=connect_timeout, max_body=max_body,
        retries=retries, user_agent=user_agent or DEFAULT_USER_AGENT, proxy=proxy,
        insecure=insecure, ca_file=str(ca_file) if ca_file else None,
        resolve=_parse_resolve(resolve), max_warc_size=warc_size, workers=workers)


def run_captures(archive: Archive, urls: list[str], settings: Any, quiet: bool,
                 as_json: bool, engine: str | None = None, chromium: str | None = None) -> list[Any]:
    """Recover from an interrupted run, then capture with a progress bar on stderr."""
    from .browser import BrowserSettings, capture_with_browser, choose_engine, reap_orphans
    from .capture import capture_urls, recover

    choice = choose_engine(engine, chromium)
    if choice.notice and urls:
        err.print(f"[yellow]note:[/] {choice.notice}")
    orphans = reap_orphans(archive)
    if orphans:
        err.print(f"[yellow]notice:[/] an interrupted run left {len(orphans)} Chromium processes "
                  f"running (pids {', '.join(map(str, orphans))}); ended them")

    for found in recover(archive):
        err.print(f"[yellow]notice:[/] {found.name} was left open by an interrupted run; sealed it"
                  + (f" ({found.tail} unreferenced bytes after the last committed record)"
                     if found.tail else ""))
    if not urls:
        if not quiet:
            err.print("nothing to capture")
        return []
    show_bar = not quiet and err.is_terminal
    # No refresh thread: large runs fork worker processes, which must not inherit threads.
    with Progress(TextColumn("capturing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show_bar, transient=True, auto_refresh=False) as progress:
        task = progress.add_task("capture", total=len(urls))

        def on_result(outcome: Any) -> None:
            progress.advance(task)
            progress.refresh()
            if as_json:
                print_json(outcome.as_dict())
                sys.stdout.flush()

        if choice.engine == "browser":
            assert choice.chromium is not None
            return capture_with_browser(archive, urls, settings, BrowserSettings(chromium=choice.chromium),
                                        on_result)
        return capture_urls(archive, urls, settings, on_result)


def print_capture_summary(outcomes: list[Any], quiet: bool) -> None:
    counts = Counter(o.status for o in outcomes)
    failures = Counter(o.error_class for o in outcomes if o.status == "failed")
    if not quiet:
        table = Table(title="capture summary")
        table.add_column("result")
        table.add_column("count", justify="right")
        table.add_row("captured", str(counts.get("captured", 0)))
        table.add_row("revisited (identical payload)", str(counts.get("revisited", 0)))
        table.add_row("failed", str(counts.get("failed", 0)))
        for reason, count in failures.most_common():
            table.add_row(f"  failed: {reason}", str(count))
        err.print(table)
    for o in outcomes:
        if o.status == "failed":
            err.print(f"[red]failed[/] {o.url}: {o.error_class}: {o.error_message}")
        for finding in getattr(o, "findings", ()):  # kept in the capture's metadata and custody entry
            err.print(f"[yellow]finding[/] {escape(finding)}")
        if getattr(o, "wall", None):
            err.print(f"[yellow]wall[/] {o.url}: {escape(o.wall)} (captured as it is: not the article)")


@app.command()
def capture(
    urls: Annotated[list[str] | None, typer.Argument(help="URLs to capture.", show_default=False)] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="File with one URL a line.")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Every known source without a good capture.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Every known source, captured anew.")] = False,
    concurrency: Annotated[int, typer.Option(help="Total simultaneous requests.")] = 48,
    per_host: Annotated[int, typer.Option(help="Simultaneous requests per host (browsers use 6).")] = 6,
    timeout: Annotated[float, typer.Option(help="Total seconds per capture, redirects included.")] = 300.0,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect.")] = 15.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds of silence before giving up a read.")] = 30.0,
    max_body: Annotated[int, typer.Option(help="Bytes kept per body; longer bodies are kept up to this and "
                                               "recorded as truncated.")] = 1 << 30,
    retries: Annotated[int, typer.Option(help="Retries for connection errors, 5xx and 429.")] = 3,
    user_agent: Annotated[str | None, typer.Option(help="User-Agent header (default names evarchive).")] = None,
    proxy: Annotated[str | None, typer.Option(help="Proxy URL: http://, https:// or socks5://.")] = None,
    insecure: Annotated[bool, typer.Option(help="Capture even when the TLS certificate is invalid "
                                                "(recorded in the provenance).")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="Trust these CA certificates (PEM).")] = None,
    resolve: Annotated[list[str] | None, typer.Option(
        metavar="HOST:ADDRESS:PORT",
        help="Connect to ADDRESS:PORT for HOST, without touching /etc/hosts (repeatable).")] = None,
    warc_size: Annotated[int, typer.Option(help="Start a new WARC file past this size.")] = 1 << 30,
    workers: Annotated[int | None, typer.Option(
        help="Processes for large runs (default: one per core, at most 2; hosts are split "
             "between them).")] = None,
    engine: EngineOpt = None,
    chromium: ChromiumOpt = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Capture URLs to WARC files and record every attempt in the catalogue.

    Exit 0 when every URL was captured, 1 when any failed or the browser engine found a request
    it could not account for (all in the catalogue), 2 for usage errors (refused URLs: nothing is
    written), 3 when --engine browser finds no Chromium.
    """
    from .capture import read_url_list, select_urls

    if not (urls or from_file or pending or everything):
        raise UsageError("give URLs, --from FILE, --pending or --all")
    settings = capture_settings(concurrency, per_host, timeout, read_timeout, connect_timeout,
                                max_body, retries, user_agent, proxy, insecure, ca_file,
                                resolve or [], warc_size, workers)
    given = read_url_list(urls or [], from_file)
    arch = open_archive(archive) if given else existing_archive(archive, write=True)
    chosen = select_urls(arch, given, None, pending, everything)
    outcomes = run_captures(arch, chosen, settings, quiet, as_json, engine, chromium)
    if not as_json:
        print_capture_summary(outcomes, quiet)
    failed = sum(o.status == "failed" for o in outcomes)
    if failed:
        raise FindingsError(f"{failed} of {len(outcomes)} captures failed")
    unaccounted = sum(bool(getattr(o, "findings", None)) for o in outcomes)
    if unaccounted:
        raise FindingsError(f"{unaccounted} of {len(outcomes)} captures have unaccounted requests")


# --------------------------------------------------------------------------- browsing

@app.command()
def sources(archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """List every source the catalogue knows, with its captures.

    Exit 0; 2 when there is no archive at the given path.
    """
    from .catalogue import source_summaries

    rows = source_summaries(browsed_archive(archive).db)
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} sources")
    for column in ("id", "url", "ok", "failed", "last capture", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(str(row["id"]), row["url"], str(row["captures_ok"] or 0),
                      str(row["captures_failed"] or 0), row["last_capture"] or "-",
                      row["last_error"] or "")
    out.print(table)


def source_details(arch: Archive, url: str) -> dict[str, Any]:
    """Everything ``show`` prints about one source; other concerns add their sections here."""
    from .catalogue import captures_of, find_source

    source = find_source(arch.db, url)
    if source is None:
        raise UsageError(f"no source {url!r} in the catalogue")
    from .reports import claims_citing

    from .linkcheck import recent_checks

    return {"source": source, "captures": captures_of(arch.db, source["id"]),
            "claims": claims_citing(arch.db, source["id"]),
            "checks": recent_checks(arch.db, source["id"])}


@app.command()
def show(url: Annotated[str, typer.Argument(metavar="URL", help="A source URL as cited (or any spelling of it).")],
         archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """Show what the catalogue knows about one source: every capture and its provenance, the
    claims that cite it, and its latest live checks.

    Exit 0; 2 when the source (or the archive) is unknown.
    """
    details = source_details(browsed_archive(archive), url)
    if as_json:
        print_json(details)
        return
    source = details["source"]
    out.print(f"[bold]{escape(source['url'])}[/]  (source {source['id']}, normalised "
              f"{escape(source['normalised'])})")
    table = Table(title="captures")
    for column in ("id", "started (UTC)", "result", "HTTP", "final URL", "payload sha256"):
        table.add_column(column, overflow="fold")
    for cap in details["captures"]:
        result = (cap["kind"] or "-") if cap["status"] == "ok" else f"failed: {cap['error_class']}"
        table.add_row(str(cap["id"]), cap["started_at"], result, str(cap["http_status"] or "-"),
                      cap["final_url"] or "-", (cap["payload_sha256"] or "-")[:16])
    out.print(table)
    good = [c for c in details["captures"] if c["status"] == "ok"]
    if good:
        print_provenance(good[-1])
    if details.get("claims"):
        print_citing_claims(details["claims"])
    if details.get("checks"):
        print_check_history(details["checks"])
    for extra in details:
        if extra not in ("source", "captures", "claims", "checks") and details[extra]:
            out.print(f"[bold]{extra}[/]")
            for item in details[extra]:
                out.print(f"  {item}")


def print_provenance(cap: dict[str, Any]) -> None:
    """The provenance of one capture, as a court would read it."""
    table = Table(title=f"provenance of capture {cap['id']} (the latest good one)", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    chain = " -> ".join(f"{hop['url']} [{hop['status']}]" for hop in cap.get("redirect_chain") or [])
    rows = [
        ("captured (UTC)", f"{cap['started_at']} to {cap['ended_at']}"),
        ("redirect chain", chain or "-"),
        ("server", f"{cap['server_ip']}:{cap['server_port']}" if cap["server_ip"]
         else ("via a proxy" if cap["proxy_used"] else "-")),
        ("HTTP", f"{cap['http_version']} {cap['http_status']}  {cap['content_type'] or ''}"),
        ("payload", f"{cap['payload_size']} bytes, sha256 {cap['payload_sha256']}"
         + ("  (TRUNCATED at the size limit)" if cap["truncated"] else "")),
    ]
    if cap["tls_version"]:
        validated = {1: "validated", 0: "NOT validated"}.get(cap["cert_validated"], "unknown")
        rows += [("TLS", f"{cap['tls_version']} {cap['tls_cipher']}"),
                 ("certificate", f"leaf sha256 {cap['cert_sha256']}, {validated}"
                  + (" (captured with --insecure)" if cap["insecure"] else ""))]
    if cap.get("engine") == "browser":
        rows.append(("engine", "browser (Chromium; every request recorded, screenshots and PDF)"))
        for label, key in (("findings", "findings"), ("cut short", "steps")):
            for item in json.loads(cap[key]) if cap.get(key) else []:
                rows.append((label, item))
        if cap.get("wall"):
            rows.append(("wall", f"{cap['wall']} (captured as it is: not the article)"))
    rows.append(("WARC file", cap["warc_file"] or "-"))
    for rec in cap.get("records") or []:
        rows.append((f"  {rec['record_type']}", f"offset {rec['offset']}, length {rec['length']}, "
                     f"{rec['record_id']}"))
    for field, value in rows:
        table.add_row(field, value)
    out.print(table)


# --------------------------------------------------------------------------- reports and claims

def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _where(row: dict[str, Any]) -> str:
    """A claim's position for people: page and paragraph, and the line in text files."""
    where = f"p.{row['page']} \u00b6{row['paragraph']}" if row.get("page") else f"\u00b6{row['paragraph']}"
    return f"{where} (line {row['line']})" if row.get("line") else where


def print_citing_claims(rows: list[dict[str, Any]]) -> None:
    table = Table(title="claims citing this source", show_lines=True)
    for column in ("report", "version", "where", "claim", "cited as"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cited = row["cited_as"] + (f" (note {row['note']})" if row.get("note") else "")
        table.add_row(escape(f"{row['report_id']}: {row['report']}"), str(row["version"]), _where(row),
                      escape(_short(row["text"], 300)), escape(cited))
    out.print(table)


def print_import_result(result: Any, quiet: bool) -> None:
    for skipped in result.skipped_urls:
        err.print(f"[yellow]skipped[/] {_where(skipped)}: {escape(skipped['url'])}: {escape(skipped['reason'])}")
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
        return f"{_where(item['new'])}: {_short(item['old']['text'], 80)!r} -> {_short(item['new']['text'], 80)!r}"
    if key.startswith("claims"):
        return f"{_where(item)}: {_short(item['text'], 120)!r}"
    if key == "citations_edited":
        return f"{_where(item['claim'])}: {item['old_url']} -> {item['url']}"
    return f"{_where(item['claim'])}: {item['url']}"


def check_report_before_creating_archive(archive: Path | None, report: Path, max_bytes: int | None) -> None:
    """Unusable input must not leave a new, empty archive behind: read it before creating one."""
    from .archive import CATALOGUE_NAME, default_archive_path
    from .reports import check_report

    if not ((archive or default_archive_path()) / CATALOGUE_NAME).is_file():
        check_report(report, max_bytes)


@app.command("import")
def import_cmd(
    report: Annotated[Path, typer.Argument(metavar="REPORT", help="Report file: .txt, .md, .html, .docx or .pdf.")],
    title: Annotated[str | None, typer.Option(metavar="TITLE", help="Report title; versions of one report share it "
                                                   "(default: the file's own title or name).")] = None,
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
    from .reports import import_report

    max_bytes = max_size * 2**20 if max_size else None
    check_report_before_creating_archive(archive, report, max_bytes)
    result = import_report(open_archive(archive).db, report, title, max_bytes)
    if as_json:
        print_json(result.as_dict())
    else:
        print_import_result(result, quiet)


@app.command("reports")
def reports_cmd(archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """List imported reports with their latest version and how many claims are preserved.

    Exit 0; 2 when there is no archive at the given path.
    """
    from .reports import list_reports

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
                               if s.get("not_the_page") else "") for s in row["sources"])
        table.add_row(str(row["report_id"]), _where(row), escape(_short(row["text"], 300)), sources,
                      "[green]yes[/]" if row["preserved"] else "[red]NO[/]")
    return table


@app.command("claims")
def claims_cmd(
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Report id, title or path.")] = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List claims (latest version of each report) with their sources and whether each is preserved.

    Exit 0; 2 when the report (or the archive) is unknown.
    """
    from .reports import report_claims

    arch = browsed_archive(archive)
    rows = report_claims(arch.db, report, arch.warcs_dir)
    if as_json:
        print_json(rows)
        return
    preserved = sum(r["preserved"] for r in rows)
    out.print(claims_table(rows, f"{len(rows)} claims, {preserved} preserved"))


@app.command("archive")
def archive_cmd(
    report: Annotated[Path, typer.Argument(metavar="REPORT", help="Report file: .txt, .md, .html, .docx or .pdf.")],
    title: Annotated[str | None, typer.Option(metavar="TITLE", help="Report title; versions of one "
                                                                    "report share it.")] = None,
    concurrency: Annotated[int, typer.Option(help="Total simultaneous requests.")] = 48,
    per_host: Annotated[int, typer.Option(help="Simultaneous requests per host (browsers use 6).")] = 6,
    timeout: Annotated[float, typer.Option(help="Total seconds per capture, redirects included.")] = 300.0,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect.")] = 15.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds of silence before giving up a read.")] = 30.0,
    max_body: Annotated[int, typer.Option(help="Bytes kept per body (longer ones are recorded as "
                                               "truncated).")] = 1 << 30,
    retries: Annotated[int, typer.Option(help="Retries for connection errors, 5xx and 429.")] = 3,
    user_agent: Annotated[str | None, typer.Option(help="User-Agent header (default names evarchive).")] = None,
    proxy: Annotated[str | None, typer.Option(help="Proxy URL: http://, https:// or socks5://.")] = None,
    insecure: Annotated[bool, typer.Option(help="Capture even when the TLS certificate is invalid.")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="Trust these CA certificates (PEM).")] = None,
    resolve: Annotated[list[str] | None, typer.Option(
        metavar="HOST:ADDRESS:PORT",
        help="Connect to ADDRESS:PORT for HOST, without touching /etc/hosts (repeatable).")] = None,
    warc_size: Annotated[int, typer.Option(help="Start a new WARC file past this size.")] = 1 << 30,
    workers: Annotated[int | None, typer.Option(
        help="Processes for large runs (default: one per core, at most 2; hosts are split "
             "between them).")] = None,
    engine: EngineOpt = None,
    chromium: ChromiumOpt = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The main job: import a report, capture every source not yet preserved, report per claim.

    Exit 0 when every claim has at least one preserved source; 1 when any claim has none (the
    failed captures are in the catalogue: run it again later); 2 for a report that cannot be used
    (nothing is imported or captured).
    """
    from .reports import claims_of_version, import_report, sources_to_capture

    settings = capture_settings(concurrency, per_host, timeout, read_timeout, connect_timeout,
                                max_body, retries, user_agent, proxy, insecure, ca_file,
                                resolve or [], warc_size, workers)
    check_report_before_creating_archive(archive, report, None)
    arch = open_archive(archive)
    result = import_report(arch.db, report, title)
    if not as_json and not quiet:
        err.print(escape(f"imported {result.title!r} version {result.version} ({result.status}): "
                         f"{result.claims} claims, {result.citations} citations, {result.sources} sources"))
    outcomes = run_captures(arch, sources_to_capture(arch.db, result.version_id, arch.warcs_dir), settings,
                            quiet, False, engine, chromium)
    if not as_json and outcomes:
        print_capture_summary(outcomes, quiet)
    claims = [{"report_id": result.report_id, **c}
              for c in claims_of_version(arch.db, result.version_id, arch.warcs_dir)]
    lost = [c for c in claims if not c["preserved"]]
    if as_json:
        print_json({"import": result.as_dict(), "captures": [o.as_dict() for o in outcomes],
                    "claims": claims, "preserved": len(claims) - len(lost), "unpreserved": len(lost)})
    elif not quiet:
        out.print(claims_table(claims, escape(f"{result.title}: {len(claims) - len(lost)} of {len(claims)} "
                                              "claims preserved")))
    if lost:
        for claim in lost if quiet else []:
            err.print(f"[red]not preserved[/] {_where(claim)}: {escape(_short(claim['text'], 100))}")
        raise FindingsError(f"{len(lost)} of {len(claims)} claims have no preserved source")


# --------------------------------------------------------------------------- entry point

# --------------------------------------------------------------------------- verify, log, keys, timestamp (issue 4)

def print_verify_result(result: Any, quiet: bool) -> None:
    if result.failures:
        table = Table(title=f"{len(result.failures)} problem(s) found", title_justify="left")
        for col in ("problem", "where", "source", "claims"):
            table.add_column(col, overflow="fold")
        for p in result.failures:
            where = " ".join(x for x in (
                p.file or "", f"@{p.offset}" if p.offset is not None else "", p.record_id or "",
                f"check {p.check_id}" if p.check_id is not None else "",
                f"log #{p.log_seq}" if p.log_seq is not None else "",
                f"{p.table}.{p.column}" if p.column else "") if x)
            table.add_row(p.message, where, p.url or "", "; ".join(p.claims))
        out.print(table)
    if quiet:
        return
    for n in result.notes:
        err.print(f"[cyan]note:[/] {n.message}")
    speed = result.bytes / result.seconds / 1e6 if result.seconds else 0.0
    state = "[green]intact[/]" if result.intact else "[red]PROBLEMS[/]"
    err.print(f"{state}: {result.mode} verification of {result.files} file(s), "
              f"{result.bytes / 1e6:.1f} MB" + (f", {result.records} records" if result.mode == "deep" else "")
              + f" in {result.seconds:.2f} s ({speed:.0f} MB/s); log head {result.log_head}")


@app.command()
def verify(
    urls: Annotated[list[str] | None, typer.Argument(help="Verify only the evidence of these sources.")] = None,
    deep: Annotated[bool, typer.Option("--deep", help="Also inflate and parse every record and check every "
                                       "digest and catalogue row against it.")] = False,
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Only the evidence a report cites (id, title or "
                                                    "path).")] = None,
    public_key: Annotated[list[Path] | None, typer.Option(
        "--public-key", help="Trusted Ed25519 public key (PEM) for log signatures; default keys/*.pub.")] = None,
    tsa_roots: Annotated[Path | None, typer.Option(
        "--tsa-roots", envvar="EVARCHIVE_TSA_ROOTS",
        help="PEM file of trusted TSA root certificates; default keys/tsa-roots.pem.")] = None,
    archive: ArchiveOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Check that every WARC file, record, catalogue row, log entry and timestamp is intact.

    Exit 0 when everything is intact, 1 when anything is not (each problem names the file,
    offset, record, source URL and the claims that depend on it), 2 for usage errors.
    """
    from .signing import trusted_public_keys
    from .verify import verify_archive

    arch = existing_archive(archive)
    result = verify_archive(arch, deep=deep, report=report, urls=urls or [],
                            tsa_roots=tsa_roots_if_any(arch, tsa_roots),
                            public_keys=trusted_public_keys(arch, public_key))
    if as_json:
        print_json(result.as_dict())
    else:
        print_verify_result(result, quiet)
    if not result.intact:
        raise FindingsError(f"{len(result.failures)} problem(s): the evidence is not intact")


def tsa_roots_if_any(arch: Archive, given: Path | None) -> Any:
    """Configured TSA roots, loading the ASN.1 stack (0.2 s of imports) only when there are some."""
    import os

    if not (given or os.environ.get("EVARCHIVE_TSA_ROOTS") or (arch.path / "keys" / "tsa-roots.pem").exists()):
        return None
    from .timestamping import configured_roots

    return configured_roots(arch, given)


@app.command("log")
def log_cmd(
    head: Annotated[bool, typer.Option(
        "--head", help="Print only the current head hash (to write down or publish).")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the newest N entries.")] = None,
    archive: ArchiveOpt = None, as_json: JsonOpt = False,
) -> None:
    """Print the hash-chained custody log (every event that touched the evidence)."""
    from . import custody

    arch = browsed_archive(archive)
    if head:
        last = custody.head(arch.db)
        seq, digest = (last["seq"], last["entry_hash"]) if last else (0, custody.GENESIS_HASH)
        if as_json:
            print_json({"seq": seq, "entry_hash": digest, "at": last["at"] if last else None})
        else:
            out.print(f"{seq} {digest}")
        return
    rows = custody.entries(arch.db)
    if limit is not None:
        rows = rows[-limit:]
    if as_json:
        print_json_lines([{**r, "details": json.loads(r["details"])} for r in rows])
        return
    table = Table()
    for col in ("seq", "at", "event", "subject", "entry hash", "signed"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(str(r["seq"]), r["at"], r["event"], r["subject"] or "", r["entry_hash"][:16],
                      "yes" if r["signature"] else "")
    out.print(table)


keys_app = typer.Typer(help="Ed25519 keys that sign the custody log.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(
    path: Annotated[Path | None, typer.Option(
        "--path", help="Where to write the private key (default ARCHIVE/keys/custody-ed25519.key).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key file.")] = False,
    archive: ArchiveOpt = None, as_json: JsonOpt = False,
) -> None:
    """Make an Ed25519 key pair; from now on every custody-log entry is signed with it."""
    from .signing import introduce_key

    arch = open_archive(archive)
    pair = introduce_key(arch, path, overwrite=force)
    info = {"key_id": pair.key_id, "private_key": str(pair.private_path), "public_key": str(pair.public_path)}
    if as_json:
        print_json(info)
        return
    out.print(f"key {pair.key_id}\nprivate key (mode 0600, keep it safe): {pair.private_path}\n"
              f"public key (give it to whoever verifies): {pair.public_path}")
    if path is not None:
        err.print(f"set EVARCHIVE_SIGNING_KEY={pair.private_path} if you move the private key")


@keys_app.command("sign-pending")
def keys_sign_pending(
    path: Annotated[Path | None, typer.Option("--path", help="The private key file.")] = None,
    archive: ArchiveOpt = None,
) -> None:
    """Sign the log entries written while the private key was not available."""
    from . import custody, signing

    arch = existing_archive(archive, write=True)
    row = custody.active_key(arch.db)
    if row is None:
        raise UsageError("no signing key is in force (run evarchive keys generate)")
    key_path = path or custody.private_key_path(arch.db, row)
    if key_path is None:
        raise UsageError("cannot find the private key; pass --path")
    count = custody.sign_pending(arch.db, signing.load_private(key_path))
    out.print(f"signed {count} entries")


@app.command()
def timestamp(
    tsa: Annotated[list[str] | None, typer.Option(
        "--tsa", help="RFC 3161 TSA URL; repeat for fallbacks, tried in order (env EVARCHIVE_TSA, "
        "or keys/tsa-urls.txt).")] = None,
    tsa_roots: Annotated[Path | None, typer.Option(
        "--tsa-roots", envvar="EVARCHIVE_TSA_ROOTS",
        help="PEM file of trusted TSA roots (default keys/tsa-roots.pem).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each TSA.")] = 30.0,
    archive: ArchiveOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Get a trusted RFC 3161 timestamp over the custody-log head (covers every capture so far)."""
    from .timestamping import configured_roots, configured_tsas, stamp_archive

    arch = existing_archive(archive, write=True)
    urls = configured_tsas(arch, tsa or [])
    if not urls:
        raise UsageError("no TSA configured: pass --tsa URL (or set EVARCHIVE_TSA)")
    row = stamp_archive(arch, urls, configured_roots(arch, tsa_roots), timeout=timeout)
    if as_json:
        print_json(row)
        return
    for url, why in row["failures"]:
        err.print(f"[yellow]warning:[/] {url}: {why}")
    if not row["anchored"]:
        err.print("[yellow]warning:[/] no TSA roots configured: the token's chain is not anchored yet")
    if not quiet:
        out.print(f"timestamp {row['id']}: log entry {row['covers_seq']} ({row['digest'][:16]}...) "
                  f"stamped by {row['tsa_subject']} at {row['gen_time']} via {row['tsa_url']}")


# --------------------------------------------------------------------------- check, diff, rot (issue 5)

VERDICT_COLOURS = {"ok": "green", "drifted": "yellow", "moved": "cyan", "gone": "red",
                   "soft-404": "red", "blocked": "magenta", "unreachable": "red"}


def check_settings(concurrency: int, per_host: int, timeout: float, connect_timeout: float,
                   read_timeout: float, retries: int, user_agent: str | None, proxy: str | None,
                   insecure: bool, ca_file: Path | None, resolve: list[str], strikes: int,
                   min_interval: str, drift_threshold: float, head: str, probe: bool,
                   evidence: str, recapture: bool, workers: int | None = None) -> Any:
    from dataclasses import replace

    from .capture import DEFAULT_USER_AGENT
    from .linkcheck import CheckSettings, StrikeRule, _check_capture_settings, parse_interval

    try:
        interval = parse_interval(min_interval)
    except ValueError as exc:
        raise UsageError(f"--min-interval: {exc}") from None
    network = replace(
        _check_capture_settings(), concurrency=concurrency, per_host=per_host,
        total_timeout=timeout, connect_timeout=connect_timeout, read_timeout=read_timeout,
        retries=retries, user_agent=user_agent or DEFAULT_USER_AGENT, proxy=proxy,
        insecure=insecure, ca_file=str(ca_file) if ca_file else None,
        resolve=_parse_resolve(resolve), workers=workers)
    return CheckSettings(network=network, rule=StrikeRule(strikes, interval),  # validates (UsageError)
                         drift_threshold=drift_threshold, head=head, probe=probe,
                         evidence=evidence, recapture=recapture)


def _check_line(r: Any) -> str:
    from rich.markup import escape

    colour = VERDICT_COLOURS.get(r.verdict, "white")
    sim = f" similarity {r.similarity:.2f}" if r.similarity is not None and r.verdict != "ok" else ""
    state = f" ({r.strike_note})" if r.strike_note else ""
    label = (r.change or r.verdict).upper()
    return f"[{colour}]{label}[/] {escape(r.url)}{sim}: {escape(r.reason + state)}"


def print_check_table(results: list[Any]) -> None:
    table = Table(title=f"{len(results)} sources checked", title_justify="left")
    for column in ("verdict", "url", "HTTP", "similarity", "strikes", "change", "reason"):
        table.add_column(column, overflow="fold")
    for r in results:
        colour = VERDICT_COLOURS.get(r.verdict, "white")
        verdict = r.verdict + (" (confirmed)" if r.confirmed else "")
        table.add_row(f"[{colour}]{verdict}[/]", r.url, str(r.http_status or "-"),
                      f"{r.similarity:.2f}" if r.similarity is not None else "-",
                      str(r.strikes) if r.strikes else "", r.change or "", r.reason)
    out.print(table)


def print_check_history(rows: list[dict[str, Any]]) -> None:
    table = Table(title="live checks (newest first)", title_justify="left")
    for column in ("checked (UTC)", "verdict", "HTTP", "similarity", "strikes", "reason"):
        table.add_column(column, overflow="fold")
    for row in rows:
        verdict = row["verdict"] + (" (confirmed)" if row["confirmed"] else "")
        table.add_row(row["checked_at"], verdict, str(row["http_status"] or "-"),
                      f"{row['similarity']:.2f}" if row["similarity"] is not None else "-",
                      str(row["strikes"] or ""), row["reason"])
    out.print(table)


@app.command()
def check(
    urls: Annotated[list[str] | None, typer.Argument(metavar="URL", help="URLs to check (default: every "
                                                                         "source).",
                                                     show_default=False)] = None,
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Only the sources a report cites (id, title or "
                                                    "path).")] = None,
    recapture: Annotated[bool, typer.Option("--recapture", help="Capture anew every source that "
                                                                "drifted or moved.")] = False,
    strikes: Annotated[int, typer.Option(help="Failing checks in a row before a source is "
                                              "confirmed dead.")] = 3,
    min_interval: Annotated[str, typer.Option(metavar="DURATION", help="Those failing checks must span at least this "
                                                   "long (e.g. 36h, 2d).")] = "36h",
    drift_threshold: Annotated[float, typer.Option(metavar="0-1", help="Main-text similarity below which a page "
                                                        "has drifted (0-1).")] = 0.97,
    head: Annotated[str, typer.Option(metavar="auto|always|never",
                                      help="HEAD first: auto (non-HTML sources), always, never.")] = "auto",
    probe: Annotated[bool, typer.Option("--probe/--no-probe", help="Ask each site for a random path "
                                                                   "to recognise soft 404s.")] = True,
    evidence: Annotated[str, typer.Option(metavar="changes|all", help="Write server answers to WARC for: changes "
                                               "(every verdict but ok) or all.")] = "changes",
    concurrency: Annotated[int, typer.Option(help="Total simultaneous requests.")] = 48,
    per_host: Annotated[int, typer.Option(help="Simultaneous requests per host (browsers use 6).")] = 6,
    timeout: Annotated[float, typer.Option(help="Total seconds per source, retries included.")] = 120.0,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to connect.")] = 15.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds of silence before giving up a read.")] = 30.0,
    retries: Annotated[int, typer.Option(help="Retries for connection errors, 5xx and 429.")] = 3,
    user_agent: Annotated[str | None, typer.Option(help="User-Agent header.")] = None,
    proxy: Annotated[str | None, typer.Option(help="Proxy URL: http://, https:// or socks5://.")] = None,
    insecure: Annotated[bool, typer.Option(help="Check even when the TLS certificate is invalid.")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="Trust these CA certificates (PEM).")] = None,
    resolve: Annotated[list[str] | None, typer.Option(
        metavar="HOST:ADDRESS:PORT",
        help="Connect to ADDRESS:PORT for HOST, without touching /etc/hosts (repeatable).")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Processes for large runs (default: one per core, at most 2; hosts are split "
             "between them).")] = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only changes of state "
                                                              "(for cron).")] = False,
) -> None:
    """Re-check the live web: ok, drifted, moved, gone, soft-404, blocked or unreachable.

    A failing source is confirmed dead only after --strikes failing checks in a row spanning
    --min-interval. Every check is kept in the catalogue; what the server answered for anything
    but ok is written to WARC as evidence. --quiet prints only changes of state, for cron.

    Exit 0 when nothing newly failed; 1 when a source was newly confirmed dead or drifted; 2
    usage (bad option or URL: nothing is written); 3 the check could not run (another check
    holds the lock, no archive at the given path, or no host answered at all).
    """
    from .errors import CouldNotRunError
    from .linkcheck import check_sources, refuse_bad_urls, select_sources

    if urls and report:
        raise UsageError("give URLs or --report, not both")
    settings = check_settings(concurrency, per_host, timeout, connect_timeout, read_timeout,
                              retries, user_agent, proxy, insecure, ca_file, resolve or [],
                              strikes, min_interval, drift_threshold, head, probe, evidence,
                              recapture, workers)
    if urls:
        refuse_bad_urls(urls)
    # Given URLs are new material (an archive is created for them); without them, the check
    # re-checks what an archive holds, and a missing archive means the run could not happen.
    arch = open_archive(archive) if urls else existing_archive(archive, CouldNotRunError, write=True)
    show_bar = not quiet and not as_json and err.is_terminal
    with Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show_bar, transient=True) as progress:
        task = progress.add_task("check", total=None)

        def choose() -> list[Any]:  # called with the check lock held
            chosen = select_sources(arch, urls or None, report)
            progress.update(task, total=len(chosen))
            return chosen

        def on_result(result: Any) -> None:
            progress.advance(task)
            if as_json and (result.change or not quiet):
                print_json(result.as_dict())
                sys.stdout.flush()

        report_ = check_sources(arch, choose, settings, on_result)
    if not report_.results and not quiet:
        err.print("nothing to check: the catalogue has no sources")
    if not as_json:
        if quiet:
            for r in report_.changed:
                out.print(_check_line(r))
        else:
            print_check_table(report_.results)
            counts = Counter(r.verdict for r in report_.results)
            err.print("summary: " + ", ".join(f"{v} {n}" for v, n in counts.most_common()))
            for r in report_.changed:
                err.print(_check_line(r))
            for outcome in report_.recaptured:
                err.print(f"recaptured {outcome.url}: {outcome.status}")
    if report_.offline:
        raise CouldNotRunError("no host answered at all: this machine seems to be offline; the "
                               "checks were kept but not counted as strikes")
    newly = report_.newly_failed
    if newly:
        raise FindingsError(f"{len(newly)} source(s) newly confirmed dead or drifted")


@app.command()
def diff(
    url: Annotated[str, typer.Argument(metavar="URL", help="A source URL as cited (or any spelling of it).")],
    live: Annotated[bool, typer.Option("--live", help="Compare the last capture with the page as it "
                                                      "is now (fetched, not stored).")] = False,
    unified: Annotated[bool, typer.Option("--unified", help="Print a unified diff of paragraphs.")] = False,
    ca_file: Annotated[Path | None, typer.Option(help="Trust these CA certificates (PEM).")] = None,
    resolve: Annotated[list[str] | None, typer.Option(
        metavar="HOST:ADDRESS:PORT",
        help="Connect to ADDRESS:PORT for HOST, without touching /etc/hosts (repeatable).")] = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what changed in a source's main text since it was captured.

    By default compares the capture the latest check used with the live answer that check kept
    as evidence (or, when no check kept one, the page as it is now); --live always fetches the
    page now (it is not stored). Boilerplate (menus, footers, banners) is
    left out; changed words are shown as [-old-]{+new+}.

    Exit 0 (also when nothing changed); 1 when the capture cannot be read or --live cannot fetch
    the page; 2 when the source (or the archive) is unknown or has no capture.
    """
    from dataclasses import replace

    from .linkcheck import _check_capture_settings, diff_source

    network = replace(_check_capture_settings(), ca_file=str(ca_file) if ca_file else None,
                      resolve=_parse_resolve(resolve or []))
    result = diff_source(browsed_archive(archive), url, live=live, network=network)
    if as_json:
        print_json(result.as_dict())
        return
    err.print(f"old: {result.old_label}\nnew: {result.new_label}\n"
              f"main-text similarity: {result.similarity:.2f}")
    text = result.unified() if unified else result.render()
    out.print(text or "(main text unchanged)", markup=False)


@app.command()
def rot(
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Only the claims of this report (id, title or "
                                                    "path).")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Also list claims whose sources are "
                                                           "all live.")] = False,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Which claims have lost their live source, since when, and whether each source still has
    an intact archived copy (the morning read after a nightly `evarchive check`).

    Exit 0 when every lost source still has an intact archived copy; 1 when a claim's lost
    source has none; 2 when the report (or the archive) is unknown.
    """
    from rich.markup import escape

    from .linkcheck import last_check_run, rot_view

    arch = browsed_archive(archive)
    rows = rot_view(arch, report, everything)
    last = last_check_run(arch)
    if last is None:
        err.print("[yellow]warning:[/] no check has run on this archive yet: every source is "
                  "unchecked; run `evarchive check` (nightly: see the README's cron line)")
    elif last["stale"]:
        err.print(f"[yellow]warning:[/] the last check finished {last['age_hours'] / 24:.0f} days ago "
                  f"({last['ended_at'][:16].replace('T', ' ')} UTC): is the nightly check still running?")
    elif not quiet and not as_json:
        n = last["sources"]
        err.print(f"last check: {last['ended_at'][:16].replace('T', ' ')} UTC, {n} source{'' if n == 1 else 's'}")
    if as_json:
        print_json_lines(rows)
    elif rows:
        # A plain list rather than a table: it is read in a morning mail, at any width.
        for row in rows:
            since = f" since {row['lost_since'][:16].replace('T', ' ')}" if row["lost_since"] else ""
            head = escape(f"{row['report']} {_where(row)}: {_short(row['text'] or '', 160)}"
                          if row["claim_id"] else "(source not cited by any imported report)")
            out.print(f"[bold]{row['status'].upper()}[/]{since}  {head}")
            for s in row["sources"]:
                copy = s["archived"]
                kept = ("[red]no archived copy[/]" if copy is None else
                        f"archived: capture {copy['capture_id']} of {copy['captured_at'][:10]}, "
                        + ("intact" if copy["intact"] else "[red]NOT INTACT[/]"))
                live = s["live"] if s["live"] in ("live", "unchecked") else \
                    f"{s['live']}: {s['verdict']} ({s['detail']})"
                when = f" since {s['since'][:16].replace('T', ' ')}" if s["since"] else ""
                out.print(f"    {escape(s['url'])}  {live}{when}; {kept}")
    elif not quiet and last is not None:
        err.print("every checked source is live" if not everything else "nothing to show")
    unpreserved = [r for r in rows if r["unpreserved"]]
    if unpreserved:
        raise FindingsError(f"{len(unpreserved)} claim(s) lost a live source that has no intact "
                            "archived copy")


# --------------------------------------------------------------------------- export (citation bundle)

@app.command("export")
def export_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The bundle to write: a new directory, or "
                                        "NAME.zip for one zip file. Never overwritten.", show_default=False)],
    urls: Annotated[list[str] | None, typer.Argument(help="Export only these sources.", show_default=False)] = None,
    report: Annotated[str | None, typer.Option(
        "--report", "-r", help="Export the evidence of this report's claims (id, title or path; "
                               "latest version).")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Only the latest good capture of each source.")] = False,
    checks: Annotated[bool, typer.Option("--checks", help="Also export what live checks recorded "
                                                          "(e.g. the 404 that shows a page vanished).")] = False,
    redact_log: Annotated[bool, typer.Option("--redact-log", help="Include only the custody-log entries that "
                                             "vouch for the exhibits, not every entry up to the head.")] = False,
    archive: ArchiveOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Write a citation bundle for a court: the evidence as a WACZ, an exhibit index a judge can
    read (HTML, text, CSV), and what a clerk needs to verify it independently.

    Without --report or URLs, every capture in the archive is exported. Exit 0 when written,
    1 when written but some claim (or chosen source) has no intact capture (the index says
    which), 2 for unusable input (unknown report, URL without capture, OUT exists: nothing is
    written). The bundle's VERIFY.md tells a clerk how to check it without evarchive.
    """
    # (`out` is the bundle path here; this command prints through `err` and print_json only.)
    from rich.markup import escape

    from .export import export_bundle

    result = export_bundle(existing_archive(archive), out, report=report, urls=urls or [],
                           latest=latest, checks=checks, redact_log=redact_log)
    if as_json:
        print_json(result.as_dict())
    elif not quiet:
        err.print(f"wrote {result.path}: {result.exhibits} exhibits ({result.records} WARC records), "
                  f"{result.claims} claims; manifest SHA-256 {result.manifest_sha256} "
                  + (f"(custody-log entry {result.log_seq})" if result.log_seq is not None else
                     "(the archive is read-only: the export is NOT recorded in its custody log)"))
    for note in result.housekeeping if not quiet else []:
        err.print(f"[yellow]earlier export[/] {escape(note)}")
    for item in result.not_exported:
        err.print(f"[yellow]not exported[/] {item['kind']} {item['id']} of {escape(item['url'])}: "
                  + escape("; ".join(item["problems"])))
    for claim in result.unsupported:
        err.print(f"[red]no intact capture[/] claim {claim['ordinal']} ({_where(claim)}): "
                  f"{escape(_short(claim['text'], 100))}")
    for source in result.unpreserved_sources:
        err.print(f"[red]no intact capture[/] {escape(source['url'])}")
    if result.unsupported:
        raise FindingsError(f"{len(result.unsupported)} of {result.claims} claims have no intact capture "
                            "of the cited page to export (the bundle was written and says so)")
    if result.unpreserved_sources:
        raise FindingsError(f"{len(result.unpreserved_sources)} source(s) have no intact capture to export "
                            "(the bundle was written and says so)")


def _is_a(exc: BaseException, name: str) -> bool:
    """Typer may bring its own copy of click; recognise its exceptions by class name."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


INTERRUPTED = "evarchive: interrupted; the archive is consistent, run the command again to finish"


def catalogue_failure(exc: sqlite3.DatabaseError) -> int:
    """Damage found part way through a command (past the check on opening), or storage that
    became unwritable: a message and exit 3, not a traceback."""
    from .catalogue import is_damage

    if is_damage(exc):
        message = (f"the catalogue is damaged ({exc}). See the damage with: sqlite3 catalogue.sqlite "
                   "'PRAGMA integrity_check', then restore catalogue.sqlite from a backup, and keep the damaged "
                   "copy and the warcs/ folder: the evidence itself is in the WARC files.")
    else:
        message = f"the catalogue could not be used: {exc}"
    err.print(f"[red]evarchive:[/] {escape(message)}")
    return 3


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every error becomes a message on stderr and a documented exit code."""
    for stream in (sys.stdout, sys.stderr):  # a name that is not UTF-8 must never end a command
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        app(args=argv, standalone_mode=False, prog_name="evarchive")
    except EvarchiveError as exc:
        colour = "yellow" if exc.exit_code == 1 else "red"
        err.print(f"[{colour}]evarchive:[/] {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        err.print(INTERRUPTED)
        return 130
    except Exception as exc:
        if _is_a(exc, "Exit"):
            return int(getattr(exc, "exit_code", 0) or 0)
        if _is_a(exc, "Abort"):
            err.print(INTERRUPTED)
            return 130
        if _is_a(exc, "ClickException"):
            exc.show(file=sys.stderr)  # type: ignore[attr-defined]
            return 2
        reason = storage_failure(exc)
        if reason is not None:  # a full disk, even under the catalogue: a message, not a traceback
            stopped = storage_failure_error(reason)
            err.print(f"[red]evarchive:[/] {stopped.message}")
            return stopped.exit_code
        if isinstance(exc, sqlite3.DatabaseError):
            return catalogue_failure(exc)
        raise
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
