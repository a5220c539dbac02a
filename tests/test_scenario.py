"""One archive through the routine sequence, with hostile pages among its sources.

A researcher imports a report and archives its sources; cron checks them nightly; a lawyer
verifies the archive, recaptures a page that drifted, exports a court bundle, and a clerk runs
the bundle's own ``verify_bundle.py``. Every command runs as the user and cron run it: the real
CLI in a subprocess (``python -m evarchive.cli``), on one archive, against the shared loopback
server. Among the eleven sources are the hostile classes the archive must survive: a cookie
with UTF-8 bytes, a response longer than its Content-Length (the surplus is a whole forged
response), a 1 GiB gzip bomb, a 20 MB single-line page, a page that vanishes, a page that
drifts, and a soft 404.

The sequence runs once (``scenario``, module scope); each ``test_step_*`` then judges one
step, so every step whose verdict is wrong is reported, not only the first. Hosts take
``--per-host 1``, a polite crawler's setting, so the captures of one host follow each other in
citation order on one kept-alive connection: the page cited after the cookie page and the page
cited after the smuggling page are its next requests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from localserver import (
    HOSTILE_BOMB_INFLATED,
    HOSTILE_COOKIES,
    HOSTILE_HUGE_SIZE,
    HOSTILE_SMUGGLING_PAGE,
    HOSTILE_SURPLUS,
    Exchange,
    LocalServer,
    article_page,
    html_response,
    huge_line_response,
)
from warcio.archiveiterator import ArchiveIterator

pytestmark = pytest.mark.slow

TITLE = "Hostile sources report"
CHECK_RSS_LIMIT_MB = 300  # the bar set for a nightly check over a bomb and a huge page
CHECK_TIMEOUT = 20  # check's --timeout, seconds per source
CHECK_DEADLINE = 60  # the whole check step; a check still running then is killed
STEP_DEADLINE = 120  # any other step


# ---------------------------------------------------------------- running the CLI


@dataclass
class Run:
    """One CLI run: exit code (None: killed at its deadline), output, wall time, peak RSS."""

    command: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float

    def __str__(self) -> str:
        code = "killed at its deadline" if self.returncode is None else f"exit {self.returncode}"
        return (f"{' '.join(self.command)}: {code} after {self.seconds:.1f} s, "
                f"{self.peak_rss_mb:.0f} MB peak RSS\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}")

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON on stdout:\n{self}")

    def json_lines(self) -> list[Any]:
        try:
            return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        except json.JSONDecodeError:
            pytest.fail(f"no JSON lines on stdout:\n{self}")


# The night of a real user: the default engine, which is the browser wherever Chromium is (CI
# installs it, and there a missing Chromium fails the run rather than quietly testing less).
ENGINE = "browser" if shutil.which("chromium") or os.environ.get("CI") == "true" else "http"

# Each step runs inside a shell that writes the process's own peak memory (VmHWM) when it ends:
# ru_maxrss (from wait4 or getrusage) starts from the peak of the forking pytest process, which
# grows over a long suite and would be taken for the step's.
PEAK_RECORDER = """
import runpy, sys
kind, target, peak_file = sys.argv[1:4]
sys.argv = [target, *sys.argv[4:]]
try:
    if kind == "module":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        runpy.run_path(target, run_name="__main__")
finally:
    with open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def run_cli(tmp: Path, *args: str, deadline: float = STEP_DEADLINE, program: list[str] | None = None) -> Run:
    """Run ``python -m evarchive.cli ARGS`` (or the script ``program`` names) to its end or its
    deadline, measuring the step's own wall time and peak memory."""
    python, kind, target = (program[0], "path", program[-1]) if program else (sys.executable, "module",
                                                                              "evarchive.cli")
    flags = program[1:-1] if program else []
    out_path, err_path, peak_path = tmp / "stdout.txt", tmp / "stderr.txt", tmp / "peak-kb"
    peak_path.unlink(missing_ok=True)
    # rich wraps lines at the terminal width; the engine is the one a user gets by default here
    env = {**os.environ, "COLUMNS": "400", "EVARCHIVE_ENGINE": ENGINE}
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([python, *flags, "-c", PEAK_RECORDER, kind, target, str(peak_path), *args],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=tmp)
    try:
        code: int | None = proc.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    peak_mb = int(peak_path.read_text()) / 1024 if peak_path.exists() else float("inf")
    return Run([Path(target).name, *args], code, out_path.read_text(errors="replace"),
               err_path.read_text(errors="replace"), time.monotonic() - started, peak_mb)


