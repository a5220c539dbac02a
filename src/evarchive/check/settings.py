"""Every knob of a check run, validated where it is built."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..capture import CaptureSettings
from ..errors import UsageError
from .strikes import StrikeRule
from .verdicts import DEFAULT_DRIFT_THRESHOLD

CHECK_MAX_BODY = 16 << 20  # enough for any article; larger bodies are not compared
CHECK_TOTAL_TIMEOUT = 120.0
CHECK_MAX_RETRY_AFTER = 120.0  # a server asking us to wait longer is "blocked" tonight
HEAD_MODES = ("auto", "always", "never")
EVIDENCE_MODES = ("changes", "all")


def check_capture_settings() -> CaptureSettings:
    """The HTTP side of a check by default: a capture's, with the check's own limits."""
    return CaptureSettings(max_body=CHECK_MAX_BODY, total_timeout=CHECK_TOTAL_TIMEOUT,
                           max_retry_after=CHECK_MAX_RETRY_AFTER)


@dataclass
class CheckSettings:
    """Every knob of a check run. ``network`` holds the HTTP side (limits,
    timeouts, retries, resolve, CA file, proxy, and the injectable clock and
    sleep that tests replace)."""

    network: CaptureSettings = field(default_factory=check_capture_settings)
    rule: StrikeRule = field(default_factory=StrikeRule)
    drift_threshold: float = DEFAULT_DRIFT_THRESHOLD
    head: str = "auto"  # auto: HEAD first for non-HTML sources; always; never
    probe: bool = True  # request a random path per site to recognise soft 404s
    second_look: bool = True  # re-fetch a drifted page to set volatile words aside
    evidence: str = "changes"  # WARC evidence for every non-ok verdict, or "all"
    recapture: bool = False
    recapture_network: CaptureSettings | None = None  # default: capture defaults + resolve etc.
    offline_guard: bool = True
    commit_interval: float = 2.0  # seconds between commits at most

    def __post_init__(self) -> None:
        if self.head not in HEAD_MODES:
            raise UsageError(f"--head must be one of {', '.join(HEAD_MODES)}")
        if self.evidence not in EVIDENCE_MODES:
            raise UsageError(f"--evidence must be one of {', '.join(EVIDENCE_MODES)}")
        if not 0.0 < self.drift_threshold <= 1.0:
            raise UsageError("--drift-threshold must be more than 0 and at most 1")
        if self.rule.strikes < 1:
            raise UsageError("--strikes must be at least 1")

    def clock(self) -> dt.datetime:
        return self.network.clock()

    def public(self) -> dict[str, Any]:
        return {"network": self.network.public(), "strikes": self.rule.strikes,
                "min_interval_s": self.rule.min_interval.total_seconds(),
                "drift_threshold": self.drift_threshold, "head": self.head, "probe": self.probe,
                "second_look": self.second_look, "evidence": self.evidence,
                "recapture": self.recapture, "offline_guard": self.offline_guard}
