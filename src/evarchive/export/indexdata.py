"""``bundle.json``: everything the exhibit index shows, as one JSON document. The HTML, text and
CSV indexes are renderings of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import __version__, custody
from ..verify_bundle import capture_facts, check_facts, where, why_no_exhibit
from .custodyfiles import covering_timestamps
from .model import BUNDLE_FORMAT, WACZ_NAME, Exhibit, Plan
from .selection import live_status, not_exported

# --------------------------------------------------------------------------- the exhibit index data

def bundle_data(plan: Plan) -> dict[str, Any]:
    """The bundle's content as one JSON document: the index files are renderings of it."""
    head = plan.head or {"seq": 0, "entry_hash": custody.GENESIS_HASH}
    return {
        "format": BUNDLE_FORMAT, "created": plan.created, "software": f"evarchive {__version__}",
        "selection": plan.mode, "report": _report_data(plan),
        "claims": [_claim_data(c, plan) for c in plan.claims],
        "sources": [_source_data(s, plan) for s in plan.sources],
        "exhibits": [_exhibit_data(e, plan) for e in sorted(plan.exported, key=lambda e: e.number)],
        "not_exported": not_exported(plan),
        "unpreserved_sources": [{"source_id": u["id"], "url": u["url"]} for u in plan.unpreserved_sources],
        "wacz": WACZ_NAME, "time_anchors": plan.time_anchors,
        "custody": {"log": "custody/log.jsonl", "scope": plan.log_scope,
                    "entries": len(plan.log_entries), "head": {"seq": head["seq"], "entry_hash": head["entry_hash"]},
                    "keys": [{"key_id": k["key_id"], "file": f"custody/keys/{k['key_id']}.pem",
                              "created_at": k["created_at"], "retired_at": k["retired_at"]} for k in plan.keys],
                    "timestamps": [_timestamp_data(t) for t in covering_timestamps(plan)]},
    }


def _report_data(plan: Plan) -> dict[str, Any] | None:
    if not plan.report or not plan.version:
        return None
    v = plan.version
    return {"id": plan.report["id"], "title": plan.report["title"], "version": v["version"],
            "file": Path(v["path"]).name, "format": v["format"], "sha256": v["sha256"], "size": v["size"],
            "imported_at": plan.import_entry["at"] if plan.import_entry else v["imported_at"]}


def _claim_data(claim: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {"claim": claim["ordinal"], "where": where(claim), "text": claim["text"], "sha256": claim["sha256"],
            "paragraph": claim["paragraph"], "page": claim["page"], "line": claim["line"], "offset": claim["offset"],
            "citations": [_citation_data(c, plan) for c in claim["citations"]],
            "exhibits": claim["exhibits"], "check_exhibits": claim["checks"],
            "supporting_exhibits": claim["supporting"], "supported": bool(claim["supporting"])}


def _citation_data(cited: dict[str, Any], plan: Plan) -> dict[str, Any]:
    captures = plan.by_source(cited["source_id"], "capture")
    exhibits = [e.number for e in captures]
    data = {"url": cited["url"], "source_id": cited["source_id"], "via": cited["via"], "note": cited["note"],
            "paragraph": cited["paragraph"], "offset": cited["offset"], "exhibits": exhibits}
    if not exhibits:
        data["why_no_exhibit"] = why_no_exhibit(plan.attempts.get(cited["source_id"]))
    elif all(e.not_support for e in captures):
        data["why_no_exhibit"] = "captured, but not the cited page: " + "; ".join(
            f"exhibit {e.number}: {e.not_support}" for e in captures)
    return data


def _source_data(source: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {"source_id": source["id"], "url": source["url"],
            "exhibits": [e.number for e in plan.by_source(source["id"])],
            "live": _live(plan, source["id"]), "latest_check": plan.latest_checks.get(source["id"]),
            **({"witness": plan.witnesses[source["id"]]} if source["id"] in plan.witnesses else {})}


def _live(plan: Plan, source_id: int) -> dict[str, Any]:
    return plan.live.get(source_id) or live_status(None, None)


def _exhibit_data(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    main = exhibit.main_record
    entry = exhibit.entry or {}
    base = {"exhibit": exhibit.number, "kind": exhibit.kind, "source_id": exhibit.source["id"],
            "source_url": exhibit.source["url"], "cited_as": _cited_as(exhibit, plan),
            "custody_seq": entry.get("seq"), "custody_entry_hash": entry.get("entry_hash"),
            "main_record": main.record_id if main else None,
            "records": [r.as_dict() for r in exhibit.records],
            "live": _live(plan, exhibit.source["id"])}
    if exhibit.kind == "check":
        return {**base, **check_facts(exhibit.row)}
    return {**base, **_capture_fields(exhibit, plan)}


def _cited_as(exhibit: Exhibit, plan: Plan) -> list[str]:
    return plan.cited_as(exhibit.source["id"]) or [exhibit.source["url"]]


def _capture_fields(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    row = exhibit.row
    original = next((e.number for e in plan.by_source(exhibit.source["id"], "capture")
                     if e.row["id"] == exhibit.original_of), None) if exhibit.original_of else None
    if exhibit.original_of and original is None:  # a revisit of another source's capture (rare)
        original = next((e.number for e in plan.exported if e.kind == "capture" and e.row["id"] == exhibit.original_of),
                        None)
    witness = plan.witnesses.get(exhibit.source["id"])
    return {"capture_id": row["id"], **capture_facts(row), "revisit_of_exhibit": original,
            **_decoded_fields(exhibit, plan), "chromium_version": exhibit.chromium_version,
            "artefacts": exhibit.artefacts, **({"witness": witness} if witness else {})}


def _decoded_fields(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    """The content coding the page was served with and the SHA-256 of its decoded content (a
    revisit's body is its original's: same payload, so the same decoded content)."""
    main = exhibit.main_record
    holder = main
    if exhibit.original_of:
        original = next((e for e in plan.exhibits if e.kind == "capture" and e.row["id"] == exhibit.original_of), None)
        holder = original.main_record if original else None
    return {"content_encoding": main.content_encoding if main else None,
            "decoded_sha256": holder.decoded_sha256 if holder else None,
            "decoded_note": holder.decoded_note if holder else "not computed: the original capture is missing"}


def _timestamp_data(ts: dict[str, Any]) -> dict[str, Any]:
    return {"id": ts["id"], "token": f"custody/timestamps/{ts['id']}.tsr",
            "chain": f"custody/timestamps/{ts['id']}-chain.pem", "tsa_url": ts["tsa_url"],
            "tsa_subject": ts["tsa_subject"], "gen_time": ts["gen_time"], "covers_seq": ts["covers_seq"],
            "digest": ts["digest"], "token_sha256": ts["token_sha256"], "serial": ts["serial"]}
