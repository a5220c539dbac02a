"""Reports: read them (txt, Markdown, HTML, docx, PDF), import their claims, version and browse them.

- ``files``: open, size-check, hash a report file and sniff its format;
- ``readers/``: one reader per format, each turning bytes into an :class:`extract.Document`
  (blocks with hyperlinks and footnote markers, plus the notes); ``extract.segment`` then finds
  the claims and their citations;
- ``importing``: store a new version in one transaction (a bad input is refused with an
  :class:`InputError` before the catalogue is touched);
- ``versions``: what changed between two versions;
- ``browsing``: reports, claims and sources read back, and whether each is preserved.
"""

from __future__ import annotations

from .browsing import (claims_citing, claims_of_version, intact_captures, list_reports, report_claims,
                       source_stats, sources_to_capture)
from .files import FORMATS, MAX_PACKAGE_BYTES, MAX_TEXT_BYTES, ReportFile, parse_report, read_report_file, sniff_format
from .importing import ImportResult, PreparedReport, check_report, import_report
from .readers import (decode_text, hyperlink_field_target, read_docx, read_html, read_markdown, read_pdf, read_text,
                      text_blocks, urls_in_document)
from .versions import diff_versions

__all__ = ["FORMATS", "MAX_PACKAGE_BYTES", "MAX_TEXT_BYTES", "ImportResult", "PreparedReport", "ReportFile",
           "check_report", "claims_citing", "claims_of_version", "decode_text", "diff_versions",
           "hyperlink_field_target", "import_report", "intact_captures", "list_reports", "parse_report",
           "read_docx", "read_html", "read_markdown", "read_pdf", "read_report_file", "read_text", "report_claims",
           "sniff_format", "source_stats", "sources_to_capture", "text_blocks", "urls_in_document"]
