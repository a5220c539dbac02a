"""Independent witnesses: ask the Internet Archive's Save Page Now 2 (SPN2) to capture a source.

An archive that only its owner holds is one party's word; a copy made by an independent archive
at the same moment corroborates it. SPN2 takes a URL (``POST /save``, authenticated with the
user's archive.org access keys as ``Authorization: LOW ACCESS:SECRET``), answers with a job id,
and its status endpoint (``GET /save/status/JOB``) says ``pending``, then ``success`` with the
archive's own 14-digit timestamp, or ``error`` with a reason. Polling is bounded in time; a job
still pending when time is up, a rate limit (HTTP 429) or a daily quota is recorded as such and
retried by a later run, never lost.

The keys come from the environment (``EVARCHIVE_SPN2_KEYS=ACCESS:SECRET``) or a file named by
``EVARCHIVE_SPN2_KEYS_FILE``; they are sent to the service and never written anywhere.
Submitting a URL discloses it: nothing here runs unless the user asked for a witness.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from . import custody
from .catalogue import insert, transaction, utc_now
from .errors import UsageError

SPN2_ENDPOINT = "https://web.archive.org"
SERVICE = "wayback"
KEYS_VARIABLE = "EVARCHIVE_SPN2_KEYS"
KEYS_FILE_VARIABLE = "EVARCHIVE_SPN2_KEYS_FILE"
DONE = "archived"


@dataclass
class WitnessSettings:
    """Where to submit, with which keys, and how long to wait for a job."""

    access_key: str
    secret: str
    endpoint: str = SPN2_ENDPOINT
    poll_interval: float = 5.0
    max_wait: float = 180.0
    timeout: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    transport: httpx.BaseTransport | None = field(default=None, repr=False)


def keys_from_environment(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The SPN2 access keys, from ``EVARCHIVE_SPN2_KEYS`` or the file ``EVARCHIVE_SPN2_KEYS_FILE``
    names (``ACCESS:SECRET`` either way); UsageError saying how to set them when neither is."""
    env = os.environ if env is None else env
    text = env.get(KEYS_VARIABLE)
    if text is None and env.get(KEYS_FILE_VARIABLE):
        try:
            text = Path(env[KEYS_FILE_VARIABLE]).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"{KEYS_FILE_VARIABLE}: cannot read {env[KEYS_FILE_VARIABLE]} ({exc.strerror})") from None
    access, sep, secret = (text or "").strip().partition(":")
    if not sep or not access or not secret:
        raise UsageError(f"a witness needs archive.org access keys: set {KEYS_VARIABLE}=ACCESS:SECRET, or "
                         f"{KEYS_FILE_VARIABLE} to a file holding ACCESS:SECRET (archive.org/account/s3.php)")
    return access, secret


@dataclass
class WitnessResult:
    """What the witness did with one URL. ``status``: archived, pending (still running when
    time was up), rate-limited, failed. ``archived_at`` is the archive's own time for its copy."""

    url: str
    status: str
    job_id: str | None = None
    memento_url: str | None = None
    archived_at: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit(url: str, settings: WitnessSettings) -> WitnessResult:
    """Ask SPN2 to capture ``url`` and wait (within ``max_wait``) for its job to end."""
    headers = {"Accept": "application/json", "Authorization": f"LOW {settings.access_key}:{settings.secret}",
               "User-Agent": "evarchive (witness submission)"}
    with httpx.Client(base_url=settings.endpoint, headers=headers, timeout=settings.timeout,
                      transport=settings.transport) as client:
        try:
            started = client.post("/save", data={"url": url})
        except httpx.HTTPError as exc:
            return WitnessResult(url, "failed", message=f"could not reach the service: {type(exc).__name__}")
        answer = _json(started)
        if started.status_code == 429:
            return WitnessResult(url, "rate-limited", message=_reason(answer, started))
        if started.status_code != 200 or not answer.get("job_id"):
            status = "rate-limited" if "limit" in _reason(answer, started).lower() else "failed"
            return WitnessResult(url, status, message=_reason(answer, started))
        return _wait(client, url, answer["job_id"], settings)


def _wait(client: httpx.Client, url: str, job_id: str, settings: WitnessSettings) -> WitnessResult:
    deadline = settings.clock() + settings.max_wait
    while True:
        try:
            response = client.get(f"/save/status/{job_id}")
        except httpx.HTTPError as exc:
            return WitnessResult(url, "pending", job_id, message=f"status unknown: {type(exc).__name__}")
        answer = _json(response)
        status = answer.get("status")
        if status == "success" and answer.get("timestamp"):
            original = answer.get("original_url") or url
            return WitnessResult(url, DONE, job_id, f"{settings.endpoint}/web/{answer['timestamp']}/{original}",
                                 _archive_time(answer["timestamp"]))
        if status == "error" or response.status_code >= 400:
            return WitnessResult(url, "failed", job_id, message=_reason(answer, response))
        if settings.clock() + settings.poll_interval > deadline:
            return WitnessResult(url, "pending", job_id, message=f"still pending after {settings.max_wait:.0f} s")
        settings.sleep(settings.poll_interval)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _reason(answer: dict[str, Any], response: httpx.Response) -> str:
    parts = [str(answer.get(k)) for k in ("status_ext", "message") if answer.get(k)]
    return "; ".join(parts) or f"HTTP {response.status_code}"


