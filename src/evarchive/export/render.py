"""The human-readable renderings of ``bundle.json``: exhibits.csv, exhibits.txt, exhibits.html and
the report itself as report.html with its citations as Robust Links."""

from __future__ import annotations

import csv
import html
import io
import re
import textwrap
from typing import Any

from ..robustlinks import robust_link
from ..verify_bundle import main_record
from ..viewer import replay_link
from .model import WACZ_NAME

REPORT_PAGE = "report.html"


def render_report(data: dict[str, Any], witnesses: dict[int, dict[str, Any]]) -> str:
    """The report's claims with every citation as a Robust Link: href and data-originalurl the URL
    as cited, data-versionurl its exhibit in this bundle, data-versiondate the capture's date; a
    public copy made by an independent witness is linked beside it (Robust Links, as the
    exhibit index's evidence stands behind each one)."""
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    title = (data.get("report") or {}).get("title") or "Report"
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
             f"<title>{_h(title)}: citations as Robust Links</title></head><body>", f"<h1>{_h(title)}</h1>"]
    for claim in data["claims"]:
        links = []
        for cit in claim["citations"]:
            number = next(iter(cit["exhibits"]), None)
            exhibit = exhibits.get(number) if number is not None else None
            links.append(robust_link(cit["url"], cit["url"], f"exhibits.html#exhibit-{number}" if exhibit else None,
                                     (exhibit["captured_at"] or "")[:10] if exhibit else None))
            copy = witnesses.get(cit["source_id"])
            if copy:
                made = _h((copy["archived_at"] or "")[:10])
                links.append(f"(<a href=\"{_h(copy['memento_url'])}\">public copy, {made}</a>)")
        parts.append(f"<p id=\"claim-{claim['claim']}\">{_h(claim['text'])} {' '.join(links)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- renderings

CSV_COLUMNS = ("claim", "where", "claim_text", "cited_url", "exhibit", "kind", "captured_utc", "final_url",
               "redirect_chain", "http_status", "server_ip", "tls_cert_sha256", "tls_validated",
               "tls_not_before", "tls_not_after", "content_type", "payload_bytes", "payload_sha256",
               "content_encoding", "decoded_sha256",
               "warc_file", "warc_offset", "record_id", "record_sha256", "original_warc_file",
               "original_offset", "custody_seq", "live_now", "counts_as_support")


def _chain_text(chain: list[dict[str, Any]]) -> str:
    return " -> ".join(f"{hop['url']} [{hop['status']}]" for hop in chain)


def _csv_row(claim: dict[str, Any] | None, cited: str, ex: dict[str, Any] | None, why: str = "") -> list[Any]:
    head = [claim["claim"], claim["where"], claim["text"]] if claim else ["", "", ""]
    if ex is None:
        return [*head, cited, "", f"NO INTACT CAPTURE: {why}"] + [""] * (len(CSV_COLUMNS) - 6)
    rec, tls = main_record(ex), ex.get("tls") or {}
    return [*head, cited, ex["exhibit"], ex["kind"] if ex["kind"] == "capture" else f"check: {ex['verdict']}",
            ex.get("captured_at") or ex.get("checked_at"), ex["final_url"] or "",
            _chain_text(ex["redirect_chain"]), ex["http_status"] or "", ex["server_ip"] or "",
            tls.get("cert_sha256") or "", "" if not tls else {True: "yes", False: "NO"}.get(tls.get("validated"), ""),
            tls.get("not_before", ""), tls.get("not_after", ""), ex.get("content_type") or "",
            ex.get("payload_size") if ex.get("payload_size") is not None else "", ex["payload_sha256"] or "",
            ex.get("content_encoding") or "", ex.get("decoded_sha256") or ex.get("decoded_note") or "",
            rec["bundle_file"], rec["bundle_offset"], rec["record_id"], rec["member_sha256"],
            rec["original_file"], rec["original_offset"], ex["custody_seq"], ex["live"]["text"],
            support_words(ex) if ex["kind"] == "capture" else ""]


# A cell starting with one of these is a formula to spreadsheet programs (=HYPERLINK(...) in a
# claim would run on opening the file): such cells get a leading apostrophe, which spreadsheets
# show as text and verify_bundle.py removes again before comparing.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def render_csv(data: dict[str, Any]) -> str:
    """One row per claim and exhibit (a claim without evidence gets a row saying so). UTF-8 with a
    byte-order mark: spreadsheet programs otherwise garble non-ASCII claims and URLs."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    rows = []
    if data["claims"]:
        for claim in data["claims"]:
            for cit in claim["citations"]:
                numbers = cit["exhibits"] + [n for n in claim["check_exhibits"]
                                             if exhibits[n]["source_id"] == cit["source_id"]]
                rows += [_csv_row(claim, cit["url"], exhibits.get(n) if n else None, cit.get("why_no_exhibit", ""))
                         for n in numbers or [None]]
    else:
        rows = [_csv_row(None, ex["source_url"], ex) for ex in data["exhibits"]]
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buf.getvalue()


def _exhibit_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the HTML and text renderings of one exhibit."""
    rec = main_record(ex)
    rows: list[tuple[str, str]] = [("URL as cited", "; ".join(ex["cited_as"]))]
    if ex["kind"] == "capture":
        rows.append(("Counts as support", support_words(ex)))
        rows += [("Captured (UTC)", f"{ex['captured_at']} to {ex['capture_ended_at']}"),
                 ("Requested URL", ex["url_requested"]), ("Final URL", ex["final_url"] or "-"),
                 ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", f"{ex['http_status']} ({ex['http_version']})"),
                 ("Server IP", f"{ex['server_ip']}:{ex['server_port']}" if ex["server_ip"]
                  else ("not known (captured through a proxy)" if ex["proxy_used"] else "-"))]
        rows += _tls_lines(ex.get("tls"))
        rows += [("Content type", ex["content_type"] or "-"),
                 ("Payload", f"{ex['payload_size']} bytes"
                  + (" (TRUNCATED at the size limit)" if ex["truncated"] else ""))]
        rows += _hash_lines(ex)
        if ex["revisit_of_exhibit"]:
            rows.append(("Revisit", f"payload identical to exhibit {ex['revisit_of_exhibit']}; this capture "
                                    "stores the response head, the body is in that exhibit"))
        rows += _artefact_lines(ex)
    else:
        rows += [("Checked (UTC)", ex["checked_at"]),
                 ("Verdict", ex["verdict"] + (" (confirmed)" if ex["confirmed"] else "") + f": {ex['reason']}"),
                 ("Final URL", ex["final_url"] or "-"), ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", str(ex["http_status"] or "-")), ("Server IP", ex["server_ip"] or "-"),
                 ("Payload SHA-256", ex["payload_sha256"] or "-")]
    rows += [("WARC file (bundle)", f"{WACZ_NAME} > {rec['bundle_file']}"),
             ("Record offset", f"{rec['bundle_offset']} in that file ({rec['wacz_offset']} in {WACZ_NAME}), "
                               f"{rec['length']} bytes"),
             ("WARC-Record-ID", rec["record_id"]), ("Record SHA-256", rec["member_sha256"]),
             ("Archive original", f"{rec['original_file']} at offset {rec['original_offset']}"),
             ("Custody-log entry", f"{ex['custody_seq']} ({ex['custody_entry_hash']})"),
             ("Live page now", ex["live"]["text"])]
    return rows


ARTEFACT_LABELS = {"screenshot-full": "Screenshot, full page", "screenshot-viewport": "Screenshot, viewport",
                   "pdf": "PDF print"}


def _artefact_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    if ex.get("engine") != "browser":
        return []
    rows = [("Engine", f"browser: Chromium {ex.get('chromium_version') or '(version not recorded)'}, "
                       f"page loaded and its artefacts made during the capture, {ex['captured_at']} (UTC)")]
    for art in ex.get("artefacts", []):
        size = f"{art['width']}x{art['height']} px, " if art.get("width") else ""
        rows.append((ARTEFACT_LABELS.get(art["kind"], art["kind"]),
                     f"{art['file']} ({size}{art['size']} bytes), SHA-256 {art['sha256']}, "
                     f"record {art['record_id']}"))
    return rows


def _html_artefacts(ex: dict[str, Any]) -> str:
    """A thumbnail of the page as captured (the viewport screenshot, scaled by the browser),
    linking to the full-page screenshot and the PDF: files of the bundle, so it works offline."""
    files = {a["kind"]: a["file"] for a in ex.get("artefacts", [])}
    thumb = files.get("screenshot-viewport") or files.get("screenshot-full")
    if not thumb:
        return ""
    links = " &middot; ".join(f"<a href=\"{_h(files[k])}\">{label}</a>" for k, label in
                              (("screenshot-full", "full-page screenshot (PNG)"), ("pdf", "PDF print"))
                              if k in files)
    return (f"<figure class=\"shot\"><a href=\"{_h(files.get('screenshot-full', thumb))}\">"
            f"<img src=\"{_h(thumb)}\" width=\"320\" alt=\"Screenshot of exhibit {ex['exhibit']} as captured\">"
            f"</a><figcaption>As captured {_h(ex['captured_at'])} (UTC) by Chromium "
            f"{_h(ex.get('chromium_version') or '(version not recorded)')}: {links}</figcaption></figure>")


def _html_replay(ex: dict[str, Any]) -> str:
    if ex["kind"] != "capture":
        return ""
    return (f"<p class=\"small\"><a href=\"{_h(replay_link(ex))}\">Replay this exhibit</a> in the viewer "
            f"of this bundle (serve the folder first: see VERIFY.md, section 6)</p>")


def support_words(ex: dict[str, Any]) -> str:
    if not ex["supports"]:
        return f"NO: this capture is not the cited page ({ex['not_support_reason']})"
    if ex.get("content_verdict") is None:
        return "yes (not classified: captured before evarchive checked captures for soft 404s and walls)"
    return "yes"


def _hash_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """The two hashes of a page, each saying which bytes it is of: a saved copy of the page matches
    the decoded one, never the served one when the server compressed the page."""
    coding = ex.get("content_encoding")
    served = ex["payload_sha256"] or "-"
    if coding:
        served += f" (the body's bytes as served, with Content-Encoding: {coding})"
    else:
        served += " (the body's bytes as served, with no Content-Encoding)"
    if ex.get("decoded_sha256"):
        decoded = ex["decoded_sha256"] + (f" (the content with the {coding} coding undone: what a browser shows "
                                          "and a saved copy of the page hashes to)" if coding
                                          else " (no content coding: the same bytes as served)")
    else:
        decoded = ex.get("decoded_note") or "not computed"
    return [("SHA-256 as served", served), ("SHA-256 decoded", decoded)]


def _tls_lines(tls: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not tls:
        return [("TLS", "none (plain HTTP)")]
    valid = {True: "validated", False: "NOT validated"}.get(tls["validated"], "validation unknown")
    if tls["insecure"]:
        valid += " (captured with --insecure)"
    rows = [("TLS", f"{tls['version']} {tls['cipher']}"),
            ("Certificate SHA-256", f"{tls['cert_sha256']} ({valid})")]
    if tls.get("not_before"):
        rows.append(("Certificate validity", f"{tls['not_before']} to {tls['not_after']}; "
                                             f"subject {tls['subject']}; issuer {tls['issuer']}"))
    return rows


def _headline(data: dict[str, Any]) -> str:
    rep = data["report"]
    if rep:
        return f"Exhibit index: {rep['title']} (version {rep['version']})"
    return "Exhibit index"


def _summary_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    head = data["custody"]["head"]
    rows = []
    if data["report"]:
        rep = data["report"]
        rows += [("Report", f"{rep['title']}, version {rep['version']}, file {rep['file']} ({rep['format']})"),
                 ("Report SHA-256", rep["sha256"]), ("Imported (UTC)", rep["imported_at"])]
        supported = sum(c["supported"] for c in data["claims"])
        rows.append(("Claims", f"{len(data['claims'])}, of which {supported} supported by at least one exhibit"))
    rows += [("Exhibits", str(len(data["exhibits"]))), ("Bundle created (UTC)", data["created"]),
             ("Custody-log head", f"entry {head['seq']}, {head['entry_hash']}"),
             ("Software", data["software"])]
    return rows


def render_text(data: dict[str, Any]) -> str:
    """The plain-text twin of exhibits.html."""
    out = [_headline(data), "=" * len(_headline(data)), ""]
    out += [f"{label}: {value}" for label, value in _summary_lines(data)] + [""]
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    if data["claims"]:
        out += ["CLAIMS", "------", ""]
        for claim in data["claims"]:
            out += textwrap.wrap(f"Claim {claim['claim']} ({claim['where']}): {claim['text']}", 100,
                                 subsequent_indent="    ")
            for cit in claim["citations"]:
                ex_text = ", ".join(f"exhibit {n}" for n in cit["exhibits"])
                why = cit.get("why_no_exhibit", "")
                ex_text = f"{ex_text} (DOES NOT COUNT: {why})" if ex_text and why else \
                    (ex_text or f"NO INTACT CAPTURE: {why}")
                out.append(f"    cited: {cit['url']}  ->  {ex_text}")
            if not claim["supported"]:
                out.append("    !! NOT SUPPORTED: no intact capture of the cited page from any source this claim cites")
            out.append("")
    out += ["EXHIBITS", "--------", ""]
    for n in sorted(exhibits):
        ex = exhibits[n]
        out.append(f"Exhibit {n}: {ex['source_url']}" + ("" if ex["kind"] == "capture" else " (live-check evidence)"))
        out += [f"    {label}: {value}" for label, value in _exhibit_lines(ex)] + [""]
    out += _not_exported_text(data)
    out += ["VERIFYING", "---------", "", "See VERIFY.md: sha256sum -c SHA256SUMS, then python3 verify_bundle.py", ""]
    return "\n".join(out)


def _not_exported_text(data: dict[str, Any]) -> list[str]:
    out = []
    if data["unpreserved_sources"]:
        out += ["SOURCES WITHOUT AN INTACT CAPTURE", "-" * 33, ""]
        out += [f"    {u['url']}" for u in data["unpreserved_sources"]] + [""]
    if data["not_exported"]:
        out += ["NOT EXPORTED (evidence that failed its integrity check)", "-" * 55, ""]
        for item in data["not_exported"]:
            out.append(f"{item['kind']} {item['id']} of {item['url']}:")
            out += [f"    {p}" for p in item["problems"]]
        out.append("")
    return out


HTML_STYLE = """
body{font-family:Georgia,'Times New Roman',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
 color:#111;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #999;margin-top:2rem}
h3{font-size:1.05rem;margin-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem}
td,th{border:1px solid #bbb;padding:.25rem .4rem;vertical-align:top;text-align:left}
th{background:#f2f2f2;width:13rem;font-weight:normal}
code,.hash{font-family:'DejaVu Sans Mono',Consolas,monospace;font-size:.85em;word-break:break-all}
.claim{margin:.8rem 0;padding:.5rem .7rem;border-left:4px solid #2a6}
.claim.unsupported{border-color:#c22;background:#fff4f4}
.bad{color:#b00;font-weight:bold}.small{font-size:.9em;color:#444}
figure.shot{margin:.3rem 0}figure.shot img{border:1px solid #999;height:auto;max-width:100%}
figcaption{font-size:.9em;color:#444}
@media print{body{margin:0;max-width:none}.exhibit{page-break-inside:avoid}}
"""


def _h(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_html(data: dict[str, Any]) -> str:
    """One page that prints well: no scripts, nothing from outside the bundle (a browser capture's
    thumbnail is the bundle's own artefacts/ file)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_h(_headline(data))}</title>"
             f"<style>{HTML_STYLE}</style></head><body>\n<h1>{_h(_headline(data))}</h1>",
             _html_table(_summary_lines(data))]
    if data["claims"]:
        parts.append("<h2>Claims and the exhibits supporting them</h2>")
        parts += [_html_claim(c) for c in data["claims"]]
    parts.append("<h2>Exhibits</h2>")
    for ex in data["exhibits"]:
        label = "" if ex["kind"] == "capture" else " (live-check evidence)"
        parts.append(f"<div class=\"exhibit\" id=\"exhibit-{ex['exhibit']}\"><h3>Exhibit {ex['exhibit']}: "
                     f"<code>{_h(ex['source_url'])}</code>{label}</h3>{_html_artefacts(ex)}"
                     f"{_html_replay(ex) if data.get('viewer') else ''}"
                     f"{_html_table(_exhibit_lines(ex))}</div>")
    if data["unpreserved_sources"]:
        parts.append("<h2>Sources without an intact capture</h2><ul>")
        parts += [f"<li class=\"bad\"><code>{_h(u['url'])}</code></li>" for u in data["unpreserved_sources"]]
        parts.append("</ul>")
    if data["not_exported"]:
        parts.append("<h2>Not exported: evidence that failed its integrity check</h2><ul>")
        parts += [f"<li>{_h(i['kind'])} {_h(i['id'])} of <code>{_h(i['url'])}</code>: "
                  f"<span class=\"bad\">{_h('; '.join(i['problems']))}</span></li>" for i in data["not_exported"]]
        parts.append("</ul>")
    parts.append("<h2>Verifying this bundle</h2><p>Every file of the bundle is listed with its SHA-256 in "
                 "<code>SHA256SUMS</code>. <code>VERIFY.md</code> gives the steps, with standard tools only: "
                 "<code>sha256sum -c SHA256SUMS</code>, then <code>python3 verify_bundle.py</code>, which "
                 "re-hashes every file and every exhibit record and checks them against the custody log "
                 "and this index.</p></body></html>\n")
    return "\n".join(parts)


def _html_table(rows: list[tuple[str, str]]) -> str:
    hashes = re.compile(r"^[0-9a-f]{64}$|^<urn:|sha256", re.I)
    mono = ' class="hash"'
    cells = "".join(f"<tr><th>{_h(k)}</th><td{mono if hashes.search(str(v)) else ''}>{_h(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _html_claim(claim: dict[str, Any]) -> str:
    items = []
    for cit in claim["citations"]:
        links = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in cit["exhibits"])
        missing = f'<span class="bad">no intact capture: {_h(cit.get("why_no_exhibit", ""))}</span>'
        if links and cit.get("why_no_exhibit"):
            links += f' <span class="bad">does not count: {_h(cit["why_no_exhibit"])}</span>'
        items.append(f"<li>cited: <code>{_h(cit['url'])}</code> &rarr; {links or missing}</li>")
    checks = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in claim["check_exhibits"])
    if checks:
        items.append(f"<li>live-check evidence: {checks}</li>")
    status = ("" if claim["supported"] else
              "<p class=\"bad\">NOT SUPPORTED: no intact capture of the cited page from any source this claim "
              "cites.</p>")
    css = "claim" if claim["supported"] else "claim unsupported"
    return (f"<div class=\"{css}\"><strong>Claim {claim['claim']}</strong> <span class=\"small\">"
            f"({_h(claim['where'])}; text SHA-256 <span class=\"hash\">{_h(claim['sha256'])}</span>)</span>"
            f"<p>{_h(claim['text'])}</p><ul>{''.join(items)}</ul>{status}</div>")
