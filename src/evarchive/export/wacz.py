"""The WACZ package: the exhibits' records copied byte for byte into excerpt WARC files, their
CDXJ index, pages.jsonl and datapackage.json; and the browser captures' screenshots and PDFs
as plain files beside it."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__, waczsigning
from ..archive import Archive
from ..errors import CouldNotRunError
from ..verify_bundle import warc_field
from ..warcwriter import warc_digest, warc_fields
from .integrity import read_span
from .model import INDEXED_TYPES, WACZ_VERSION, ZIP64_LIMIT, Exhibit, Plan, Record

# --------------------------------------------------------------------------- the WACZ

@dataclass
class _OutWarc:
    name: str
    source: str
    records: list[Record]
    head: bytes = b""

    @property
    def size(self) -> int:
        return len(self.head) + sum(r.length for r in self.records)


def _plan_warcs(plan: Plan) -> list[_OutWarc]:
    """One bundle WARC per archive WARC that holds exported records, records in file order."""
    groups: dict[str, list[Record]] = {}
    for exhibit in plan.exported:
        for rec in exhibit.records:
            groups.setdefault(rec.warc_file, []).append(rec)
    outs = []
    for name in sorted(groups):
        recs = sorted({r.record_id: r for r in groups[name]}.values(), key=lambda r: r.offset)
        stem = name[:-8] if name.endswith(".warc.gz") else name
        outs.append(_OutWarc(f"{stem}.excerpt.warc.gz", name, recs))
    return outs


def _warcinfo(out: _OutWarc, plan: Plan, source_row: dict[str, Any] | None) -> bytes:
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"), ("format", "WARC File Format 1.1"),
        ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
        ("description", "Excerpt for a citation bundle: every record after this one is a gzip member "
                        "copied byte for byte from the archive WARC file named in source-warc, so its "
                        "SHA-256 is the one the custody log recorded at capture"),
        ("source-warc", out.source), ("exported", plan.created), ("records", str(len(out.records)))]
    if source_row and source_row.get("sha256"):
        fields.append(("source-warc-sha256", source_row["sha256"]))
    body = warc_fields(fields)
    head = "\r\n".join([
        "WARC/1.1", "WARC-Type: warcinfo", f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>",
        f"WARC-Date: {plan.created}", f"WARC-Filename: {out.name}", "Content-Type: application/warc-fields",
        f"WARC-Block-Digest: {warc_digest(hashlib.sha256(body).hexdigest())}",
        f"Content-Length: {len(body)}"]) + "\r\n\r\n"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(head.encode() + body + b"\r\n\r\n") + packer.flush()


def _zipinfo(name: str, created: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=tuple(int(x) for x in re.findall(r"\d+", created)[:6]))
    info.compress_type = zipfile.ZIP_STORED  # WACZ: archive/ and indexes must be stored
    info.external_attr = 0o644 << 16
    return info


def write_wacz(archive: Archive, plan: Plan, path: Path) -> None:
    outs = _plan_warcs(plan)
    resources: list[dict[str, Any]] = []
    with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for out in outs:
            out.head = _warcinfo(out, plan, plan.warc_files.get(out.source))
            resources.append(_copy_warc(archive, zf, out, plan.created))
        pages = _pages_jsonl(plan, archive)
        for name, data in (("indexes/index.cdx", _cdxj(outs)), ("pages/pages.jsonl", pages)):
            zf.writestr(_zipinfo(name, plan.created), data)
            resources.append(_resource(name, data))
        package = _datapackage(plan, resources)
        zf.writestr(_zipinfo("datapackage.json", plan.created), package)
        zf.writestr(_zipinfo("datapackage-digest.json", plan.created),
                    waczsigning.digest_file(archive, package, plan.created))
    offsets = zip_data_offsets(path)
    for out in outs:
        for rec in out.records:
            rec.wacz_offset = offsets[f"archive/{out.name}"] + (rec.bundle_offset or 0)


def _copy_warc(archive: Archive, zf: zipfile.ZipFile, out: _OutWarc, created: str) -> dict[str, Any]:
    """Stream the warcinfo and then each member unchanged; every member is hashed again on the
    way, so bytes that changed since the integrity pass stop the export instead of shipping."""
    name = f"archive/{out.name}"
    digest = hashlib.sha256(out.head)
    with zf.open(_zipinfo(name, created), "w", force_zip64=out.size > ZIP64_LIMIT) as dest, \
            open(archive.warcs_dir / out.source, "rb", buffering=0) as src:
        dest.write(out.head)
        pos = len(out.head)
        for rec in out.records:
            member = hashlib.sha256()
            for chunk in read_span(src.fileno(), rec.offset, rec.length):
                member.update(chunk)
                digest.update(chunk)
                dest.write(chunk)
            if member.hexdigest() != rec.member_sha256:
                raise CouldNotRunError(f"record {rec.record_id} in {out.source} changed while it was being "
                                       "exported; nothing was written. Run `evarchive verify`.")
            rec.bundle_file, rec.bundle_offset = name, pos
            pos += rec.length
    return {"name": out.name.lower(), "path": name, "hash": "sha256:" + digest.hexdigest(), "bytes": out.size}


def _resource(path: str, data: bytes) -> dict[str, Any]:
    return {"name": path.rsplit("/", 1)[-1].lower(), "path": path,
            "hash": "sha256:" + hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def zip_data_offsets(path: Path) -> dict[str, int]:
    """Where each stored entry's bytes start in the zip (after its local header): with it a
    record can be cut out of the .wacz with dd or tail/head, no unzip needed."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            out[info.filename] = info.header_offset + 30 + name_len + extra_len
    return out


