"""The custody files a bundle carries: the log entries that vouch for its exhibits and claims
(the whole chain from the first of them, or only those entries), the head, public keys and
the RFC 3161 tokens that cover the exhibits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlite_utils

from .. import custody
from .model import Plan, write_text
from .selection import chunks

# --------------------------------------------------------------------------- custody files

def write_custody(db: sqlite_utils.Database, plan: Plan, folder: Path) -> None:
    folder.mkdir()
    plan.log_entries = _log_entries(db, plan)
    write_text(folder / "log.jsonl", "".join(
        json.dumps({c: row[c] for c in custody.ENTRY_COLUMNS}, ensure_ascii=False) + "\n"
        for row in plan.log_entries))
    head = plan.head or {"seq": 0, "entry_hash": custody.GENESIS_HASH}
    write_text(folder / "head.txt", f"{head['seq']} {head['entry_hash']}\n")
    for key in plan.keys:
        write_text(folder / "keys" / f"{key['key_id']}.pem", key["public_key_pem"])
    for ts in covering_timestamps(plan):
        (folder / "timestamps").mkdir(exist_ok=True)
        (folder / "timestamps" / f"{ts['id']}.tsr").write_bytes(ts["token"])
        write_text(folder / "timestamps" / f"{ts['id']}-chain.pem", "".join(json.loads(ts["tsa_chain_pem"])))


def covering_timestamps(plan: Plan) -> list[dict[str, Any]]:
    """For each exhibit's entry, the earliest token over a log head at or after it: it proves
    the capture existed no later than that token's time."""
    seqs = {e.entry["seq"] for e in plan.exported if e.entry}
    chosen: dict[int, dict[str, Any]] = {}
    for seq in seqs:
        ts = next((t for t in plan.timestamps if t["covers_seq"] >= seq), None)
        if ts is not None:
            chosen[ts["id"]] = ts
    return [chosen[k] for k in sorted(chosen)]


def _log_entries(db: sqlite_utils.Database, plan: Plan) -> list[dict[str, Any]]:
    """'chain': every entry from the first vouching one to the head, so the chain can be
    recomputed up to a head anchored elsewhere. 'entries': only the entries the bundle cites
    (vouching, timestamps and what they cover, keys, head): other captures stay undisclosed."""
    cols = ", ".join(custody.ENTRY_COLUMNS)
    vouching = {e.entry["seq"] for e in plan.exported if e.entry}
    vouching |= {live["custody_seq"] for live in plan.live.values() if live.get("vouched")}
    # and the failed attempts the index gives as the reason a cited source has no exhibit
    vouching |= {a["custody_seq"] for a in plan.attempts.values()
                 if a["custody_seq"] and not plan.by_source(a["source_id"], "capture")}
    if plan.import_entry is not None:  # the import entry vouches for the claims the index shows
        vouching.add(plan.import_entry["seq"])
    for witness in plan.witnesses.values():  # and these for the witnesses' copies it shows
        vouching |= {witness["custody_seq"], witness["compared_seq"]} - {None}
    if not vouching or plan.head is None:
        return []
    head_seq = plan.head["seq"]
    if plan.log_scope == "chain":
        return list(db.query(f"SELECT {cols} FROM custody_log WHERE seq >= ? AND seq <= ? ORDER BY seq",
                             [min(vouching), head_seq]))
    stamps = covering_timestamps(plan)
    wanted = vouching | {t["covers_seq"] for t in stamps} | {head_seq}
    wanted |= {r["seq"] for r in db.query(
        "SELECT seq FROM custody_log WHERE seq <= ? AND (event = 'keys-generate' OR (event = 'timestamp' "
        "AND json_extract(details, '$.timestamp_id') IN (SELECT value FROM json_each(?))))",
        [head_seq, json.dumps([t["id"] for t in stamps])])}
    return _rows_by_seq(db, cols, sorted(wanted))


def _rows_by_seq(db: sqlite_utils.Database, cols: str, seqs: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in chunks(seqs):
        marks = ",".join("?" for _ in part)
        rows += db.query(f"SELECT {cols} FROM custody_log WHERE seq IN ({marks}) ORDER BY seq", part)
    return rows
