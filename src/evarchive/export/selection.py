"""Choosing what a bundle holds, in one read snapshot of the catalogue: the report's claims and
citations (or the URLs given), each source's captures and live checks with the custody entries
that vouch for them, and the exhibit numbers in the order a reader meets them."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from .. import custody
from ..archive import Archive
from ..catalogue import find_source, one, to_json
from ..errors import UsageError
from ..queries import find_report, latest_version
from ..verify_bundle import live_state, witness_facts
from ..queries import latest_public_copy
from .model import Exhibit, Plan, Record

# --------------------------------------------------------------------------- selection

@contextlib.contextmanager
def _snapshot(db: sqlite_utils.Database) -> Iterator[None]:
    """One read transaction: a capture committed meanwhile is either wholly in or wholly out."""
    if db.conn.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def select(archive: Archive, report: str | None, urls: list[str], latest: bool, checks: bool) -> Plan:
    db = archive.db
    with _snapshot(db):
        rep = version = None
        claims: list[dict[str, Any]] = []
        if report:
            rep, version, claims = _report_claims(db, report)
            source_ids = list(dict.fromkeys(s["source_id"] for c in claims for s in c["citations"]))
            mode = "report"
        elif urls:
            source_ids, mode = _url_sources(db, urls), "urls"
        else:
            source_ids, mode = [r["id"] for r in db.query("SELECT id FROM sources ORDER BY id")], "all"
        sources = _rows_by_id(db, "sources", source_ids)
        exhibits = _capture_exhibits(db, source_ids, latest)
        if mode == "all":
            captured = {e.source["id"] for e in exhibits}
            sources = [s for s in sources if s["id"] in captured]
            if not exhibits:
                raise UsageError("nothing to export: the archive has no successful capture")
        if checks:
            exhibits += _check_exhibits(db, source_ids)
        _attach_entries(db, exhibits)
        latest_checks = _latest_checks(db, source_ids)
        live_entries = _check_entries(db, [c["id"] for c in latest_checks.values()])
        live = {sid: live_status(check, live_entries.get(check["id"])) for sid, check in latest_checks.items()}
        return Plan(mode, rep, version, claims, sources, exhibits, latest_checks, live,
                    custody.head(db), _keys(db), _timestamps(db),
                    {r["name"]: r for r in db.query("SELECT * FROM warc_files")},
                    attempts=_latest_attempts(db, source_ids), witnesses=_witnesses(db, source_ids),
                    import_entry=_import_entry(db, rep, version))


def _latest_attempts(db: sqlite_utils.Database, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each source's latest capture attempt, so an index can say why a claim has no exhibit."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in chunks(source_ids):
        marks = ",".join("?" * len(chunk))
        for row in db.query(f"""
                SELECT c.id, c.source_id, c.status, c.started_at, c.http_status, c.error_class, c.error_message
                FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures
                                      WHERE source_id IN ({marks}) GROUP BY source_id) last ON last.id = c.id""",
                            chunk):
            found[row["source_id"]] = row
    entries = _capture_entries(db, [row["id"] for row in found.values()])
    for row in found.values():  # the entry that vouches for what the index says of the attempt
        row["custody_seq"] = entries[row["id"]]["seq"] if row["id"] in entries else None
    return found


def _import_entry(db: sqlite_utils.Database, rep: dict[str, Any] | None,
                  version: dict[str, Any] | None) -> dict[str, Any] | None:
    """The custody entry that recorded the import of the report version the bundle shows."""
    if rep is None or version is None:
        return None
    return one(db, "SELECT seq, at FROM custody_log WHERE event = 'report-imported' "
                   "AND json_extract(details, '$.report_id') = ? AND json_extract(details, '$.version') = ? "
                   "ORDER BY seq DESC LIMIT 1", [rep["id"], version["version"]])


def _report_claims(db: sqlite_utils.Database, ref: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    rep = find_report(db, ref)  # UsageError for an unknown report
    version = latest_version(db, rep["id"])
    if version is None:
        raise UsageError(f"report {ref!r} has no imported version")
    claims = {row["id"]: {**row, "citations": [], "exhibits": [], "checks": []} for row in db.query(
        "SELECT id, ordinal, text, sha256, scope, paragraph, page, line, offset FROM claims "
        "WHERE version_id = ? ORDER BY ordinal", [version["id"]])}
    for row in db.query("SELECT claim_id, url, via, note, source_id, paragraph, offset FROM citations "
                        "WHERE version_id = ? ORDER BY claim_id, ordinal", [version["id"]]):
        claims[row["claim_id"]]["citations"].append(row)
    return rep, version, list(claims.values())


def _url_sources(db: sqlite_utils.Database, urls: list[str]) -> list[int]:
    ids = []
    for url in urls:
        source = find_source(db, url)
        if source is None:
            raise UsageError(f"no source {url!r} in the catalogue: nothing to export for it")
        if one(db, "SELECT 1 AS x FROM captures WHERE source_id = ? AND status = 'ok'", [source["id"]]) is None:
            raise UsageError(f"{url} has no successful capture: nothing to export for it")
        ids.append(source["id"])
    return list(dict.fromkeys(ids))


def _rows_by_id(db: sqlite_utils.Database, table: str, ids: list[int]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for part in chunks(ids):
        marks = ",".join("?" for _ in part)
        rows.update({r["id"]: r for r in db.query(f"SELECT * FROM [{table}] WHERE id IN ({marks})", part)})
    return [rows[i] for i in ids if i in rows]


def chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _capture_exhibits(db: sqlite_utils.Database, source_ids: list[int], latest: bool) -> list[Exhibit]:
    """Every good capture of the sources (or the latest one), plus the originals revisits need."""
    sources = {s["id"]: s for s in _rows_by_id(db, "sources", source_ids)}
    captures: dict[int, dict[str, Any]] = {}
    for part in chunks(source_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT * FROM captures WHERE status = 'ok' AND source_id IN ({marks}) "
                            "ORDER BY id", part):
            captures[row["id"]] = row
    if latest:
        last = {row["source_id"]: row for row in captures.values()}
        captures = {row["id"]: row for row in last.values()}
    wanted = {row["refers_to_capture_id"] for row in captures.values() if row["refers_to_capture_id"]}
    for row in _rows_by_id(db, "captures", sorted(wanted - set(captures))):
        captures[row["id"]] = row
        sources.setdefault(row["source_id"], one(db, "SELECT * FROM sources WHERE id = ?", [row["source_id"]]))
    records = _records(db, "capture_records", "capture_id", sorted(captures))
    out = []
    for cid in sorted(captures):
        row = captures[cid]
        exhibit = Exhibit("capture", row, sources[row["source_id"]], records.get(cid, []))
        exhibit.original_of = row["refers_to_capture_id"]
        out.append(exhibit)
    return out


def _records(db: sqlite_utils.Database, table: str, owner: str, ids: list[int]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    role = ", role" if table == "check_records" else ""
    for part in chunks(ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT {owner} AS owner, warc_file, offset, length, record_id, record_type, "
                            f"target_uri, block_sha256, payload_sha256, member_sha256{role} FROM [{table}] "
                            f"WHERE {owner} IN ({marks}) ORDER BY warc_file, offset", part):
            owner_id = row.pop("owner")
            out.setdefault(owner_id, []).append(Record(**row))
    return out


def _check_exhibits(db: sqlite_utils.Database, source_ids: list[int]) -> list[Exhibit]:
    """Live checks of the sources that kept what the server answered as WARC evidence."""
    if "checks" not in db.table_names():
        return []
    sources = {s["id"]: s for s in _rows_by_id(db, "sources", source_ids)}
    rows: list[dict[str, Any]] = []
    for part in chunks(source_ids):
        marks = ",".join("?" for _ in part)
        rows += db.query(f"SELECT * FROM checks WHERE source_id IN ({marks}) AND id IN "
                         "(SELECT check_id FROM check_records) ORDER BY id", part)
    records = _records(db, "check_records", "check_id", [r["id"] for r in rows])
    return [Exhibit("check", r, sources[r["source_id"]], records.get(r["id"], [])) for r in rows]


def _attach_entries(db: sqlite_utils.Database, exhibits: list[Exhibit]) -> None:
    """The custody entry that vouches for each exhibit (the capture's, or the check batch's)."""
    by_capture = _capture_entries(db, [e.row["id"] for e in exhibits if e.kind == "capture"])
    by_check = _check_entries(db, [e.row["id"] for e in exhibits if e.kind == "check"])
    for exhibit in exhibits:
        found = (by_capture if exhibit.kind == "capture" else by_check).get(exhibit.row["id"])
        exhibit.entry = found


def _capture_entries(db: sqlite_utils.Database, capture_ids: list[int]) -> dict[int, dict[str, Any]]:
    """capture id -> the custody entry that recorded it."""
    return _entries_naming(db, capture_ids, "capture", "custody_log l", "json_extract(l.details, '$.capture_id')")


def _check_entries(db: sqlite_utils.Database, check_ids: list[int]) -> dict[int, dict[str, Any]]:
    """check id -> the custody entry of the batch that committed it."""
    return _entries_naming(db, check_ids, "check", "custody_log l, json_each(l.details, '$.checks') j",
                           "json_extract(j.value, '$.check_id')")


def _entries_naming(db: sqlite_utils.Database, ids: list[int], event: str, rows: str,
                    owner: str) -> dict[int, dict[str, Any]]:
    """id -> the first ``event`` entry whose details name it (``owner``: where, in SQL over ``rows``)."""
    cols = ", ".join(f"l.{c}" for c in custody.ENTRY_COLUMNS)
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT {cols}, {owner} AS owner FROM {rows} WHERE l.event = ? AND {owner} IN ({marks}) "
                            "ORDER BY l.seq", [event, *part]):
            out.setdefault(row.pop("owner"), row)
    return out


def _latest_checks(db: sqlite_utils.Database, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    if "checks" not in db.table_names():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for part in chunks(source_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
                            f"WHERE source_id IN ({marks}) GROUP BY source_id) m ON k.id = m.id", part):
            out[row["source_id"]] = row
    return out


def _keys(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    if "signing_keys" not in db.table_names():
        return []
    return list(db.query("SELECT key_id, algorithm, public_key_pem, created_at, retired_at FROM signing_keys "
                         "ORDER BY created_at"))


def _timestamps(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    if "timestamps" not in db.table_names():
        return []
    return list(db.query("SELECT * FROM timestamps ORDER BY covers_seq, id"))


# --------------------------------------------------------------------------- numbering and claims

def number_exhibits(plan: Plan) -> None:
    """Exhibit numbers in the order a reader meets them: claim by claim, each source's captures
    oldest first (a revisit's original just before it), then the live-check evidence."""
    by_source: dict[int, list[Exhibit]] = {}
    for exhibit in plan.exhibits:
        by_source.setdefault(exhibit.source["id"], []).append(exhibit)
    by_capture = {e.row["id"]: e for e in plan.exhibits if e.kind == "capture"}
    order = ([s["source_id"] for c in plan.claims for s in c["citations"]] if plan.mode == "report"
             else [s["id"] for s in plan.sources])
    counter = iter(range(1, len(plan.exhibits) + 1))
    for kind in ("capture", "check"):
        for source_id in dict.fromkeys(order):
            for exhibit in by_source.get(source_id, []):
                if exhibit.kind != kind or not exhibit.intact or exhibit.number:
                    continue
                original = by_capture.get(exhibit.original_of) if exhibit.original_of else None
                if original is not None and not original.number:
                    original.number = next(counter)
                exhibit.number = next(counter)
    for claim in plan.claims:
        chosen = [e for sid in dict.fromkeys(s["source_id"] for s in claim["citations"])
                  for e in plan.by_source(sid)]
        claim["exhibits"] = sorted(e.number for e in chosen if e.kind == "capture")
        claim["supporting"] = sorted(e.number for e in chosen if e.kind == "capture" and e.not_support is None)
        claim["checks"] = sorted(e.number for e in chosen if e.kind == "check")


def not_exported(plan: Plan) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "id": e.row["id"], "url": e.source["url"], "problems": e.problems}
            for e in plan.exhibits if not e.number]


