"""The options every network command shares are validated once, in the settings objects, and
refused the same way by every command (exit 2, nothing written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from localserver import LocalServer

from evarchive import cli
from evarchive.cli import network
from evarchive.capture import CaptureSettings
from evarchive.errors import InputError, UsageError
from evarchive.check.settings import CheckSettings

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


# --------------------------------------------------------------------------- one declaration, one help text

def _commands() -> dict[str, Any]:
    """Every command of the CLI by its full name ("keys generate"), as Click sees it."""
    def walk(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))
            else:
                yield " ".join((*prefix, name)), command
    return dict(walk(typer.main.get_command(cli.app)))


def _options(command: Any) -> dict[str, Any]:
    return {p.opts[0]: p for p in command.params if p.param_type_name == "option"}


def _flag(option: network.Declared) -> str:
    return "--" + option.name.replace("_", "-")


# The same name meaning something else in these commands (each command's own --report scope, and so
# on); every other option shared by several commands must read the same everywhere.
MEANS_OTHER = {("--all", "rot"), ("--head", "log"), ("--path", "keys sign-pending"), ("--quiet", "check"),
               ("--timeout", "timestamp")} | {("--report", c) for c in ("check", "claims", "export", "rot",
                                                                         "verify", "witness", "cite")}
NETWORK_COMMANDS = {"capture": network.NETWORK + network.ENGINE, "archive": network.NETWORK + network.ENGINE,
                    "check": network.NETWORK, "diff": network.CONNECTION}


def test_every_option_shared_by_several_commands_shows_one_help_text(capsys: pytest.CaptureFixture[str]) -> None:
    by_option: dict[str, dict[str, str]] = {}
    for name, command in _commands().items():
        for flag, option in _options(command).items():
            if (flag, name) not in MEANS_OTHER:
                by_option.setdefault(flag, {})[name] = option.help
    shared = {flag: helps for flag, helps in by_option.items() if len(helps) > 1}
    assert {"--timeout", "--max-body", "--insecure", "--archive", "--tsa-roots", "--title"} <= set(shared)
    for flag, helps in shared.items():
        assert len(set(helps.values())) == 1, (flag, helps)
    for name in _commands():  # and --help shows exactly that text (wrapped, so compared word by word)
        assert cli.main([*name.split(), "--help"]) == 0
        shown = " ".join(capsys.readouterr().out.split())
        for flag, helps in shared.items():
            if name in helps:
                assert f"{flag} " in shown and " ".join(helps[name].split()) in shown, (name, flag)


@pytest.mark.parametrize("command", sorted(NETWORK_COMMANDS))
def test_every_network_command_takes_its_full_shared_set(command: str) -> None:
    options = _options(_commands()[command])
    for declared in NETWORK_COMMANDS[command]:
        assert " ".join(options[_flag(declared)].help.split()) == " ".join(declared.help.split())
    # capture, archive and check fetch many URLs: every network option; diff --live one page
    assert {_flag(d) for d in network.CONNECTION} <= set(options)
    if command != "diff":
        assert {_flag(d) for d in network.NETWORK} <= set(options)


def test_the_declared_defaults_are_the_librarys() -> None:
    """The CLI's defaults are the settings objects' own: a capture gets 300 s and 1 GiB, a check
    (and the fetch of diff --live) its 120 s and 16 MiB."""
    from evarchive.check.settings import check_capture_settings

    for command, library in (("capture", CaptureSettings()), ("archive", CaptureSettings()),
                             ("check", check_capture_settings()), ("diff", check_capture_settings())):
        options = _options(_commands()[command])
        declared = [d for d in NETWORK_COMMANDS[command] if d not in network.ENGINE]
        given = network.NetworkOptions({d.name: options[_flag(d)].default for d in declared})
        applied = given.capture_settings(CaptureSettings(concurrency=1, per_host=1, total_timeout=1.0,
                                                         connect_timeout=1.0, read_timeout=1.0, max_body=1,
                                                         retries=0, insecure=True, max_warc_size=1, workers=1))
        fields = {"timeout": "total_timeout", "warc_size": "max_warc_size"}
        for d in declared:
            if d.name != "user_agent":  # no option given: the settings' own User-Agent
                field = fields.get(d.name, d.name)
                assert getattr(applied, field) == getattr(library, field), (command, d.name)


@pytest.mark.parametrize(("option", "message"), [(["--retries", "-1"], "--retries must not be negative"),
                                                 (["--proxy", "ftp://proxy.example:21"], "unsupported proxy"),
                                                 (["--resolve", "nonsense"], "--resolve wants HOST:ADDRESS:PORT")])
def test_diff_live_refuses_a_bad_network_option_like_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 option: list[str], message: str) -> None:
    assert cli.main(["diff", "http://127.0.0.1:9/x", "--live", *option, "--archive", str(tmp_path / "a")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_diff_live_fetches_with_the_connection_options_given(local_server: LocalServer, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = local_server.url("/article/rho")
    root = str(tmp_path / "a")
    assert cli.main(["capture", url, "--archive", root, "--quiet"]) == 0
    local_server.clear_log()
    assert cli.main(["diff", url, "--live", "--user-agent", "Clerk/1.0 (court)", "--retries", "0",
                     "--archive", root]) == 0
    assert "(main text unchanged)" in capsys.readouterr().out
    [fetched] = local_server.exchanges("/article/rho")
    assert dict((k.lower(), v) for k, v in fetched.request.headers)[b"user-agent"] == b"Clerk/1.0 (court)"