# ---------------------------------------------------------------- the sources


@dataclass
class Sources:
    """The report's eleven sources on four loopback hosts, in citation (and capture) order."""

    server: LocalServer
    host_a: str = "127.0.0.2"  # a news site: two articles, one that will drift, one that will vanish
    host_b: str = "127.0.0.3"  # a site whose first page sets a cookie, then an article
    host_c: str = "127.0.0.4"  # a site whose first page smuggles a response, then an article
    host_d: str = "127.0.0.5"  # a site with a soft 404, a gzip bomb and a huge page
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a, b, c, d = self.host_a, self.host_b, self.host_c, self.host_d
        paths = {
            "council": (a, "/article/council-budget"),
            "harbour": (a, "/article/harbour-contract"),
            "drifting": (a, "/article/drifting"),
            "vanishing": (a, "/article/vanishing"),
            "cookie": (b, "/hostile/cookie"),
            "after_cookie": (b, "/article/after-cookie"),
            "smuggle": (c, "/hostile/smuggle"),
            "after_smuggle": (c, "/article/after-smuggle"),
            "soft404": (d, "/soft404-site/annual-audit"),
            "bomb": (d, "/hostile/bomb"),
            "huge": (d, "/hostile/huge"),
        }
        self.urls = {name: self.server.url(path, host_ip=ip) for name, (ip, path) in paths.items()}

    def __getitem__(self, name: str) -> str:
        return self.urls[name]

    def name_of(self, url: str) -> str:
        return next(name for name, u in self.urls.items() if u == url)

    def served(self, name: str) -> list[Exchange]:
        """What the server answered for a source so far, oldest first."""
        parts = urlsplit(self.urls[name])
        return [e for e in self.server.exchanges(parts.path, host_ip=parts.hostname) if e.method == "GET"]

    def write_report(self, path: Path) -> None:
        claims = {
            "council": "The council approved the budget after a closed hearing.",
            "harbour": "The harbour contract went to a company owned by the mayor's brother.",
            "drifting": "The ministry first published the audit figures, then edited them.",
            "vanishing": "The agency's statement about the river pollution was later withdrawn.",
            "cookie": "The district's own site described the eviction plan.",
            "after_cookie": "Witnesses told journalists the police arrived before dawn.",
            "smuggle": "The prosecutor's office confirmed the investigation.",
            "after_smuggle": "The committee hearing was postponed three times.",
            "soft404": "The annual audit was once published on the regional site.",
            "bomb": "The energy grid operator reported the outage on its site.",
            "huge": "The railway tender documents run to thousands of pages.",
        }
        text = [f"# {TITLE}\n"]
        for name, url in self.urls.items():
            text.append(f"{claims[name]}\n\n{url}\n")
        path.write_text("\n".join(text), encoding="utf-8")


# ---------------------------------------------------------------- reading the archive


def catalogue(archive: Path) -> sqlite3.Connection:
    db = sqlite3.connect(f"file:{archive / 'catalogue.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    return db


def rows(archive: Path, sql: str, *params: Any) -> list[dict[str, Any]]:
    db = catalogue(archive)
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def captures_of(archive: Path, url: str) -> list[dict[str, Any]]:
    return rows(archive, "SELECT c.* FROM captures c JOIN sources s ON s.id = c.source_id "
                         "WHERE s.url = ? ORDER BY c.id", url)


def member(archive: Path, record: dict[str, Any]) -> bytes:
    with open(archive / "warcs" / record["warc_file"], "rb") as fh:
        fh.seek(record["offset"])
        return fh.read(record["length"])


def warc_record(archive: Path, record: dict[str, Any]) -> tuple[Any, bytes]:
    """(warcio record, raw payload as the server encoded it) of one catalogued record."""
    data = member(archive, record)
    assert hashlib.sha256(data).hexdigest() == record["member_sha256"], f"record {record['record_id']} changed"
    parsed = next(iter(ArchiveIterator(io.BytesIO(data))))
    return parsed, parsed.raw_stream.read()


def response_payload(archive: Path, capture: dict[str, Any]) -> bytes:
    """The payload of the capture's final response record, read back from its WARC with warcio."""
    records = rows(archive, "SELECT * FROM capture_records WHERE capture_id = ? AND record_type = 'response' "
                            "ORDER BY id", capture["id"])
    _parsed, payload = warc_record(archive, records[-1])
    return payload


def metadata_fields(archive: Path, capture: dict[str, Any]) -> list[tuple[str, str]]:
    records = rows(archive, "SELECT * FROM capture_records WHERE capture_id = ? AND record_type = 'metadata'",
                   capture["id"])
    _parsed, block = warc_record(archive, records[0])
    lines = block.decode("utf-8").splitlines()
    return [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines) if k]


