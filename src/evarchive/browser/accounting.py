"""Every request accounted for: what the browser reports it loaded, beside what the recorder saw.

A request that reached the network unrecorded, or a body the browser used that differs from the
recorded one, is a finding; data:/blob: loads and memory-cache hits are listed as such.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..capture import Hop

if TYPE_CHECKING:
    from ..mitm import Exchange

@dataclass
class BrowserRequest:
    """What the browser itself reported for one request."""

    url: str
    method: str
    resource_type: str
    navigation: bool
    failure: str | None = None
    finished: bool = False
    from_service_worker: bool = False
    status: int | None = None
    response: Any = field(default=None, repr=False)


def decoded_body(hop: Hop, limit: int = 64 << 20) -> bytes | None:
    """The recorded body with its content coding undone (None when that is not possible)."""
    hop.body.seek(0)
    raw = hop.body.read(limit + 1)
    if len(raw) > limit:
        return None
    coding = (hop.headers.get("content-encoding") or "").strip().lower()
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(47).decompress(raw)
        if coding == "deflate":
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return zlib.decompress(raw, -15)
    except zlib.error:
        return None
    return raw if coding in ("", "identity") else None


def account(requests: list[BrowserRequest], exchanges: list[Exchange],
            browser_bodies: dict[int, bytes | None]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every browser request beside what was recorded; returns (rows, findings)."""
    recorded: dict[tuple[str, str], list[Exchange]] = {}
    for ex in exchanges:
        recorded.setdefault((ex.method, ex.url), []).append(ex)
    used: dict[tuple[str, str], int] = {}
    rows, findings = [], []
    for index, req in enumerate(requests):
        scheme = req.url.split(":", 1)[0].lower()
        row: dict[str, Any] = {"url": req.url[:2000], "method": req.method, "type": req.resource_type,
                               "status": req.status}
        if scheme in ("data", "blob", "about", "chrome", "chrome-extension", "javascript"):
            row["served"] = f"{scheme}: URL (no network)"
            rows.append(row)
            continue
        key = (req.method, req.url)
        candidates = recorded.get(key, [])
        position = used.get(key, 0)
        if req.from_service_worker:
            row["served"] = "by a service worker (not recorded)"
            findings.append(f"served by a service worker, not recorded: {req.url}")
        elif position < len(candidates):
            used[key] = position + 1
            ex = candidates[position]
            if ex.hop is None:
                row["served"] = f"recording failed: {ex.error_class}: {ex.error_message}"
            else:
                row["served"] = "recorded"
                row["payload_sha256"] = ex.hop.payload_sha256
                _compare_body(row, ex.hop, browser_bodies.get(index), findings, req.url)
        elif candidates:
            row["served"] = "from the browser's memory cache (a copy of a recorded exchange)"
        elif req.failure:
            row["served"] = f"never reached the network: {req.failure}"
        else:
            row["served"] = "NOT RECORDED"
            findings.append(f"the browser loaded {req.url} but the recorder never saw it")
        rows.append(row)
    return rows, findings


def _compare_body(row: dict[str, Any], hop: Hop, seen: bytes | None, findings: list[str],
                  url: str) -> None:
    if (hop.headers.get("content-type") or "").lower().startswith("application/pdf"):
        # Chromium shows a PDF in its viewer and reports the viewer's page as the body.
        row["body_compared"] = False
        row["note"] = "shown by the browser's PDF viewer: the recorded document is the evidence"
        return
    if seen is None or hop.truncated:
        row["body_compared"] = False
        return
    ours = decoded_body(hop)
    row["body_compared"] = ours is not None
    if ours is not None and ours != seen:
        row["body_differs"] = True
        findings.append(f"the body the browser used differs from the recorded one: {url}")
