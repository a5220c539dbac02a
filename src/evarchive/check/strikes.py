"""When failing checks make a source dead: strikes, their confirmation, and the offline rule.

A failing verdict (gone, soft-404, unreachable) is only *confirmed* after N consecutive failing
checks spread over a minimum interval: a site that is down for a night, or a flaky network, must
not make a source "dead". And when no host answered at all, the machine running the check is
offline, not the web: such checks count for nothing. Pure functions, tested without a network.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .verdicts import FAILING, NEUTRAL

DEFAULT_STRIKES = 3
# Three nightly runs are 48 h apart first to last; 36 h leaves room for cron
# jitter and a late run while still refusing three checks within one evening.
DEFAULT_MIN_INTERVAL = dt.timedelta(hours=36)
# Failures that say nothing about the site when every host fails them alike.
NETWORK_DOWN_KINDS = frozenset({"dns", "network", "refused", "timeout"})


@dataclass(frozen=True)
class StrikeRule:
    """When a run of failing checks becomes a confirmed dead source."""

    strikes: int = DEFAULT_STRIKES
    min_interval: dt.timedelta = DEFAULT_MIN_INTERVAL


@dataclass(frozen=True)
class StrikeState:
    """A source's failure streak after a check."""

    strikes: int = 0
    first_failure_at: dt.datetime | None = None
    confirmed: bool = False


def next_strikes(prev: StrikeState, verdict: str, at: dt.datetime, rule: StrikeRule,
                 counted: bool = True) -> StrikeState:
    """Apply one check to the streak. A success resets it; ``blocked`` (and a
    check the run did not count, e.g. the whole network was down) leaves it
    as it was; a failure adds a strike, and the streak is confirmed once it
    has N strikes spread over at least the minimum interval."""
    if not counted or verdict in NEUTRAL:
        return prev
    if verdict not in FAILING:
        return StrikeState()
    first = prev.first_failure_at or at
    strikes = prev.strikes + 1
    confirmed = prev.confirmed or (strikes >= rule.strikes and at - first >= rule.min_interval)
    return StrikeState(strikes, first, confirmed)


def describe_strikes(state: StrikeState, rule: StrikeRule, at: dt.datetime) -> str:
    if state.confirmed:
        return f"confirmed after {state.strikes} failing checks"
    if not state.strikes:
        return ""
    left = max(0, rule.strikes - state.strikes)
    wait = rule.min_interval - (at - state.first_failure_at) if state.first_failure_at else rule.min_interval
    parts = [f"strike {state.strikes} of {rule.strikes}"]
    if left == 0 and wait > dt.timedelta(0):
        parts.append(f"confirmable in {_human_delta(wait)}")
    return ", ".join(parts)


def _human_delta(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours >= 1 else f"{delta.total_seconds() / 60:.0f} min"


def parse_interval(text: str) -> dt.timedelta:
    """``36h``, ``2d``, ``90m``, ``3600s`` or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise ValueError(f"not an interval: {text!r} (use e.g. 36h, 2d, 90m)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


def state_change(prev: dict[str, Any] | None, verdict: str, confirmed: bool,
                 text_sha256: str | None) -> tuple[str | None, bool]:
    """(change label or None, newly failed?) compared with the previous check.

    Newly failed, the finding a cron job mails about (exit 1), is a source
    that just became confirmed dead, or whose main text just drifted (first
    time, or drifted further since the last check).
    """
    if prev is None:
        if confirmed:
            return "confirmed-dead", True
        if verdict == "drifted":
            return "drifted", True
        return (None if verdict == "ok" else verdict), False
    was_confirmed = bool(prev.get("confirmed"))
    if confirmed and not was_confirmed:
        return "confirmed-dead", True
    if verdict == "drifted":
        if prev.get("verdict") != "drifted":
            return "drifted", True
        if text_sha256 and prev.get("text_sha256") and text_sha256 != prev["text_sha256"]:
            return "drifted-further", True
        return None, False
    if was_confirmed and not confirmed:
        return "revived", False
    if verdict != prev.get("verdict"):
        return ("recovered" if verdict == "ok" and prev.get("verdict") in FAILING else verdict), False
    return None, False



def looks_offline(checks: Iterable[tuple[str, str, str]]) -> bool:
    """No server has answered yet, and every check so far, over several hosts,
    failed at the network level: the machine running the check is offline, not
    the web. Such checks are kept but do not count as strikes. ``checks`` are
    (host, verdict, detail) of the checks held back while no host answered."""
    checks = list(checks)
    if len(checks) < 8 or len({host for host, _, _ in checks}) < 3:
        return False
    return all(verdict == "unreachable" and detail in NETWORK_DOWN_KINDS
               for _, verdict, detail in checks)