def _cdxj(outs: list[_OutWarc]) -> bytes:
    """A sorted CDXJ index as pywb and ReplayWeb.page read it (`indexes/index.cdx`, plain text:
    ReplayWeb.page loads .cdx/.cdxj directly but ignores a .cdx.gz without a ZipNum .idx)."""
    import surt

    lines = []
    for out in outs:
        for rec in out.records:
            if rec.record_type not in INDEXED_TYPES or (rec.warc_content_type or "").startswith(
                    "application/warc-fields"):
                continue
            url = rec.target_uri
            if rec.role == "head":  # a HEAD answer must never be replayed for a GET of the page
                url += ("&" if "?" in url else "?") + "__wb_method=head"
            try:
                key = surt.surt(url)
            except Exception:  # what cdxj-indexer does with a URL surt cannot parse
                key = url
            entry = {"url": rec.target_uri, "mime": rec.mime, "status": rec.http_status,
                     "digest": rec.payload_digest, "length": str(rec.length),
                     "offset": str(rec.bundle_offset), "filename": out.name}
            if rec.role == "head":
                entry["method"] = "HEAD"
            entry = {k: v for k, v in entry.items() if v is not None}
            lines.append(f"{key} {_cdx_timestamp(rec.warc_date)} {json.dumps(entry)}\n")
    return "".join(sorted(lines)).encode("utf-8")


def _cdx_timestamp(warc_date: str | None) -> str:
    digits = re.sub(r"\D", "", warc_date or "")
    return digits[:14].ljust(14, "0")


