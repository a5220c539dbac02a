"""What a bundle's RFC 3161 tokens prove in time, said plainly in its index.

An exhibit is covered when a token that verifies stamps a custody-log entry at or after the
exhibit's own entry: the capture then existed no later than the token's time. Export lists the
exhibits no token covers, and with ``--timestamp`` takes a token itself, which proves existence
no later than the export, not at capture: the index says so beside it.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from typing import Any

from . import anchoring, custody
from .errors import UsageError
from .verify_bundle import time_anchor_rows



def settle(archive: Any, plan: Any, tsas: list[str] | None) -> dict[str, Any]:
    """Keep only tokens that verify, take one at export when `tsas` is given (a list, possibly
    empty: the configured TSAs) and some exhibit is uncovered; the bundle's `time_anchors`."""
    config = _export_config(archive, tsas)
    rejected = _drop_unverified(archive, plan) if plan.timestamps else []
    uncovered = _uncovered(plan)
    attempt = None
    if config is not None and uncovered:
        first = min(e.entry["seq"] if e.entry else 0 for e in uncovered) or None
        attempt = anchoring.anchor_head(archive, config, uncovered_from=first)
        if attempt.timestamp is not None:
            [row] = archive.db.query("SELECT * FROM timestamps WHERE id = ?", [attempt.timestamp["id"]])
            plan.timestamps.append({**row, "taken_at_export": True})
            plan.head = custody.head(archive.db)  # the bundle's log reaches the token's own entry
    return section(plan, rejected, attempt)


def _export_config(archive: Any, tsas: list[str] | None) -> anchoring.AnchorConfig | None:
    if tsas is None:
        return None
    config = anchoring.configured(archive, tsas)
    if config is None:
        raise UsageError("--timestamp needs a TSA: pass --tsa URL, set EVARCHIVE_TSA or list one in "
                         "keys/tsa-urls.txt")
    if archive.read_only:
        raise UsageError("--timestamp stores a token in the archive, which is read-only here")
    return config


def _drop_unverified(archive: Any, plan: Any) -> list[dict[str, Any]]:
    """Keep, in order, the tokens that are the earliest to cover some exhibit and still verify
    offline against the log entry they stamp; one that fails leaves its exhibits to the next.
    Only those are checked (an archive stamps every run: most of its tokens cover no exhibit)."""
    from .timestamping import configured_roots

    roots = configured_roots(archive, None)
    seqs = sorted(e.entry["seq"] for e in plan.exported if e.entry)
    kept, rejected, at = [], [], 0
    for ts in sorted(plan.timestamps, key=lambda t: (t["covers_seq"], t["id"])):
        if at >= len(seqs) or seqs[at] > ts["covers_seq"]:
            continue  # every exhibit it covers has an earlier token
        reason = _why_not_valid(archive, ts, roots)
        if reason:
            rejected.append({"timestamp_id": ts["id"], "reason": reason})
            continue
        kept.append(ts)
        at = bisect.bisect_right(seqs, ts["covers_seq"])
    plan.timestamps = kept
    return rejected


def _why_not_valid(archive: Any, ts: dict[str, Any], roots: Any) -> str | None:
    from .timestamping import TokenInvalid, load_pem_certificates, verify_token

    entry = archive.db.execute("SELECT entry_hash FROM custody_log WHERE seq = ?", [ts["covers_seq"]]).fetchone()
    if entry is None or entry[0] != ts["digest"]:
        return f"the log entry {ts['covers_seq']} it stamps is missing or has changed"
    try:
        chain = load_pem_certificates("".join(json.loads(ts["tsa_chain_pem"])).encode())
        verify_token(ts["token"], bytes.fromhex(ts["digest"]), nonce=int(ts["nonce"]) if ts["nonce"] else None,
                     roots=roots, extra_certs=chain)
    except TokenInvalid as exc:
        return exc.reason
    except ValueError as exc:  # an unreadable stored chain or nonce
        return f"unreadable: {exc}"
    return None


def _covering(plan: Any) -> Callable[[Any], dict[str, Any] | None]:
    """For an exhibit, the earliest token over a head at or after its entry: the one the bundle
    ships for it (plan.timestamps are in the order of the entries they cover)."""
    stamps = plan.timestamps
    keys = [t["covers_seq"] for t in stamps]

    def token_of(exhibit: Any) -> dict[str, Any] | None:
        if not exhibit.entry:
            return None
        at = bisect.bisect_left(keys, exhibit.entry["seq"])
        return stamps[at] if at < len(stamps) else None

    return token_of


def _uncovered(plan: Any) -> list[Any]:
    token_of = _covering(plan)
    return [e for e in plan.exported if token_of(e) is None]


def section(plan: Any, rejected: list[dict[str, Any]], attempt: anchoring.Anchoring | None) -> dict[str, Any]:
    by_token: dict[int, list[int]] = {}
    uncovered = []
    token_of = _covering(plan)
    for e in plan.exported:
        ts = token_of(e)
        if ts is None:
            uncovered.append(e.number)
        else:
            by_token.setdefault(ts["id"], []).append(e.number)
    tokens = [{"timestamp_id": t["id"], "gen_time": t["gen_time"], "tsa_subject": t["tsa_subject"],
               "covers_seq": t["covers_seq"], "exhibits": by_token[t["id"]],
               "taken_at_export": bool(t.get("taken_at_export"))}
              for t in plan.timestamps if t["id"] in by_token]
    failed = attempt.as_dict() if attempt is not None and attempt.failed else None
    return {"covered": sum(len(v) for v in by_token.values()), "uncovered": uncovered, "tokens": tokens,
            "rejected": rejected, "export_timestamp_failed": failed}


def verify_lines(data: dict[str, Any]) -> list[str]:
    """VERIFY.md, after the openssl commands: what the tokens prove, in words."""
    rows = time_anchor_rows(data)
    if not rows:
        return []
    lines = ["", "What the tokens prove: each shows that the exhibits it covers existed no later than its time;",
             "`verify_bundle.py` also checks that no exhibit's `WARC-Date` is after the time of the token",
             "that covers it. A token taken at export proves existence no later than the export, not at capture.",
             ""]
    return lines + [f"- {label}: {value}" for label, value in rows] + [""]
