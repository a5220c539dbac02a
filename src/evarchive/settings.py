"""Settings kept in the archive itself, so that every command run on it behaves alike without
repeating options: which public archives a Memento lookup asks (``timemaps``) and whether each
capture is also submitted to an independent witness (``witness``).

They live in the catalogue's ``meta`` table as JSON, under ``setting:NAME``. A change is logged
in the custody log: the witness setting decides what is disclosed to a third party, and the
archives asked decide which copies an exhibit is compared with, so who changed what, when, is
part of the record. An option given on the command line (or its environment variable) still
wins over the stored setting for that run.
"""

from __future__ import annotations

import json
from typing import Any

from . import custody
from .catalogue import one, transaction
from .errors import InputError, UsageError
from .urls import validate_url

PREFIX = "setting:"
TIMEMAPS = "timemaps"
WITNESS = "witness"
WITNESSES_KNOWN = ("wayback",)
DESCRIPTIONS = {
    TIMEMAPS: "TimeMap URLs of the archives or aggregators a Memento lookup asks ({url} stands for the source)",
    WITNESS: "independent witness asked to capture every page captured (wayback), none by default",
}


def stored(db: Any, name: str) -> Any:
    """The stored value of setting ``name``; None when it was never set or was cleared."""
    _known(name)
    row = one(db, "SELECT value FROM meta WHERE key = ?", [PREFIX + name])
    return json.loads(row["value"]) if row else None


def every_setting(db: Any) -> dict[str, Any]:
    """Every known setting with its stored value (None when unset)."""
    return {name: stored(db, name) for name in DESCRIPTIONS}


def store(db: Any, name: str, values: list[str]) -> Any:
    """Validate and store setting ``name`` (an empty list clears it), with a custody entry;
    returns the stored value. UsageError naming what is wrong; nothing is stored then."""
    value = _validated(name, values)
    with transaction(db):
        if value is None:
            db.execute("DELETE FROM meta WHERE key = ?", [PREFIX + name])
        else:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [PREFIX + name, json.dumps(value)])
        custody.append(db, "setting", name, {"setting": name, "value": value})
    return value


def _known(name: str) -> None:
    if name not in DESCRIPTIONS:
        raise UsageError(f"no setting {name!r}: the settings are {', '.join(DESCRIPTIONS)}")


def _validated(name: str, values: list[str]) -> Any:
    _known(name)
    if not values:
        return None
    if name == WITNESS:
        if len(values) != 1 or values[0] not in (*WITNESSES_KNOWN, "none"):
            raise UsageError(f"setting witness: one of {', '.join(WITNESSES_KNOWN)} or none")
        return None if values[0] == "none" else values[0]
    for template in values:
        try:
            validate_url(template.replace("{url}", "x"))
        except InputError as exc:
            raise UsageError(f"setting timemaps: {template!r} is not an http(s) URL ({exc})") from None
    return list(values)
