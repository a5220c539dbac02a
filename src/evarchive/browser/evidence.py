"""The evidence of one browser capture: its recorded exchanges, the artefacts as WARC
``resource`` records beside the page's response, and the provenance summary (an HTML page, and
the same facts in the metadata record)."""

from __future__ import annotations

import hashlib
import html
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from .. import __version__
from ..capture import CapturedHop, CaptureSettings, provenance_fields, write_hop_records
from ..check import verdicts
from ..catalogue import to_json
from ..urls import request_url
from ..warcwriter import RecordBlock, RecordSpec, WarcWriter, WrittenRecord, warc_fields
from .engine import BrowserSettings
from .page import PageResult, png_size

if TYPE_CHECKING:
    from ..mitm import Exchange, ProxySession

ARTEFACT_KINDS = {  # kind: (content type, what it is)
    "screenshot-full": ("image/png", "full-page screenshot"),
    "screenshot-viewport": ("image/png", "viewport screenshot"),
    "pdf": ("application/pdf", "PDF print of the page"),
    "dom": ("text/html; charset=utf-8", "rendered DOM, serialised"),
    "title": ("text/plain; charset=utf-8", "page title"),
    "text": ("text/plain; charset=utf-8", "visible text"),
    "provenance": ("text/html; charset=utf-8", "provenance summary"),
}


@dataclass
class PageEvidence:
    """Writes each page's records for one run (one writer, one Chromium)."""

    writer: WarcWriter
    settings: CaptureSettings
    browser_settings: BrowserSettings
    chromium_version: str

    def write_page(self, url: str, started: str, ended: str, session: ProxySession,
                   chain: list[Exchange], page: PageResult, rows: list[dict[str, Any]],
                   findings: list[str], wall: str | None
                   ) -> tuple[list[WrittenRecord], list[dict[str, Any]]]:
        self.writer.begin_capture()
        records: list[WrittenRecord] = []
        # The page's own exchanges go last, so that every reader that takes a capture's last
        # response record (revisits, checks, exports) gets the cited document.
        in_chain = {id(ex) for ex in chain}
        ordered = [ex for ex in session.exchanges if id(ex) not in in_chain] + chain
        for ex in ordered:
            if ex.hop is not None:
                records += write_hop_records(self.writer, ex.hop, ex.started, None)
        response = records[-1]
        hops = [ex.hop for ex in chain if ex.hop is not None]
        final = hops[-1]
        if final.tls and final.tls.get("chain_pem"):
            records.append(self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:tls-certificate-chain:{final.tls['leaf_sha256']}",
                started, RecordBlock("".join(final.tls["chain_pem"]).encode("ascii")),
                content_type="application/pem-certificate-chain",
                headers=[("WARC-Concurrent-To", response.record_id)])))
        facts = self.facts(url, started, ended, session, hops, page, rows, findings, wall)
        artefacts = dict(page.artefacts)
        artefacts["provenance"] = provenance_html(facts).encode("utf-8")
        artefact_rows = []
        for kind, data in artefacts.items():
            digest = hashlib.sha256(data).hexdigest()
            record = self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:{kind}:{final.url}", started, RecordBlock(data),
                content_type=ARTEFACT_KINDS[kind][0], payload_sha256=digest,
                headers=[("WARC-Concurrent-To", response.record_id)]))
            records.append(record)
            width, height = png_size(data) if kind.startswith("screenshot") else (None, None)
            artefact_rows.append({"kind": kind, "record_id": record.record_id,
                                  "content_type": ARTEFACT_KINDS[kind][0], "size": len(data),
                                  "sha256": digest, "width": width, "height": height})
        fields = provenance_fields(url, hops, self.settings, started, ended, None, None)
        fields = [f for f in fields if f[0] != "user-agent"]
        fields += [(f"browser-{key}", value) for key, value in facts.items()
                   if key not in ("cited-url", "final-url", "capture-started", "capture-ended")]
        records.append(self.writer.write(RecordSpec(
            "metadata", hops[0].url, started, RecordBlock(warc_fields(fields)),
            content_type="application/warc-fields",
            headers=[("WARC-Refers-To", response.record_id)])))
        return records, artefact_rows

    def facts(self, url: str, started: str, ended: str, session: ProxySession, hops: list[CapturedHop],
               page: PageResult, rows: list[dict[str, Any]], findings: list[str],
               wall: str | None) -> dict[str, Any]:
        final = hops[-1]
        tls = final.tls or {}
        recorded = [ex for ex in session.exchanges if ex.hop is not None]
        return {
            "cited-url": url, "final-url": final.url, "capture-started": started,
            "capture-ended": ended, "engine": "browser", "chromium-version": self.chromium_version,
            "user-agent": page.user_agent, "software": f"evarchive/{__version__}",
            "host-os": platform.platform(),
            "viewport": f"{self.browser_settings.viewport_width}x{self.browser_settings.viewport_height}",
            "device-scale": self.browser_settings.device_scale,
            "settings": {"browser": self.browser_settings.public(), "capture": self.settings.public()},
            "server-ips": sorted({ex.hop.server_ip for ex in recorded if ex.hop.server_ip}),
            "certificate": ({"leaf-sha256": tls.get("leaf_sha256"), "tls-version": tls.get("version"),
                             "validated": tls.get("validation")} if tls else None),
            "accept-encoding": {"sent-upstream": sorted({ex.sent_accept_encoding or ""
                                                         for ex in session.exchanges}),
                                "browser-asked": sorted({ex.browser_accept_encoding or ""
                                                         for ex in session.exchanges})},
            "page-height": page.page_height, "screenshot-height": page.screenshot_height,
            "max-height": self.browser_settings.max_height, "title": page.title,
            "recorded-exchanges": len(recorded),
            "failed-exchanges": [{"url": ex.url, "error": f"{ex.error_class}: {ex.error_message}"}
                                 for ex in session.exchanges if ex.hop is None],
            "requests": rows, "memory-cache": page.memory_cache, "findings": findings,
            "steps": page.steps, "wall": wall,
        }



