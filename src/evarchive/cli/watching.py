"""Commands that watch the live web: check, diff, rot."""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import CouldNotRunError, FindingsError, UsageError
from .app import app, err, out
from .common import (ArchiveOpt, JsonOpt, MementosOpt, QuietOpt, TimemapOpt, TsaOpt, browsed_archive, claim_where,
                     existing_archive, open_archive, print_json, print_json_lines, shorten, timemaps_to_ask)
from .integrity import anchor_run, tsa_config
from .network import CONNECTION, NETWORK, NetworkOptions, check_settings, fetch_settings, network_options

# `evarchive.check` is imported inside the commands: it costs about 200 ms of start-up
# (httpx, the capture engine, lxml), which `show` and `sources` must not pay.

VERDICT_COLOURS = {"ok": "green", "drifted": "yellow", "moved": "cyan", "gone": "red",
                   "soft-404": "red", "blocked": "magenta", "unreachable": "red"}




def _check_line(r: Any) -> str:
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


# A check's own defaults (the library's, in check/settings.py): a source gets 120 s, and 16 MiB of a body
# is enough for any article (larger bodies are not compared).
CHECK_DEFAULTS = {"timeout": 120.0, "max_body": 16 << 20}


@app.command()
@network_options(NETWORK, **CHECK_DEFAULTS)
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
    tsa: TsaOpt = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only changes of state "
                                                              "(for cron).")] = False,
    *,
    net: NetworkOptions,
) -> None:
    """Re-check the live web: ok, drifted, moved, gone, soft-404, blocked or unreachable.

    A failing source is confirmed dead only after --strikes failing checks in a row spanning
    --min-interval. Every check is kept in the catalogue; what the server answered for anything
    but ok is written to WARC as evidence. --quiet prints only changes of state, for cron.

    With a TSA configured the run ends by timestamping the custody-log head. Exit 0 when nothing
    newly failed; 1 when a source was newly confirmed dead or drifted, or the TSA gave no token
    (recorded; the next run retries); 2 usage (bad option or URL: nothing is written); 3 the check
    could not run (another check holds the lock, no archive at the given path, or no host answered
    at all).
    """
    from ..check.run import check_sources, refuse_bad_urls, select_sources  # lazy: 200 ms

    if urls and report:
        raise UsageError("give URLs or --report, not both")
    settings = check_settings(net, strikes, min_interval, drift_threshold, head, probe, evidence,
                              recapture)
    if urls:
        refuse_bad_urls(urls)
    # Given URLs are new material (an archive is created for them); without them, the check
    # re-checks what an archive holds, and a missing archive means the run could not happen.
    arch = open_archive(archive) if urls else existing_archive(archive, CouldNotRunError, write=True)
    anchors = tsa_config(arch, tsa)
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
    if as_json:  # the lines above were printed before the recaptures were made: these link them
        for r in report_.results:
            if r.recapture_id is not None:
                print_json({"recapture": {"url": r.url, "check_id": r.check_id, "capture_id": r.recapture_id}})
    anchored = anchor_run(arch, anchors, as_json, quiet)
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
    if anchored is not None and anchored.failed:
        raise FindingsError("the checks are kept, but no TSA timestamped them (retried by the next run)")


@app.command()
@network_options(CONNECTION, **CHECK_DEFAULTS)  # --live fetches the page the way a check does
def diff(
    url: Annotated[str, typer.Argument(metavar="URL", help="A source URL as cited (or any spelling of it).")],
    live: Annotated[bool, typer.Option("--live", help="Compare the last capture with the page as it "
                                                      "is now (fetched, not stored).")] = False,
    unified: Annotated[bool, typer.Option("--unified", help="Print a unified diff of paragraphs.")] = False,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    *,
    net: NetworkOptions,
) -> None:
    """Show what changed in a source's main text since it was captured.

    By default compares the capture the latest check used with the live answer that check kept
    as evidence (or, when no check kept one, the page as it is now); --live always fetches the
    page now (it is not stored). Boilerplate (menus, footers, banners) is
    left out; changed words are shown as [-old-]{+new+}.

    Exit 0 (also when nothing changed); 1 when the capture cannot be read or --live cannot fetch
    the page; 2 when the source (or the archive) is unknown or has no capture.
    """
    from ..check.diff import diff_source  # lazy: 200 ms

    network = fetch_settings(net)  # a bad option is a usage error before the archive is read
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
    mementos: MementosOpt = False,
    timemap: TimemapOpt = None,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Which claims have lost their live source, since when, and whether each source still has
    an intact archived copy (the morning read after a nightly `evarchive check`); with
    --mementos, also the nearest copy public archives hold.

    Exit 0 when every lost source still has an intact archived copy; 1 when a claim's lost
    source has none; 2 when the report (or the archive) is unknown.
    """
    from ..check.rot import last_check_run, rot_view  # lazy: 200 ms

    arch = browsed_archive(archive)
    rows = rot_view(arch, report, everything)
    if mementos:
        from ..memento import attach_to_rot  # lazy: only when asked

        attach_to_rot(rows, timemaps_to_ask(arch, timemap), now=dt.datetime.now(dt.UTC))
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
            head = escape(f"{row['report']} {claim_where(row)}: {shorten(row['text'] or '', 160)}"
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
                if s.get("memento"):
                    m = s["memento"]
                    out.print(f"        public memento: {escape(m['url'])} ({m['datetime']}, {escape(m['archive'])})")
                elif "memento" in s:
                    out.print("        public memento: none found")
                for failure in s.get("memento_failures", []):
                    err.print(f"[yellow]memento lookup failed[/] {escape(failure)}")
    elif not quiet and last is not None:
        err.print("every checked source is live" if not everything else "nothing to show")
    unpreserved = [r for r in rows if r["unpreserved"]]
    if unpreserved:
        raise FindingsError(f"{len(unpreserved)} claim(s) lost a live source that has no intact "
                            "archived copy")