def _pages_jsonl(plan: Plan, archive: Archive | None = None) -> bytes:
    """One page per captured exhibit, at its first request URL and capture time; a browser
    capture adds the page's title and visible text (from its artefact records)."""
    lines = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": "Exhibits"})]
    for exhibit in sorted(plan.exported, key=lambda e: e.number):
        if exhibit.kind != "capture":
            continue
        page = {"id": f"exhibit-{exhibit.number}", "url": exhibit.first_uri,
                "ts": exhibit.row["warc_date"] or exhibit.row["started_at"],
                "title": f"Exhibit {exhibit.number}: {exhibit.source['url']}"}
        artefacts = _text_artefacts(archive, exhibit) if archive is not None else {}
        if artefacts.get("title"):
            page["title"] += f" ({artefacts['title']})"
        if artefacts.get("text"):
            page["text"] = artefacts["text"]
        lines.append(json.dumps(page, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _text_artefacts(archive: Archive, exhibit: Exhibit) -> dict[str, str]:
    """The title and text artefacts of a browser capture, read from their resource records."""
    found = {}
    for rec in exhibit.records:
        kind = rec.target_uri.split(":")[2] if rec.target_uri.startswith("urn:evarchive:") else ""
        if rec.record_type != "resource" or kind not in ("title", "text"):
            continue
        with open(archive.warcs_dir / rec.warc_file, "rb") as fh:
            fh.seek(rec.offset)
            member = zlib.decompress(fh.read(rec.length), wbits=31)
        head, _, rest = member.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
        found[kind] = rest[:length].decode("utf-8", "replace")
    return found


def _record_block(archive: Archive, rec: Record) -> bytes:
    """A record's block (for a resource record: the artefact's bytes), read from its archive WARC."""
    with open(archive.warcs_dir / rec.warc_file, "rb") as fh:
        fh.seek(rec.offset)
        member = zlib.decompress(fh.read(rec.length), wbits=31)
    head, _, rest = member.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    return rest[:length]


# Artefacts the exhibit index shows and links to, with the extension of their bundle file.
SHOWN_ARTEFACTS = {"screenshot-viewport": "png", "screenshot-full": "png", "pdf": "pdf"}


def write_artefacts(archive: Archive, plan: Plan, folder: Path) -> None:
    """Each browser capture's screenshots and PDF as plain files in artefacts/, cut out of their
    resource records, so the exhibit index shows and links them with no replay tool; the bytes
    are checked against the record's block digest on the way, as every exported record is."""
    browser = [e for e in plan.exported if e.kind == "capture" and e.row.get("engine") == "browser"]
    for exhibit in browser:
        by_id = {r.record_id: r for r in exhibit.records}
        rows = archive.db.query("SELECT * FROM capture_artefacts WHERE capture_id = ? ORDER BY id",
                                [exhibit.row["id"]])
        for row in sorted(rows, key=lambda r: list(SHOWN_ARTEFACTS).index(r["kind"])
                          if r["kind"] in SHOWN_ARTEFACTS else len(SHOWN_ARTEFACTS)):
            rec = by_id.get(row["record_id"])
            if row["kind"] not in SHOWN_ARTEFACTS or rec is None:
                continue
            data = _record_block(archive, rec)
            if hashlib.sha256(data).hexdigest() != row["sha256"] or row["sha256"] != rec.block_sha256:
                raise CouldNotRunError(f"the {row['kind']} of capture {exhibit.row['id']} ({rec.record_id}) does "
                                       "not match its recorded SHA-256; nothing was written. Run `evarchive verify`.")
            name = f"artefacts/exhibit-{exhibit.number}-{row['kind']}.{SHOWN_ARTEFACTS[row['kind']]}"
            (folder / "artefacts").mkdir(exist_ok=True)
            with open(folder / name, "xb") as fh:
                fh.write(data)
            exhibit.artefacts.append({"kind": row["kind"], "file": name, "sha256": row["sha256"],
                                      "size": row["size"], "content_type": row["content_type"],
                                      "width": row["width"], "height": row["height"],
                                      "record_id": rec.record_id})
        exhibit.chromium_version = _metadata_field(archive, exhibit, "browser-chromium-version")


def _metadata_field(archive: Archive, exhibit: Exhibit, name: str) -> str | None:
    """One field of a capture's provenance (its metadata record, application/warc-fields)."""
    meta = next((r for r in exhibit.records if r.record_type == "metadata"), None)
    if meta is None:
        return None
    return warc_field(_record_block(archive, meta), name)


def _datapackage(plan: Plan, resources: list[dict[str, Any]]) -> bytes:
    title = (f"Exhibits for {plan.report['title']} (version {plan.version['version']})" if plan.report
             else "Exhibits")
    first = next((e for e in plan.exported if e.kind == "capture"), None)
    package: dict[str, Any] = {
        "profile": "data-package", "wacz_version": WACZ_VERSION, "title": title,
        "description": "Web evidence exported by evarchive for a citation bundle. Every WARC record in "
                       "archive/ after each file's first (warcinfo) record is a byte-for-byte copy of the "
                       "archived record; see exhibits.html beside this file.",
        "created": plan.created, "software": f"evarchive {__version__}", "resources": resources}
    if first is not None:
        package["mainPageURL"] = first.first_uri
        package["mainPageDate"] = first.row["warc_date"] or first.row["started_at"]
    return (json.dumps(package, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
