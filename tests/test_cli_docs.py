"""What a user reads before running anything: `--help` texts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evarchive import cli

README = Path(__file__).resolve().parent.parent / "README.md"


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
    assert "export" not in text  # there is no export command (yet)


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
