"""Citations that survive: Robust Links (robustlinks.mementoweb.org) for a report's claims.

A Robust Link keeps the URL as cited in ``href`` and ``data-originalurl``, and adds a copy made at
the time (``data-versionurl``) with its date (``data-versiondate``, YYYY-MM-DD), so a reader can
still follow the citation once the live page is gone or changed. For authors, the version URL is
a public copy (an independent witness's memento: the archive's own copy in an evidence bundle is
not public); the date is when that copy was made, or when evarchive preserved the page.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from .queries import find_report, latest_public_copy, latest_version
from .reports import claims_of_version
from .verify_bundle import html_text, robust_link

FORMATS = ("html", "markdown", "csv")


def report_citations(db: Any, warcs_dir: Path, report: str) -> list[dict[str, Any]]:
    """Every citation of the report's latest version: the claim, the URL as cited, and the copy
    that keeps it alive (a public witness memento, and the date of evarchive's intact capture)."""
    found = find_report(db, report)
    version = latest_version(db, found["id"])
    if version is None:
        return []
    rows = []
    for claim in claims_of_version(db, version["id"], warcs_dir):
        for source in claim["sources"]:
            captured = _captured_at(db, source["capture_id"])
            witness = latest_public_copy(db, source["source_id"])
            # the link goes to the source (scheme added to a bare www. citation, a URL broken across
            # lines joined); the citation as written is in the catalogue and the exhibit index
            rows.append({"claim": claim["ordinal"], "text": claim["text"], "url": source["source_url"],
                         "preserved": source["preserved"], "captured_at": captured,
                         "version_url": witness["memento_url"] if witness else None,
                         "version_date": (witness["archived_at"] if witness else captured or "")[:10] or None})
    return rows


def _captured_at(db: Any, capture_id: int | None) -> str | None:
    row = db.execute("SELECT started_at FROM captures WHERE id = ?", [capture_id]).fetchone() if capture_id else None
    return row[0] if row else None


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "html":
        return "".join(f"<p>{html_text(r['text'])} "
                       f"{robust_link(r['url'], r['url'], r['version_url'], r['version_date'])}</p>\n" for r in rows)
    if fmt == "markdown":
        return "".join(f"{r['text']} [{r['url']}]({r['url']})" + (
            f" ([archived]({r['version_url']}) {r['version_date']})" if r["version_url"] else
            (f" (preserved {r['version_date']})" if r["version_date"] else "")) + "\n\n" for r in rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["claim", "url", "version_url", "version_date", "preserved"])
    writer.writerows([r["claim"], r["url"], r["version_url"] or "", r["version_date"] or "",
                      "yes" if r["preserved"] else "no"] for r in rows)
    return buf.getvalue()
