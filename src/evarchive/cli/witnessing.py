"""`evarchive witness`: ask an independent archive (the Internet Archive's Save Page Now) to
capture sources already cited, and record what it made of them."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..archive import Archive
from ..catalogue import one
from ..errors import FindingsError, UsageError
from ..urls import normalise_url
from .app import app, err, out
from .common import ArchiveOpt, JsonOpt, QuietOpt, existing_archive, print_json

# `evarchive.witness` (and `memento`) are imported inside the commands: they pull httpx, and
# witness also the check engine, which `sources` or `claims` never need. The least of five runs of
# `python -X importtime -c "import evarchive.cli; import evarchive.witness"` on a loaded machine
# (load 11, so noisy and above the idle figure): witness 247 ms, memento 41 ms, beyond the
# 263 ms of `import evarchive.cli` itself.


@app.command()
def witness(
    urls: Annotated[list[str] | None, typer.Argument(metavar="URL", help="Sources to submit (default: "
                                                                         "every source without a witness).",
                                                     show_default=False)] = None,
    report: Annotated[str | None, typer.Option("--report", "-r", metavar="REPORT",
                                               help="Only the sources a report cites (id, title or path).")] = None,
    endpoint: Annotated[str, typer.Option(envvar="EVARCHIVE_SPN2_ENDPOINT",
                                          help="Save Page Now service to use.")] = "https://web.archive.org",
    max_wait: Annotated[float, typer.Option(help="Seconds to wait for each capture job; a job still "
                                                 "running then is kept as pending and asked again later.")] = 180.0,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ask the Internet Archive's Save Page Now to capture each source, as an independent witness.

    Needs archive.org access keys in EVARCHIVE_SPN2_KEYS=ACCESS:SECRET (or a file named by
    EVARCHIVE_SPN2_KEYS_FILE); they are never stored. Submitting discloses the URLs: nothing is
    submitted unless you run this. Sources that already have an archived witness are skipped;
    rate-limited, failed and pending ones are asked again.

    Exit 0 when every source submitted has a witness; 1 when any is pending, rate-limited or
    failed (recorded: run again later); 2 for usage errors (no keys, unknown report or URL).
    """
    from ..check.run import select_sources
    from ..witness import keys_from_environment

    if urls and report:
        raise UsageError("give URLs or --report, not both")
    access, secret = keys_from_environment(os.environ)
    arch = existing_archive(archive, write=True)
    if urls:
        ids = []
        for url in urls:
            row = one(arch.db, "SELECT id FROM sources WHERE normalised = ?", [normalise_url(url)])
            if row is None:
                raise UsageError(f"{url} is not a source of this archive (capture it first)")
            ids.append(row["id"])
    else:
        ids = [s["id"] for s in select_sources(arch, None, report)]
    results = run_witnesses(arch, ids, (access, secret), endpoint, max_wait, as_json, quiet)
    if not results and not quiet:
        err.print("nothing to submit: every source has a witness")
    open_ones = [r for r in results if r.status != "archived"]
    if open_ones:
        raise FindingsError(f"{len(open_ones)} of {len(results)} witnesses not archived yet "
                            "(recorded; run again later)")


def run_witnesses(arch: Archive, source_ids: list[int], keys: tuple[str, str], endpoint: str, max_wait: float,
                  as_json: bool, quiet: bool) -> list[Any]:
    """Submit every source among ``source_ids`` that has no archived witness yet, record each
    result, and print it; the results."""
    from ..witness import WitnessSettings, corroborate, record, sources_to_witness, submit

    settings = WitnessSettings(*keys, endpoint=endpoint.rstrip("/"), max_wait=max_wait)
    results = []
    for source in sources_to_witness(arch.db, source_ids):
        result = submit(source["url"], settings)
        witness_id = record(arch.db, source["id"], source["capture_id"], result)
        verdict, score = corroborate(arch, witness_id) if result.status == "archived" else (None, None)
        results.append(result)
        if as_json:
            print_json({**result.as_dict(), "corroboration": verdict, "similarity": score})
        elif result.status == "archived" and not quiet:
            out.print(f"[green]witnessed[/] {escape(result.url)}: {escape(result.memento_url or '')} "
                      f"({result.archived_at}); against our capture: {verdict}"
                      + (f" (main-text similarity {score:.2f})" if score is not None and score < 1 else ""))
        elif result.status != "archived":
            err.print(f"[yellow]witness {result.status}[/] {escape(result.url)}: {escape(result.message or '')}")
    return results
