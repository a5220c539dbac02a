"""Reading imported reports back: reports, their claims and sources, and which are preserved
(a capture whose WARC records still hash as catalogued)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..catalogue import one
from ..queries import IS_LATEST_VERSION, find_report, latest_version, not_support_reason, supporting
from ..records import member_sha256


def list_reports(db: Any, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every report with its latest version, and how many of its claims are preserved (with
    ``warcs_dir``: have a capture whose bytes are intact)."""
    rows = list(db.query("""
        SELECT r.id, r.title, r.path, v.id AS version_id, v.version, v.sha256, v.format,
               v.imported_at, v.claims, v.citations, v.sources,
               (SELECT COUNT(*) FROM report_versions x WHERE x.report_id = r.id) AS versions
        FROM reports r JOIN report_versions v ON v.report_id = r.id
        WHERE """ + IS_LATEST_VERSION + """
        ORDER BY r.id"""))
    for row in rows:
        claims = claims_of_version(db, row["version_id"], warcs_dir)
        row["claims_preserved"] = sum(c["preserved"] for c in claims)
        row["sources_archived"] = source_stats(db, row["version_id"])["archived"]
    return rows


def source_stats(db: Any, version_id: int) -> dict[str, int]:
    """How many distinct sources a version cites, and how many of them have a capture that supports a claim."""
    row = one(db, """
        SELECT COUNT(DISTINCT c.source_id) AS sources,
               COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM captures k WHERE k.source_id = c.source_id
                                                AND """ + supporting("k") + """) THEN c.source_id END) AS archived
        FROM citations c WHERE c.version_id = ?""", [version_id])
    return {"sources": int(row["sources"] or 0), "archived": int(row["archived"] or 0)} if row else \
        {"sources": 0, "archived": 0}


