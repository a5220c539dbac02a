"""The SQLite catalogue: schema, migrations and the row helpers every command shares.

The catalogue is opened in WAL mode with ``synchronous=FULL``: a row that says evidence exists
must survive a power cut once its commit returns. Writes go through ``transaction()`` (BEGIN
IMMEDIATE), so concurrent evarchive processes serialise on the catalogue instead of failing
half way, and a custody-log entry is committed atomically with the rows it vouches for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlite_utils

from .errors import CouldNotRunError, shown, storage_failure, storage_failure_error
from .urls import normalise_url, validate_url

BUSY_TIMEOUT_MS = 60_000


def path_value(path: Path) -> str | bytes:
    """A path to store and use again: its text, or its raw bytes (a BLOB) when they are not
    UTF-8, which SQLite text cannot hold."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with microseconds (the catalogue's format)."""
    return format_time(dt.datetime.now(dt.UTC))


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_json(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, so the same value always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def open_database(path: Path, *, create: bool = False, check: bool = True) -> sqlite_utils.Database:
    """The catalogue for reading and writing, checked for damage (``check``) before any write.

    Only commands that never write may skip the check: damage they run into is still reported
    by SQLite (SQLITE_CORRUPT), and the check costs about 2 ms per MB of catalogue.
    """
    try:
        conn = sqlite3.connect(_uri(path, "rwc" if create else "rw"), uri=True, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if check:
            check_intact(conn, path)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # No sqlite-utils plugins: whatever happens to be installed must not add SQL functions to
        # the evidence catalogue's connection, and scanning every installed package's entry points
        # for them cost 20-35 ms on every command.
        db = sqlite_utils.Database(conn, execute_plugins=False)
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None
    return db


def open_read_only(path: Path, *, check: bool = True) -> sqlite_utils.Database:
    """The catalogue of an archive whose storage cannot be written (a read-only mount)."""
    try:
        conn = read_only_connection(path)
        if check:
            check_intact(conn, path)
        db = sqlite_utils.Database(conn, execute_plugins=False)
        known = max(v for v, _, _ in MIGRATIONS)
        if schema_version(db) != known:
            raise CouldNotRunError(
                f"the catalogue {shown(path)} has schema version {schema_version(db)} and this evarchive "
                f"reads version {known}; the archive is read-only, so it cannot be upgraded: run "
                "evarchive on it once mounted read-write (or with the evarchive that wrote it)")
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from None
    return db


def read_only_connection(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection that never writes, which works on a read-only mount too.

    A WAL database needs its -shm file to be read normally. Without one (the last writer closed
    cleanly and removed it) on storage where it cannot be created, the file is opened as
    immutable, which is exact only while the WAL holds no commits: a WAL with commits but no
    -shm cannot be read faithfully, so it is refused.
    """
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    mode = "ro"
    if not os.access(path.parent, os.W_OK) and not shm.exists():
        if wal.exists() and wal.stat().st_size > 0:
            raise CouldNotRunError(
                f"the catalogue {shown(path)} has commits still in {shown(wal.name)} and the archive is "
                "read-only, so they cannot be read: mount it read-write once (any evarchive command "
                "folds them into the catalogue), or copy the archive somewhere writable")
        mode = "ro&immutable=1"
    conn = sqlite3.connect(_uri(path, mode), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                           check_same_thread=check_same_thread)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def writer_connection(path: Path) -> sqlite3.Connection:
    """A plain read-write connection to an existing catalogue (never creates one)."""
    return sqlite3.connect(_uri(path, "rw"), uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)


def _uri(path: Path, mode: str) -> str:
    """A file: URI, so that the open mode can be given and any bytes in the path survive."""
    return "file:" + urllib.parse.quote(os.fsencode(path.absolute())) + "?mode=" + mode


def check_intact(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged catalogue before anything reads or writes it.

    ``quick_check`` reads every page of every table and index (not the index-to-table
    cross-check of a full ``integrity_check``): damaged B-tree pages are found here instead of
    half way through a command, and no write ever lands in a damaged file.
    """
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise damaged(path, "; ".join(problems))


def damaged(path: Path, detail: str) -> CouldNotRunError:
    return CouldNotRunError(
        f"the catalogue {shown(path)} is damaged ({detail}); nothing was written to it. See the damage "
        f"with: sqlite3 {shlex.quote(shown(path))} 'PRAGMA integrity_check'. Then restore "
        "catalogue.sqlite from a backup, and keep the damaged copy and the warcs/ folder: the "
        "evidence itself is in the WARC files.")


def is_damage(exc: BaseException) -> bool:
    """SQLite saying the file is not a database or its pages are malformed."""
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def unusable(path: Path, exc: sqlite3.DatabaseError) -> CouldNotRunError:
    """The CLI-facing error for a catalogue SQLite cannot open or read."""
    if is_damage(exc):
        return damaged(path, str(exc))
    reason = storage_failure(exc)
    if reason is not None:  # a full disk under the catalogue: say so, and what to do
        return storage_failure_error(reason)
    return CouldNotRunError(f"cannot use the catalogue {shown(path)}: {exc}")


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One atomic write: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
    conn = db.conn
    if conn.in_transaction:  # nested use joins the outer transaction
        yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.Error:
        # A COMMIT that fails (a full disk) may leave the transaction open; a later "nested"
        # use would then join it and never commit. Roll it back so nothing counts as written.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def insert(db: sqlite_utils.Database, table: str, row: dict[str, Any]) -> int:
    """Insert one row with plain SQL (sqlite-utils' own insert would commit our transaction)."""
    columns = ", ".join(f"[{k}]" for k in row)
    marks = ", ".join("?" for _ in row)
    cursor = db.execute(f"INSERT INTO [{table}] ({columns}) VALUES ({marks})", list(row.values()))
    return int(cursor.lastrowid)


def update(db: sqlite_utils.Database, table: str, key: int | str, values: dict[str, Any],
           key_column: str = "id") -> None:
    assignments = ", ".join(f"[{k}] = ?" for k in values)
    db.execute(f"UPDATE [{table}] SET {assignments} WHERE [{key_column}] = ?",
               [*values.values(), key])


def one(db: sqlite_utils.Database, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> dict[str, Any] | None:
    rows = list(db.query(sql, params))
    return rows[0] if rows else None


# --------------------------------------------------------------------------- migrations

# Where a WARC record is and the hashes that vouch for it: alike in capture_records and
# check_records, whose union is the view warc_records. Spliced in as text, so that the schema
# SQLite stores (and an existing catalogue holds) stays exactly what it was.
RECORD_COLUMNS = """\
            warc_file TEXT NOT NULL,
            offset INTEGER NOT NULL,
            length INTEGER NOT NULL,
            record_id TEXT NOT NULL UNIQUE,
            record_type TEXT NOT NULL,
            target_uri TEXT NOT NULL,
            block_sha256 TEXT NOT NULL,
            payload_sha256 TEXT,
            member_sha256 TEXT NOT NULL"""

def _migration_1_core(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL,
            normalised TEXT NOT NULL UNIQUE,
            added_at TEXT NOT NULL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            command TEXT NOT NULL,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            tool_version TEXT NOT NULL,
            settings TEXT,
            pid INTEGER
        );
        CREATE TABLE warc_files (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            closed_at TEXT,
            status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'interrupted')),
            size INTEGER,
            sha256 TEXT,
            referenced_size INTEGER NOT NULL DEFAULT 0,
            pid INTEGER,
            writer_lock TEXT,
            warcinfo_record_id TEXT,
            warcinfo_length INTEGER
        );
        CREATE TABLE captures (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id),
            run_id INTEGER REFERENCES runs(id),
            url_requested TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
            kind TEXT,
            started_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            warc_date TEXT,
            final_url TEXT,
            redirect_chain TEXT,
            http_status INTEGER,
            server_ip TEXT,
            server_port INTEGER,
            http_version TEXT,
            tls_version TEXT,
            tls_cipher TEXT,
            cert_chain_pem TEXT,
            cert_sha256 TEXT,
            cert_validated INTEGER,
            insecure INTEGER NOT NULL DEFAULT 0,
            proxy_used INTEGER NOT NULL DEFAULT 0,
            content_type TEXT,
            payload_size INTEGER,
            payload_sha256 TEXT,
            truncated INTEGER NOT NULL DEFAULT 0,
            warc_file TEXT,
            error_class TEXT,
            error_message TEXT,
            refers_to_capture_id INTEGER REFERENCES captures(id)
        );
        CREATE INDEX captures_source ON captures(source_id, status);
        CREATE TABLE capture_records (
            id INTEGER PRIMARY KEY,
            capture_id INTEGER NOT NULL REFERENCES captures(id),
""" + RECORD_COLUMNS + """
        );
        CREATE INDEX capture_records_capture ON capture_records(capture_id);
        CREATE INDEX capture_records_file ON capture_records(warc_file, offset);
        CREATE TABLE custody_log (
            seq INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            event TEXT NOT NULL,
            subject TEXT,
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            entry_hash TEXT NOT NULL,
            signature TEXT
        );
        """
    )


def _migration_2_reports(db: sqlite_utils.Database) -> None:
    """Reports, their versions, claims and the citations linking claims to sources.

    A version is identified by the SHA-256 of the report file; a report groups the versions
    imported under one title (or from one path). Claims and citations belong to one version and
    are never edited: a changed report is a new version, and the old one stays as it was.
    """
    db.executescript(
        """
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            path TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX reports_title ON reports(title);
        CREATE INDEX reports_path ON reports(path);
        CREATE TABLE report_versions (
            id INTEGER PRIMARY KEY,
            report_id INTEGER NOT NULL REFERENCES reports(id),
            version INTEGER NOT NULL,
            sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            format TEXT NOT NULL,
            size INTEGER NOT NULL,
            imported_at TEXT NOT NULL,
            claims INTEGER NOT NULL,
            citations INTEGER NOT NULL,
            sources INTEGER NOT NULL,
            UNIQUE (report_id, version)
        );
        CREATE TABLE claims (
            id INTEGER PRIMARY KEY,
            version_id INTEGER NOT NULL REFERENCES report_versions(id),
            report_id INTEGER NOT NULL REFERENCES reports(id),
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            scope TEXT NOT NULL CHECK (scope IN ('paragraph', 'sentence')),
            paragraph INTEGER NOT NULL,
            page INTEGER,
            line INTEGER,
            offset INTEGER NOT NULL
        );
        CREATE INDEX claims_version ON claims(version_id, ordinal);
        CREATE INDEX claims_report ON claims(report_id);
        CREATE TABLE citations (
            id INTEGER PRIMARY KEY,
            claim_id INTEGER NOT NULL REFERENCES claims(id),
            version_id INTEGER NOT NULL REFERENCES report_versions(id),
            source_id INTEGER NOT NULL REFERENCES sources(id),
            ordinal INTEGER NOT NULL,
            url TEXT NOT NULL,
            via TEXT NOT NULL,
            paragraph INTEGER NOT NULL,
            page INTEGER,
            offset INTEGER NOT NULL,
            note TEXT
        );
        CREATE INDEX citations_claim ON citations(claim_id);
        CREATE INDEX citations_source ON citations(source_id);
        CREATE INDEX citations_version ON citations(version_id);
        """
    )


def _migration_4_checks(db: sqlite_utils.Database) -> None:
    """Live re-checks: one row per check of a source, never updated."""
    db.executescript(
        """
        CREATE TABLE checks (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id),
            run_id INTEGER REFERENCES runs(id),
            checked_at TEXT NOT NULL,
            ended_at TEXT NOT NULL,
            verdict TEXT NOT NULL CHECK (verdict IN
                ('ok', 'drifted', 'moved', 'gone', 'soft-404', 'blocked', 'unreachable')),
            detail TEXT,
            reason TEXT NOT NULL,
            method TEXT,
            http_status INTEGER,
            final_url TEXT,
            redirect_chain TEXT,
            server_ip TEXT,
            content_type TEXT,
            payload_size INTEGER,
            payload_sha256 TEXT,
            text_sha256 TEXT,
            similarity REAL,
            baseline_capture_id INTEGER REFERENCES captures(id),
            probe_url TEXT,
            probe_status INTEGER,
            elapsed_ms REAL,
            strikes INTEGER NOT NULL DEFAULT 0,
            first_failure_at TEXT,
            confirmed INTEGER NOT NULL DEFAULT 0,
            counted INTEGER NOT NULL DEFAULT 1,
            change TEXT,
            newly_failed INTEGER NOT NULL DEFAULT 0,
            warc_file TEXT,
            error_message TEXT
        );
        CREATE INDEX checks_source ON checks(source_id, id);
        CREATE INDEX checks_run ON checks(run_id);
        CREATE TABLE check_records (
            id INTEGER PRIMARY KEY,
            check_id INTEGER NOT NULL REFERENCES checks(id),
""" + RECORD_COLUMNS + """,
            role TEXT
        );
        CREATE INDEX check_records_check ON check_records(check_id);
        CREATE TABLE check_recaptures (
            check_id INTEGER NOT NULL REFERENCES checks(id),
            capture_id INTEGER NOT NULL REFERENCES captures(id),
            PRIMARY KEY (check_id, capture_id)
        );
        CREATE TABLE check_baselines (
            capture_id INTEGER PRIMARY KEY REFERENCES captures(id),
            extractor_version INTEGER NOT NULL,
            text_sha256 TEXT NOT NULL,
            title TEXT,
            h1 TEXT,
            paragraphs TEXT NOT NULL
        );
        -- Every catalogued WARC record, whoever wrote it: captures and the evidence of checks
        -- (what a server answered during a check lives in WARC files too).
        CREATE VIEW warc_records AS
            SELECT 'capture' AS owner, capture_id AS owner_id, id, warc_file, offset, length,
                   record_id, record_type, target_uri, block_sha256, payload_sha256, member_sha256
            FROM capture_records
            UNION ALL
            SELECT 'check', check_id, id, warc_file, offset, length,
                   record_id, record_type, target_uri, block_sha256, payload_sha256, member_sha256
            FROM check_records;
        """
    )


def _migration_3_integrity(db: sqlite_utils.Database) -> None:
    """Integrity: verification runs, RFC 3161 tokens, custody signing keys (public part only)."""
    db.executescript(
        """
        CREATE TABLE verification_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            mode TEXT NOT NULL CHECK (mode IN ('fast', 'deep')),
            scope TEXT NOT NULL,
            result TEXT CHECK (result IN ('intact', 'problems')),
            problems INTEGER,
            notes INTEGER,
            files INTEGER,
            bytes INTEGER,
            records INTEGER,
            log_seq INTEGER,
            log_head TEXT,
            summary TEXT
        );
        CREATE TABLE timestamps (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            tsa_url TEXT NOT NULL,
            covers_seq INTEGER NOT NULL,
            digest TEXT NOT NULL,
            hash_alg TEXT NOT NULL,
            nonce TEXT NOT NULL,
            token BLOB NOT NULL,
            token_sha256 TEXT NOT NULL,
            gen_time TEXT NOT NULL,
            serial TEXT NOT NULL,
            policy TEXT,
            tsa_subject TEXT,
            tsa_chain_pem TEXT NOT NULL,
            library_versions TEXT NOT NULL
        );
        CREATE TABLE signing_keys (
            key_id TEXT PRIMARY KEY,
            algorithm TEXT NOT NULL DEFAULT 'ed25519',
            public_key_pem TEXT NOT NULL,
            private_key_path TEXT,
            created_at TEXT NOT NULL,
            retired_at TEXT
        );
        """
    )


def _migration_5_check_records_by_file(db: sqlite_utils.Database) -> None:
    """verify reads every record of a file, whoever wrote it: check records too, by file."""
    db.execute("CREATE INDEX check_records_file ON check_records(warc_file, offset)")


def _migration_6_browser(db: sqlite_utils.Database) -> None:
    """The browser engine: which engine made each capture, its findings, walls and artefacts.

    Captures made before this migration were all made by the HTTP engine. An artefact
    (screenshot, PDF, rendered DOM, ...) is a WARC resource record of its capture, so it is in
    capture_records (and verified like any record); this table says what each one is.
    """
    db.executescript(
        """
        ALTER TABLE captures ADD COLUMN engine TEXT NOT NULL DEFAULT 'http';
        ALTER TABLE captures ADD COLUMN findings TEXT;
        ALTER TABLE captures ADD COLUMN wall TEXT;
        ALTER TABLE captures ADD COLUMN steps TEXT;
        CREATE TABLE capture_artefacts (
            id INTEGER PRIMARY KEY,
            capture_id INTEGER NOT NULL REFERENCES captures(id),
            kind TEXT NOT NULL,
            record_id TEXT NOT NULL UNIQUE REFERENCES capture_records(record_id),
            content_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            width INTEGER,
            height INTEGER
        );
        CREATE INDEX capture_artefacts_capture ON capture_artefacts(capture_id);
        """
    )


def _migration_7_content_verdict(db: sqlite_utils.Database) -> None:
    """Whether each capture holds the cited page: 'page', or why not in a clerk's words (a soft
    404, a consent, login or bot wall, a redirect to the home page). Decided when the capture is
    made, from the page alone (no probe request). Captures made before this migration keep NULL,
    "not classified": they count as support as they always did (re-capture to classify them)."""
    db.execute("ALTER TABLE captures ADD COLUMN content_verdict TEXT")


def _migration_8_witnesses(db: sqlite_utils.Database) -> None:
    """Each request to an independent archive to capture a source, and what came of it. The
    access keys used are never stored; the archive's own time for its copy is."""
    db.executescript(
        """
        CREATE TABLE witnesses (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id),
            capture_id INTEGER REFERENCES captures(id),
            service TEXT NOT NULL,
            submitted_at TEXT NOT NULL,
            status TEXT NOT NULL,
            job_id TEXT,
            memento_url TEXT,
            archived_at TEXT,
            message TEXT,
            corroboration TEXT,
            similarity REAL
        );
        CREATE INDEX witnesses_source ON witnesses(source_id);
        """
    )


