"""What a verification run found: each problem localised, the run's result, and the claims a
damaged capture leaves without evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .scan import INFLATER
from .scope import Locator
from .sql import columns_of, in_chunks


@dataclass
class Problem:
    """One finding, localised as precisely as the evidence allows."""

    kind: str
    message: str
    severity: str = "problem"  # "problem" fails the run; "note" is information
    file: str | None = None
    offset: int | None = None
    record_id: str | None = None
    capture_id: int | None = None
    check_id: int | None = None  # a live check whose evidence or row this is about
    url: str | None = None
    log_seq: int | None = None
    table: str | None = None
    column: str | None = None
    claims: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class VerifyResult:
    mode: str
    scope: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    records: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    log_head: str | None = None
    inflater: str = INFLATER

    @property
    def failures(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "problem"]

    @property
    def notes(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "note"]

    @property
    def intact(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": "intact" if self.intact else "problems",
            "mode": self.mode,
            "scope": self.scope,
            "files": self.files,
            "bytes": self.bytes,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            "log_head": self.log_head,
            "inflater": self.inflater,
            "problems": [p.as_dict() for p in self.failures],
            "notes": [p.as_dict() for p in self.notes],
        }


class Findings:
    """Where one part of a run puts its problems and notes (the list is the caller's)."""

    def __init__(self, problems: list[Problem] | None = None) -> None:
        self.problems: list[Problem] = [] if problems is None else problems

    def add(self, kind: str, message: str, **where: Any) -> Problem:
        problem = Problem(kind, message, **where)
        self.problems.append(problem)
        return problem

    def note(self, kind: str, message: str, **where: Any) -> Problem:
        return self.add(kind, message, severity="note", **where)


# ------------------------------------------------------------------ claims


def attach_claims(db: Any, where: Locator, failures: list[Problem]) -> None:
    """Name the claims that cite each damaged capture's source, and whether any intact capture remains."""
    damaged: dict[int, set[int]] = {}
    source_of: dict[int, int] = {}
    for p in failures:
        cap = where.capture(p.capture_id) if p.capture_id is not None else None
        if cap is not None:
            source_of[p.capture_id] = cap["source_id"]  # type: ignore[index]
            damaged.setdefault(cap["source_id"], set()).add(cap["id"])
    if not damaged:
        return
    claims = claims_citing(db, set(damaged))
    good: dict[int, list[int]] = {}  # the source's ok captures, looked up once per source
    for p in failures:
        src = source_of.get(p.capture_id) if p.capture_id is not None else None
        if src is None:
            continue
        if src not in good:
            good[src] = [r[0] for r in db.execute(
                "SELECT id FROM captures WHERE source_id = ? AND status = 'ok' ORDER BY id", [src])]
        intact = [c for c in good[src] if c not in damaged[src]]
        for label in claims.get(src, []):
            if intact:
                p.claims.append(f"{label} still has {len(intact)} intact capture(s) of this source")
            else:
                p.claims.append(f"{label} has lost its only intact capture")


def claims_citing(db: Any, source_ids: set[int]) -> dict[int, list[str]]:
    """'claim N of report X' labels for the claims citing each source (issue 3's tables)."""
    cit, cl, rep = (set(columns_of(db, t)) for t in ("citations", "claims", "reports"))
    if not ({"claim_id", "source_id"} <= cit and "id" in cl):
        return {}
    number = next((c for c in ("number", "ordinal", "seq", "position", "label") if c in cl), "id")
    title = next((c for c in ("title", "name", "path", "filename") if c in rep), "id") if rep else None
    join = f", r.[{title}] AS report" if title and "report_id" in cl else ", NULL AS report"
    frm = "FROM citations ci JOIN claims c ON c.id = ci.claim_id"
    if title and "report_id" in cl:
        frm += " LEFT JOIN reports r ON r.id = c.report_id"
    out: dict[int, list[str]] = {}
    for part, marks in in_chunks(sorted(source_ids)):  # a lost file can take thousands of sources with it
        sql = f"SELECT DISTINCT ci.source_id AS source_id, c.[{number}] AS number{join} {frm} " \
              f"WHERE ci.source_id IN ({marks})"
        for row in db.query(sql, part):
            label = f"claim {row['number']}" + (f" of report {row['report']}" if row["report"] is not None else "")
            out.setdefault(row["source_id"], []).append(label)
    return out
