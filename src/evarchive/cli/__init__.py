"""The evarchive command line: parse, call the library, print. Nothing else lives here.

One module per command group; ``app`` (the Typer app) and ``main()`` (errors to exit codes) are
in ``app.py``, the options every network command shares in ``network.py``. Importing this package
registers every command.
"""

from __future__ import annotations

from . import capturing, citing, configuring, exporting, integrity, reporting, watching, witnessing  # noqa: F401
from .app import app, entry, main

__all__ = ["app", "entry", "main"]

# `evarchive --help` lists the commands in the order a user meets them, not in import order.
HELP_ORDER = ("capture", "sources", "show", "import", "reports", "claims", "archive", "verify", "log",
              "timestamp", "check", "diff", "rot", "witness", "cite", "export",
              "settings")
app.registered_commands.sort(key=lambda c: HELP_ORDER.index(c.name or c.callback.__name__))  # type: ignore[union-attr]
