"""The Typer app, its consoles, and ``main()``: the one place every error becomes a message on
stderr and a documented exit code (0 ok, 1 findings, 2 usage or bad input, 3 could not run).

Data goes to stdout (tables for people, ``--json`` for scripts); messages and progress go to
stderr (``out`` and ``err`` below).
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..catalogue import is_damage
from ..errors import EvarchiveError, storage_failure, storage_failure_error

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


def version_callback(value: bool) -> None:
    if value:
        out.print(f"evarchive {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option("--version", callback=version_callback,
                                               is_eager=True, help="Show the version and exit.")] = False
         ) -> None:
    """evarchive: the command line (its help is the Typer app's ``help`` above)."""


def _is_a(exc: BaseException, name: str) -> bool:
    """Typer may bring its own copy of click; recognise its exceptions by class name."""
    return any(cls.__name__ == name for cls in type(exc).__mro__)


INTERRUPTED = "evarchive: interrupted; the archive is consistent, run the command again to finish"


def catalogue_failure(exc: sqlite3.DatabaseError) -> int:
    """Damage found part way through a command (past the check on opening), or storage that
    became unwritable: a message and exit 3, not a traceback."""
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
        # Outside standalone mode typer hands back an exit code instead of exiting: Ctrl-C comes
        # back as 130 (typer's Exit), which must not end the command as a success.
        code = app(args=argv, standalone_mode=False, prog_name="evarchive")
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
    if code == 130:
        err.print(INTERRUPTED)
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def entry() -> None:
    sys.exit(main())

