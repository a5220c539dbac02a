"""What changed between two versions of a report: claims and citations added, removed, edited."""

from __future__ import annotations

from typing import Any


def _version_claims(db: Any, version_id: int) -> list[dict[str, Any]]:
    claims = {row["id"]: {**row, "citations": []} for row in db.query(
        "SELECT id, ordinal, text, sha256, paragraph, page, line FROM claims WHERE version_id = ? "
        "ORDER BY ordinal", [version_id])}
    for row in db.query(
            "SELECT c.claim_id, c.url, s.normalised FROM citations c JOIN sources s ON s.id = c.source_id "
            "WHERE c.version_id = ? ORDER BY c.claim_id, c.ordinal", [version_id]):
        claims[row["claim_id"]]["citations"].append((row["normalised"], row["url"]))
    return list(claims.values())


def _similar(a: str, b: str) -> float:
    import difflib

    # Words, not characters: as telling for "the same claim, edited", and far cheaper on long text.
    matcher = difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False)
    if matcher.real_quick_ratio() < 0.5 or matcher.quick_ratio() < 0.5:
        return 0.0
    return matcher.ratio()


def _pair_claims(old: list[dict[str, Any]], new: list[dict[str, Any]]
                 ) -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Align two versions' claims: pairs (same or edited), removed and added claims.

    Identical claim texts pair first, wherever they moved. The rest pair as edits when a new claim
    near the old one's place is still mostly the same text; the window keeps this linear.
    """
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for claim in old:
        by_hash.setdefault(claim["sha256"], []).append(claim)
    pairs, rest_new = [], []
    for claim in new:
        same = by_hash.get(claim["sha256"])
        if same:
            pairs.append((same.pop(0), claim))
        else:
            rest_new.append(claim)
    rest_old = [c for group in by_hash.values() for c in group]
    rest_old.sort(key=lambda c: c["ordinal"])
    removed, used = [], set()
    cursor = 0
    for claim in rest_old:
        window = [n for n in rest_new[cursor:cursor + _EDIT_WINDOW] if id(n) not in used]
        scored = [(_similar(claim["text"], n["text"]), n) for n in window]
        best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if best[1] is not None and best[0] >= 0.6:
            pairs.append((claim, best[1]))
            used.add(id(best[1]))
            cursor = rest_new.index(best[1]) + 1
        else:
            removed.append(claim)
    added = [n for n in rest_new if id(n) not in used]
    return pairs, removed, added


_EDIT_WINDOW = 20


def _claim_summary(claim: dict[str, Any]) -> dict[str, Any]:
    return {"paragraph": claim["paragraph"], "page": claim["page"], "line": claim["line"],
            "text": claim["text"]}


def diff_versions(db: Any, old_version_id: int, new_version_id: int) -> dict[str, list[dict[str, Any]]]:
    """What changed between two versions: claims and citations added, removed and edited."""
    old, new = _version_claims(db, old_version_id), _version_claims(db, new_version_id)
    pairs, removed, added = _pair_claims(old, new)
    changes: dict[str, list[dict[str, Any]]] = {
        "claims_added": [_claim_summary(c) for c in added],
        "claims_removed": [_claim_summary(c) for c in removed],
        "claims_edited": [{"old": _claim_summary(o), "new": _claim_summary(n)}
                          for o, n in pairs if o["sha256"] != n["sha256"]],
        "citations_added": [], "citations_removed": [], "citations_edited": []}
    for claim in added:
        changes["citations_added"].extend({"claim": _claim_summary(claim), "url": u} for _, u in claim["citations"])
    for claim in removed:
        changes["citations_removed"].extend({"claim": _claim_summary(claim), "url": u} for _, u in claim["citations"])
    for o, n in pairs:
        _diff_citations(o, n, changes)
    return changes


def _diff_citations(old: dict[str, Any], new: dict[str, Any], changes: dict[str, list[dict[str, Any]]]) -> None:
    """Citations of one claim matched by normalised URL; a new spelling of the same URL is an edit."""
    remaining = list(old["citations"])
    claim = _claim_summary(new)
    for norm, url in new["citations"]:
        match = next((c for c in remaining if c == (norm, url)), None) or \
            next((c for c in remaining if c[0] == norm), None)
        if match is None:
            changes["citations_added"].append({"claim": claim, "url": url})
            continue
        remaining.remove(match)
        if match[1] != url:
            changes["citations_edited"].append({"claim": claim, "old_url": match[1], "url": url})
    changes["citations_removed"].extend({"claim": claim, "url": url} for _, url in remaining)
