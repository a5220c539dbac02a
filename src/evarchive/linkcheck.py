"""The old import path of the check engine, which now lives in ``evarchive/check/``.

Kept so that code written against ``evarchive.linkcheck`` (scripts, branches in flight) goes on
working; new code imports from the part it needs (``evarchive.check.run``, ``.verdicts``, ...).
"""

from __future__ import annotations

from .check.baselines import read_capture_payload, read_response_payload
from .check.diff import DiffResult, diff_source
from .check.fetch import PROBE_PREFIX, Slots, error_kind
from .check.results import CheckReport, CheckResult
from .check.rot import last_check_run, recent_checks, rot_view, source_states
from .check.run import CheckLock, check_sources, refuse_bad_urls, report_sources, select_sources
from .check.settings import CheckSettings
from .check.strikes import StrikeRule, StrikeState, next_strikes, parse_interval
from .check.verdicts import (
    DEFAULT_DRIFT_THRESHOLD,
    VERDICTS,
    Baseline,
    Hop,
    Observation,
    Verdict,
    capture_observation,
    capture_verdict,
    classify,
)

__all__ = [
    "DEFAULT_DRIFT_THRESHOLD", "PROBE_PREFIX", "VERDICTS", "Baseline", "CheckLock", "CheckReport",
    "CheckResult", "CheckSettings", "DiffResult", "Hop", "Observation", "Slots", "StrikeRule",
    "StrikeState", "Verdict", "capture_observation", "capture_verdict", "check_sources",
    "classify", "diff_source", "error_kind", "last_check_run", "next_strikes", "parse_interval",
    "read_capture_payload", "read_response_payload", "recent_checks", "refuse_bad_urls",
    "report_sources", "rot_view", "select_sources", "source_states",
]