def _migration_9_skipped_urls(db: sqlite_utils.Database) -> None:
    """What each report version cites that cannot be captured (a refused scheme, a bad host, an
    IDNA failure), with where it stands: an unchanged re-import reports them as the first import
    did. Versions imported before this migration have none recorded."""
    db.executescript(
        """
        CREATE TABLE skipped_urls (
            id INTEGER PRIMARY KEY,
            version_id INTEGER NOT NULL REFERENCES report_versions(id),
            ordinal INTEGER NOT NULL,
            url TEXT NOT NULL,
            reason TEXT NOT NULL,
            paragraph INTEGER NOT NULL,
            page INTEGER,
            line INTEGER
        );
        CREATE INDEX skipped_urls_version ON skipped_urls(version_id, ordinal);
        """
    )


def _migration_10_decoded_contents(db: sqlite_utils.Database) -> None:
    """The SHA-256 of each page's decoded content (or why it was not computed), computed once
    and kept under the SHA-256 of its record's gzip member (see decoded.py). Derived data, not
    evidence: no custody entry vouches for it and verify --deep recomputes it. Captures made
    before this migration have none until an export (or the next one) computes it."""
    db.execute("CREATE TABLE decoded_contents (member_sha256 TEXT PRIMARY KEY, decoded_sha256 TEXT, "
               "decoded_note TEXT, CHECK ((decoded_sha256 IS NULL) != (decoded_note IS NULL)))")


