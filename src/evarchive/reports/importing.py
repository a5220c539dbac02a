"""Importing a report: read and segment it, check its URLs, and store one new version (report,
claims, citations, sources, custody entry) in one transaction; an unchanged file changes nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..catalogue import insert, one, to_json, transaction, utc_now
from ..errors import EvarchiveError, InputError, shown
from ..citedurls import capture_url, find_non_urls
from ..extract import Claim, Document, segment
from ..queries import latest_version
from ..urls import normalise_url
from .browsing import source_stats
from .files import ReportFile, parse_report, read_report_file
from .versions import diff_versions


@dataclass
class ImportResult:
    """What one import did; ``status`` is 'new' (first version), 'updated' or 'unchanged'."""

    status: str
    report_id: int
    title: str
    version: int
    version_id: int
    sha256: str
    path: str
    format: str
    claims: int
    citations: int
    sources: int
    sources_archived: int
    sources_new: int
    skipped_urls: list[dict[str, Any]]  # url, reason, paragraph, page, line
    changes: dict[str, list[dict[str, Any]]] | None = None
    previous_version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _find_version(db: Any, sha256: str) -> dict[str, Any] | None:

    return one(db, "SELECT v.*, r.title FROM report_versions v JOIN reports r ON r.id = v.report_id "
                   "WHERE v.sha256 = ?", [sha256])


def _unchanged(db: Any, found: dict[str, Any]) -> ImportResult:
    stats = source_stats(db, found["id"])
    return ImportResult("unchanged", found["report_id"], found["title"], found["version"],
                        found["id"], found["sha256"], found["path"], found["format"],
                        found["claims"], found["citations"], found["sources"],
                        stats["archived"], 0, _skipped_of(db, found["id"]))


def _skipped_of(db: Any, version_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT url, reason, paragraph, page, line FROM skipped_urls WHERE version_id = ? "
                         "ORDER BY ordinal", [version_id]))


def _insert_skipped(db: Any, version_id: int, skipped: list[dict[str, Any]]) -> None:
    db.conn.executemany(
        "INSERT INTO skipped_urls (version_id, ordinal, url, reason, paragraph, page, line) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(version_id, ordinal, s["url"], s["reason"], s["paragraph"], s["page"], s["line"])
         for ordinal, s in enumerate(skipped, start=1)])



def _position(paragraph: int, page: int | None, line: int | None) -> dict[str, Any]:
    return {"paragraph": paragraph, "page": page, "line": line}


def _check_urls(document: Document, claims: list[Claim]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Normalised form of every citable URL, and every cited string that cannot be captured
    (refused scheme, bad host, IDNA failure, no possible host), each with where it stands."""

    normalised: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    for claim in claims:
        for citation in claim.citations:
            url = citation.url
            if url in normalised:
                continue
            try:
                normalised[url] = normalise_url(capture_url(url))  # www.x.org: as http://www.x.org
            except EvarchiveError as exc:
                skipped.append({"url": url, "reason": exc.message,
                                **_position(citation.paragraph, citation.page, claim.line)})
    for block in document.blocks:
        for span in find_non_urls(block.text):
            skipped.append({"url": span.url, "reason": "not a URL: no host a page could come from",
                            **_position(block.paragraph, block.page, block.line)})
    return normalised, skipped


def _report_row(db: Any, title: str | None, path: str) -> dict[str, Any] | None:

    if title:
        return one(db, "SELECT * FROM reports WHERE title = ? ORDER BY id LIMIT 1", [title])
    # Without a title: the report whose latest import came from this path (its first version may
    # have come from elsewhere under the same --title).
    return one(db, "SELECT r.* FROM reports r JOIN report_versions v ON v.report_id = r.id "
                   "WHERE v.path = ? OR r.path = ? ORDER BY v.id DESC LIMIT 1", [path, path])


