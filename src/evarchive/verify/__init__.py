"""Verification: prove that the evidence and the record of it are intact.

Two levels: fast (every WARC file is present with its recorded size and whole-file SHA-256)
and deep (additionally every record is inflated, parsed, its digests recomputed and compared
with its catalogue row). Whatever the level, the custody log is checked (chain, signatures,
the rows each entry vouches for) and stored RFC 3161 tokens are verified offline. Every
problem names the record, capture, source URL and claims it touches.

The parts, each read on its own:

* `scan`: WARC bytes only (whole-file hashes, gzip members, record parsing, digests).
* `files`: those bytes against the catalogue's files and record rows.
* `artefacts` (deep): each browser artefact row against its resource record and its bytes.
* `rows`: the catalogue's rows against the custody-log entries that vouch for them.
* `log`: the log itself (chain, signatures) and the timestamps over it.
* `scope`, `findings`, `sql`: what a run covers and where a finding lies; the problems and
  the claims they touch; small SQL helpers.
* `run`: one run (`Verifier`, `verify_archive`): one snapshot, two threads, the run recorded.
"""

from __future__ import annotations

from .files import FileChecks, uncovered
from .findings import Problem, VerifyResult, claims_citing
from .run import Verifier, verify_archive
from .scan import INFLATER, WORKERS, Member, RecordParser, member_hashes, scan_file, scan_members
from .scope import report_sources

__all__ = [
    "INFLATER", "WORKERS", "FileChecks", "Member", "Problem", "RecordParser", "Verifier", "VerifyResult",
    "claims_citing", "member_hashes", "report_sources", "scan_file", "scan_members", "uncovered",
    "verify_archive",
]
