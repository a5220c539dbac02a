"""The catalogue queries that more than one command needs, each written once.

Commands call these instead of spelling the SQL again, so that "the latest version of a report"
or "the report called R" means the same thing to ``claims``, ``check``, ``verify`` and ``export``.
Every function takes the catalogue's ``sqlite_utils.Database`` and only reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalogue import one
from .errors import UsageError
# The rule lives in the standalone verifier, which must reach the same answer from a bundle alone.
from .verify_bundle import not_support_reason as not_support_reason


def find_report(db: Any, ref: str) -> dict[str, Any]:
    """A report by id, title, or the path it was imported from (any version's). UsageError when
    none matches: every command that takes ``--report`` resolves it here."""
    row = None
    if ref.isdigit():
        row = one(db, "SELECT * FROM reports WHERE id = ?", [int(ref)])
    row = row or one(db, "SELECT * FROM reports WHERE title = ? ORDER BY id LIMIT 1", [ref])
    if row is None:
        resolved = str(Path(ref).resolve())
        row = one(db, "SELECT r.* FROM reports r JOIN report_versions v ON v.report_id = r.id "
                      "WHERE v.path = ? OR r.path = ? ORDER BY v.id DESC LIMIT 1", [resolved, resolved])
    if row is None:
        raise UsageError(f"no report {ref!r} in the catalogue (see `evarchive reports`)")
    return row


def latest_version(db: Any, report_id: int) -> dict[str, Any] | None:
    """The newest imported version of a report (None for a report with no version)."""
    return one(db, "SELECT * FROM report_versions WHERE report_id = ? ORDER BY version DESC LIMIT 1",
               [report_id])


# The same rule as latest_version, inside a query whose rows are versions ``v`` of reports ``r``.
IS_LATEST_VERSION = "v.version = (SELECT MAX(version) FROM report_versions x WHERE x.report_id = r.id)"


def sources_of_latest_version(db: Any, report_id: int) -> list[dict[str, Any]]:
    """Sources cited by the latest version of a report, in source order."""
    return list(db.query(
        "SELECT DISTINCT s.* FROM sources s JOIN citations c ON c.source_id = s.id "
        "WHERE c.version_id = (SELECT id FROM report_versions WHERE report_id = ? "
        "ORDER BY version DESC LIMIT 1) ORDER BY s.id", [report_id]))


def source_ids_of_any_version(db: Any, report_id: int) -> set[int]:
    """Source ids cited by any version of a report (verify keeps the evidence of every edition)."""
    return {r[0] for r in db.execute(
        "SELECT DISTINCT ci.source_id FROM citations ci JOIN claims c ON c.id = ci.claim_id "
        "WHERE c.report_id = ?", [report_id])}


# What counts as support for a claim, the one rule ``claims``, ``reports``, ``archive``, ``rot`` and
# ``export`` share: a capture that succeeded (so HTTP < 400) and holds the cited page, not a soft
# 404, a wall or a redirect to the home page. Captures made before evarchive classified them
# (content_verdict NULL) count, as they always did; a browser capture that met a wall never does.
PAGE = "page"


def supporting(alias: str = "captures") -> str:
    """SQL condition on the captures table (named ``alias`` in the query) for "supports a claim"."""
    return (f"({alias}.status = 'ok' AND {alias}.wall IS NULL "
            f"AND COALESCE({alias}.content_verdict, '{PAGE}') = '{PAGE}')")


WITNESS_ARCHIVED = "archived"  # a witness job that ended with the archive's own copy (a memento)


def witness_corroboration(db: Any, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each source's latest archived witness copy and how it compared with our capture
    (``corroboration``: identical, similar, differs, "not compared: ..."; None while not yet
    compared), for ``claims`` and ``show``; sources without an archived witness are absent."""
    found: dict[int, dict[str, Any]] = {}
    wanted = list(dict.fromkeys(source_ids))
    for start in range(0, len(wanted), 500):  # well under SQLite's limit on bound parameters
        chunk = wanted[start:start + 500]
        for row in db.query(
                "SELECT source_id, memento_url, archived_at, corroboration, similarity FROM witnesses "
                f"WHERE status = ? AND source_id IN ({', '.join('?' for _ in chunk)}) ORDER BY id",
                [WITNESS_ARCHIVED, *chunk]):
            found[row.pop("source_id")] = row  # ordered by id: the latest one stays
    return found


def latest_public_copy(db: Any, source_id: int) -> dict[str, Any] | None:
    """The source's latest copy an independent witness archived: its witnesses row (memento URL
    and time, and how it compared with our capture)."""
    rows = list(db.query("SELECT * FROM witnesses WHERE source_id = ? AND status = ? ORDER BY id DESC LIMIT 1",
                         [source_id, WITNESS_ARCHIVED]))
    return rows[0] if rows else None


def witnesses_of(db: Any, source_id: int) -> list[dict[str, Any]]:
    """Every witness request for a source, oldest first, whatever came of it (for ``show``)."""
    return list(db.query("SELECT * FROM witnesses WHERE source_id = ? ORDER BY id", [source_id]))