def page_chain(url: str, exchanges: list[Exchange]) -> list[Exchange]:
    """The cited document's own exchanges: the first GET of the URL, then its redirects."""
    chain: list[Exchange] = []
    try:
        wanted = request_url(url)
    except Exception:  # noqa: BLE001 - validated before the run; the browser's spelling wins
        wanted = url
    seen: set[int] = set()
    while True:
        match = next((ex for ex in exchanges if ex.url == wanted and ex.method == "GET"
                      and id(ex) not in seen), None)
        if match is None:
            return chain
        chain.append(match)
        seen.add(id(match))
        location = match.hop.location if match.hop else None
        if not location or len(chain) > 20:
            return chain
        wanted = urljoin(wanted, location)


def page_failure(url: str, chain: list[Exchange], hops: list[CapturedHop]) -> tuple[str, str] | None:
    if not chain:
        return ("NotLoaded", f"the browser never requested {url} through the recorder")
    last = chain[-1]
    if last.hop is None:
        return (last.error_class or "FetchError", last.error_message or "the fetch failed")
    if last.hop.status >= 400:
        return ("HTTPStatus", f"HTTP {last.hop.status} {last.hop.reason}".strip())
    if last.hop.location:
        return ("RedirectNotFollowed", f"the browser did not follow the redirect to {last.hop.location}")
    return None


def wall_of(hops: list[CapturedHop], page: PageResult) -> tuple[str | None, str]:
    """The classifier ``check`` uses, applied to the rendered page: a wall or a soft 404 is not
    the article. (wall, content verdict), as ``check.verdicts.capture_verdict`` gives them."""
    obs = verdicts.Observation(
        url=hops[0].url,
        hops=[verdicts.Hop(h.url, "GET", h.status, h.reason,
                           [("content-type", "text/html; charset=utf-8")], h.location) for h in hops],
        body=page.artefacts.get("dom", b""))
    return verdicts.capture_verdict(obs)


def provenance_html(facts: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else to_json(value)
        return f"<td><pre>{html.escape(text)}</pre></td>"

    rows = "\n".join(f"<tr><th>{html.escape(k)}</th>{cell(v)}</tr>" for k, v in facts.items()
                     if k != "requests")
    requests = "\n".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{html.escape(r['url'])}</td>"
        f"<td>{html.escape(str(r.get('status')))}</td><td>{html.escape(r['served'])}</td></tr>"
        for r in facts["requests"])
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Capture provenance</title>"
            "</head><body><h1>Capture provenance</h1><table>" + rows + "</table>"
            "<h2>Requests the browser made</h2><table><tr><th>method</th><th>URL</th><th>status"
            "</th><th>served</th></tr>" + requests + "</table></body></html>\n")
