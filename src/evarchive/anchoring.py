"""Anchoring runs in time: with a TSA configured, every capture, archive and check run ends by
having it timestamp the custody-log head (RFC 3161), so a token exists within minutes of each
capture.

A TSA that is down, answers garbage or sends a token that does not verify never costs a capture:
the attempt is recorded as a custody entry (a finding the run reports), and the next run (or
``evarchive timestamp``) stamps the head again, which covers everything since the last token.
The ASN.1 stack (0.2 s of imports) is loaded only when a TSA is configured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import custody
from .errors import InputError

FAILED_EVENT = "timestamp-failed"
STAMP_EVENTS = ("timestamp", FAILED_EVENT)  # entries about anchoring, which need no anchor themselves
TSA_TIMEOUT = 30.0  # seconds per TSA; a run waits at most this long for each configured one


@dataclass(frozen=True)
class AnchorConfig:
    """The TSAs to ask, in order, and the roots their tokens must chain to (None: not anchored)."""

    urls: list[str]
    roots: list[Any] | None
    timeout: float = TSA_TIMEOUT


@dataclass
class Anchoring:
    """How a run's attempt to anchor the log went."""

    status: str  # 'stamped', 'failed', or 'covered' (nothing new since the last token)
    head_seq: int
    uncovered_from: int | None = None  # the first entry no token covered before this attempt
    timestamp: dict[str, Any] | None = None  # the stored token's row, when stamped
    error: str | None = None
    failure_seq: int | None = None  # the custody entry that records a failed attempt
    tried: list[dict[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def message(self) -> str:
        if self.status == "covered":
            return f"log entry {self.head_seq} and everything before it are already covered by a timestamp"
        if self.status == "stamped" and self.timestamp:
            ts = self.timestamp
            return (f"timestamp {ts['id']}: log entries {self.uncovered_from} to {ts['covers_seq']} stamped by "
                    f"{ts['tsa_subject']} at {ts['gen_time']} via {ts['tsa_url']}")
        if self.uncovered_from is None:  # an explicit stamp of a head an older token covers
            return f"no timestamp: {self.error} (recorded in log entry {self.failure_seq})"
        return (f"no timestamp: {self.error} (recorded in log entry {self.failure_seq}; entries from "
                f"{self.uncovered_from} on are not covered yet: the next capture, check or "
                "`evarchive timestamp` stamps them)")

    def as_dict(self) -> dict[str, Any]:
        stamp = None
        if self.timestamp:
            stamp = {k: v for k, v in self.timestamp.items() if k not in ("token", "tsa_chain_pem",
                                                                           "library_versions")}
        return {"status": self.status, "head_seq": self.head_seq, "uncovered_from": self.uncovered_from,
                "timestamp": stamp, "error": self.error, "failure_log_seq": self.failure_seq,
                "message": self.message()}


def configured(archive: Any, given: list[str] | None) -> AnchorConfig | None:
    """The TSAs of `--tsa`, else EVARCHIVE_TSA, else keys/tsa-urls.txt; None when there are none.

    Called before a run starts, so an unreadable roots file is a usage error before anything is
    captured, not after."""
    listing = archive.path / "keys" / "tsa-urls.txt"
    if not (given or os.environ.get("EVARCHIVE_TSA", "").strip() or listing.exists()):
        return None
    from .timestamping import configured_roots, configured_tsas

    try:
        urls = configured_tsas(archive, given or [])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the TSA list {listing}: {exc}") from None
    if not urls:
        return None
    for url in urls:
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            usable = False
        if not usable:
            raise InputError(f"TSA {url!r} is not an http:// or https:// URL")
    return AnchorConfig(urls, configured_roots(archive, None))


def last_covered_seq(db: Any) -> int:
    """The newest log entry a stored token covers (every token was verified when obtained)."""
    if "timestamps" not in db.table_names():
        return 0
    row = db.execute("SELECT MAX(covers_seq) FROM timestamps").fetchone()
    return row[0] or 0


def first_unanchored(db: Any) -> int | None:
    """The first log entry no token covers yet, leaving aside entries about anchoring itself."""
    marks = ",".join("?" for _ in STAMP_EVENTS)
    row = db.execute(f"SELECT MIN(seq) FROM custody_log WHERE seq > ? AND event NOT IN ({marks})",
                     [last_covered_seq(db), *STAMP_EVENTS]).fetchone()
    return row[0]


def anchor_head(archive: Any, config: AnchorConfig, uncovered_from: int | None = None) -> Anchoring:
    """Timestamp the log head when some entry is not covered yet (from `uncovered_from`, when the
    caller knows better than the stored tokens, e.g. one of them no longer verifies); a failure is
    logged, not raised."""
    head = custody.head(archive.db)
    first = uncovered_from if uncovered_from is not None else first_unanchored(archive.db)
    if head is None or first is None:
        return Anchoring("covered", head["seq"] if head else 0)
    return _stamp(archive, config, head, first)


def stamp_now(archive: Any, config: AnchorConfig) -> Anchoring:
    """Timestamp the log head now, covered or not (``evarchive timestamp``). As at the end of a run,
    a failure of every TSA is logged (so the log shows the attempt, as cron made it) and returned."""
    return _stamp(archive, config, custody.head(archive.db), first_unanchored(archive.db))


def _stamp(archive: Any, config: AnchorConfig, head: dict[str, Any] | None, first: int | None) -> Anchoring:
    from .timestamping import TimestampError, stamp_head

    try:
        row = stamp_head(archive, config.urls, config.roots, config.timeout)  # refuses an empty log
    except TimestampError as exc:
        assert head is not None
        return _record_failure(archive.db, config, head, first, str(exc))
    return Anchoring("stamped", row["covers_seq"], first, timestamp=row,
                     tried=[{"tsa": u, "error": e} for u, e in row["failures"]])


def _record_failure(db: Any, config: AnchorConfig, head: dict[str, Any], first: int | None,
                    error: str) -> Anchoring:
    entry = custody.append(db, FAILED_EVENT, config.urls[0], {
        "tsa_urls": config.urls, "error": error, "head_seq": head["seq"], "head_hash": head["entry_hash"],
        "uncovered_from_seq": first})
    return Anchoring("failed", head["seq"], first, error=error, failure_seq=entry["seq"])
