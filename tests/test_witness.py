"""witness.py: Save Page Now 2 asked to capture a source, through a loopback stand-in that speaks
SPN2's documented exchange (POST /save -> job id; GET /save/status/JOB -> pending, success with
the archive's timestamp, or error). Real catalogue, real custody log; no network beyond loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import ManualTime
from localserver import Request, Response

from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.errors import UsageError
from evarchive.queries import witnesses_of
from evarchive.witness import WitnessSettings, keys_from_environment, record, sources_to_witness, submit

KEYS = ("ACCESSKEY", "S3CR3T")
JSON = [(b"Content-Type", b"application/json")]


class Spn2:
    """The stand-in: checks the LOW authorization, answers each job 'pending' a set number of
    times, then success (or the error it was told to give)."""

    def __init__(self, server: Any, pending_polls: int = 1, start: Response | None = None,
                 outcome: dict[str, Any] | None = None) -> None:
        self.server, self.pending_polls, self.start, self.outcome = server, pending_polls, start, outcome
        self.polls = 0
        self.submitted: list[str] = []
        server.set_route("/spn2/save", handler=self.save)
        server.set_route("/spn2/save/status/spn2-job-1", handler=self.status)

    def save(self, req: Request) -> Response:
        auth = dict((k.lower(), v) for k, v in req.headers).get(b"authorization")
        if auth != f"LOW {KEYS[0]}:{KEYS[1]}".encode():
            return Response(401, b'{"message": "You need to be logged in to use Save Page Now."}', JSON)
        self.submitted.append(req.body.decode())
        return self.start or Response(200, json.dumps({"url": "x", "job_id": "spn2-job-1"}).encode(), JSON)

    def status(self, req: Request) -> Response:
        self.polls += 1
        if self.polls <= self.pending_polls:
            return Response(200, b'{"status": "pending", "job_id": "spn2-job-1"}', JSON)
        answer = self.outcome or {"status": "success", "job_id": "spn2-job-1", "timestamp": "20241130120501",
                                  "original_url": "https://news.example/a", "duration_sec": 6.1}
        return Response(200, json.dumps(answer).encode(), JSON)


def settings(server: Any, clock: ManualTime, **kw: Any) -> WitnessSettings:
    base = server.url("/spn2").rstrip("/")
    return WitnessSettings(*KEYS, endpoint=base, poll_interval=5.0, sleep=clock.sleep,
                           clock=clock.monotonic, **kw)


@pytest.fixture
def clock() -> ManualTime:
    return ManualTime()  # polls wait without waiting


def test_a_witness_is_archived_with_the_archives_own_time(local_server: Any, clock: ManualTime) -> None:
    spn2 = Spn2(local_server, pending_polls=2)
    result = submit("https://news.example/a", settings(local_server, clock))
    assert (result.status, result.job_id, result.archived_at) == ("archived", "spn2-job-1", "2024-11-30T12:05:01Z")
    assert result.memento_url == local_server.url("/spn2").rstrip("/") + "/web/20241130120501/https://news.example/a"
    assert spn2.submitted == ["url=https%3A%2F%2Fnews.example%2Fa"] and spn2.polls == 3


def test_a_job_still_pending_when_time_is_up_is_kept_as_pending(local_server: Any, clock: ManualTime) -> None:
    Spn2(local_server, pending_polls=1000)
    result = submit("https://news.example/a", settings(local_server, clock, max_wait=60))
    assert (result.status, result.job_id, result.message) == ("pending", "spn2-job-1", "still pending after 60 s")


@pytest.mark.parametrize(("start", "status", "message"), [
    (Response(429, b'{"message": "Too many requests"}', JSON), "rate-limited", "Too many requests"),
    (Response(200, b'{"status": "error", "status_ext": "error:too-many-daily-captures", '
                   b'"message": "This URL has been already captured 10 times today."}', JSON),
     "failed", "error:too-many-daily-captures; This URL has been already captured 10 times today."),
])
def test_limits_and_refusals_are_recorded_findings(local_server: Any, clock: ManualTime, start: Response,
                                                   status: str, message: str) -> None:
    Spn2(local_server, start=start)
    result = submit("https://news.example/a", settings(local_server, clock))
    assert (result.status, result.message) == (status, message)


def test_a_job_that_fails_says_why(local_server: Any, clock: ManualTime) -> None:
    Spn2(local_server, outcome={"status": "error", "status_ext": "error:service-unavailable",
                                "message": "Your capture did not succeed."})
    result = submit("https://news.example/a", settings(local_server, clock))
    assert (result.status, result.message) == ("failed", "error:service-unavailable; Your capture did not succeed.")


def test_keys_come_from_the_environment_or_a_file_and_are_never_stored(tmp_path: Path, local_server: Any,
                                                                      clock: ManualTime) -> None:
    assert keys_from_environment({"EVARCHIVE_SPN2_KEYS": "A:B"}) == ("A", "B")
    keyfile = tmp_path / "spn2.keys"
    keyfile.write_text("ACCESSKEY:S3CR3T\n")
    assert keys_from_environment({"EVARCHIVE_SPN2_KEYS_FILE": str(keyfile)}) == KEYS
    with pytest.raises(UsageError, match="EVARCHIVE_SPN2_KEYS=ACCESS:SECRET"):
        keys_from_environment({})
    arch = Archive.open(tmp_path / "archive")
    [outcome] = capture_urls(arch, [local_server.url("/plain")], CaptureSettings(retries=0))
    Spn2(local_server)
    result = submit(outcome.url, settings(local_server, clock))
    record(arch.db, outcome.source_id, outcome.capture_id, result)
    arch.close()
    for path in (tmp_path / "archive").rglob("*"):
        if path.is_file():
            assert b"S3CR3T" not in path.read_bytes(), path


def test_witnesses_are_stored_with_custody_and_only_the_unwitnessed_are_asked_again(
        tmp_path: Path, local_server: Any, clock: ManualTime) -> None:
    arch = Archive.open(tmp_path / "archive")
    outcomes = capture_urls(arch, [local_server.url("/plain"), local_server.url("/article/alpha")],
                            CaptureSettings(retries=0))
    first, second = outcomes
    Spn2(local_server, start=Response(429, b'{"message": "Too many requests"}', JSON))
    record(arch.db, first.source_id, first.capture_id, submit(first.url, settings(local_server, clock)))
    assert [s["id"] for s in sources_to_witness(arch.db, [first.source_id, second.source_id])] == [
        first.source_id, second.source_id]  # a rate-limited attempt is asked again
    Spn2(local_server)
    witness_id = record(arch.db, first.source_id, first.capture_id, submit(first.url, settings(local_server, clock)))
    assert [w["status"] for w in witnesses_of(arch.db, first.source_id)] == ["rate-limited", "archived"]
    assert [s["id"] for s in sources_to_witness(arch.db, [first.source_id, second.source_id])] == [second.source_id]
    entry = arch.db.execute("SELECT details FROM custody_log WHERE event = 'witness' "
                            "ORDER BY seq DESC LIMIT 1").fetchone()
    assert json.loads(entry[0])["witness_id"] == witness_id
    arch.close()


def test_the_witness_command_submits_records_and_show_lists_it(tmp_path: Path, local_server: Any,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive import cli

    archive = str(tmp_path / "archive")
    page = local_server.url("/plain")
    assert cli.main(["capture", page, "--archive", archive, "--quiet"]) == 0
    monkeypatch.delenv("EVARCHIVE_SPN2_KEYS", raising=False)
    assert cli.main(["witness", "--archive", archive]) == 2  # no keys: usage, nothing submitted
    assert "EVARCHIVE_SPN2_KEYS=ACCESS:SECRET" in capsys.readouterr().err
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    endpoint = local_server.url("/spn2").rstrip("/")
    Spn2(local_server, pending_polls=0)
    assert cli.main(["witness", "--archive", archive, "--endpoint", endpoint, "--json"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["status"] == "archived"
    assert cli.main(["witness", "--archive", archive, "--endpoint", endpoint]) == 0
    assert "nothing to submit: every source has a witness" in capsys.readouterr().err
    assert cli.main(["show", page, "--archive", archive]) == 0
    assert "witness wayback asked" in capsys.readouterr().out


def test_cite_prints_robust_links_with_the_witness_copy_and_its_date(tmp_path: Path, local_server: Any,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive import cli

    archive = str(tmp_path / "archive")
    page, lost = local_server.url("/plain"), "http://127.0.0.1:9/never"
    report = tmp_path / "r.md"
    report.write_text(f"The ministry said so.\n\n{page}\n\nNobody kept this one.\n\n{lost}\n", encoding="utf-8")
    assert cli.main(["archive", str(report), "--title", "R", "--archive", archive, "--quiet", "--retries", "0"]) == 1
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    Spn2(local_server, pending_polls=0, outcome={"status": "success", "timestamp": "20241130120501",
                                                 "original_url": page})
    assert cli.main(["witness", page, "--archive", archive, "--quiet",
                     "--endpoint", local_server.url("/spn2").rstrip("/")]) == 0
    capsys.readouterr()
    assert cli.main(["cite", "--report", "R", "--archive", archive]) == 0
    first, second = capsys.readouterr().out.splitlines()
    memento = local_server.url("/spn2").rstrip("/") + f"/web/20241130120501/{page}"
    assert (f'<a href="{page}" data-originalurl="{page}" data-versionurl="{memento}" '
            f'data-versiondate="2024-11-30">{page}</a>') in first
    assert f'<a href="{lost}" data-originalurl="{lost}">{lost}</a>' in second  # no copy anywhere: no version
    assert cli.main(["cite", "--report", "R", "--format", "csv", "--archive", archive]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "claim,url,version_url,version_date,preserved" and rows[2].endswith(",,,no")
    assert cli.main(["cite", "--report", "R", "--format", "pdf", "--archive", archive]) == 2


def test_capture_with_a_witness_submits_what_it_captured(tmp_path: Path, local_server: Any,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive import cli

    archive = str(tmp_path / "archive")
    page = local_server.url("/plain")
    monkeypatch.delenv("EVARCHIVE_SPN2_KEYS", raising=False)
    assert cli.main(["capture", page, "--witness", "wayback", "--archive", archive]) == 2  # keys first
    assert not (tmp_path / "archive").exists()
    assert cli.main(["capture", page, "--witness", "archive-today", "--archive", archive]) == 2
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    monkeypatch.setenv("EVARCHIVE_SPN2_ENDPOINT", local_server.url("/spn2").rstrip("/"))
    spn2 = Spn2(local_server, pending_polls=0)
    assert cli.main(["capture", page, "--witness", "wayback", "--archive", archive, "--quiet"]) == 0
    assert spn2.submitted == [f"url={page.replace(':', '%3A').replace('/', '%2F')}"]
    arch = Archive.open(tmp_path / "archive")
    [row] = arch.db.query("SELECT status, capture_id FROM witnesses")
    assert row == {"status": "archived", "capture_id": 1}
    arch.close()


def test_a_witness_copy_is_compared_with_our_capture(tmp_path: Path, local_server: Any,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The witness's bytes as archived (Wayback's id_ form) against our capture's payload."""
    from localserver import PLAIN_BODY

    from evarchive import cli

    archive = str(tmp_path / "archive")
    pages = {"same": local_server.url("/plain"), "other": local_server.url("/article/alpha")}
    assert cli.main(["capture", *pages.values(), "--archive", archive, "--quiet"]) == 0
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    endpoint = local_server.url("/spn2").rstrip("/")
    for name, page in pages.items():
        Spn2(local_server, pending_polls=0, outcome={"status": "success", "timestamp": "20241130120501",
                                                     "original_url": page})
        body = PLAIN_BODY if name == "same" else "<html><body><p>Something else entirely was here.</p></body></html>"
        local_server.set_route(f"/spn2/web/20241130120501id_/{page}", body=body)
        assert cli.main(["witness", page, "--archive", archive, "--endpoint", endpoint, "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["corroboration"] == ("identical" if name == "same" else "differs"), answer
    assert cli.main(["show", pages["same"], "--archive", archive]) == 0
    assert "against our capture: identical" in capsys.readouterr().out
    monkeypatch.setenv("COLUMNS", "400")
    assert cli.main(["show", pages["other"], "--archive", archive]) == 0
    assert "against our capture: differs (main-text similarity 0." in capsys.readouterr().out


def test_the_exported_report_links_the_witness_copy_beside_the_exhibit(tmp_path: Path, local_server: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from evarchive import cli

    archive = str(tmp_path / "archive")
    page = local_server.url("/plain")
    report = tmp_path / "r.md"
    report.write_text(f"The ministry said so.\n\n{page}\n", encoding="utf-8")
    assert cli.main(["archive", str(report), "--title", "R", "--archive", archive, "--quiet"]) == 0
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    Spn2(local_server, pending_polls=0, outcome={"status": "success", "timestamp": "20241130120501",
                                                 "original_url": page})
    assert cli.main(["witness", "--archive", archive, "--quiet", "--endpoint",
                     local_server.url("/spn2").rstrip("/")]) == 0
    assert cli.main(["export", str(tmp_path / "bundle"), "--report", "R", "--archive", archive]) == 0
    page_html = (tmp_path / "bundle" / "report.html").read_text(encoding="utf-8")
    memento = local_server.url("/spn2").rstrip("/") + f"/web/20241130120501/{page}"
    assert f'(<a href="{memento}">public copy, 2024-11-30</a>)' in page_html
    assert 'data-versionurl="exhibits.html#exhibit-1"' in page_html


def test_claims_show_whether_the_witness_copy_corroborates_our_capture(tmp_path: Path, local_server: Any,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from localserver import PLAIN_BODY

    from evarchive import cli

    archive = str(tmp_path / "archive")
    page, other = local_server.url("/plain"), local_server.url("/article/alpha")
    report = tmp_path / "r.md"
    report.write_text(f"The ministry said so.\n\n{page}\n\nAnd so did the paper.\n\n{other}\n", encoding="utf-8")
    assert cli.main(["archive", str(report), "--title", "R", "--archive", archive, "--quiet"]) == 0
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    Spn2(local_server, pending_polls=0, outcome={"status": "success", "timestamp": "20241130120501",
                                                 "original_url": page})
    local_server.set_route(f"/spn2/web/20241130120501id_/{page}", body=PLAIN_BODY)
    assert cli.main(["witness", page, "--archive", archive, "--quiet",
                     "--endpoint", local_server.url("/spn2").rstrip("/")]) == 0
    assert cli.main(["claims", "--report", "R", "--archive", archive, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    witnessed = {s["url"]: s["witness"] for row in rows for s in row["sources"]}
    memento = local_server.url("/spn2").rstrip("/") + f"/web/20241130120501/{page}"
    assert witnessed == {page: {"memento_url": memento, "archived_at": "2024-11-30T12:05:01Z",
                                "corroboration": "identical", "similarity": 1.0},
                         other: None}
    monkeypatch.setenv("COLUMNS", "400")  # one source a line in the table
    assert cli.main(["claims", "--report", "R", "--archive", archive]) == 0
    table = capsys.readouterr().out
    assert "(witness: identical)" in table
    assert table.count("witness:") == 1


def test_a_witness_stored_as_the_archives_setting_is_asked_by_every_capture(
        tmp_path: Path, local_server: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from evarchive import cli

    archive = str(tmp_path / "archive")
    page, second = local_server.url("/plain"), local_server.url("/article/alpha")
    assert cli.main(["capture", page, "--archive", archive, "--quiet"]) == 0
    assert cli.main(["settings", "witness", "archive-today", "--archive", archive]) == 2
    assert cli.main(["settings", "witness", "wayback", "--archive", archive]) == 0
    monkeypatch.delenv("EVARCHIVE_SPN2_KEYS", raising=False)
    assert cli.main(["capture", second, "--archive", archive]) == 2  # the setting needs keys: checked first
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", ":".join(KEYS))
    monkeypatch.setenv("EVARCHIVE_SPN2_ENDPOINT", local_server.url("/spn2").rstrip("/"))
    spn2 = Spn2(local_server, pending_polls=0)
    assert cli.main(["capture", second, "--archive", archive, "--witness", "none", "--quiet"]) == 0
    assert spn2.submitted == []  # --witness none: not this run
    assert cli.main(["capture", second, "--archive", archive, "--quiet"]) == 0
    assert spn2.submitted == [f"url={second.replace(':', '%3A').replace('/', '%2F')}"]
    capsys.readouterr()
    assert cli.main(["settings", "--archive", archive, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"timemaps": None, "witness": "wayback"}
    assert cli.main(["settings", "witness", "--clear", "--archive", archive]) == 0
    assert cli.main(["capture", page, "--archive", archive, "--quiet"]) == 0
    assert len(spn2.submitted) == 1  # cleared: nothing more is submitted
    arch = Archive.open(tmp_path / "archive")
    changes = [json.loads(r["details"]) for r in arch.db.query(
        "SELECT details FROM custody_log WHERE event = 'setting' ORDER BY seq")]
    assert changes == [{"setting": "witness", "value": "wayback"}, {"setting": "witness", "value": None}]
    arch.close()