def _ensure_sources(db: Any, normalised: dict[str, str]) -> tuple[dict[str, int], int]:
    """Source ids by normalised URL, creating the missing ones; returns how many were new."""

    wanted = list(dict.fromkeys(normalised.values()))  # first-cited order: ids follow the report
    ids: dict[str, int] = {}
    for i in range(0, len(wanted), 500):
        chunk = wanted[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for row in db.execute(f"SELECT id, normalised FROM sources WHERE normalised IN ({marks})", chunk):
            ids[row[1]] = int(row[0])
    first_spelling = {}
    for url, norm in normalised.items():
        first_spelling.setdefault(norm, capture_url(url))  # the URL as first cited in this report
    now = utc_now()
    new = 0
    for norm in wanted:
        if norm not in ids:
            ids[norm] = insert(db, "sources", {"url": first_spelling[norm], "normalised": norm,
                                               "added_at": now})
            new += 1
    return ids, new


def _claims_digest(claims: list[Claim], normalised: dict[str, str]) -> str:
    """One hash over every claim and its citations, for the custody log entry."""

    body = [[c.sha256, c.paragraph, c.offset,
             [[x.url, x.via, x.paragraph, x.offset] for x in c.citations if x.url in normalised]]
            for c in claims]
    return hashlib.sha256(to_json(body).encode("utf-8")).hexdigest()


def _claim_rows_digest(claims: list[Claim], normalised: dict[str, str], source_ids: dict[str, int]) -> str:
    """One hash over what an exported bundle shows of each claim beyond its text and citations:
    its number, page and line, and the source each citation names (which links it to exhibits)."""
    body = [[ordinal, c.page, c.line, [source_ids[normalised[x.url]] for x in c.citations]]
            for ordinal, c in enumerate(claims, start=1)]
    return hashlib.sha256(to_json(body).encode("utf-8")).hexdigest()


def import_report(db: Any, path: Path | str, title: str | None = None,
                  max_bytes: int | None = None, prepared: PreparedReport | None = None) -> ImportResult:
    """Import a report file: one transaction, nothing written when anything is wrong.

    The same file (same SHA-256) imported again changes nothing. A changed file under the same
    title (or, without a title, from the same path) becomes the report's next version, and the
    result carries what changed since the previous one. ``prepared`` (from :func:`check_report`)
    spares parsing the file twice, when it is still the file that was checked.
    """
    report_file = read_report_file(path, max_bytes)
    found = _find_version(db, report_file.sha256)
    if found:
        return _unchanged(db, found)
    if prepared is not None and prepared.sha256 == report_file.sha256:
        document, claims, normalised, skipped = prepared.parts
    else:
        document, claims, normalised, skipped = _prepare(report_file)
    return _store(db, report_file, document, claims, normalised, skipped, title)


@dataclass
class PreparedReport:
    """A report read and segmented, not yet stored: its file's SHA-256 and what was found in it."""

    sha256: str
    parts: tuple[Document, list[Claim], dict[str, str], list[dict[str, Any]]]


def _prepare(report_file: ReportFile) -> tuple[Document, list[Claim], dict[str, str], list[dict[str, Any]]]:
    """Parse and segment a report; refuses one that cites nothing capturable."""
    document = parse_report(report_file)
    claims = segment(document)
    normalised, skipped = _check_urls(document, claims)
    if not normalised:
        why = f" ({len(skipped)} URLs cannot be captured)" if skipped else ""
        raise InputError(f"{report_file.path}: the report cites no http(s) URLs{why}")
    return document, _drop_uncitable(claims, normalised), normalised, skipped


def check_report(path: Path | str, max_bytes: int | None = None) -> PreparedReport:
    """Raise InputError if the report cannot be imported (without touching any catalogue); what
    was read, for :func:`import_report` to store without reading it again."""
    report_file = read_report_file(path, max_bytes)
    return PreparedReport(report_file.sha256, _prepare(report_file))


def _drop_uncitable(claims: list[Claim], normalised: dict[str, str]) -> list[Claim]:
    kept = []
    for claim in claims:
        claim.citations = [c for c in claim.citations if c.url in normalised]
        if claim.citations:
            kept.append(claim)
    return kept


def _store(db: Any, report_file: ReportFile, document: Document, claims: list[Claim],
           normalised: dict[str, str], skipped: list[dict[str, Any]], title: str | None) -> ImportResult:
    from .. import custody  # loads cryptography (30 ms) that `claims` and `show` need not pay

    path = shown(report_file.path.resolve())  # the report's identity, and shown to people
    with transaction(db):
        found = _find_version(db, report_file.sha256)  # another process may have just imported it
        if found:
            return _unchanged(db, found)
        report = _report_row(db, title, path)
        if report is None:
            name = title or document.title or report_file.path.stem
            report = {"id": insert(db, "reports", {"title": name, "path": path, "created_at": utc_now()}),
                      "title": name}
        previous = latest_version(db, report["id"])
        source_ids, new_sources = _ensure_sources(db, normalised)
        citations = sum(len(c.citations) for c in claims)
        distinct = len({normalised[x.url] for c in claims for x in c.citations})
        version = (previous["version"] + 1) if previous else 1
        version_id = insert(db, "report_versions", {
            "report_id": report["id"], "version": version, "sha256": report_file.sha256,
            "path": path, "format": report_file.format, "size": report_file.size,
            "imported_at": utc_now(), "claims": len(claims), "citations": citations,
            "sources": distinct})
        _insert_claims(db, report["id"], version_id, claims, normalised, source_ids)
        _insert_skipped(db, version_id, skipped)
        custody.append(db, "report-imported", f"report {report['id']} version {version}", {
            "report_id": report["id"], "title": report["title"], "version": version,
            "sha256": report_file.sha256, "path": path, "format": report_file.format,
            "size": report_file.size, "claims": len(claims), "citations": citations,
            "sources": distinct, "claims_sha256": _claims_digest(claims, normalised),
            "claim_rows_sha256": _claim_rows_digest(claims, normalised, source_ids)})
        stats = source_stats(db, version_id)
        changes = diff_versions(db, previous["id"], version_id) if previous else None
    return ImportResult("updated" if previous else "new", report["id"], report["title"], version,
                        version_id, report_file.sha256, path, report_file.format, len(claims),
                        citations, distinct, stats["archived"], new_sources, skipped, changes,
                        previous["version"] if previous else None)


def _insert_claims(db: Any, report_id: int, version_id: int, claims: list[Claim],
                   normalised: dict[str, str], source_ids: dict[str, int]) -> None:
    cursor = db.conn.cursor()
    rows = []
    for ordinal, claim in enumerate(claims, start=1):
        cursor.execute(
            "INSERT INTO claims (version_id, report_id, ordinal, text, sha256, scope, paragraph, page, line,"
            " offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (version_id, report_id, ordinal, claim.text, claim.sha256, claim.scope, claim.paragraph,
             claim.page, claim.line, claim.offset))
        claim_id = cursor.lastrowid
        for number, c in enumerate(claim.citations, start=1):
            rows.append((claim_id, version_id, source_ids[normalised[c.url]], number, c.url, c.via,
                         c.paragraph, c.page, c.offset, c.note))
    cursor.executemany(
        "INSERT INTO citations (claim_id, version_id, source_id, ordinal, url, via, paragraph, page,"
        " offset, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