Migration = tuple[int, str, Callable[[sqlite_utils.Database], None]]

# Each owner appends its own migration; versions are never renumbered or edited once released.
MIGRATIONS: list[Migration] = [
    (1, "core: sources, runs, warc files, captures, records, custody log", _migration_1_core),
    (2, "reports: reports, versions, claims, citations", _migration_2_reports),
    (3, "integrity: verification runs, timestamps, signing keys", _migration_3_integrity),
    (4, "checks: live re-checks, their evidence records, recaptures, baseline texts",
     _migration_4_checks),
    (5, "checks: their evidence records found by file", _migration_5_check_records_by_file),
    (6, "browser engine: engine per capture, findings, walls, capture artefacts", _migration_6_browser),
    (7, "captures: whether each holds the cited page (soft 404s, walls)", _migration_7_content_verdict),
    (8, "witnesses: independent archives' captures of a source (Save Page Now)", _migration_8_witnesses),
    (9, "reports: the cited URLs each version could not capture, with where they stand", _migration_9_skipped_urls),
    (10, "decoded contents: each page's decoded-content SHA-256, derived once", _migration_10_decoded_contents),
]


def schema_version(db: sqlite_utils.Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite_utils.Database) -> None:
    """Bring the catalogue up to the newest schema, one migration per transaction."""
    known = max(v for v, _, _ in MIGRATIONS)
    current = schema_version(db)
    if current > known:
        raise CouldNotRunError(
            f"the catalogue has schema version {current}, newer than this evarchive knows ({known}); "
            "upgrade evarchive")
    for version, _name, apply in sorted(MIGRATIONS, key=lambda m: m[0]):
        if version <= schema_version(db):
            continue
        with transaction(db):
            if schema_version(db) >= version:  # another process migrated meanwhile
                continue
            apply(db)
            db.execute(f"PRAGMA user_version = {version}")


