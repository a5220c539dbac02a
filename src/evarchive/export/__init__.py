"""Citation bundles for a court: the evidence, an exhibit index a judge can read, and what a
clerk needs to verify it all without evarchive.

``export_bundle`` writes a directory (or, for an ``OUT`` ending in ``.zip``, a zip of that
directory) holding:

* ``evidence.wacz``: a WACZ 1.1.1 package whose WARC files hold the selected records *byte for
  byte*: every record's gzip member is copied unchanged from the archive, so its SHA-256 is the
  ``member_sha256`` the catalogue and the custody log recorded at capture time. Each bundle WARC
  starts with a new ``warcinfo`` record and holds the excerpts of one archive WARC, in their
  original order (request/response pairs stay adjacent, as replay indexers expect).
* ``exhibits.html`` (self-contained), ``exhibits.txt`` and ``exhibits.csv``: per claim, the
  exhibits supporting it, with provenance, hashes and record locations.
* ``bundle.json``: the same, for machines; ``custody/``: the custody-log entries that vouch for
  the exhibits (by default every entry from the first of them to the head, so the hash chain can
  be recomputed), the head, public keys and RFC 3161 tokens; ``verify_bundle.py`` (standard
  library only) and ``VERIFY.md``; ``SHA256SUMS`` over every other file.

The archive is only read; the export itself is recorded in the custody log (``export`` event,
with the SHA-256 of ``SHA256SUMS``) once the bundle is complete and before it appears at OUT,
then its outcome (``publishing.py``).

The parts, in the order an export runs them: ``selection`` (what the bundle holds, from the
catalogue), ``integrity`` (rows and bytes checked before anything is written), ``wacz`` (the
package), ``custodyfiles`` (the log entries, keys and tokens), ``indexdata`` (``bundle.json``),
``render`` (the HTML, text and CSV index and report.html, written by the functions of the
standalone ``verify_bundle.py``, which renders them again from vouched facts to check them),
``verifymd`` (VERIFY.md) and ``bundle`` (the entry point: staging, manifest, custody entry,
publishing). ``model`` holds the dataclasses they share.
"""

from ..verify_bundle import decoded_sha256, why_no_exhibit
from .bundle import build, export_bundle
from .indexdata import bundle_data, where
from .integrity import check_integrity
from .model import (
                    BUNDLE_FORMAT,
                    MANIFEST_NAME,
                    VERIFY_SCRIPT,
                    WACZ_NAME,
                    WACZ_VERSION,
                    Exhibit,
                    ExportResult,
                    Plan,
                    Record,
)
from .render import REPORT_PAGE, csv_cell, render_csv, render_html, render_report, render_text, support_words
from .selection import live_status, number_exhibits, select
from .verifymd import render_verify
from .wacz import zip_data_offsets

__all__ = ["BUNDLE_FORMAT", "MANIFEST_NAME", "REPORT_PAGE", "VERIFY_SCRIPT", "WACZ_NAME", "WACZ_VERSION", "Exhibit",
           "ExportResult", "Plan", "Record", "build", "bundle_data", "check_integrity", "csv_cell", "decoded_sha256",
           "export_bundle", "live_status", "number_exhibits", "render_csv", "render_html", "render_report",
           "render_text", "render_verify", "select", "support_words", "where", "why_no_exhibit", "zip_data_offsets"]
