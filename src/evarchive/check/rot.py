"""The morning read: which sources still say what was cited, and which claims lost theirs.

A source's live state comes from its latest check (and since when); its archived copy is its
latest capture that supports a claim, and whether every one of its records still has its bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

from ..archive import Archive
from ..catalogue import one
from ..queries import supporting
from .results import parse_time
from .verdicts import FAILING

def recent_checks(db: Any, source_id: int, limit: int = 10) -> list[dict[str, Any]]:
    """A source's latest checks, newest first (for ``evarchive show``)."""
    if "checks" not in db.table_names():
        return []
    return list(db.query(
        "SELECT id, checked_at, verdict, detail, reason, http_status, final_url, similarity, "
        "strikes, confirmed, change, warc_file FROM checks WHERE source_id = ? "
        "ORDER BY id DESC LIMIT ?", [source_id, limit]))


STALE_CHECK = dt.timedelta(days=2)  # a nightly job that has not finished a run for this long


def last_check_run(archive: Archive, now: dt.datetime | None = None) -> dict[str, Any] | None:
    """The latest finished check run (when, how many sources, how old), or None if none ever
    finished: the morning read must not call an archive nobody checks "all live"."""
    row = one(archive.db, "SELECT id, command, started_at, ended_at FROM runs "
                          "WHERE command LIKE 'check (%' AND ended_at IS NOT NULL ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    count = re.match(r"check \((\d+) sources?\)", row["command"])
    age = (now or dt.datetime.now(dt.UTC)) - parse_time(row["ended_at"])
    return {"run_id": row["id"], "ended_at": row["ended_at"], "sources": int(count.group(1)) if count else None,
            "age_hours": round(age.total_seconds() / 3600, 1), "stale": age > STALE_CHECK}


LIVE_STATES = ("live", "changed", "failing", "dead", "blocked", "unchecked")


def source_states(archive: Archive, source_ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
    """Per source: its live state from the latest check (and since when), and
    whether its latest good capture is intact on disk."""
    from ..verify import member_hashes  # lazy: verify costs start-up that only rot needs

    db = archive.db
    rows = {r["id"]: r for r in db.query("SELECT * FROM sources ORDER BY id")
            if source_ids is None or r["id"] in source_ids}
    latest = {r["source_id"]: r for r in db.query(
        "SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
        "GROUP BY source_id) m ON k.id = m.id")}
    captures = {r["source_id"]: r for r in db.query(  # an archived copy is one that supports a claim
        "SELECT c.* FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures "
        f"WHERE {supporting()} GROUP BY source_id) m ON c.id = m.id")}
    out: dict[int, dict[str, Any]] = {}
    for source_id, source in rows.items():
        check = latest.get(source_id)
        state, since = _live_state(db, check)
        capture = captures.get(source_id)
        out[source_id] = {
            "source_id": source_id, "url": source["url"], "live": state, "since": since,
            "verdict": check["verdict"] if check else None,
            "detail": check["detail"] if check else None,
            "reason": check["reason"] if check else None,
            "strikes": check["strikes"] if check else 0,
            "last_checked": check["checked_at"] if check else None,
            "archived": _archived_copy(archive, capture, member_hashes)}
    return out


def _live_state(db: Any, check: dict[str, Any] | None) -> tuple[str, str | None]:
    if check is None:
        return "unchecked", None
    verdict = check["verdict"]
    if verdict in FAILING:
        return ("dead" if check["confirmed"] else "failing"), check["first_failure_at"]
    if verdict == "blocked":
        return "blocked", _streak_start(db, check, ("blocked",))
    if verdict == "drifted":
        return "changed", _streak_start(db, check, ("drifted",))
    return "live", None


def _streak_start(db: Any, check: dict[str, Any], verdicts: tuple[str, ...]) -> str | None:
    marks = ", ".join("?" for _ in verdicts)
    row = one(db, f"SELECT MIN(checked_at) AS since FROM checks WHERE source_id = ? AND id > "
                  f"(SELECT COALESCE(MAX(id), 0) FROM checks WHERE source_id = ? AND "
                  f"verdict NOT IN ({marks}))",
              [check["source_id"], check["source_id"], *verdicts])
    return row["since"] if row else None


def _archived_copy(archive: Archive, capture: dict[str, Any] | None,
                   member_hashes: Callable[..., dict[tuple[int, int], str | None]]
                   ) -> dict[str, Any] | None:
    """The latest good capture and whether every one of its records still has
    the bytes the catalogue vouches for (a revisit also needs its original)."""
    if capture is None:
        return None
    ids = [capture["id"]] + ([capture["refers_to_capture_id"]] if capture["refers_to_capture_id"] else [])
    marks = ", ".join("?" for _ in ids)
    records = list(archive.db.query(
        f"SELECT * FROM capture_records WHERE capture_id IN ({marks})", ids))
    intact = bool(records)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_file.setdefault(record["warc_file"], []).append(record)
    for name, recs in by_file.items():
        path = archive.warcs_dir / name
        if not path.exists():
            intact = False
            continue
        hashes = member_hashes(path, [(r["offset"], r["length"]) for r in recs])
        intact = intact and all(hashes.get((r["offset"], r["length"])) == r["member_sha256"]
                                for r in recs)
    return {"capture_id": capture["id"], "captured_at": capture["started_at"],
            "warc_file": capture["warc_file"], "intact": intact}


def rot_view(archive: Archive, report: str | None = None,
             everything: bool = False) -> list[dict[str, Any]]:
    """The morning view: every claim that has lost (or is losing) a live
    source, since when, and whether each source still has an intact archived
    copy. Without imported reports, one row per source."""
    db = archive.db
    claims: list[dict[str, Any]] = []
    if report is not None or (one(db, "SELECT 1 AS x FROM citations LIMIT 1") is not None):
        from ..reports import report_claims

        claims = report_claims(db, report)
    if not claims:
        if report is not None:
            return []
        states = source_states(archive)
        rows = [{"claim_id": None, "report": None, "text": None, "status": _claim_status([s]),
                 "sources": [s]} for s in states.values()]
    else:
        ids = sorted({s["source_id"] for c in claims for s in c["sources"]})
        states = source_states(archive, ids)
        rows = []
        for claim in claims:
            srcs = [states[s["source_id"]] for s in claim["sources"] if s["source_id"] in states]
            rows.append({"claim_id": claim["id"], "report": claim["report"],
                         "report_id": claim["report_id"], "version": claim["version"],
                         "paragraph": claim["paragraph"], "page": claim["page"],
                         "line": claim["line"], "text": claim["text"],
                         "status": _claim_status(srcs), "sources": srcs})
    if not everything:
        rows = [r for r in rows if r["status"] not in ("live", "unchecked")]
    for row in rows:
        row["lost_since"] = min((s["since"] for s in row["sources"]
                                 if s["live"] in ("dead", "changed", "failing") and s["since"]),
                                default=None)
        row["unpreserved"] = [s["url"] for s in row["sources"]
                              if s["live"] in ("dead", "changed", "failing")
                              and not (s["archived"] and s["archived"]["intact"])]
    return rows


def _claim_status(sources: list[dict[str, Any]]) -> str:
    """live: some source still says it; lost: every source is dead or changed;
    at-risk: none live, some only failing, blocked or unchecked."""
    states = {s["live"] for s in sources}
    if not sources or states == {"unchecked"}:
        return "unchecked"
    if "live" in states:
        return "live" if states <= {"live", "unchecked"} else "partly-lost"
    if states <= {"dead", "changed"}:
        return "lost"
    return "at-risk"