def live_status(check: dict[str, Any] | None, entry: dict[str, Any] | None) -> dict[str, Any]:
    """What the latest live check said about the source, in words a judge can read, and whether
    the custody log vouches for that check (its entry carries the SHA-256 of the whole row)."""
    return live_state(check, check is not None and _check_vouched(check, entry), entry["seq"] if entry else None)


def _check_vouched(check: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    if entry is None or custody.entry_hash(entry["seq"], entry["at"], entry["event"], entry["subject"],
                                           entry["details"], entry["prev_hash"]) != entry["entry_hash"]:
        return False
    mine = [c for c in json.loads(entry["details"]).get("checks") or [] if c.get("check_id") == check["id"]]
    return bool(mine) and mine[0].get("row_sha256") == hashlib.sha256(to_json(check).encode()).hexdigest()


def _witnesses(db: sqlite_utils.Database, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each source's latest public copy made by an independent witness, how it compares with our
    capture, and the custody entries that vouch for both (a copy no entry vouches for is left out)."""
    if "witnesses" not in db.table_names():
        return {}
    found = {}
    for source_id in source_ids:
        row = latest_public_copy(db, source_id)
        entry = row and one(db, "SELECT seq FROM custody_log WHERE event = 'witness' AND "
                                "json_extract(details, '$.witness_id') = ? ORDER BY seq LIMIT 1", [row["id"]])
        if not entry:
            continue
        compared = one(db, "SELECT seq, details FROM custody_log WHERE event = 'witness-compared' AND "
                           "json_extract(details, '$.witness_id') = ? ORDER BY seq DESC LIMIT 1", [row["id"]])
        found[source_id] = {**witness_facts(row, json.loads(compared["details"]) if compared else None),
                            "custody_seq": entry["seq"], "compared_seq": compared["seq"] if compared else None}
    return found
