"""`evarchive check`, `diff` and `rot` against the shared local server.

Real server, real SQLite, real WARC files read back with warcio. No mocks and
no sleeps: retries wait through an injected sleep that returns at once, and
the N-strike rule runs on an injected clock moved by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import T0, FakeClock, NoSleep
from localserver import LocalServer, article_page
from warcio.archiveiterator import ArchiveIterator

from evarchive import CheckSettings, check_sources, select_sources
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.check import fetch, markers
from evarchive.check.baselines import read_capture_payload
from evarchive.check.results import CheckResult, parse_time
from evarchive.check.rot import last_check_run, recent_checks, rot_view
from evarchive.check.run import CheckLock
from evarchive.check.strikes import StrikeRule, StrikeState, next_strikes
from evarchive.check.verdicts import Baseline, Hop, Observation, classify
from evarchive.cli import main
from evarchive.errors import ArchiveLockedError
from evarchive.textdiff import PageText

@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeper() -> NoSleep:
    return NoSleep()


@pytest.fixture
def arch(tmp_path: Path) -> Iterator[Archive]:
    archive = Archive.open(tmp_path / "archive")
    yield archive
    archive.close()


def network(server: LocalServer, clock: FakeClock, sleeper: NoSleep, **kw: Any) -> CaptureSettings:
    base: dict[str, Any] = dict(sleep=sleeper, clock=clock, read_timeout=2.0, connect_timeout=2.0,
                                total_timeout=10.0, retries=2, max_body=1 << 24,
                                ca_file=server.ca_pem_path)
    base.update(kw)
    return CaptureSettings(**base)


def settings(server: LocalServer, clock: FakeClock, sleeper: NoSleep, net: dict[str, Any] | None = None,
             **kw: Any) -> CheckSettings:
    kw.setdefault("commit_interval", 0.0)
    return CheckSettings(network=network(server, clock, sleeper, **(net or {})), **kw)


def capture(arch: Archive, server: LocalServer, sleeper: NoSleep, *urls: str) -> None:
    outcomes = capture_urls(arch, list(urls), CaptureSettings(sleep=sleeper, ca_file=server.ca_pem_path))
    assert all(o.status != "failed" for o in outcomes), outcomes


def run_check(arch: Archive, urls: list[str], cfg: CheckSettings) -> dict[str, CheckResult]:
    report = check_sources(arch, select_sources(arch, urls), cfg)
    return {r.url: r for r in report.results}


def warc_records(arch: Archive, rows: list[dict[str, Any]]) -> list[Any]:
    """Read records back with warcio at the offsets the catalogue gives, checking the bytes."""
    out = []
    for row in rows:
        with open(arch.warcs_dir / row["warc_file"], "rb") as fh:
            fh.seek(row["offset"])
            member = fh.read(row["length"])
        assert hashlib.sha256(member).hexdigest() == row["member_sha256"]
        for record in ArchiveIterator(io.BytesIO(member)):
            out.append((record.rec_type, record.rec_headers.get_header("WARC-Target-URI"),
                        record.http_headers.get_statuscode() if record.http_headers else None,
                        record.content_stream().read()))
    return out


def evidence_of(arch: Archive, check_id: int) -> list[Any]:
    rows = list(arch.db.query("SELECT * FROM check_records WHERE check_id = ? ORDER BY id", [check_id]))
    return warc_records(arch, rows)


# ------------------------------------------------------------------ every verdict, live

def test_unchanged_page_is_ok_and_keeps_only_a_row(local_server: LocalServer, arch: Archive,
                                                   clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/alpha")
    capture(arch, local_server, sleeper, url)  # the footer changes on every request
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail, result.similarity) == ("ok", "same-text", 1.0)
    assert result.change is None and not result.newly_failed
    row = arch.db.execute("SELECT verdict, http_status, final_url, checked_at, elapsed_ms "
                          "FROM checks").fetchone()
    assert row[:4] == ("ok", 200, url, "2030-01-01T02:00:00.000000Z") and row[4] > 0
    assert arch.db.execute("SELECT COUNT(*) FROM check_records").fetchone()[0] == 0


def test_edited_article_drifts_with_evidence_and_diff(local_server: LocalServer, arch: Archive,
                                                      clock: FakeClock, sleeper: NoSleep,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    url = local_server.url("/article/beta")
    capture(arch, local_server, sleeper, url)
    local_server.set_route("/article/beta", body=article_page("beta", True, 1))
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert result.verdict == "drifted" and result.change == "drifted" and result.newly_failed
    assert result.similarity is not None and 0.3 < result.similarity < 0.97
    kinds = [(k, status) for k, _u, status, _b in evidence_of(arch, result.check_id)]
    assert ("response", "200") in kinds and kinds[-1][0] == "metadata"
    meta = evidence_of(arch, result.check_id)[-1][3].decode()
    assert "verdict: drifted" in meta and "similarity-to-last-capture: " in meta

    assert main(["diff", url, "--archive", str(arch.path)]) == 0
    shown = capsys.readouterr().out
    assert "\n+ Correction: an earlier version of this article misstated the figures.\n" in shown  # a new paragraph
    assert main(["diff", url, "--archive", str(arch.path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stored"] and data["similarity"] == pytest.approx(result.similarity, abs=1e-3)


def test_diff_live_compares_the_capture_with_the_page_now(
        local_server: LocalServer, arch: Archive, sleeper: NoSleep,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = local_server.url("/article/omicron")
    capture(arch, local_server, sleeper, url)
    assert main(["diff", url, "--live", "--archive", str(arch.path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "(main text unchanged)" and "not stored" in captured.err
    local_server.set_route("/article/omicron", body=article_page("omicron", True, 3))
    assert main(["diff", url, "--live", "--unified", "--archive", str(arch.path)]) == 0
    assert "+Correction: an earlier version" in capsys.readouterr().out
    assert main(["diff", local_server.url("/never-cited"), "--archive", str(arch.path)]) == 2


def test_page_changing_on_every_request_is_not_drift(local_server: LocalServer, arch: Archive,
                                                     clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/mutating")  # visitor counter and nonce inside <main>
    capture(arch, local_server, sleeper, url)
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail) == ("ok", "volatile"), result.reason
    assert "change on every request" in result.reason


def test_without_second_look_a_mutating_page_drifts(local_server: LocalServer, arch: Archive,
                                                    clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/mutating")
    capture(arch, local_server, sleeper, url)
    result = run_check(arch, [url], settings(local_server, clock, sleeper, second_look=False))[url]
    assert result.verdict == "drifted"


@pytest.mark.parametrize("captured_before", [False, True])
def test_redirect_to_home_is_gone_with_the_redirect_as_evidence(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep,
        captured_before: bool) -> None:
    url = local_server.url("/redirect-home")
    if captured_before:  # the capture itself landed on the home page: still gone, not "moved"
        capture(arch, local_server, sleeper, url)
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail) == ("gone", "home-redirect")
    records = evidence_of(arch, result.check_id)
    statuses = [(k, status) for k, _u, status, _b in records if k == "response"]
    assert statuses == [("response", "301"), ("response", "200")]


def test_permanent_redirect_to_the_same_article_is_moved(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/gamma")
    capture(arch, local_server, sleeper, url)
    local_server.set_route("/article/gamma", status=301, location="/stories/2030/gamma")
    local_server.set_route("/stories/2030/gamma", body=article_page("gamma", False, 9))
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.final_url) == ("moved", local_server.url("/stories/2030/gamma"))
    assert result.similarity == 1.0


def test_redirect_to_a_different_page_is_drift_not_move(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/delta")
    capture(arch, local_server, sleeper, url)
    local_server.set_route("/article/delta", status=301, location="/article/epsilon")
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert result.verdict == "drifted" and "after a redirect" in result.reason


@pytest.mark.parametrize("captured_before", [False, True])
def test_soft_404_by_phrase(local_server: LocalServer, arch: Archive, clock: FakeClock,
                            sleeper: NoSleep, captured_before: bool) -> None:
    url = local_server.url("/soft404-site/reports/2029/witness")
    if captured_before:  # the capture itself preserved the "not found" page
        capture(arch, local_server, sleeper, url)
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.http_status) == ("soft-404", 200)
    assert "'Page not found'" in result.reason


def test_soft_404_by_random_path_probe(local_server: LocalServer, arch: Archive, clock: FakeClock,
                                       sleeper: NoSleep) -> None:
    # The site answers every path under /catchall/ with the same 200 landing
    # page and says nothing like "not found": only the random-path probe can tell.
    url = local_server.url("/catchall/2029/witness-statement")
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail) == ("soft-404", "probe"), result.reason
    probes = [e.path for e in local_server.exchanges() if fetch.PROBE_PREFIX in e.path]
    assert len(probes) == 1 and probes[0].startswith("/catchall/2029/")
    roles = [r["role"] for r in arch.db.query("SELECT role FROM check_records")]
    assert "probe" in roles  # the site's answer to nonsense is kept as evidence too


def test_a_real_page_on_a_soft_404_site_is_ok(local_server: LocalServer, arch: Archive,
                                              clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/catchall/reports/annual")
    body = article_page("annual", False, 1)
    local_server.set_route("/catchall/reports/annual", body=body)
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert result.verdict == "ok", result.reason


@pytest.mark.parametrize("path, verdict, detail", [
    ("/status/404", "gone", "404"),
    ("/status/410", "gone", "410"),
    ("/status/401", "blocked", "auth"),
    ("/status/403", "blocked", "forbidden"),
    ("/status/451", "blocked", "legal"),
    ("/login-wall", "blocked", "login"),
    ("/captcha", "blocked", "captcha"),
    ("/consent", "blocked", "consent"),
    ("/status/500", "unreachable", "server-error"),
    ("/loop/a", "unreachable", "redirect-loop"),
])
def test_status_and_wall_verdicts(local_server: LocalServer, arch: Archive, clock: FakeClock,
                                  sleeper: NoSleep, path: str, verdict: str, detail: str) -> None:
    url = local_server.url(path)
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail) == (verdict, detail), result.reason
    # Every non-ok verdict keeps what the server said, ending with the verdict record.
    records = evidence_of(arch, result.check_id)
    assert records[-1][0] == "metadata" and f"verdict: {verdict}".encode() in records[-1][3]


def test_429_then_200_is_ok_after_honouring_retry_after(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/ratelimit/night?times=1&retry_after=7")
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert result.verdict == "ok"
    assert 7.0 in sleeper.waits


def test_429_asking_too_long_a_wait_is_blocked_not_gone(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/ratelimit/greedy?times=9&retry_after=86400")
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.detail, result.strikes) == ("blocked", "rate-limited", 0)


def test_head_405_falls_back_to_get(local_server: LocalServer, arch: Archive, clock: FakeClock,
                                    sleeper: NoSleep) -> None:
    url = local_server.url("/nohead")
    result = run_check(arch, [url], settings(local_server, clock, sleeper, head="always"))[url]
    assert (result.verdict, result.method) == ("ok", "HEAD>GET")
    assert "HEAD refused (405)" in result.reason
    methods = [e.method for e in local_server.exchanges("/nohead")]
    assert methods == ["HEAD", "GET"]


def test_a_head_404_that_get_contradicts_is_not_gone(local_server: LocalServer, arch: Archive,
                                                    clock: FakeClock, sleeper: NoSleep) -> None:
    from localserver import html_response

    def head_lies(req: Any) -> Any:  # some servers mishandle HEAD
        return html_response("<h1>missing</h1>", 404) if req.method == "HEAD" else \
            html_response("<p>The report is here.</p>")

    local_server.set_route("/head-lies", handler=head_lies)
    url = local_server.url("/head-lies")
    result = run_check(arch, [url], settings(local_server, clock, sleeper, head="always"))[url]
    assert (result.verdict, result.method) == ("ok", "HEAD>GET")
    assert "HEAD answered 404; confirmed with GET" in result.reason


def test_head_settles_an_unchanged_binary_source(local_server: LocalServer, arch: Archive,
                                                 clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/large?size=300000")
    capture(arch, local_server, sleeper, url)
    local_server.clear_log()
    result = run_check(arch, [url], settings(local_server, clock, sleeper))[url]
    assert (result.verdict, result.method, result.detail) == ("ok", "HEAD", "head")
    assert [e.method for e in local_server.exchanges("/large")] == ["HEAD"]


def test_unreachable_kinds(local_server: LocalServer, arch: Archive, clock: FakeClock,
                           sleeper: NoSleep) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    urls = {
        "refused": f"http://127.0.0.1:{closed}/report",
        "dns": "http://no-such-host.invalid/report",
        "tls": local_server.untrusted_https_url("/plain"),
        "timeout": local_server.url("/slow?delay=30"),
    }
    cfg = settings(local_server, clock, sleeper, net={"read_timeout": 0.3, "retries": 0})
    results = run_check(arch, list(urls.values()), cfg)
    for kind, url in urls.items():
        assert (results[url].verdict, results[url].detail) == ("unreachable", kind), results[url].reason
    # An unreachable host still leaves evidence: the verdict record says when and why.
    meta = evidence_of(arch, results[urls["dns"]].check_id)
    assert [m[0] for m in meta] == ["metadata"] and b"error-kind: dns" in meta[0][3]


@pytest.mark.parametrize(("target", "kind"), [("data:text/html,hi", "protocol"),
                                            ("http://127.0.0.1:{port}/gone", "refused")])
def test_a_redirect_that_fails_keeps_its_hops_as_evidence(local_server: LocalServer, arch: Archive,
                                                          clock: FakeClock, sleeper: NoSleep,
                                                          target: str, kind: str) -> None:
    from urllib.parse import quote

    url = local_server.url("/article/moves-away")
    capture(arch, local_server, sleeper, url)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        target = target.format(port=sock.getsockname()[1])
    hop2 = local_server.url("/redirect-to?url=" + quote(target, safe=""))
    local_server.set_route("/article/moves-away", status=301, location=hop2, body="")
    cfg = settings(local_server, clock, sleeper, net={"retries": 0})
    result = run_check(arch, [url], cfg)[url]
    assert (result.verdict, result.detail, result.http_status) == ("unreachable", kind, 302)
    row = arch.db.execute("SELECT redirect_chain FROM checks WHERE id = ?", [result.check_id]).fetchone()
    assert json.loads(row[0]) == [{"url": url, "status": 301, "location": hop2},
                                  {"url": hop2, "status": 302, "location": target}]
    assert [(r[0], r[1]) for r in evidence_of(arch, result.check_id)] == [
        ("request", url), ("response", url), ("request", hop2), ("response", hop2), ("metadata", url)]
    assert [r[2] for r in evidence_of(arch, result.check_id) if r[0] == "response"] == ["301", "302"]


def test_hanging_host_times_out(local_server: LocalServer, arch: Archive, clock: FakeClock,
                                sleeper: NoSleep) -> None:
    url = local_server.url("/hang")
    cfg = settings(local_server, clock, sleeper, net={"read_timeout": 0.3, "retries": 0})
    result = run_check(arch, [url], cfg)[url]
    assert (result.detail, result.reason) == ("timeout", "timed out: no data for 0.3 s")


# ------------------------------------------------------------------ N strikes

def test_n_strike_rule_across_runs_with_a_fake_clock(local_server: LocalServer, arch: Archive,
                                                     clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/eta")
    capture(arch, local_server, sleeper, url)
    local_server.set_route("/article/eta", status=404, body="<h1>Not here</h1>")
    cfg = settings(local_server, clock, sleeper)  # defaults: 3 strikes over >= 36 h
    seen = []
    for hours in (0, 1, 2, 24, 48):  # two extra checks the same night must not hurry it
        clock.now = T0 + dt.timedelta(hours=hours)
        r = run_check(arch, [url], cfg)[url]
        seen.append((r.verdict, r.strikes, r.confirmed, r.change, r.newly_failed))
    assert seen == [
        ("gone", 1, False, "gone", False),
        ("gone", 2, False, None, False),
        ("gone", 3, False, None, False),  # 3 strikes, but only 2 h apart
        ("gone", 4, False, None, False),  # 24 h: still short of 36 h
        ("gone", 5, True, "confirmed-dead", True),
    ]
    clock.advance(hours=24)
    r = run_check(arch, [url], cfg)[url]
    assert (r.confirmed, r.change, r.newly_failed) == (True, None, False)  # told once only
    # A single success resets everything.
    local_server.remove_route("/article/eta")
    clock.advance(hours=24)
    r = run_check(arch, [url], cfg)[url]
    assert (r.verdict, r.strikes, r.confirmed, r.change) == ("ok", 0, False, "revived")
    local_server.set_route("/article/eta", status=410)
    clock.advance(hours=24)
    assert run_check(arch, [url], cfg)[url].strikes == 1
    # `show` lists the check history, newest first.
    assert [c["verdict"] for c in recent_checks(arch.db, 1, limit=3)] == ["gone", "ok", "gone"]


def test_strike_settings_and_blocked_is_neutral() -> None:
    rule = StrikeRule(strikes=2, min_interval=dt.timedelta(hours=1))
    s = next_strikes(StrikeState(), "unreachable", T0, rule)
    s = next_strikes(s, "blocked", T0 + dt.timedelta(minutes=30), rule)  # neither strike nor reset
    assert (s.strikes, s.confirmed) == (1, False)
    s = next_strikes(s, "soft-404", T0 + dt.timedelta(minutes=59), rule)
    assert (s.strikes, s.confirmed) == (2, False)
    s = next_strikes(s, "gone", T0 + dt.timedelta(minutes=61), rule)
    assert s.confirmed and s.first_failure_at == T0
    assert next_strikes(s, "drifted", T0, rule) == StrikeState()  # alive, even if changed
    assert next_strikes(s, "gone", T0, rule, counted=False) == s


def test_offline_machine_does_not_strike(arch: Archive, clock: FakeClock, sleeper: NoSleep,
                                         local_server: LocalServer) -> None:
    # Ten sources on five hosts, none answering: the machine is offline, not the web.
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    urls = [f"http://127.0.0.{h}:{p}/r{h}" for h in range(1, 6) for p in ports]
    cfg = settings(local_server, clock, sleeper, net={"retries": 0})
    report = check_sources(arch, select_sources(arch, urls), cfg)
    assert report.offline and all(not r.counted and r.strikes == 0 for r in report.results)
    assert arch.db.execute("SELECT COUNT(*) FROM checks WHERE counted = 0").fetchone()[0] == 10


# ------------------------------------------------------------------ lock, recapture, safety

def test_lock_makes_a_second_run_exit_at_once(local_server: LocalServer, arch: Archive,
                                              clock: FakeClock, sleeper: NoSleep,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    url = local_server.url("/plain")
    with CheckLock(arch.locks_dir) as held:
        held.acquire(clock)
        with pytest.raises(ArchiveLockedError, match="already running"):
            check_sources(arch, lambda: select_sources(arch, [url]), settings(local_server, clock, sleeper))
        assert main(["check", url, "--archive", str(arch.path)]) == 3
        assert "already running" in capsys.readouterr().err
    assert local_server.exchanges("/plain") == []  # nothing was done twice
    assert arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 0
    assert arch.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 0  # not even that
    assert run_check(arch, [url], settings(local_server, clock, sleeper))[url].verdict == "ok"


def test_an_overlapping_check_process_exits_3_at_once(local_server: LocalServer, tmp_path: Path) -> None:
    """Two real `evarchive check` processes on one archive, as two cron nights that overlap."""
    import time

    archive_dir = tmp_path / "archive"
    plain, hang = local_server.url("/plain"), local_server.url("/hang")
    assert main(["capture", plain, "--archive", str(archive_dir), "--quiet"]) == 0
    cli = [sys.executable, "-m", "evarchive.cli", "check", "--archive", str(archive_dir)]
    first = subprocess.Popen([*cli, hang, "--retries", "0", "--read-timeout", "120",
                              "--timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        local_server.wait_for_exchange("/hang", finished=False, timeout=30)  # the first run is at work
        local_server.clear_log()
        started = time.monotonic()
        second = subprocess.run([*cli, "--quiet"], capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - started
        assert second.returncode == 3 and second.stdout == ""
        assert "another evarchive check is already running" in second.stderr
        assert f"pid {first.pid}" in second.stderr  # who holds it
        assert elapsed < 15  # at once: not after the first run's 120 s
        assert local_server.log == []  # the second run asked no server anything
        assert first.poll() is None  # and the first is still at work
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
    arch = Archive.open(archive_dir)
    try:  # the interrupted first run had finished no check; the second wrote nothing
        assert arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 0
        assert arch.db.execute("SELECT COUNT(*) FROM runs WHERE command LIKE 'check%'").fetchone()[0] == 1
    finally:
        arch.close()
    assert main(["check", plain, "--archive", str(archive_dir), "--quiet"]) == 0  # lock released


def test_recapture_adds_a_capture_and_leaves_the_old_one_intact(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/theta")
    capture(arch, local_server, sleeper, url)
    old = next(iter(arch.db.query("SELECT * FROM captures")))
    old_records = list(arch.db.query("SELECT * FROM capture_records WHERE capture_id = ?", [old["id"]]))
    old_payload = warc_records(arch, [r for r in old_records if r["record_type"] == "response"])[0][3]
    local_server.set_route("/article/theta", body=article_page("theta", True, 2))
    report = check_sources(arch, select_sources(arch, [url]),
                           settings(local_server, clock, sleeper, recapture=True))
    result = report.results[0]
    assert result.verdict == "drifted" and result.recapture_id is not None
    assert next(iter(arch.db.query("SELECT * FROM captures WHERE id = ?", [old["id"]]))) == old
    assert warc_records(arch, [r for r in old_records if r["record_type"] == "response"])[0][3] \
        == old_payload  # the same bytes, still intact at the same place
    new_payload = read_capture_payload(
        arch, next(iter(arch.db.query("SELECT * FROM captures WHERE id = ?", [result.recapture_id]))))
    assert b"Correction: an earlier version" in new_payload and b"Correction" not in old_payload
    assert arch.db.execute("SELECT capture_id FROM check_recaptures").fetchone()[0] == result.recapture_id
    # The next check compares with the new capture: no longer drifted.
    clock.advance(hours=24)
    assert run_check(arch, [url], settings(local_server, clock, sleeper))[url].verdict == "ok"


def test_every_check_is_in_the_custody_log(local_server: LocalServer, arch: Archive,
                                           clock: FakeClock, sleeper: NoSleep) -> None:
    urls = [local_server.url(p) for p in ("/plain", "/status/404", "/redirect-home")]
    run_check(arch, urls, settings(local_server, clock, sleeper))
    entries = list(arch.db.query("SELECT event, details FROM custody_log WHERE event LIKE 'check%'"))
    vouched = [c["check_id"] for e in entries if e["event"] == "check"
               for c in json.loads(e["details"])["checks"]]
    assert sorted(vouched) == [r[0] for r in arch.db.execute("SELECT id FROM checks ORDER BY id")]
    assert entries[-1]["event"] == "check-run"


KILL_SCRIPT = """
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings
from evarchive import CheckSettings, check_sources, select_sources
arch = Archive.open({archive!r})
urls = [{base!r} + f"/status/404?n={{i}}" for i in range(400)]
net = CaptureSettings(concurrency=4, per_host=4)

