"""A judged check as the user sees it, and the step from a verdict to a source's new state."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import textdiff
from .strikes import StrikeRule, StrikeState, describe_strikes, next_strikes, state_change
from .verdicts import Baseline, Observation, Verdict, with_head_note


@dataclass
class CheckResult:
    """One source's check, as printed (table or ``--json``) and stored."""

    url: str
    source_id: int
    verdict: str
    detail: str
    reason: str
    checked_at: str
    similarity: float | None = None
    http_status: int | None = None
    final_url: str | None = None
    method: str | None = None
    strikes: int = 0
    confirmed: bool = False
    first_failure_at: str | None = None
    change: str | None = None
    newly_failed: bool = False
    counted: bool = True
    elapsed_ms: float | None = None
    check_id: int | None = None
    evidence_warc: str | None = None
    baseline_capture_id: int | None = None
    recapture_id: int | None = None
    strike_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    run_id: int
    results: list[CheckResult]
    offline: bool = False
    recaptured: list[Any] = field(default_factory=list)

    @property
    def newly_failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.newly_failed]

    @property
    def changed(self) -> list[CheckResult]:
        return [r for r in self.results if r.change]



def judged_result(source: dict[str, Any], started: dt.datetime, obs: Observation,
                  baseline: Baseline | None, verdict: Verdict, elapsed_ms: float,
                  stable_digest: str | None, prev_row: dict[str, Any] | None,
                  rule: StrikeRule) -> tuple[CheckResult, str | None]:
    """The check of ``source`` once its answer is judged: the streak moved on from the source's
    previous check (``prev_row``), what changed, and the main text's digest (the stable part's
    when a second look found volatile words; None when the text was never needed)."""
    prev = state_of(prev_row)
    state = next_strikes(prev, verdict.verdict, started, rule)
    parsed = obs.parsed_page
    text_sha = stable_digest or (textdiff.text_digest(parsed) if parsed is not None else None)
    change, newly = state_change(prev_row, verdict.verdict, state.confirmed, text_sha)
    result = CheckResult(
        url=source["url"], source_id=source["id"], verdict=verdict.verdict,
        detail=verdict.detail, reason=with_head_note(verdict.reason, obs),
        checked_at=stamp(started), similarity=verdict.similarity, http_status=obs.status,
        final_url=obs.final_url, method=obs.method, strikes=state.strikes,
        confirmed=state.confirmed,
        first_failure_at=stamp(state.first_failure_at) if state.first_failure_at else None,
        change=change, newly_failed=newly, elapsed_ms=round(elapsed_ms, 1),
        baseline_capture_id=baseline.capture_id if baseline else None,
        strike_note=describe_strikes(state, rule, started))
    return result, text_sha


def state_of(row: dict[str, Any] | None) -> StrikeState:
    """A source's streak as its last check row left it."""
    if not row:
        return StrikeState()
    first = row.get("first_failure_at")
    return StrikeState(int(row.get("strikes") or 0), parse_time(first) if first else None,
                       bool(row.get("confirmed")))


def stamp(moment: dt.datetime) -> str:
    """The catalogue's time format (as catalogue.format_time), via isoformat,
    which is several times faster than strftime: it runs thrice per source."""
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
