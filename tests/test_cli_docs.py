"""What a user reads before running anything: `--help` texts, and the README's crontab line and
systemd units, run the way cron and systemd would run them (against the shared local server, a
real archive, the installed `evarchive` program)."""

from __future__ import annotations

import configparser
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from localserver import LocalServer

from evarchive import cli
from evarchive.check.run import CheckLock

README = Path(__file__).resolve().parent.parent / "README.md"
PROGRAM = Path(sys.executable).parent / "evarchive"  # the console script pip installed
CRON_ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "LANG": "C"}  # what cron gives a job


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def readme_block(kind: str) -> str:
    found = re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert len(found) == 1, f"README should have one {kind} block"
    return found[0]


def help_of(*command: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main([*command, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- --help

def test_root_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys=capsys)
    for code in ("0 ok", "1 findings", "2 usage", "3 the work could not run"):
        assert code in text


@pytest.mark.parametrize("command, codes", [
    (["import"], ("Exit 0", "2 for a file that cannot be used")),
    (["archive"], ("Exit 0", "1 when any claim has none", "2 for a report")),
    (["reports"], ("Exit 0", "2 when there is no archive")),
    (["claims"], ("Exit 0", "2 when the report")),
    (["show"], ("Exit 0", "2 when the source")),
    (["sources"], ("Exit 0", "2 when there is no archive")),
    (["check"], ("Exit 0", "1 when a source was newly confirmed dead or drifted", "2 usage",
                 "3 the check could not run")),
    (["diff"], ("Exit 0", "1 when the capture cannot be read", "2 when the source")),
    (["rot"], ("Exit 0", "1 when a claim's lost source has none", "2 when the report")),
])
def test_each_command_documents_its_exit_codes(command: list[str], codes: tuple[str, ...],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(*command, capsys=capsys)
    for code in codes:
        assert code in text, (command, code)


def test_option_placeholders_say_what_to_write(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("check", capsys=capsys)
    for placeholder in ("--resolve HOST:ADDRESS:PORT", "--report REPORT", "--min-interval DURATION",
                        "--head auto|always|never", "--evidence changes|all"):
        assert placeholder in text
    assert "list[str]>  HOST" not in text
    assert "--title TITLE" in help_of("import", capsys=capsys)


# --------------------------------------------------------------------------- cron and systemd

def served_archive(server: LocalServer, root: Path) -> tuple[Path, str]:
    """/srv/evidence in miniature: an archive holding one captured article."""
    url = server.url("/article/cron-night")
    assert cli.main(["capture", url, "--archive", str(root / "archive"), "--quiet"]) == 0
    return root, url


def as_installed(command: str, workdir: Path) -> str:
    """The README's command with this test's directory and this environment's program."""
    return command.replace("/srv/evidence", str(workdir)).replace("/usr/local/bin/evarchive", str(PROGRAM))


def test_readme_crontab_line_runs_under_cron(local_server: LocalServer, tmp_path: Path) -> None:
    lines = [line for line in readme_block("crontab").splitlines() if line.strip()]
    assert lines[0].startswith("MAILTO=")
    fields = lines[1].split(None, 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    # cron's PATH is /usr/bin:/bin: the program must be named by a path cron can find.
    program = next(word for word in shlex.split(fields[5]) if word.endswith("evarchive"))
    assert program.startswith("/"), f"cron will not find {program!r} on PATH=/usr/bin:/bin"

    workdir, url = served_archive(local_server, tmp_path)
    command = as_installed(fields[5], workdir)

    def cron_job() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", command], env={**CRON_ENV, "HOME": str(tmp_path)},
                              capture_output=True, text=True, timeout=120)

    quiet_night = cron_job()  # nothing changed: no output, so cron sends no mail
    assert (quiet_night.returncode, quiet_night.stdout, quiet_night.stderr) == (0, "", "")

    local_server.set_route("/article/cron-night", status=404, body="<h1>Not found</h1>")
    bad_night = cron_job()  # a change of state: one line, mailed
    assert bad_night.returncode == 0 and bad_night.stderr == ""
    assert bad_night.stdout.splitlines() == [f"GONE {url}: not found (404) (strike 1 of 3)"]

    second = cron_job()  # still failing, no news: silence again
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")

    with CheckLock(workdir / "archive" / "locks") as held:  # last night's run still going
        held.acquire(now)
        overlap = cron_job()
    assert overlap.returncode == 3 and "already running" in overlap.stderr  # mailed

    shutil.rmtree(workdir / "archive")  # the job pointed at a directory without an archive
    lost = cron_job()
    assert lost.returncode == 3 and "no archive at archive" in " ".join(lost.stderr.split())
    assert not (workdir / "archive").exists()


def systemd_units() -> dict[str, configparser.ConfigParser]:
    units: dict[str, configparser.ConfigParser] = {}
    pieces = re.split(r"^# (/etc/systemd/system/\S+)\n", readme_block("ini"), flags=re.MULTILINE)
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(body)
        units[Path(name).name] = parser
    return units


def run_exec_line(key: str, service: configparser.SectionProxy, workdir: Path, home: Path) -> tuple[bool, int]:
    """Run one Exec line as systemd would; (counts as success, exit code). A leading '-' makes
    any exit code a success; otherwise 0 is, and SuccessExitStatus= codes too but only for the
    main process (ExecStart), never for ExecStartPost (systemd.service(5))."""
    value = service[key]
    ignore = value.startswith("-")
    argv = shlex.split(as_installed(value.lstrip("-@:+!"), workdir))
    env = {**CRON_ENV, "HOME": str(home)}
    for assignment in service.get("Environment", "").split():
        key, _, val = assignment.partition("=")
        env[key] = as_installed(val, workdir)
    done = subprocess.run(argv, cwd=as_installed(service["WorkingDirectory"], workdir), env=env,
                          capture_output=True, text=True, timeout=120)
    success = {0}
    if key == "ExecStart":
        success |= {int(c) for c in service.get("SuccessExitStatus", "").split()}
    return ignore or done.returncode in success, done.returncode


def test_readme_systemd_units_run_and_fail_only_when_the_check_could_not_run(
        local_server: LocalServer, tmp_path: Path) -> None:
    units = systemd_units()
    assert set(units) == {"evarchive-check.service", "evarchive-check.timer"}
    service, timer = units["evarchive-check.service"]["Service"], units["evarchive-check.timer"]["Timer"]
    assert service["Type"] == "oneshot" and "--quiet" in service["ExecStart"]
    assert timer["OnCalendar"] == "*-*-* 02:30:00" and timer["Persistent"] == "true"
    assert units["evarchive-check.timer"]["Install"]["WantedBy"] == "timers.target"

    workdir, url = served_archive(local_server, tmp_path)
    report = workdir / "brief.md"
    report.write_text(f"# Brief\n\nThe article said so ({url}).\n\nNobody denied it "
                      f"({local_server.url('/article/never-captured')}).\n", encoding="utf-8")
    assert cli.main(["import", str(report), "--archive", str(workdir / "archive"), "--quiet"]) == 0

    def start_unit() -> list[tuple[bool, int]]:
        """ExecStart, then (only if it succeeded) ExecStartPost, as systemd runs a oneshot unit."""
        results = [run_exec_line("ExecStart", service, workdir, tmp_path)]
        if results[0][0] and "ExecStartPost" in service:
            results.append(run_exec_line("ExecStartPost", service, workdir, tmp_path))
        return results

    assert start_unit() == [(True, 0), (True, 0)]  # all live
    # The uncaptured source vanishes: check reports it (exit 0, strike 1), and rot finds a claim
    # whose lost source has no archived copy (exit 1): a finding, not a failure of the unit.
    local_server.set_route("/article/never-captured", status=410)
    assert start_unit() == [(True, 0), (True, 1)]
    with CheckLock(workdir / "archive" / "locks") as held:  # the check could not run: unit fails
        held.acquire(now)
        assert start_unit() == [(False, 3)]

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: unit syntax not verified")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    pieces = re.split(r"^# (/etc/systemd/system/\S+)\n", readme_block("ini"), flags=re.MULTILINE)
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        (unit_dir / Path(name).name).write_text(as_installed(body, workdir), encoding="utf-8")
    verified = subprocess.run([analyze, "verify", *(str(p) for p in sorted(unit_dir.iterdir()))],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    assert verified.returncode == 0, verified.stderr

