"""Commands that add evidence or show what was captured: capture, archive, sources, show."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..archive import Archive
from ..catalogue import captures_of, find_source, source_summaries
from ..errors import FindingsError, UsageError
from ..queries import witnesses_of
from .app import app, err, out
from .common import (ArchiveOpt, JsonOpt, MementosOpt, TimemapOpt, TitleOpt, browsed_archive, claim_where,
                     existing_archive, open_archive, print_json, shorten, timemaps_to_ask)
from .integrity import anchor_run, tsa_config
from .network import (ENGINE, NETWORK, CaptureRunOptions, NetworkOptions, capture_run_options, capture_settings,
                      network_options)
from .reporting import check_report_before_creating_archive, claims_table
from .watching import print_check_history
from .witnessing import run_witnesses

def run_captures(archive: Archive, urls: list[str], settings: Any, quiet: bool,
                 as_json: bool, engine: str | None = None, chromium: str | None = None) -> list[Any]:
    """Recover from an interrupted run, then capture with a progress bar on stderr."""
    # lazy: browser and capture pull Playwright and httpx (about 210 and 160 ms of start-up)
    from ..browser import BrowserSettings, capture_with_browser, choose_engine, reap_orphans
    from ..capture import capture_urls, recover

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
@network_options(NETWORK, ENGINE)
@capture_run_options
def capture(
    urls: Annotated[list[str] | None, typer.Argument(help="URLs to capture.", show_default=False)] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="File with one URL a line.")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Every known source without a good capture.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Every known source, captured anew.")] = False,
    *,
    run: CaptureRunOptions,
    net: NetworkOptions,
) -> None:
    """Capture URLs to WARC files and record every attempt in the catalogue.

    With a TSA configured the run ends by timestamping the custody-log head. Exit 0 when every
    URL was captured, 1 when any failed, the browser engine found a request it could not account
    for, or the TSA gave no token (all in the catalogue), 2 for usage errors (refused URLs:
    nothing is written), 3 when --engine browser finds no Chromium.
    """
    from ..capture import read_url_list, select_urls  # lazy: 160 ms of start-up

    if not (urls or from_file or pending or everything):
        raise UsageError("give URLs, --from FILE, --pending or --all")
    job = CaptureJob(run, net, stream_json=True)
    given = read_url_list(urls or [], from_file)
    arch = job.attach(open_archive(run.archive) if given else existing_archive(run.archive, write=True))
    outcomes = job.capture(select_urls(arch, given, None, pending, everything), summary_if_none=True)
    unwitnessed, anchored = job.finish(outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    if failed:
        raise FindingsError(f"{failed} of {len(outcomes)} captures failed")
    if unwitnessed:
        raise FindingsError(f"{unwitnessed} witness(es) not archived yet (recorded: `evarchive witness` asks again)")
    unaccounted = sum(bool(getattr(o, "findings", None)) for o in outcomes)
    if unaccounted:
        raise FindingsError(f"{unaccounted} of {len(outcomes)} captures have unaccounted requests")
    if anchored is not None and anchored.failed:
        raise FindingsError("the captures are kept, but no TSA timestamped them (retried by the next run)")


class CaptureJob:
    """What capture and archive share, in order: the settings and the witness's keys, checked
    before anything is written; the archive's TSAs; the captures with their summary; then the
    witness and the timestamp. ``stream_json``: with --json, each outcome and the timestamp are
    JSON lines as they come (capture); otherwise the command prints one document at the end."""

    def __init__(self, run: CaptureRunOptions, net: NetworkOptions, stream_json: bool) -> None:
        self.run, self.net = run, net
        self.settings = capture_settings(net)
        self.witness_keys = _witness_keys(run.witness, run.archive)
        self.lines = run.as_json and stream_json  # JSON lines now, not one document later
        self.silent = run.quiet or (run.as_json and not stream_json)
        self.arch: Archive | None = None
        self.anchors: Any = None

    def attach(self, arch: Archive) -> Archive:
        """Use ``arch``; its TSAs are read now, before the run (a bad one is a usage error)."""
        self.arch, self.anchors = arch, tsa_config(arch, self.run.tsa)
        return arch

    def capture(self, urls: list[str], summary_if_none: bool) -> list[Any]:
        assert self.arch is not None, "attach() an archive first"
        outcomes = run_captures(self.arch, urls, self.settings, self.run.quiet, self.lines,
                                self.net.get("engine"), self.net.get("chromium"))
        if not self.run.as_json and (outcomes or summary_if_none):
            print_capture_summary(outcomes, self.run.quiet)
        return outcomes

    def finish(self, outcomes: list[Any]) -> tuple[int, Any]:
        """Ask the witness, then timestamp the log head: (witnesses not archived yet, Anchoring or None)."""
        assert self.arch is not None, "attach() an archive first"
        unwitnessed = _witness_captured(self.arch, outcomes, self.witness_keys, self.lines, self.silent)
        return unwitnessed, anchor_run(self.arch, self.anchors, self.lines, self.silent)


def _witness_keys(witness: str | None, archive: Path | None) -> tuple[str, str] | None:
    """The keys the witness needs (--witness, else the archive's ``witness`` setting), checked
    before anything is captured (a usage error otherwise); None when no witness is asked for."""
    if witness is None:
        witness = _stored_witness(archive)
    if witness is None or witness == "none":
        return None
    if witness != "wayback":
        raise UsageError(f"--witness {witness!r}: the witness evarchive knows is 'wayback'")
    from ..witness import keys_from_environment  # lazy: see witnessing.py

    return keys_from_environment(os.environ)


def _stored_witness(path: Path | None) -> str | None:
    """The witness the archive's settings ask for; None when there is no archive yet."""
    from ..settings import WITNESS, stored  # lazy: see configuring.py

    try:
        arch = Archive.existing(path, check=False)
    except UsageError:
        return None
    try:
        return stored(arch.db, WITNESS)
    finally:
        arch.close()


def _witness_captured(arch: Archive, outcomes: list[Any], keys: tuple[str, str] | None, as_json: bool,
                      quiet: bool) -> int:
    """Submit what was just captured to the witness; how many are not archived yet."""
    if keys is None:
        return 0
    ids = [o.source_id for o in outcomes if o.status != "failed" and o.source_id is not None]
    endpoint = os.environ.get("EVARCHIVE_SPN2_ENDPOINT", "https://web.archive.org")
    results = run_witnesses(arch, ids, keys, endpoint, 180.0, as_json, quiet)
    return sum(r.status != "archived" for r in results)


@app.command()
def sources(archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """List every source the catalogue knows, with its captures.

    Exit 0; 2 when there is no archive at the given path.
    """
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
    """Everything ``show`` prints about one source: captures, citing claims, live checks."""
    source = find_source(arch.db, url)
    if source is None:
        raise UsageError(f"no source {url!r} in the catalogue")
    from ..check.rot import recent_checks  # lazy: 200 ms of start-up
    from ..reports import claims_citing  # lazy: 35 ms of start-up

    return {"source": source, "captures": captures_of(arch.db, source["id"]),
            "claims": claims_citing(arch.db, source["id"]),
            "checks": recent_checks(arch.db, source["id"]),
            "witnesses": witnesses_of(arch.db, source["id"])}


@app.command()
def show(url: Annotated[str, typer.Argument(metavar="URL", help="A source URL as cited (or any spelling of it).")],
         mementos: MementosOpt = False,
         timemap: TimemapOpt = None,
         archive: ArchiveOpt = None, as_json: JsonOpt = False) -> None:
    """Show what the catalogue knows about one source: every capture and its provenance, the
    claims that cite it, and its latest live checks (with --mementos, public archives' copies).

    Exit 0; 2 when the source (or the archive) is unknown.
    """
    arch = browsed_archive(archive)
    details = source_details(arch, url)
    if mementos:
        details["mementos"] = _public_mementos(details, timemaps_to_ask(arch, timemap))
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
    for w in details.get("witnesses", []):
        made = f": {escape(w['memento_url'])} ({w['archived_at']})" if w["memento_url"] else \
            f" ({escape(w['message'] or '')})"
        compared = f"; against our capture: {w['corroboration']}" if w.get("corroboration") else ""
        if w.get("similarity") is not None and w["similarity"] < 1:
            compared += f" (main-text similarity {w['similarity']:.2f})"
        out.print(f"witness {w['service']} asked {w['submitted_at'][:16].replace('T', ' ')}: {w['status']}{made}"
                  f"{compared}")
    if "mementos" in details:
        found = details["mementos"]
        near = found["nearest"]
        out.print(f"public mementos: {found['count']}" + (
            f"; nearest the latest capture: {escape(near['url'])} ({near['datetime']}, {escape(near['archive'])})"
            if near else ""))
        for failure in found["failures"]:
            err.print(f"[yellow]memento lookup failed[/] {escape(failure)}")


def _public_mementos(details: dict[str, Any], timemaps: list[str]) -> dict[str, Any]:
    """Public archives' copies of the source, nearest its latest good capture (else now)."""
    from ..memento import lookup  # lazy: httpx, only with --mementos (see witnessing.py)

    good = [c for c in details["captures"] if c["status"] == "ok"]
    when = dt.datetime.fromisoformat(good[-1]["started_at"].replace("Z", "+00:00")) if good else \
        dt.datetime.now(dt.UTC)
    found = lookup(details["source"]["url"], when, timemaps)
    return {"count": found.count, "nearest": found.nearest.as_dict() if found.nearest else None,
            "failures": found.failures}


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



def print_citing_claims(rows: list[dict[str, Any]]) -> None:
    table = Table(title="claims citing this source", show_lines=True)
    for column in ("report", "version", "where", "claim", "cited as"):
        table.add_column(column, overflow="fold")
    for row in rows:
        cited = row["cited_as"] + (f" (note {row['note']})" if row.get("note") else "")
        table.add_row(escape(f"{row['report_id']}: {row['report']}"), str(row["version"]), claim_where(row),
                      escape(shorten(row["text"], 300)), escape(cited))
    out.print(table)



@app.command("archive")
@network_options(NETWORK, ENGINE)
@capture_run_options
def archive_cmd(
    report: Annotated[Path, typer.Argument(metavar="REPORT", help="Report file: .txt, .md, .html, .docx or .pdf.")],
    title: TitleOpt = None,
    *,
    run: CaptureRunOptions,
    net: NetworkOptions,
) -> None:
    """The main job: import a report, capture every source not yet preserved, report per claim.

    With a TSA configured the run ends by timestamping the custody-log head. Exit 0 when every
    claim has at least one preserved source; 1 when any claim has none (the failed captures are in
    the catalogue: run it again later) or the TSA gave no token (recorded; the next run retries);
    2 for a report that cannot be used (nothing is imported or captured).
    """
    from ..reports import claims_of_version, import_report, sources_to_capture  # lazy: 35 ms

    as_json, quiet = run.as_json, run.quiet
    job = CaptureJob(run, net, stream_json=False)
    prepared = check_report_before_creating_archive(run.archive, report, None)
    arch = job.attach(open_archive(run.archive))
    result = import_report(arch.db, report, title, prepared=prepared)
    if not as_json and not quiet:
        err.print(escape(f"imported {result.title!r} version {result.version} ({result.status}): "
                         f"{result.claims} claims, {result.citations} citations, {result.sources} sources"))
    outcomes = job.capture(sources_to_capture(arch.db, result.version_id, arch.warcs_dir), summary_if_none=False)
    _, anchored = job.finish(outcomes)
    claims = [{"report_id": result.report_id, **c}
              for c in claims_of_version(arch.db, result.version_id, arch.warcs_dir)]
    lost = [c for c in claims if not c["preserved"]]
    if as_json:
        print_json({"import": result.as_dict(), "captures": [o.as_dict() for o in outcomes],
                    "claims": claims, "preserved": len(claims) - len(lost), "unpreserved": len(lost),
                    "timestamp": anchored.as_dict() if anchored else None})
    elif not quiet:
        out.print(claims_table(claims, escape(f"{result.title}: {len(claims) - len(lost)} of {len(claims)} "
                                              "claims preserved")))
    if lost:
        for claim in lost if quiet else []:
            err.print(f"[red]not preserved[/] {claim_where(claim)}: {escape(shorten(claim['text'], 100))}")
        raise FindingsError(f"{len(lost)} of {len(claims)} claims have no preserved source")
    if anchored is not None and anchored.failed:
        raise FindingsError("the captures are kept, but no TSA timestamped them (retried by the next run)")

