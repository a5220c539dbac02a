"""Every request accounted for: what the browser reports it loaded, beside what the recorder saw.

A request that reached the network unrecorded, or a body the browser used that differs from the
recorded one, is a finding; data:/blob: loads and memory-cache hits are listed as such.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..capture import CapturedHop

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


# Bodies larger than this, as recorded or decoded, are not asked back from the browser nor
# compared (listed as such): comparing means holding both copies in memory.
COMPARE_LIMIT = 16 << 20


def decoded_body(hop: CapturedHop, limit: int = COMPARE_LIMIT) -> bytes | None:
    """The recorded body with its content coding undone, read and inflated at most to ``limit``
    (None when that is not possible or the body is larger)."""
    if hop.body_length > limit:
        return None
    hop.body.seek(0)
    raw = hop.body.read(limit + 1)
    coding = (hop.headers.get("content-encoding") or "").strip().lower()
    if coding in ("", "identity"):
        return raw
    wbits = {"gzip": 47, "x-gzip": 47, "deflate": 15}.get(coding)
    if wbits is None:
        return None
    for bits in (wbits, -15) if coding == "deflate" else (wbits,):  # deflate is sent raw too
        inflater = zlib.decompressobj(bits)
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error:
            continue
        return None if len(out) > limit or inflater.unconsumed_tail else out
    return None


def comparable_bodies(exchanges: list[Exchange]) -> set[tuple[str, str]]:
    """(method, URL) of the exchanges whose bodies are small enough to compare, every copy."""
    small: dict[tuple[str, str], bool] = {}
    for ex in exchanges:
        key = (ex.method, ex.url)
        small[key] = small.get(key, True) and ex.hop is not None and _comparable(ex.hop)
    return {key for key, ok in small.items() if ok}


def _comparable(hop: CapturedHop) -> bool:
    if hop.body_length > COMPARE_LIMIT:
        return False
    if (hop.headers.get("content-encoding") or "").strip().lower() in ("", "identity"):
        return True
    return decoded_body(hop) is not None  # the decoded size is known only by inflating (bounded)


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
        if req.resource_type == "websocket":  # a named bypass of the recorder, refused in the browser
            row["served"] = ("WebSocket: refused by the recorder, never reached the network "
                             "(WebSocket messages are not recorded)")
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


def _compare_body(row: dict[str, Any], hop: CapturedHop, seen: bytes | None, findings: list[str],
                  url: str) -> None:
    if (hop.headers.get("content-type") or "").lower().startswith("application/pdf"):
        # Chromium shows a PDF in its viewer and reports the viewer's page as the body.
        row["body_compared"] = False
        row["note"] = "shown by the browser's PDF viewer: the recorded document is the evidence"
        return
    if seen is None or hop.truncated:
        row["body_compared"] = False
        if hop.truncated:
            row["note"] = "cut at the body limit (--max-body): the browser got it cut short too"
        elif hop.body_length > COMPARE_LIMIT:
            row["note"] = f"larger than {COMPARE_LIMIT >> 20} MiB: not compared"
        return
    ours = decoded_body(hop)
    row["body_compared"] = ours is not None
    if ours is not None and ours != seen:
        row["body_differs"] = True
        findings.append(f"the body the browser used differs from the recorded one: {url}")