# --------------------------------------------------------------------------- sources

def ensure_source(db: sqlite_utils.Database, url: str) -> int:
    """The id of the source for this URL, created if new (the cited spelling is kept)."""
    validate_url(url)
    normalised = normalise_url(url)
    row = one(db, "SELECT id FROM sources WHERE normalised = ?", [normalised])
    if row:
        return int(row["id"])
    with transaction(db):
        row = one(db, "SELECT id FROM sources WHERE normalised = ?", [normalised])
        if row:
            return int(row["id"])
        return insert(db, "sources", {"url": url, "normalised": normalised, "added_at": utc_now()})


def ensure_sources(db: sqlite_utils.Database, urls: list[str]) -> dict[str, int]:
    """Source ids for many URLs at once, in one transaction (one fsync, not one per URL)."""
    normalised = {url: normalise_url(url) for url in urls}
    with transaction(db):
        known = {row["normalised"]: row["id"] for row in db.query("SELECT id, normalised FROM sources")}
        now = utc_now()
        for url, norm in normalised.items():
            if norm not in known:
                known[norm] = insert(db, "sources", {"url": url, "normalised": norm, "added_at": now})
    return {url: int(known[norm]) for url, norm in normalised.items()}


def find_source(db: sqlite_utils.Database, url: str) -> dict[str, Any] | None:
    try:
        normalised = normalise_url(url)
    except Exception:
        return one(db, "SELECT * FROM sources WHERE url = ?", [url])
    return one(db, "SELECT * FROM sources WHERE normalised = ?", [normalised])