def latest_checks(archive: Path) -> dict[str, dict[str, Any]]:
    found = rows(archive, "SELECT s.url, k.* FROM checks k JOIN sources s ON s.id = k.source_id ORDER BY k.id")
    return {r["url"]: r for r in found}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the sequence


@dataclass
class Scenario:
    tmp: Path
    archive: Path
    sources: Sources
    runs: dict[str, Run] = field(default_factory=dict)
    served: dict[str, list[Exchange]] = field(default_factory=dict)  # per source, during `archive`
    served_at_check: dict[str, list[Exchange]] = field(default_factory=dict)
    served_at_recapture: list[Exchange] = field(default_factory=list)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # after the nightly check
    bundle: Path | None = None
    tampered: dict[str, Any] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)

    def cli(self, step: str, *args: str, deadline: float = STEP_DEADLINE) -> Run:
        self.runs[step] = run = run_cli(self.tmp, *args, "--archive", str(self.archive), deadline=deadline)
        return run


def run_scenario(tmp: Path, server: LocalServer) -> Scenario:
    """Every step, in order, as the user and cron run them; judged by the tests below."""
    s = Scenario(tmp, tmp / "archive", Sources(server))
    report = tmp / "report.md"
    s.sources.write_report(report)
    net = ["--per-host", "1", "--retries", "0"]

    # 1-2. Import the report, then archive it: every source captured.
    s.cli("import", "import", str(report), "--title", TITLE, "--json")
    server.clear_log()
    s.cli("archive", "archive", str(report), "--title", TITLE, *net, "--timeout", "60", "--json")
    s.served = {name: s.sources.served(name) for name in s.sources.urls}

    # 3. The web changes: one page vanishes, one is edited, the huge page is rewritten.
    server.set_route(s.sources["vanishing"], status=404, body="<h1>Not found</h1>")
    server.set_route(s.sources["drifting"], handler=lambda r: html_response(article_page("drifting", True, 1)))
    server.set_route(s.sources["huge"], handler=lambda r: huge_line_response(edition=2))
    server.clear_log()
    s.cli("check", "check", "--quiet", *net, "--timeout", str(CHECK_TIMEOUT), deadline=CHECK_DEADLINE)
    s.served_at_check = {name: s.sources.served(name) for name in s.sources.urls}
    s.checks = latest_checks(s.archive)

    # 4. The archive is verified deeply after a routine check.
    s.cli("verify_after_check", "verify", "--deep", "--json")

    # 5. The drifted page is recaptured; the first capture stays.
    server.clear_log()
    s.cli("recapture", "check", "--recapture", s.sources["drifting"], *net, "--json")
    s.served_at_recapture = s.sources.served("drifting")

    # 6. A court bundle, checked by the clerk's own script; then one byte of it is flipped.
    s.bundle = tmp / "bundle"
    s.cli("export", "export", str(s.bundle), "--report", TITLE, "--checks")
    if (s.bundle / "verify_bundle.py").exists():
        clerk = [sys.executable, "-I", "-S", str(s.bundle / "verify_bundle.py")]
        s.runs["verify_bundle"] = run_cli(tmp, program=clerk)
        s.tampered = flip_one_byte(s.bundle, s.sources["council"])
        s.runs["verify_tampered_bundle"] = run_cli(tmp, program=clerk)

    # 7. Exporting disturbed nothing.
    s.cli("verify_after_export", "verify", "--deep", "--json")
    s.server_errors = list(server.errors)
    return s


