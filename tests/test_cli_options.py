"""The options every network command shares are validated once, in the settings objects, and
refused the same way by every command (exit 2, nothing written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evarchive import cli
from evarchive.capture import CaptureSettings
from evarchive.errors import InputError, UsageError
from evarchive.linkcheck import CheckSettings

BAD = [
    (["--workers", "0"], "--workers must be at least 1"),
    (["--concurrency", "0"], "--concurrency must be at least 1"),
    (["--per-host", "0"], "--per-host must be at least 1"),
    (["--timeout", "0"], "--timeout must be more than 0 seconds"),
    (["--read-timeout", "-1"], "--read-timeout must be more than 0 seconds"),
    (["--retries", "-1"], "--retries must not be negative"),
    (["--proxy", "ftp://proxy.example:21"], "unsupported proxy"),
]


@pytest.mark.parametrize("command", [["capture", "http://127.0.0.1:9/x"], ["check", "http://127.0.0.1:9/x"],
                                     ["archive", "REPORT"]], ids=["capture", "check", "archive"])
@pytest.mark.parametrize(("option", "message"), BAD, ids=[b[0][0] for b in BAD])
def test_every_network_command_refuses_a_bad_value_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         command: list[str], option: list[str], message: str) -> None:
    report = tmp_path / "r.md"
    report.write_text("A claim.\n\nhttp://127.0.0.1:9/x\n", encoding="utf-8")
    argv = [str(report) if a == "REPORT" else a for a in command]
    assert cli.main([*argv, *option, "--archive", str(tmp_path / "a")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_the_settings_objects_raise_the_projects_own_errors() -> None:
    with pytest.raises(UsageError, match="--per-host must be at least 1"):
        CaptureSettings(per_host=0)
    with pytest.raises(InputError, match="unsupported proxy"):
        CaptureSettings(proxy="gopher://x:70")
    with pytest.raises(UsageError, match="--drift-threshold"):
        CheckSettings(drift_threshold=1.5)
    with pytest.raises(UsageError, match="--head must be one of"):
        CheckSettings(head="sometimes")