def _archive_time(stamp: str) -> str | None:
    try:
        return dt.datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


# --------------------------------------------------------------------------- the catalogue

def record(db: Any, source_id: int, capture_id: int | None, result: WitnessResult) -> int:
    """Store one witness attempt with its custody entry, in one transaction; returns its id."""
    row = {"source_id": source_id, "capture_id": capture_id, "service": SERVICE, "submitted_at": utc_now(),
           **{k: v for k, v in result.as_dict().items() if k != "url"}}
    with transaction(db):
        witness_id = insert(db, "witnesses", row)
        custody.append(db, "witness", result.url, {"witness_id": witness_id, "witness": row})
    return witness_id


def sources_to_witness(db: Any, source_ids: list[int]) -> list[dict[str, Any]]:
    """Of these sources, those without an archived witness yet (new, failed, rate-limited or
    pending ones are asked again), each with its latest good capture if any."""
    wanted = []
    for source_id in source_ids:
        done = db.execute("SELECT 1 FROM witnesses WHERE source_id = ? AND status = ? LIMIT 1",
                          [source_id, DONE]).fetchone()
        if done:
            continue
        source = dict(next(db.query("SELECT id, url FROM sources WHERE id = ?", [source_id])))
        latest = db.execute("SELECT id FROM captures WHERE source_id = ? AND status = 'ok' ORDER BY id DESC LIMIT 1",
                            [source_id]).fetchone()
        wanted.append({**source, "capture_id": latest[0] if latest else None})
    return wanted


def latest_public_copy(db: Any, source_id: int) -> dict[str, Any] | None:
    """The source's latest copy an independent witness archived: its witnesses row (memento URL
    and time, and how it compared with our capture)."""
    rows = list(db.query("SELECT * FROM witnesses WHERE source_id = ? AND status = ? ORDER BY id DESC LIMIT 1",
                         [source_id, DONE]))
    return rows[0] if rows else None


def witnesses_of(db: Any, source_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM witnesses WHERE source_id = ? ORDER BY id", [source_id]))


# --------------------------------------------------------------------------- corroboration

CORROBORATION_LIMIT = 16 << 20  # bytes of the witness's copy read for the comparison


def original_bytes_url(memento_url: str) -> str:
    """The Wayback address of a memento's bytes as archived (the ``id_`` flag: no banner, no
    rewritten links), which is what can be compared with our own capture's payload."""
    head, sep, rest = memento_url.partition("/web/")
    stamp, slash, original = rest.partition("/")
    return f"{head}{sep}{stamp}id_{slash}{original}" if sep and slash and stamp.isdigit() else memento_url


def corroborate(archive: Any, witness_id: int, *, timeout: float = 60.0,
                transport: httpx.BaseTransport | None = None) -> tuple[str, float | None]:
    """Fetch the witness's copy and compare it with our capture of the same source: ``identical``
    (the same payload bytes), else the main-text similarity that ``check`` computes (``similar``
    at or above check's drift threshold, ``differs`` below). Stored on the witness row with a
    custody entry; returns (corroboration, similarity)."""
    from .linkcheck import DEFAULT_DRIFT_THRESHOLD, read_capture_payload
    from .textdiff import extract, similarity

    db = archive.db
    row = dict(next(db.query("SELECT * FROM witnesses WHERE id = ?", [witness_id])))
    capture = next(db.query("SELECT * FROM captures WHERE id = ?", [row["capture_id"]]), None) \
        if row["capture_id"] else None
    ours = read_capture_payload(archive, dict(capture), CORROBORATION_LIMIT) if capture else None
    if not row["memento_url"] or ours is None:
        return _store_corroboration(db, row, "not compared: no copy on one side", None)
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True) as client, \
                client.stream("GET", original_bytes_url(row["memento_url"])) as response:
            theirs = bytearray()
            for chunk in response.iter_bytes():
                theirs += chunk
                if len(theirs) > CORROBORATION_LIMIT:
                    break
    except httpx.HTTPError as exc:
        return _store_corroboration(db, row, f"not compared: the witness's copy could not be fetched "
                                             f"({type(exc).__name__})", None)
    if bytes(theirs) == ours:
        return _store_corroboration(db, row, "identical", 1.0)
    score = similarity(extract(ours), extract(bytes(theirs)))
    return _store_corroboration(db, row, "similar" if score >= DEFAULT_DRIFT_THRESHOLD else "differs", score)


def _store_corroboration(db: Any, row: dict[str, Any], verdict: str, score: float | None) -> tuple[str, float | None]:
    with transaction(db):
        db.execute("UPDATE witnesses SET corroboration = ?, similarity = ? WHERE id = ?", [verdict, score, row["id"]])
        custody.append(db, "witness-compared", str(row["memento_url"] or row["source_id"]),
                       {"witness_id": row["id"], "capture_id": row["capture_id"], "corroboration": verdict,
                        "similarity": score})
    return verdict, score