def flip_one_byte(bundle: Path, url: str) -> dict[str, Any]:
    """Flip a byte in the middle of the main record of ``url``'s capture exhibit, in evidence.wacz;
    the record as bundle.json lists it (empty if the bundle has no such exhibit)."""
    data = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    exhibit = next((e for e in data["exhibits"] if e["kind"] == "capture" and e["source_url"] == url), None)
    if exhibit is None:
        return {}
    record = next(r for r in exhibit["records"] if r["record_id"] == exhibit["main_record"])
    with open(bundle / "evidence.wacz", "r+b") as fh:
        fh.seek(record["wacz_offset"] + record["length"] // 2)
        byte = fh.read(1)
        fh.seek(-1, io.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x01]))
    return {"exhibit": exhibit["exhibit"], **record}


@pytest.fixture(scope="module")
def scenario(multi_host_server: LocalServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    multi_host_server.reset()
    yield run_scenario(tmp_path_factory.mktemp("scenario"), multi_host_server)


def ran(s: Scenario, step: str) -> Run:
    run = s.runs.get(step)
    if run is None:
        pytest.fail(f"step {step} never ran: an earlier step left nothing to run it on")
    return run


# ---------------------------------------------------------------- the verdicts, step by step


def test_step_1_import(scenario: Scenario) -> None:
    run = ran(scenario, "import")
    assert run.returncode == 0, str(run)
    result = run.json()
    assert (result["claims"], result["citations"], result["sources"]) == (11, 11, 11), result


def test_step_2_archive_preserves_every_claim(scenario: Scenario) -> None:
    run = ran(scenario, "archive")
    result = run.json()
    by_url = {c["url"]: c for c in result["captures"]}
    assert sorted(by_url) == sorted(scenario.sources.urls.values())
    failed = {scenario.sources.name_of(u): (c["error_class"], c["error_message"])
              for u, c in by_url.items() if c["status"] != "captured"}
    assert failed == {}
    # The soft-404 site's page was captured as served ("Page not found" with 200): it is not the
    # cited page, so its claim is not preserved, and the run says so (exit 1).
    assert (result["preserved"], result["unpreserved"]) == (10, 1)
    [lost] = [c for c in result["claims"] if not c["preserved"]]
    assert [src["not_the_page"] for src in lost["sources"]] == ["soft 404: 200, but the title says 'Page not found'"]
    assert run.returncode == 1, str(run)


def test_step_2_every_payload_is_what_the_server_sent(scenario: Scenario) -> None:
    """Read back from the WARC with warcio: each payload is the bytes served for that request
    (for the smuggling page, only the bytes its Content-Length covers)."""
    s = scenario
    wrong = {}
    for name, url in s.sources.urls.items():
        capture = captures_of(s.archive, url)[0]  # the archive step's (later steps add more)
        if capture["status"] != "ok":
            wrong[name] = f"capture failed: {capture['error_message']}"
            continue
        (exchange,) = s.served[name]
        expected = sha256(HOSTILE_SMUGGLING_PAGE) if name == "smuggle" else exchange.body_sha256
        payload = response_payload(s.archive, capture)
        if (sha256(payload), capture["payload_sha256"]) != (expected, expected):
            wrong[name] = f"stored {len(payload)} bytes, not the {exchange.body_size} served: {payload[:80]!r}"
    assert wrong == {}


def test_step_2_the_cookie_does_not_follow_into_the_next_capture(scenario: Scenario) -> None:
    s = scenario
    (cookie_page,) = s.served["cookie"]
    assert cookie_page.response_header("set-cookie") is not None
    assert len(s.served["after_cookie"]) == 1, "the page cited after the cookie page was never requested"
    (after,) = s.served["after_cookie"]
    assert after.request.header("cookie") is None, "a cookie set by another capture was sent"
    capture = captures_of(s.archive, s.sources["after_cookie"])[0]
    assert capture["status"] == "ok", capture["error_message"]
    request = rows(s.archive, "SELECT * FROM capture_records WHERE capture_id = ? AND record_type = 'request'",
                   capture["id"])
    _parsed, sent = warc_record(s.archive, request[0])
    assert b"\ncookie:" not in sent.lower()


def test_step_2_the_page_after_the_smuggling_page_has_its_true_body(scenario: Scenario) -> None:
    s = scenario
    (smuggle_exchange,) = s.served["smuggle"]
    (after,) = s.served["after_smuggle"]
    capture = captures_of(s.archive, s.sources["after_smuggle"])[0]
    assert capture["status"] == "ok", capture["error_message"]
    payload = response_payload(s.archive, capture)
    assert b"Forged page" not in payload, "the bytes smuggled by the previous response were stored as this page"
    assert sha256(payload) == after.body_sha256
    # A connection that carried bytes beyond a response is never used again (a page loaded at the
    # same time may have used it before the smuggling response came).
    same_connection = after.request.client == smuggle_exchange.request.client
    assert not (same_connection and after.seq > smuggle_exchange.seq), "the smuggling connection was reused"


def test_step_2_the_smuggling_capture_records_a_finding(scenario: Scenario) -> None:
    s = scenario
    smuggle = captures_of(s.archive, s.sources["smuggle"])[0]
    assert smuggle["status"] == "ok", smuggle["error_message"]
    # The finding travels with the capture's provenance: a `finding` field of its WARC metadata record.
    fields = metadata_fields(s.archive, smuggle)
    findings = [value for key, value in fields if key == "finding"]
    assert any("beyond the end of this response" in f for f in findings), f"no finding about the surplus in {fields}"


def test_step_3_nightly_check_exit_code_and_output(scenario: Scenario) -> None:
    s = scenario
    run = ran(s, "check")
    assert run.returncode is not None, f"check did not end within {CHECK_DEADLINE} s:\n{run}"
    assert run.returncode == 1, str(run)  # newly drifted: a finding for cron
    # One line per change of state: "LABEL URL[ similarity S]: reason".
    reported = {line.split()[1].rstrip(":") for line in run.stdout.splitlines() if line.strip()}
    assert {s.sources.name_of(u) for u in reported} == {"drifting", "huge", "vanishing", "soft404"}, str(run)


def test_step_3_nightly_check_verdicts(scenario: Scenario) -> None:
    s = scenario
    ran(s, "check")
    verdicts = {s.sources.name_of(url): c["verdict"] for url, c in s.checks.items()}
    assert verdicts == {
        "council": "ok", "harbour": "ok", "drifting": "drifted", "vanishing": "gone",
        "cookie": "ok", "after_cookie": "ok", "smuggle": "ok", "after_smuggle": "ok",
        "soft404": "soft-404", "bomb": "ok", "huge": "drifted",
    }, {s.sources.name_of(u): (c["verdict"], c["reason"]) for u, c in s.checks.items()}
    gone = s.checks[s.sources["vanishing"]]
    assert (gone["http_status"], gone["strikes"], gone["confirmed"]) == (404, 1, 0)  # one strike is not death
    sent_cookies = [e.path for exchanges in s.served_at_check.values() for e in exchanges if e.request.header("cookie")]
    assert sent_cookies == [], "the check sent a cookie that another source had set"


def test_step_3_nightly_check_keeps_evidence_of_every_change(scenario: Scenario) -> None:
    s = scenario
    ran(s, "check")
    with_records = {r["url"] for r in rows(s.archive, "SELECT DISTINCT s.url FROM check_records r "
                                                      "JOIN checks k ON k.id = r.check_id "
                                                      "JOIN sources s ON s.id = k.source_id")}
    assert {s.sources.name_of(u) for u in with_records} == {"drifting", "huge", "vanishing", "soft404"}


def test_step_3_nightly_check_is_bounded_in_time_and_memory(scenario: Scenario) -> None:
    run = ran(scenario, "check")
    assert run.returncode is not None, f"check did not end within {CHECK_DEADLINE} s:\n{run}"
    assert run.peak_rss_mb < CHECK_RSS_LIMIT_MB, str(run)
    assert run.seconds < 2 * CHECK_TIMEOUT, str(run)


def test_step_4_verify_deep_after_check(scenario: Scenario) -> None:
    run = ran(scenario, "verify_after_check")
    assert run.returncode == 0, str(run)
    result = run.json()
    assert (result["result"], result["problems"]) == ("intact", []), str(run)


def test_step_5_recapture_keeps_the_old_capture(scenario: Scenario) -> None:
    s = scenario
    run = ran(s, "recapture")
    assert run.returncode == 0, str(run)  # the drift was reported last night: nothing new
    line, recaptured = run.json_lines()  # the source's check, then the capture made anew
    assert (line["verdict"], line["change"]) == ("drifted", None), line
    old, new = captures_of(s.archive, s.sources["drifting"])
    assert (old["status"], new["status"]) == ("ok", "ok")
    linked = rows(s.archive, "SELECT check_id, capture_id FROM check_recaptures")
    assert [r["capture_id"] for r in linked] == [new["id"]]
    assert recaptured == {"recapture": {"url": line["url"], "check_id": linked[0]["check_id"],
                                        "capture_id": new["id"]}}
    # The old capture is still the page as first served; the new one is the edited page.
    (first,) = s.served["drifting"]
    assert sha256(response_payload(s.archive, old)) == first.body_sha256
    assert sha256(response_payload(s.archive, new)) in {e.body_sha256 for e in s.served_at_recapture}
    assert b"Correction: an earlier version" in response_payload(s.archive, new)


def test_step_6_export_and_the_clerks_check(scenario: Scenario) -> None:
    s = scenario
    run = ran(s, "export")
    assert run.returncode == 1, str(run)  # the soft-404 claim has no capture of its page
    assert "1 of 11 claims have no intact capture of the cited page" in run.stderr, str(run)
    clerk = ran(s, "verify_bundle")
    assert clerk.returncode == 0, str(clerk)
    assert "BUNDLE CONSISTENT, NOT ANCHORED" in clerk.stdout and "FAIL" not in clerk.stdout, str(clerk)


def test_step_6_a_flipped_byte_is_named(scenario: Scenario) -> None:
    s = scenario
    clerk = ran(s, "verify_tampered_bundle")
    rec = s.tampered
    assert rec, f"the bundle has no capture exhibit of {s.sources['council']} to tamper with"
    assert clerk.returncode == 1, str(clerk)
    assert f"exhibit {rec['exhibit']} record {rec['record_id']}" in clerk.stdout, str(clerk)
    assert f"{rec['bundle_file']} at offset {rec['bundle_offset']}" in clerk.stdout, str(clerk)


def test_step_7_verify_deep_after_export(scenario: Scenario) -> None:
    run = ran(scenario, "verify_after_export")
    assert run.returncode == 0, str(run)
    result = run.json()
    assert (result["result"], result["problems"]) == ("intact", []), str(run)


def test_the_server_saw_no_handler_crash(scenario: Scenario) -> None:
    assert scenario.server_errors == []


# ---------------------------------------------------------------- the hostile routes themselves


def test_the_hostile_routes_send_what_they_claim(local_server: LocalServer) -> None:
    """The scenario's premises, checked on the wire with the standard library only."""
    with socket.create_connection(("127.0.0.1", local_server.http_port), timeout=10) as sock:
        sock.sendall(b"GET /hostile/smuggle HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(HOSTILE_SURPLUS):
            received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(HOSTILE_SMUGGLING_PAGE)}".encode() in head
    assert body == HOSTILE_SMUGGLING_PAGE + HOSTILE_SURPLUS

    with urllib.request.urlopen(local_server.url("/hostile/cookie"), timeout=10) as answer:
        cookies = answer.headers.get_all("Set-Cookie")
    assert [c.encode("latin-1") for c in cookies] == list(HOSTILE_COOKIES)
    assert cookies[0].encode("latin-1").decode("utf-8").startswith("visitor=Zoë-Łódź")

    with urllib.request.urlopen(local_server.url("/hostile/bomb"), timeout=10) as answer:
        assert answer.headers["Content-Encoding"] == "gzip"
        bomb = answer.read()
    # Inflating all of it takes seconds: its start, and the size its gzip trailer declares.
    start = zlib.decompressobj(31).decompress(bomb, 1 << 20)
    assert start.startswith(b"<!DOCTYPE html>") and start.endswith(b" " * 1024) and len(start) == 1 << 20
    assert len(bomb) < 1_100_000 and int.from_bytes(bomb[-4:], "little") == HOSTILE_BOMB_INFLATED

    with urllib.request.urlopen(local_server.url("/hostile/huge"), timeout=30) as answer:
        huge = answer.read()
    assert len(huge) == HOSTILE_HUGE_SIZE and b"\n" not in huge
    assert huge.endswith(b"</html>")