def last_good_capture(db: sqlite_utils.Database, source_id: int) -> dict[str, Any] | None:
    return one(db, "SELECT * FROM captures WHERE source_id = ? AND status = 'ok' "
                   "ORDER BY id DESC LIMIT 1", [source_id])


def sources_without_capture(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query(
        "SELECT * FROM sources WHERE id NOT IN "
        "(SELECT source_id FROM captures WHERE status = 'ok') ORDER BY id"))


def all_sources(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM sources ORDER BY id"))


def source_summaries(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Each source with its capture counts and its last successful capture time."""
    return list(db.query(
        """
        SELECT s.id, s.url, s.normalised, s.added_at,
               SUM(c.status = 'ok') AS captures_ok,
               SUM(c.status = 'failed') AS captures_failed,
               MAX(CASE WHEN c.status = 'ok' THEN c.started_at END) AS last_capture,
               (SELECT c2.error_class FROM captures c2 WHERE c2.source_id = s.id
                 ORDER BY c2.id DESC LIMIT 1) AS last_error
        FROM sources s LEFT JOIN captures c ON c.source_id = s.id
        GROUP BY s.id ORDER BY s.id
        """))


def captures_of(db: sqlite_utils.Database, source_id: int) -> list[dict[str, Any]]:
    rows = list(db.query("SELECT * FROM captures WHERE source_id = ? ORDER BY id", [source_id]))
    for row in rows:
        row["records"] = list(db.query(
            "SELECT * FROM capture_records WHERE capture_id = ? ORDER BY offset", [row["id"]]))
        for key in ("redirect_chain", "cert_chain_pem"):
            if row.get(key):
                row[key] = json.loads(row[key])
    return rows
