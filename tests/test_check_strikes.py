"""When failing checks make a source dead, without a network: strikes, changes, the offline rule."""

from __future__ import annotations

import datetime as dt

import pytest
from fakes import T0

from evarchive.check.strikes import (
    StrikeRule,
    StrikeState,
    describe_strikes,
    looks_offline,
    next_strikes,
    parse_interval,
    state_change,
)

NIGHT = dt.timedelta(hours=24)
RULE = StrikeRule()  # 3 strikes over at least 36 h


def streak(verdicts: list[str], every: dt.timedelta = NIGHT, rule: StrikeRule = RULE) -> StrikeState:
    state = StrikeState()
    for n, verdict in enumerate(verdicts):
        state = next_strikes(state, verdict, T0 + n * every, rule)
    return state


@pytest.mark.parametrize(("verdicts", "every", "expected"), [
    (["gone"], NIGHT, (1, False)),
    (["gone", "soft-404", "unreachable"], NIGHT, (3, True)),  # 48 h first to last
    (["gone", "gone", "gone"], dt.timedelta(hours=1), (3, False)),  # three in one evening
    (["gone", "gone", "gone", "gone"], dt.timedelta(hours=12), (4, True)),  # 36 h at the fourth
    (["gone", "blocked", "gone", "blocked", "gone"], dt.timedelta(hours=12), (3, True)),  # blocked: neutral
    (["gone", "gone", "ok"], NIGHT, (0, False)),  # alive again: the streak starts over
    (["gone", "gone", "drifted"], NIGHT, (0, False)),  # changed is alive
    (["gone", "gone", "gone", "ok"], NIGHT, (0, False)),
    (["moved", "ok"], NIGHT, (0, False)),
], ids=["one failure", "three nights", "one evening", "fourth check", "blocked between", "recovered",
        "drifted", "dead then alive", "never failed"])
def test_a_streak_is_confirmed_after_n_failures_over_the_interval(
        verdicts: list[str], every: dt.timedelta, expected: tuple[int, bool]) -> None:
    state = streak(verdicts, every)
    assert (state.strikes, state.confirmed) == expected


def test_a_check_not_counted_leaves_the_streak_as_it_was() -> None:
    state = streak(["gone", "gone"])
    assert next_strikes(state, "unreachable", T0 + 2 * NIGHT, RULE, counted=False) == state
    assert state.first_failure_at == T0


@pytest.mark.parametrize(("state", "at", "expected"), [
    (StrikeState(), T0, ""),
    (StrikeState(1, T0), T0, "strike 1 of 3"),
    (StrikeState(3, T0), T0 + dt.timedelta(hours=30), "strike 3 of 3, confirmable in 6 h"),
    (StrikeState(3, T0), T0 + dt.timedelta(hours=35, minutes=30), "strike 3 of 3, confirmable in 30 min"),
    (StrikeState(3, T0, True), T0 + 2 * NIGHT, "confirmed after 3 failing checks"),
])
def test_describe_strikes(state: StrikeState, at: dt.datetime, expected: str) -> None:
    assert describe_strikes(state, RULE, at) == expected


DRIFTED = {"verdict": "drifted", "confirmed": 0, "text_sha256": "a"}
GONE = {"verdict": "gone", "confirmed": 0, "text_sha256": None}
DEAD = {"verdict": "gone", "confirmed": 1, "text_sha256": None}
OK = {"verdict": "ok", "confirmed": 0, "text_sha256": "a"}


@pytest.mark.parametrize(("prev", "verdict", "confirmed", "text", "expected"), [
    (None, "ok", False, "a", (None, False)),
    (None, "drifted", False, "b", ("drifted", True)),
    (None, "gone", False, None, ("gone", False)),
    (None, "gone", True, None, ("confirmed-dead", True)),
    (OK, "ok", False, "a", (None, False)),
    (OK, "drifted", False, "b", ("drifted", True)),
    (DRIFTED, "drifted", False, "a", (None, False)),
    (DRIFTED, "drifted", False, "c", ("drifted-further", True)),
    (GONE, "gone", True, None, ("confirmed-dead", True)),
    (DEAD, "gone", True, None, (None, False)),
    (DEAD, "ok", False, "a", ("revived", False)),
    (GONE, "ok", False, "a", ("recovered", False)),
    (OK, "blocked", False, None, ("blocked", False)),
], ids=["first ok", "first drift", "first failure", "first confirmed", "still ok", "drifts", "same drift",
        "drifts further", "becomes dead", "still dead", "revived", "recovered", "blocked"])
def test_what_changed_since_the_last_check(prev: dict | None, verdict: str, confirmed: bool, text: str | None,
                                           expected: tuple[str | None, bool]) -> None:
    assert state_change(prev, verdict, confirmed, text) == expected


def down(host: str, kind: str = "dns") -> tuple[str, str, str]:
    return (host, "unreachable", kind)


@pytest.mark.parametrize(("checks", "offline"), [
    ([down(f"h{n % 4}") for n in range(8)], True),
    ([down(f"h{n % 4}", "timeout") for n in range(8)], True),
    ([down(f"h{n % 4}") for n in range(7)], False),  # too few to tell
    ([down(f"h{n % 2}") for n in range(12)], False),  # two hosts may both be down
    ([*(down(f"h{n % 4}") for n in range(7)), ("h1", "gone", "404")], False),  # a server answered
    ([*(down(f"h{n % 4}") for n in range(7)), down("h1", "tls")], False),  # TLS means a server
], ids=["dns everywhere", "timeouts everywhere", "seven checks", "two hosts", "one answer", "one tls"])
def test_the_offline_rule(checks: list[tuple[str, str, str]], offline: bool) -> None:
    assert looks_offline(checks) is offline


@pytest.mark.parametrize(("text", "seconds"), [
    ("36h", 36 * 3600), ("2d", 2 * 86400), ("90m", 5400), ("3600s", 3600), ("3600", 3600),
    ("1.5h", 5400), ("1w", 604800), (" 2D ", 2 * 86400),
])
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "h", "36 hours", "-1h", "2y"])
def test_parse_interval_refuses_what_is_not_an_interval(text: str) -> None:
    with pytest.raises(ValueError, match="not an interval"):
        parse_interval(text)