def claims_of_version(db: Any, version_id: int, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Claims of one version, each with its cited sources and whether each is preserved.

    With ``warcs_dir``, preserved means an intact capture: a good capture whose records still hold
    the bytes the catalogue vouches for (``capture_id`` is the newest such capture; ``damaged``
    says the source has good captures but none intact). Without it, any good capture counts.
    """
    claims = {row["id"]: {**row, "sources": [], "preserved": False} for row in db.query(
        "SELECT id, ordinal, text, sha256, scope, paragraph, page, line, offset FROM claims "
        "WHERE version_id = ? ORDER BY ordinal", [version_id])}
    rows = list(db.query("""
            SELECT c.claim_id, c.url, c.via, c.note, c.source_id,
                   (SELECT s.url FROM sources s WHERE s.id = c.source_id) AS source_url,
                   (SELECT k.id FROM captures k WHERE k.source_id = c.source_id AND """ + supporting("k") + """
                     ORDER BY k.id DESC LIMIT 1) AS capture_id,
                   (SELECT k.id FROM captures k WHERE k.source_id = c.source_id AND k.status = 'ok'
                     ORDER BY k.id DESC LIMIT 1) AS last_ok_id
            FROM citations c WHERE c.version_id = ? ORDER BY c.claim_id, c.ordinal""", [version_id]))
    intact = intact_captures(db, warcs_dir, {r["source_id"] for r in rows}) if warcs_dir else None
    for row in rows:
        claim = claims[row["claim_id"]]
        capture_id = intact[row["source_id"]] if intact is not None else row["capture_id"]
        preserved = capture_id is not None
        claim["sources"].append({"url": row["url"], "source_url": row["source_url"],
                                 "source_id": row["source_id"], "via": row["via"],
                                 "note": row["note"], "capture_id": capture_id, "preserved": preserved,
                                 "damaged": row["capture_id"] is not None and not preserved,
                                 "not_the_page": _not_the_page(db, row) if not preserved else None})
        claim["preserved"] = claim["preserved"] or preserved
    return list(claims.values())


def _not_the_page(db: Any, citation: dict[str, Any]) -> str | None:
    """Why the source's latest successful capture does not support a claim (a soft 404, a wall),
    when it has such a capture and none that supports."""

    if citation["capture_id"] is not None or citation["last_ok_id"] is None:
        return None
    capture = one(db, "SELECT * FROM captures WHERE id = ?", [citation["last_ok_id"]])
    return not_support_reason(capture) if capture else None


def intact_captures(db: Any, warcs_dir: Path, source_ids: Iterable[int]) -> dict[int, int | None]:
    """Per source, its newest good capture whose records are all intact on disk (a revisit also
    needs its original's), or None. Reads and hashes the records' exact bytes: a WARC file that
    was deleted, truncated or altered since the capture no longer preserves anything."""
    wanted = list(dict.fromkeys(source_ids))
    by_source: dict[int, list[dict[str, Any]]] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        for row in db.query(
                f"SELECT id, source_id, refers_to_capture_id FROM captures WHERE {supporting()} "
                f"AND source_id IN ({', '.join('?' for _ in chunk)}) ORDER BY id DESC", chunk):
            by_source.setdefault(row["source_id"], []).append(row)
    checker = _RecordChecker(db, warcs_dir)
    try:
        return {sid: next((c["id"] for c in by_source.get(sid, []) if checker.capture_intact(c)), None)
                for sid in wanted}
    finally:
        checker.close()


class _RecordChecker:
    """Hashes catalogued WARC records at their offsets, once per capture, one handle per file."""

    def __init__(self, db: Any, warcs_dir: Path) -> None:
        self.db, self.warcs_dir = db, warcs_dir
        self.files: dict[str, Any] = {}
        self.known: dict[int, bool] = {}

    def capture_intact(self, capture: dict[str, Any]) -> bool:
        return self._records_intact(capture["id"]) and (
            capture["refers_to_capture_id"] is None or self._records_intact(capture["refers_to_capture_id"]))

    def _records_intact(self, capture_id: int) -> bool:
        if capture_id not in self.known:
            records = list(self.db.query(
                "SELECT warc_file, offset, length, member_sha256 FROM capture_records WHERE capture_id = ?",
                [capture_id]))
            self.known[capture_id] = bool(records) and all(self._member_intact(r) for r in records)
        return self.known[capture_id]

    def _member_intact(self, record: dict[str, Any]) -> bool:
        name = record["warc_file"]
        if name not in self.files:
            try:
                self.files[name] = open(self.warcs_dir / name, "rb")  # noqa: SIM115 - closed in close()
            except OSError:
                self.files[name] = None
        fh = self.files[name]
        if fh is None or record["member_sha256"] is None:
            return False
        return member_sha256(fh, record["offset"], record["length"]) == record["member_sha256"]

    def close(self) -> None:
        for fh in self.files.values():
            if fh is not None:
                fh.close()


def report_claims(db: Any, ref: str | None = None, warcs_dir: Path | None = None) -> list[dict[str, Any]]:
    """Claims of the latest version of one report (or of every report), with report fields;
    ``warcs_dir`` as for :func:`claims_of_version`."""
    reports = [find_report(db, ref)] if ref else list(db.query("SELECT * FROM reports ORDER BY id"))
    out = []
    for report in reports:
        latest = latest_version(db, report["id"])
        if latest is None:
            continue
        for claim in claims_of_version(db, latest["id"], warcs_dir):
            out.append({"report_id": report["id"], "report": report["title"],
                        "version": latest["version"], **claim})
    return out


def claims_citing(db: Any, source_id: int) -> list[dict[str, Any]]:
    """Claims (latest version of each report) that cite a source, for ``evarchive show``."""
    return list(db.query("""
        SELECT r.id AS report_id, r.title AS report, v.version, k.id AS claim_id, k.paragraph, k.page,
               k.line, k.text, c.url AS cited_as, c.via, c.note
        FROM citations c JOIN claims k ON k.id = c.claim_id
        JOIN report_versions v ON v.id = c.version_id JOIN reports r ON r.id = v.report_id
        WHERE c.source_id = ? AND """ + IS_LATEST_VERSION + """
        ORDER BY r.id, k.ordinal""", [source_id]))


def sources_to_capture(db: Any, version_id: int, warcs_dir: Path | None = None) -> list[str]:
    """URLs (as first cited) of the version's sources that have no good capture yet, or (with
    ``warcs_dir``) no intact one: a capture whose WARC bytes were lost is captured anew."""
    rows = list(db.query("""
        SELECT s.id, s.url, EXISTS (SELECT 1 FROM captures k WHERE k.source_id = s.id AND """ + supporting("k") + """)
               AS captured
        FROM sources s WHERE s.id IN (SELECT source_id FROM citations WHERE version_id = ?)
        ORDER BY s.id""", [version_id]))
    intact = intact_captures(db, warcs_dir, [r["id"] for r in rows if r["captured"]]) if warcs_dir else {}
    return [r["url"] for r in rows if not r["captured"] or (warcs_dir and intact[r["id"]] is None)]
