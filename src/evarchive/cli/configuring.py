"""`evarchive settings`: the settings stored in the archive itself (the archives a Memento lookup
asks, the independent witness every capture is submitted to)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ..errors import UsageError
from .app import app, out
from .common import ArchiveOpt, JsonOpt, browsed_archive, existing_archive, print_json


@app.command("settings")
def settings_cmd(
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="A setting: timemaps or witness.",
                                               show_default=False)] = None,
    values: Annotated[list[str] | None, typer.Argument(metavar="VALUE", help="Its new value(s); none given "
                                                       "with --clear removes it.", show_default=False)] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the setting (back to the default).")] = False,
    archive: ArchiveOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show or change the settings stored in the archive, which every command run on it uses.

    `settings timemaps URL...` makes `rot --mementos` and `show --mementos` ask these archives or
    aggregators ({url} stands for the source) instead of the Internet Archive alone;
    `settings witness wayback` submits every capture to the Internet Archive's Save Page Now, as
    `--witness wayback` does (`--witness none` skips it for one run). A --timemap or --witness
    option still wins for its run. Every change is recorded in the custody log.

    Exit 0; 2 for an unknown setting, a bad value, or no archive at the given path.
    """
    # lazy: settings logs changes through custody, which pulls cryptography (about 17 ms of
    # start-up, `python -X importtime -c "import evarchive.cli, evarchive.custody"`)
    from ..settings import DESCRIPTIONS, every_setting, store, stored

    if values and clear:
        raise UsageError("give the new value(s) or --clear, not both")
    if clear and name is None:
        raise UsageError("--clear needs the NAME of the setting to remove")
    if values or clear:
        arch = existing_archive(archive, write=True)
        store(arch.db, str(name), values or [])
    else:
        arch = browsed_archive(archive)
    current = {name: stored(arch.db, name)} if name is not None else every_setting(arch.db)
    if as_json:
        print_json(current)
        return
    for key, value in current.items():
        shown = "(not set)" if value is None else " ".join(value) if isinstance(value, list) else value
        out.print(f"{key}: {escape(str(shown))}  [dim]({escape(DESCRIPTIONS[key])})[/]")
