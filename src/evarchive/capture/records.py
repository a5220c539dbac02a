"""A hop's WARC records (request, response or revisit) and the provenance fields of a capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from .. import __version__
from ..catalogue import last_good_capture, one
from ..check.verdicts import capture_observation, capture_verdict
from ..records import record_intact
from ..warcwriter import RecordBlock, RecordSpec, WarcWriter, WrittenRecord, new_record_id
from .fetch import RENAMED_TE_HEADER, CapturedHop
from .settings import CaptureSettings, proxy_kind

REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"


# --------------------------------------------------------------------------- WARC records
def _http_block(hop: CapturedHop) -> RecordBlock:
    return RecordBlock(hop.response_head, hop.body, hop.body_length, hop.block_sha256)


def revisit_target(db: Any, source_id: int, payload_sha256: str,
                    warcs_dir: Path | None = None) -> dict[str, Any] | None:
    """The record a revisit should refer to, when the last good capture had this same payload.

    One cheap query decides the common cases (a new source, a changed page); only a matching
    payload goes on to find the original response and check that its bytes are still intact.
    """
    last = db.conn.execute(
        "SELECT payload_sha256, http_status FROM captures WHERE source_id = ? AND status = 'ok' "
        "ORDER BY id DESC LIMIT 1", [source_id]).fetchone()
    if last is None or last[0] != payload_sha256 or last[1] != 200:
        return None
    return _previous_response(db, source_id, warcs_dir)


def _previous_response(db: Any, source_id: int, warcs_dir: Path | None = None) -> dict[str, Any] | None:
    """The original response record of the last good capture, for a revisit's Refers-To.

    With ``warcs_dir``, only while that record's bytes are still intact on disk: a revisit that
    points at a damaged or lost record preserves nothing, so the payload is written in full.
    """
    last = last_good_capture(db, source_id)
    if not last or last["http_status"] != 200:
        return None
    original_id = last["refers_to_capture_id"] or last["id"]
    original = one(db, "SELECT * FROM captures WHERE id = ?", [original_id])
    record = one(db, "SELECT * FROM capture_records WHERE capture_id = ? AND "
                     "record_type = 'response' ORDER BY id DESC LIMIT 1", [original_id])
    if not original or not record:
        return None
    if warcs_dir is not None and not record_intact(warcs_dir, record):
        return None
    return {"capture": original, "record": record, "payload_sha256": last["payload_sha256"]}


def write_hop_records(writer: WarcWriter, hop: CapturedHop, date: str,
                      revisit_of: dict[str, Any] | None) -> list[WrittenRecord]:
    """Request + response (or revisit) records of one exchange, each naming the other."""
    request_id, response_id = new_record_id(), new_record_id()
    ip = [("WARC-IP-Address", hop.server_ip)] if hop.server_ip else []
    if revisit_of is not None:
        original = revisit_of["record"]
        response_spec = RecordSpec(
            "revisit", hop.url, date, RecordBlock(hop.response_head),
            content_type="application/http; msgtype=response",
            headers=[*ip, ("WARC-Concurrent-To", request_id), ("WARC-Profile", REVISIT_PROFILE),
                     ("WARC-Refers-To", original["record_id"]),
                     ("WARC-Refers-To-Target-URI", original["target_uri"]),
                     ("WARC-Refers-To-Date", revisit_of["capture"]["warc_date"])],
            payload_sha256=hop.payload_sha256, record_id=response_id)
    else:
        truncated = [("WARC-Truncated", "length")] if hop.truncated else []
        response_spec = RecordSpec(
            "response", hop.url, date, _http_block(hop),
            content_type="application/http; msgtype=response",
            headers=[*ip, ("WARC-Concurrent-To", request_id), *truncated],
            payload_sha256=hop.payload_sha256, record_id=response_id)
    request_spec = RecordSpec(
        "request", hop.url, date, RecordBlock(hop.request_bytes),
        content_type="application/http; msgtype=request",
        headers=[*ip, ("WARC-Concurrent-To", response_id)], record_id=request_id)
    return [writer.write(request_spec), writer.write(response_spec)]


def content_verdict(hops: list[CapturedHop]) -> dict[str, Any]:
    """Whether the capture holds the cited page, by the classifier ``check`` uses: a soft 404 or
    a wall is preserved as it was served, and never counts as support for a claim."""

    wall, verdict = capture_verdict(capture_observation(hops))
    return {"wall": wall, "content_verdict": verdict}


def chain_of(hops: list[CapturedHop]) -> list[dict[str, Any]]:
    return [{"url": h.url, "status": h.status, "location": h.location} for h in hops]


def provenance_fields(cited_url: str, hops: list[CapturedHop], settings: CaptureSettings,
                      started: str, ended: str, attempts_note: str | None,
                      revisit_of: dict[str, Any] | None) -> list[tuple[str, Any]]:
    final = hops[-1]
    tls = final.tls or {}
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"),
        ("httpx-version", httpx.__version__),
        ("cited-url", cited_url),
        ("request-url", hops[0].url),
        ("final-url", final.url),
        ("capture-started", started),
        ("capture-ended", ended),
        ("redirect-chain", chain_of(hops)),
        ("http-status", str(final.status)),
        ("http-version", final.http_version),
        ("server-ip", final.server_ip or ""),
        ("server-port", str(final.server_port or "")),
        ("payload-sha256", final.payload_sha256),
        ("payload-size", str(final.body_length)),
        ("truncated", "true" if final.truncated else "false"),
        ("user-agent", settings.user_agent),
        ("proxy", proxy_kind(settings.proxy) or "none"),
        ("transfer-encoding", "stored de-chunked; header renamed to "
                              + RENAMED_TE_HEADER.decode()),
        ("cookies", "none at the start of the capture; only cookies set during its own redirect "
                    "chain were sent, as received (see the request records)"),
    ]
    if tls:
        fields += [("tls-version", tls.get("version") or ""), ("tls-cipher", tls.get("cipher") or ""),
                   ("tls-leaf-sha256", tls.get("leaf_sha256") or ""),
                   ("tls-validated", tls.get("validation") or "")]
    if any(h.head_reconstructed for h in hops):
        fields.append(("response-head", "reconstructed from parsed headers (wire bytes unavailable)"))
    for hop in hops:
        fields += [("finding", f"{hop.url}: {text}") for text in hop.findings]
        fields += [("note", f"{hop.url}: {text}") for text in hop.notes]
    if revisit_of:
        fields.append(("revisit-of-capture", str(revisit_of["capture"]["id"])))
    if attempts_note:
        fields.append(("note", attempts_note))
    return fields
