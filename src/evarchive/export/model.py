"""What an export works on: the records and exhibits chosen from the catalogue (``Plan``), the
result it reports, and the names of the bundle's files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..queries import not_support_reason
from ..verify_bundle import WACZ_NAME as WACZ_NAME  # one name, shared with the verifier

MANIFEST_NAME = "SHA256SUMS"
VERIFY_SCRIPT = "verify_bundle.py"
ZIP_STAGED = ".bundle.zip"  # OUT.zip as built in the staging folder, before it is linked into place
WACZ_VERSION = "1.1.1"
BUNDLE_FORMAT = "evarchive-bundle-1"
COPY_CHUNK = 1 << 20
HEAD_LIMIT = 256 << 10  # inflated bytes read at most to find a record's WARC and HTTP heads
HEAD_STEP = 16 << 10  # ... in steps of this much
ZIP64_LIMIT = (1 << 31) - (1 << 20)  # announce ZIP64 before the 2 GiB boundary, with margin
# Records replay tools index (as cdxj-indexer does by default): not requests, not warc-fields.
INDEXED_TYPES = ("response", "revisit", "resource", "metadata")


# --------------------------------------------------------------------------- the model

@dataclass
class Record:
    """One WARC record to export: where it is in the archive, and where it lands in the bundle."""

    record_id: str
    record_type: str
    target_uri: str
    warc_file: str
    offset: int
    length: int
    member_sha256: str
    block_sha256: str
    payload_sha256: str | None
    role: str | None = None  # a check's records: head, answer, probe, verdict
    warc_date: str | None = None
    http_status: str | None = None
    mime: str | None = None
    payload_digest: str | None = None  # the WARC-Payload-Digest header, as written
    warc_content_type: str | None = None
    content_encoding: str | None = None  # the HTTP Content-Encoding of a response, as served
    decoded_sha256: str | None = None  # SHA-256 of the payload with that coding undone
    decoded_note: str | None = None  # why the decoded SHA-256 was not computed
    bundle_file: str | None = None
    bundle_offset: int | None = None
    wacz_offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        keys = ("record_id", "record_type", "target_uri", "warc_date", "member_sha256", "block_sha256",
                "payload_sha256", "length", "bundle_file", "bundle_offset", "wacz_offset")
        out = {k: getattr(self, k) for k in keys}
        out["original_file"], out["original_offset"] = self.warc_file, self.offset
        if self.role:
            out["role"] = self.role
        return out


@dataclass
class Exhibit:
    """A capture (or a live check's evidence) offered to the court, with its records."""

    kind: str  # 'capture' | 'check'
    row: dict[str, Any]
    source: dict[str, Any]
    records: list[Record]
    entry: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    number: int = 0
    original_of: int | None = None  # for a revisit: the capture id holding its payload
    artefacts: list[dict[str, Any]] = field(default_factory=list)  # screenshots and PDF, as bundle files
    chromium_version: str | None = None  # of a browser capture, from its metadata record

    @property
    def key(self) -> tuple[str, int]:
        return self.kind, int(self.row["id"])

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def not_support(self) -> str | None:
        """Why this capture does not support a claim (a soft 404, a wall...); None when it does."""
        return not_support_reason(self.row) if self.kind == "capture" else None

    @property
    def main_record(self) -> Record | None:
        """The record a judge looks at: the last response/revisit (the final hop)."""
        for rec in reversed(self.records):
            if rec.record_type in ("response", "revisit"):
                return rec
        return self.records[-1] if self.records else None

    @property
    def first_uri(self) -> str:
        # The metadata record names the first hop of the cited document; a browser capture's
        # records begin with the page's sub-resources.
        meta = next((r for r in self.records if r.record_type == "metadata"), None)
        if meta is not None:
            return meta.target_uri
        return self.records[0].target_uri if self.records else self.source["url"]


@dataclass
class Plan:
    """Everything the bundle shows, read from the catalogue in one snapshot."""

    mode: str  # 'report' | 'urls' | 'all'
    report: dict[str, Any] | None
    version: dict[str, Any] | None
    claims: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    exhibits: list[Exhibit]
    latest_checks: dict[int, dict[str, Any]]
    live: dict[int, dict[str, Any]]  # source id -> what its latest check says, and what vouches for it
    head: dict[str, Any] | None
    keys: list[dict[str, Any]]
    timestamps: list[dict[str, Any]]
    warc_files: dict[str, dict[str, Any]]
    created: str = ""
    log_scope: str = "chain"
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)  # source id -> its latest capture
    time_anchors: dict[str, Any] = field(default_factory=dict)  # what the tokens cover (bundle_anchors)
    witnesses: dict[int, dict[str, Any]] = field(default_factory=dict)  # source id -> its witness's public copy
    import_entry: dict[str, Any] | None = None  # the custody entry of the report version's import (seq, at)
    _exported: list[Exhibit] | None = field(default=None, repr=False)
    _by_source: dict[int, list[Exhibit]] | None = field(default=None, repr=False)
    _cited: dict[int, dict[str, None]] | None = field(default=None, repr=False)

    @property
    def exported(self) -> list[Exhibit]:
        """Numbered (intact) exhibits, in exhibit order."""
        if self._exported is None:
            self._exported = sorted((e for e in self.exhibits if e.number), key=lambda e: e.number)
        return self._exported

    def by_source(self, source_id: int, kind: str | None = None) -> list[Exhibit]:
        if self._by_source is None:
            self._by_source = {}
            for e in self.exported:
                self._by_source.setdefault(e.source["id"], []).append(e)
        return [e for e in self._by_source.get(source_id, []) if kind is None or e.kind == kind]

    def cited_as(self, source_id: int) -> list[str]:
        """The spellings the report's citations use for a source."""
        if self._cited is None:
            self._cited = {}
            for claim in self.claims:
                for c in claim["citations"]:
                    self._cited.setdefault(c["source_id"], {})[c["url"]] = None
        return list(self._cited.get(source_id, {}))

    @property
    def unsupported(self) -> list[dict[str, Any]]:
        return [c for c in self.claims if not c["supporting"]]

    @property
    def unpreserved_sources(self) -> list[dict[str, Any]]:
        """Without a report: selected sources left without an intact capture in the bundle."""
        if self.mode == "report":
            return []
        kept = {e.source["id"] for e in self.exported if e.kind == "capture" and e.not_support is None}
        return [s for s in self.sources if s["id"] not in kept]


@dataclass
class ExportResult:
    path: Path
    exhibits: int
    records: int
    claims: int
    unsupported: list[dict[str, Any]]
    unpreserved_sources: list[dict[str, Any]]
    not_exported: list[dict[str, Any]]
    manifest_sha256: str
    wacz_sha256: str
    log_seq: int | None
    head: dict[str, Any] | None
    files: list[str]
    housekeeping: list[str] = field(default_factory=list)  # interrupted exports settled, leftovers removed
    time_anchors: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "exhibits": self.exhibits, "records": self.records,
                "claims": self.claims, "unsupported_claims": self.unsupported,
                "unpreserved_sources": self.unpreserved_sources,
                "not_exported": self.not_exported, "manifest_sha256": self.manifest_sha256,
                "wacz_sha256": self.wacz_sha256, "export_log_seq": self.log_seq,
                "log_head": {"seq": self.head["seq"], "entry_hash": self.head["entry_hash"]}
                if self.head else None, "files": self.files, "housekeeping": self.housekeeping,
                "time_anchors": self.time_anchors}


# --------------------------------------------------------------------------- bundle files

def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", newline="") as fh:
        fh.write(text)
