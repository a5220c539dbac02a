"""Commands that prove the evidence is intact: verify, log, keys, timestamp."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..archive import Archive
from ..errors import CouldNotRunError, FindingsError, UsageError
from .app import app, err, out
from .common import (ArchiveOpt, JsonOpt, QuietOpt, TsaOpt, TsaRootsOpt, browsed_archive, existing_archive,
                     open_archive, print_json, print_json_lines)

# Imported inside the commands, measured with `python -X importtime` beyond what every command
# loads: verify 53 ms, timestamping 170 ms (the ASN.1 stack), custody 16 ms and signing 13 ms
# (cryptography); `sources` and `check` need none of them.

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
    tsa_roots: TsaRootsOpt = None,
    archive: ArchiveOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Check that every WARC file, record, catalogue row, log entry and timestamp is intact.

    Exit 0 when everything is intact, 1 when anything is not (each problem names the file,
    offset, record, source URL and the claims that depend on it), 2 for usage errors.
    """
    from ..signing import trusted_public_keys
    from ..verify import verify_archive

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
    if not (given or os.environ.get("EVARCHIVE_TSA_ROOTS") or arch.tsa_roots_file.exists()):
        return None
    from ..timestamping import configured_roots

    return configured_roots(arch, given)


@app.command("log")
def log_cmd(
    head: Annotated[bool, typer.Option(
        "--head", help="Print only the current head hash (to write down or publish).")] = False,
    limit: Annotated[int | None, typer.Option("--limit", help="Only the newest N entries.")] = None,
    archive: ArchiveOpt = None, as_json: JsonOpt = False,
) -> None:
    """Print the hash-chained custody log (every event that touched the evidence)."""
    from .. import custody

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
    from ..custody import introduce_key

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
    from .. import custody, signing

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
    tsa: TsaOpt = None,
    tsa_roots: TsaRootsOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each TSA.")] = 30.0,
    archive: ArchiveOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Get a trusted RFC 3161 timestamp over the custody-log head (covers every capture so far)."""
    from ..anchoring import AnchorConfig, stamp_now
    from ..timestamping import configured_roots, configured_tsas

    arch = existing_archive(archive, write=True)
    urls = configured_tsas(arch, tsa or [])
    if not urls:
        raise UsageError("no TSA configured: pass --tsa URL (or set EVARCHIVE_TSA)")
    stamped = stamp_now(arch, AnchorConfig(urls, configured_roots(arch, tsa_roots), timeout))
    if stamped.failed:
        raise CouldNotRunError(stamped.message())
    row = stamped.timestamp
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



def tsa_config(arch: Archive, tsa: list[str] | None) -> Any:
    """The TSAs a run ends by asking (None when none is configured), read before the run starts."""
    from ..anchoring import configured

    return configured(arch, tsa)


def anchor_run(arch: Archive, config: Any, as_json: bool, quiet: bool) -> Any:
    """End a run by timestamping the custody-log head; prints how it went (a JSON line with
    --json). Returns the library's Anchoring, None when no TSA is configured."""
    if config is None:
        return None
    from ..anchoring import anchor_head

    result = anchor_head(arch, config)
    if as_json:
        print_json({"timestamp": result.as_dict()})
    elif result.failed:
        err.print(f"[red]finding[/] {escape(result.message())}")
    elif not quiet and result.status == "stamped":
        err.print(escape(result.message()))
    return result
