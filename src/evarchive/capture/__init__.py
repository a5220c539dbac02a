"""The capture engine: fetch cited URLs and preserve every exchange as WARC/1.1 evidence.

One part per seam, in the order a capture runs: ``settings`` (every knob, validated once),
``selection`` (the URLs a command works on), ``fetch`` (one URL hop by hop: redirects, retries,
limits, bodies spooled while hashed), ``records`` (a hop's WARC records and the capture's
provenance fields), ``run`` (``CaptureRun``: limits, commits in groups, worker processes).
The names other modules use are re-exported here.
"""

from __future__ import annotations

from .fetch import (
    RETRY_STATUSES,
    CapturedHop,
    CaptureFailure,
    Fetcher,
    StorageError,
    build_client,
    classify_exception,
)
from .records import provenance_fields, write_hop_records
from .run import (
    CaptureOutcome,
    CaptureRun,
    capture_in_workers,
    capture_urls,
    recover,
    stopped_by_storage,
)
from .selection import read_url_list, select_urls
from .settings import DEFAULT_USER_AGENT, CaptureSettings

__all__ = [
    "DEFAULT_USER_AGENT",
    "RETRY_STATUSES",
    "CaptureFailure",
    "CaptureOutcome",
    "CaptureRun",
    "CaptureSettings",
    "CapturedHop",
    "Fetcher",
    "StorageError",
    "build_client",
    "capture_in_workers",
    "capture_urls",
    "classify_exception",
    "provenance_fields",
    "read_url_list",
    "recover",
    "select_urls",
    "stopped_by_storage",
    "write_hop_records",
]