def committed(result):
    print(result.check_id, flush=True)  # called once the check is committed

check_sources(arch, select_sources(arch, urls), CheckSettings(network=net, commit_interval=0.0),
              committed)
"""


def test_kill_during_a_run_leaves_whole_checks_only(local_server: LocalServer, tmp_path: Path) -> None:
    archive_dir = tmp_path / "killed"
    Archive.open(archive_dir).close()
    local_server.set_latency(0.01)
    script = KILL_SCRIPT.format(archive=str(archive_dir), base=local_server.url("").rstrip("/"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        # Read (blocking, no polling) until 16 checks are committed, then kill -9 mid-run.
        assert proc.stdout is not None
        for _ in range(16):
            assert proc.stdout.readline(), "the run ended before it could be killed"
    finally:
        proc.kill()
        proc.wait()
    arch = Archive.open(archive_dir)
    checks = arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0]
    assert 16 <= checks < 400
    # Every committed check has its complete evidence and its custody entry.
    rows = list(arch.db.query("SELECT * FROM check_records"))
    assert len({r["check_id"] for r in rows}) == checks
    warc_records(arch, rows)
    vouched = sum(len(json.loads(e["details"])["checks"]) for e in
                  arch.db.query("SELECT details FROM custody_log WHERE event = 'check'"))
    assert vouched == checks
    # The next run seals the dead run's WARC file, takes the lock and finishes the job.
    assert main(["check", "--archive", str(archive_dir), "--quiet", "--retries", "0"]) == 0
    assert arch.db.execute("SELECT COUNT(*) FROM warc_files WHERE status = 'open'").fetchone()[0] == 0
    arch.close()


def test_ctrl_c_commits_the_checks_already_made(local_server: LocalServer, tmp_path: Path) -> None:
    archive_dir = tmp_path / "interrupted"
    Archive.open(archive_dir).close()
    local_server.set_latency(0.01)
    script = KILL_SCRIPT.format(archive=str(archive_dir), base=local_server.url("").rstrip("/"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for _ in range(16):
        assert proc.stdout.readline(), "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    assert proc.wait() != 0
    arch = Archive.open(archive_dir)
    checks = arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0]
    assert 16 <= checks < 400
    rows = list(arch.db.query("SELECT * FROM check_records"))
    assert len({r["check_id"] for r in rows}) == checks
    warc_records(arch, rows)
    # The WARC file was closed properly (not left open for recovery).
    assert [r[0] for r in arch.db.execute("SELECT status FROM warc_files")] == ["closed"]
    arch.close()


# ------------------------------------------------------------------ worker processes
#
# Through the CLI in a subprocess: the pytest process runs the server in a thread, and workers
# are only forked from a process without other threads.

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_check(*args: str, archive: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "evarchive.cli", "check", "--workers", "2",
                           "--retries", "0", "--connect-timeout", "5", *args,
                           "--archive", str(archive)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "400"})


def test_one_workers_hosts_all_down_while_the_others_answer_is_not_offline(
        multi_host_server: LocalServer, tmp_path: Path) -> None:
    # One live host (130 sources) and three hosts with nothing listening (40 each): whole hosts
    # go to each worker, so one worker gets only the dead hosts. On its own it would look like
    # an offline machine; the run as a whole heard servers, so its failures are strikes.
    live_host = multi_host_server.hosts[1]
    live = [multi_host_server.url(f"/plain?n={n}", host_ip=live_host) for n in range(130)]
    port = closed_port()
    dead = [f"http://127.0.0.{h}:{port}/r{n}" for h in (20, 21, 22) for n in range(40)]
    urls = [u for pair in zip(live, dead, strict=False) for u in pair] + live[len(dead):]
    result = cli_check("--json", "--evidence", "all", *urls, archive=tmp_path / "a")
    assert result.returncode == 0, result.stderr
    reported = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert sorted(reported) == sorted(urls)
    assert {reported[u]["verdict"] for u in live} == {"ok"}
    for u in dead:
        assert (reported[u]["verdict"], reported[u]["detail"]) == ("unreachable", "refused")
        assert reported[u]["counted"] and reported[u]["strikes"] == 1
    arch = Archive.open(tmp_path / "a")
    try:
        assert arch.db.execute("SELECT COUNT(*) FROM checks WHERE counted = 1").fetchone()[0] == 250
        files = list(arch.db.query("SELECT name, pid, status FROM warc_files"))
        assert len(files) == 2 and len({f["pid"] for f in files}) == 2  # two workers wrote evidence
        assert {f["status"] for f in files} == {"closed"}
        # One run, one custody chain vouching for every check, every record readable.
        assert arch.db.execute("SELECT COUNT(*) FROM runs WHERE command LIKE 'check%'").fetchone()[0] == 1
        vouched = [c["check_id"] for e in arch.db.query(
            "SELECT details FROM custody_log WHERE event = 'check'")
            for c in json.loads(e["details"])["checks"]]
        assert sorted(vouched) == [r[0] for r in arch.db.execute("SELECT id FROM checks ORDER BY id")]
        rows = list(arch.db.query("SELECT * FROM check_records"))
        assert len({r["check_id"] for r in rows}) == 250
        warc_records(arch, rows)
    finally:
        arch.close()


def test_an_offline_machine_is_recognised_across_worker_processes(tmp_path: Path) -> None:
    # Nothing answers on any of five hosts: each worker sees only two or three of them, and
    # the run as a whole is offline (exit 3, nothing counted). The report is in source order.
    port = closed_port()
    urls = [f"http://127.0.0.{30 + n % 5}:{port}/r{n}" for n in range(250)]
    result = cli_check(*urls, archive=tmp_path / "a")
    assert result.returncode == 3, result.stderr
    assert "seems to be offline" in result.stderr
    assert re.findall(r"http://127\.0\.0\.\d+:\d+/r\d+", result.stdout) == urls
    arch = Archive.open(tmp_path / "a")
    try:
        assert arch.db.execute("SELECT COUNT(*) FROM checks WHERE counted = 0").fetchone()[0] == 250
        assert arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 250
        files = list(arch.db.query("SELECT pid FROM warc_files"))
        assert len(files) == 2 and len({f["pid"] for f in files}) == 2
    finally:
        arch.close()


# ------------------------------------------------------------------ cron interface

def test_cli_json_quiet_and_exit_codes(local_server: LocalServer, arch: Archive,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    ok, gone = local_server.url("/article/iota"), local_server.url("/status/410")
    assert main(["capture", ok, "--archive", str(arch.path), "--quiet"]) == 0
    capsys.readouterr()
    args = ["check", "--archive", str(arch.path), "--strikes", "1", "--min-interval", "0s"]
    assert main([*args, "--json", ok, gone]) == 1  # strikes=1: confirmed dead at once
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {d["url"]: (d["verdict"], d["change"]) for d in lines} == {
        ok: ("ok", None), gone: ("gone", "confirmed-dead")}
    # A second run: nothing new, so --quiet prints nothing and the exit code is 0.
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    local_server.set_route("/article/iota", body=article_page("iota", True, 1))
    assert main([*args, "--quiet", ok]) == 1
    out = capsys.readouterr().out
    assert "DRIFTED" in out and ok in out and "similarity" in out
    assert main(["check", "--archive", str(arch.path), "--min-interval", "soon"]) == 2
    assert main(["check", "--archive", str(arch.path), "--head", "sometimes"]) == 2


def test_a_refused_url_means_nothing_is_checked_or_added(local_server: LocalServer, arch: Archive,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    good = local_server.url("/plain")
    assert main(["check", good, "ftp://example.org/x", "no scheme", "--archive", str(arch.path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "nothing was checked" in err and "ftp://example.org/x" in err and "'no scheme'" in err
    assert arch.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 0  # not even the good one
    assert arch.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 0
    assert local_server.exchanges("/plain") == []


def test_check_and_rot_need_an_existing_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A cron job pointed at the wrong directory must say so, not create an empty archive there
    and report every night that nothing happened."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVARCHIVE_ARCHIVE", raising=False)
    assert main(["check", "--quiet"]) == 3
    assert "no archive at archive" in " ".join(capsys.readouterr().err.split())
    mistyped = tmp_path / "evidnce"
    assert main(["check", "--archive", str(mistyped), "--json"]) == 3
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("EVARCHIVE_ARCHIVE", str(mistyped))
    # check runs from cron: no archive is "could not run" (3); rot is read by a person: usage (2)
    for command, code in ((["check", "--report", "R"], 3), (["rot"], 2), (["rot", "--quiet"], 2)):
        assert main(command) == code, command
        assert f"no archive at {mistyped}" in " ".join(capsys.readouterr().err.split())
    assert main(["diff", "https://example.org/a"]) == 2
    assert not (tmp_path / "archive").exists() and not mistyped.exists()


def test_check_of_a_cited_url_adds_it_and_json_has_one_object_per_source(
        local_server: LocalServer, arch: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    urls = [local_server.url(p) for p in ("/plain", "/status/404", "/consent")]
    assert main(["check", *urls, "--archive", str(arch.path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(d["url"] for d in lines) == sorted(urls)
    assert {d["verdict"] for d in lines} == {"ok", "gone", "blocked"}
    assert all({"similarity", "strikes", "confirmed", "reason", "checked_at"} <= d.keys() for d in lines)
    assert main(["show", urls[1], "--archive", str(arch.path)]) == 0
    shown = capsys.readouterr().out
    assert "live checks" in shown and "not found (404)" in shown


def test_check_report_checks_only_its_sources(local_server: LocalServer, arch: Archive,
                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive.reports import import_report

    cited, other = local_server.url("/article/pi"), local_server.url("/article/rho")
    report = tmp_path / "brief.md"
    report.write_text(f"# Brief\n\nThe ministry confirmed the figures ({cited}).\n")
    import_report(arch.db, report, title="Brief")
    assert main(["check", other, "--archive", str(arch.path), "--quiet"]) == 0
    local_server.clear_log()
    assert main(["check", "--report", "Brief", "--archive", str(arch.path), "--json"]) == 0
    assert [json.loads(line)["url"] for line in capsys.readouterr().out.splitlines()] == [cited]
    assert local_server.exchanges("/article/rho") == []  # not cited by the report: not checked
    assert main(["check", "--report", "No such report", "--archive", str(arch.path)]) == 2


# ------------------------------------------------------------------ rot

def test_rot_lists_lost_sources_with_since_and_archived_copy(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive.reports import import_report

    kept, lost, bare = (local_server.url(p) for p in ("/article/kappa", "/article/lambda", "/article/mu"))
    report = tmp_path / "report.md"
    report.write_text(f"# Report\n\nForces raided the village ({kept}).\n\n"
                      f"Twelve people were killed ({lost}).\n\nThe army denied it ({bare}).\n")
    import_report(arch.db, report, title="Village report")
    capture(arch, local_server, sleeper, kept, lost)
    for path in ("/article/lambda", "/article/mu"):
        local_server.set_route(path, status=404)
    cfg = settings(local_server, clock, sleeper, rule=StrikeRule(2, dt.timedelta(hours=20)))
    for _ in range(2):
        check_sources(arch, select_sources(arch, report="Village report"), cfg)
        clock.advance(hours=24)
    rows = rot_view(arch, "Village report")
    by_url = {r["sources"][0]["url"]: r for r in rows}
    assert set(by_url) == {lost, bare}  # the live claim is not listed
    assert by_url[lost]["status"] == "lost" and by_url[lost]["lost_since"] == "2030-01-01T02:00:00.000000Z"
    assert by_url[lost]["sources"][0]["archived"]["intact"] and by_url[lost]["unpreserved"] == []
    assert by_url[bare]["sources"][0]["archived"] is None and by_url[bare]["unpreserved"] == [bare]
    assert main(["rot", "--archive", str(arch.path), "--report", "Village report"]) == 1
    assert "Twelve people were killed" in capsys.readouterr().out
    assert main(["rot", "--archive", str(arch.path), "--json", "--all"]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_rot_shows_the_public_memento_nearest_the_loss_only_when_asked(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive.reports import import_report

    lost = local_server.url("/article/nu")
    report = tmp_path / "report.md"
    report.write_text(f"# Report\n\nTwelve people were killed ({lost}).\n")
    import_report(arch.db, report, title="Memento report")
    capture(arch, local_server, sleeper, lost)
    local_server.set_route("/article/nu", status=404)
    cfg = settings(local_server, clock, sleeper, rule=StrikeRule(2, dt.timedelta(hours=20)))
    for _ in range(2):
        check_sources(arch, select_sources(arch, report="Memento report"), cfg)
        clock.advance(hours=24)
    copies = ",\n".join(f'<http://ia.example/web/{stamp}/{lost}>; rel="memento"; datetime="{when}"' for stamp, when in (
        ("20291201000000", "Sat, 01 Dec 2029 00:00:00 GMT"), ("20300101000000", "Tue, 01 Jan 2030 00:00:00 GMT"),
        ("20300301000000", "Fri, 01 Mar 2030 00:00:00 GMT")))
    local_server.set_route(f"/timemap/link/{lost}", body=copies, content_type="application/link-format")
    template = local_server.url("/timemap/link/{url}")
    local_server.clear_log()
    assert main(["rot", "--archive", str(arch.path)]) == 0
    assert "public memento" not in capsys.readouterr().out
    assert local_server.exchanges(f"/timemap/link/{lost}") == []  # nothing asked without --mementos
    assert main(["rot", "--archive", str(arch.path), "--mementos", "--timemap", template]) == 0
    assert f"public memento: http://ia.example/web/20300101000000/{lost} (2030-01-01T00:00:00Z" in \
        capsys.readouterr().out
    assert main(["rot", "--archive", str(arch.path), "--mementos", "--timemap", template, "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["sources"][0]["memento"]["url"] == f"http://ia.example/web/20300101000000/{lost}"


def test_rot_says_when_no_check_ever_ran_or_checks_stopped(local_server: LocalServer, arch: Archive,
                                                           tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive.reports import import_report

    url = local_server.url("/article/xi")
    report = tmp_path / "report.md"
    report.write_text(f"# Report\n\nThe minister resigned ({url}).\n")
    import_report(arch.db, report, title="Morning")
    args = ["rot", "--archive", str(arch.path)]
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "no check has run on this archive yet" in err and "every checked source is live" not in err
    assert main([*args, "--quiet"]) == 0  # a problem, so --quiet says it too
    assert "no check has run" in capsys.readouterr().err

    assert main(["check", "--archive", str(arch.path), "--quiet"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert re.search(r"last check: \d{4}-\d\d-\d\d \d\d:\d\d UTC, 1 source\b", err)
    assert "every checked source is live" in err and "warning" not in err
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""

    last = last_check_run(arch)
    assert last is not None and last["sources"] == 1 and not last["stale"]
    three_days_on = parse_time(last["ended_at"]) + dt.timedelta(days=3)
    assert last_check_run(arch, now=three_days_on)["stale"]  # type: ignore[index]


def test_rot_flags_a_damaged_archived_copy(local_server: LocalServer, arch: Archive,
                                           clock: FakeClock, sleeper: NoSleep) -> None:
    url = local_server.url("/article/nu")
    capture(arch, local_server, sleeper, url)
    local_server.set_route("/article/nu", status=410)
    run_check(arch, [url], settings(local_server, clock, sleeper, rule=StrikeRule(1, dt.timedelta(0))))
    assert rot_view(arch)[0]["unpreserved"] == []
    record = next(iter(arch.db.query("SELECT * FROM capture_records WHERE record_type = 'response'")))
    with open(arch.warcs_dir / record["warc_file"], "r+b") as fh:  # someone damages the WARC
        fh.seek(record["offset"] + record["length"] // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    row = rot_view(arch)[0]
    assert row["sources"][0]["archived"]["intact"] is False and row["unpreserved"] == [url]


# ------------------------------------------------------------------ classification (pure)

def page_obs(url: str, html: str, status: int = 200, hops: list[Hop] | None = None) -> Observation:
    body = html.encode()
    final = Hop(url, "GET", status, headers=[("Content-Type", "text/html; charset=utf-8")])
    obs = Observation(url=(hops[0].url if hops else url), hops=[*(hops or []), final], body=body,
                      payload_sha256=hashlib.sha256(body).hexdigest())
    return obs


@pytest.mark.parametrize("title", [
    "Page not found", "Página no encontrada", "Page introuvable", "Seite nicht gefunden",
    "Страница не найдена", "الصفحة غير موجودة", "页面不存在", "ページが見つかりません",
    "Sayfa bulunamadı", "Error 404 | News",
])
def test_soft_404_phrases_in_many_languages(title: str) -> None:
    html = f"<html><head><title>{title}</title></head><body><p>Try the search.</p></body></html>"
    assert classify(page_obs("https://a.example/x", html)).verdict == "soft-404"


def test_a_number_404_in_a_title_is_not_a_soft_404() -> None:
    html = "<html><head><title>Benchmark article 404</title></head><body><p>Text.</p></body></html>"
    assert classify(page_obs("https://a.example/a/404", html)).verdict == "ok"


def test_a_captured_wall_is_still_a_wall(local_server: LocalServer, arch: Archive, clock: FakeClock,
                                         sleeper: NoSleep) -> None:
    urls = [local_server.url("/login-wall"), local_server.url("/consent")]
    capture(arch, local_server, sleeper, *urls)  # the capture preserved the wall itself
    results = run_check(arch, urls, settings(local_server, clock, sleeper))
    assert [(r.verdict, r.detail) for r in results.values()] == [("blocked", "login"), ("blocked", "consent")]


def test_every_wall_marker_is_caught_by_a_trigger() -> None:
    patterns = [markers.CAPTCHA_MARKERS, markers.CONSENT_MARKERS, markers.LOGIN_MARKERS]
    for rx in patterns:
        for alternative in re.split(r"(?<!\\)\|", rx.pattern):
            text = alternative.replace("<title>[^<]*", "").replace("log ?in", "log in")
            text = text.replace("sign ?in", "sign in").replace("\\b", "")
            words = text.encode().lower().translate(markers.LETTERS_ONLY).split()
            assert not markers.TRIGGER_WORDS.isdisjoint(words), alternative


def test_not_found_words_inside_a_long_article_are_not_a_soft_404() -> None:
    text = "The investigators said the documents were not found in the archive. " * 30
    html = f"<html><head><title>Inquiry report</title></head><body><article><p>{text}</p></article></body></html>"
    assert classify(page_obs("https://a.example/inquiry", html)).verdict == "ok"


def test_generic_redirect_targets() -> None:
    def redirected(src: str, dst: str, status: int = 301) -> Observation:
        first = Hop(src, "GET", status, location=dst)
        return page_obs(dst, "<html><body><main><p>Latest news</p></main></body></html>", hops=[first])

    base = Baseline(1, "x", "text/html", page=PageText(paragraphs=("An article about the raid " * 20,)))
    assert classify(redirected("https://n.example/world/2029/raid", "https://n.example/"), base).detail \
        == "home-redirect"
    assert classify(redirected("https://n.example/world/2029/raid", "https://n.example/en/"), base).detail \
        == "home-redirect"
    assert classify(redirected("https://n.example/world/2029/raid", "https://n.example/world/"), base).detail \
        == "generic-redirect"
    assert classify(redirected("https://n.example/a/raid", "https://n.example/errors/404.html"), base).detail \
        == "error-redirect"
    assert classify(redirected("https://n.example/a/raid", "https://login.n.example/?next=/a/raid", 302),
                    base).detail == "login"
    assert classify(redirected("https://n.example/a/raid", "https://consent.n.example/?continue=x", 302),
                    base).detail == "consent"
    # http -> https of the same page is not a move.
    same = redirected("http://n.example/a/raid", "https://n.example/a/raid")
    assert classify(same, Baseline(1, None, "text/html", page=same.page())).verdict == "ok"


def test_probe_catch_all_redirect_is_generic() -> None:
    first = Hop("https://s.example/old/story", "GET", 302, location="https://s.example/landing")
    obs = page_obs("https://s.example/landing", "<html><body><p>Welcome to our site</p></body></html>",
                   hops=[first])
    probe_first = Hop("https://s.example/old/evarchive-probe-1", "GET", 302,
                      location="https://s.example/landing")
    probe = page_obs("https://s.example/landing", "<html><body><p>Welcome to our site</p></body></html>",
                     hops=[probe_first])
    assert classify(obs, None, probe).detail == "generic-redirect"


def test_urgent_requests_take_the_next_free_slot_first() -> None:
    import asyncio

    async def scenario() -> list[str]:
        slots, order = fetch.Slots(1), []
        holder = slots.slot()
        await holder.__aenter__()

        async def wait(name: str, urgent: bool) -> None:
            async with slots.slot(urgent):
                order.append(name)

        tasks = [asyncio.create_task(wait("next source", False)),
                 asyncio.create_task(wait("probe", True))]
        await asyncio.sleep(0)  # let both queue (a scheduling point, not a wait)
        await holder.__aexit__(None, None, None)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["probe", "next source"]


def test_error_kind_walks_the_exception_chain() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise ExceptionGroup("all attempts failed", [inner]) from None
    except ExceptionGroup as group:
        try:
            raise OSError("All connection attempts failed") from group
        except OSError as outer:
            assert fetch.error_kind(outer) == "refused"
    assert fetch.error_kind(socket.gaierror(-2, "Name or service not known")) == "dns"


def _big_page(n: int, word: str) -> bytes:
    """A page of 1.1 MB (spooled to a file, not held in memory) with a short text to compare."""
    padding = "x" * 1_100_000
    return (f"<html><head><title>Big page {n}</title></head><body><p>The {word} page number {n} says "
            f"{word} {word}.</p><!-- {padding} --></body></html>").encode()


def test_a_long_check_run_releases_each_sources_bodies_once_judged(
        local_server: LocalServer, arch: Archive, clock: FakeClock, sleeper: NoSleep) -> None:
    """Bodies over 1 MiB are spooled to open files under archive/tmp. A cron check of thousands
    of sources must hold only those in flight, not one per source until the run ends (which ran
    out of file descriptors, or memory for bodies under 1 MiB)."""
    urls = []
    for i in range(12):
        path = f"/check/release/{i}"
        local_server.set_route(path, body=_big_page(i, "alpha"))
        urls.append(local_server.url(path))
    capture(arch, local_server, sleeper, *urls)
    for i in range(12):  # every page drifts: its answer is written as evidence
        local_server.set_route(f"/check/release/{i}", body=_big_page(i, "omega"))
    open_files: list[int] = []
    cfg = settings(local_server, clock, sleeper, net={"concurrency": 2, "per_host": 2}, probe=False)
    report = check_sources(arch, select_sources(arch, urls), cfg,
                           lambda _result: open_files.append(len(os.listdir("/proc/self/fd"))))
    assert sorted(r.verdict for r in report.results) == ["drifted"] * 12
    assert max(open_files) - min(open_files) <= 4  # in flight only: before, it grew by one per source


def test_check_recapture_json_links_each_new_capture_to_its_check(
        local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The per-source lines are printed as checks are judged, before the recaptures exist: a line
    per recapture follows with the ids that link them."""
    archive_dir = tmp_path / "archive"
    url = local_server.url("/article/json-recapture")
    local_server.set_route("/article/json-recapture", body=article_page("json-recapture", False, 1))
    assert main(["capture", url, "--archive", str(archive_dir), "--quiet"]) == 0
    local_server.set_route("/article/json-recapture", body=article_page("json-recapture", True, 2))
    capsys.readouterr()
    main(["check", url, "--archive", str(archive_dir), "--recapture", "--json", "--retries", "0"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    [checked] = [line for line in lines if line.get("url") == url]
    [linked] = [line["recapture"] for line in lines if "recapture" in line]
    arch = Archive.open(archive_dir)
    try:
        row = arch.db.execute("SELECT check_id, capture_id FROM check_recaptures").fetchone()
    finally:
        arch.close()
    assert checked["verdict"] == "drifted"
    assert linked == {"url": url, "check_id": row[0], "capture_id": row[1]}
