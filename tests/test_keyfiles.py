"""Private key files: both signing keys are written 0600 and refused once others may read them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from evarchive import keyfiles, signing, waczsigning
from evarchive.errors import InputError


def test_a_key_readable_by_others_is_refused_in_each_callers_words(tmp_path: Path) -> None:
    pair = signing.generate(tmp_path / "custody.key")
    wacz = tmp_path / "wacz.key"
    waczsigning._create(wacz)
    for path in (pair.private_path, wacz):
        path.chmod(0o640)
    with pytest.raises(InputError) as custody_error:
        signing.load_private(pair.private_path)
    with pytest.raises(InputError) as wacz_error:
        waczsigning._load(wacz)
    assert custody_error.value.message == (
        f"signing key {pair.private_path} is readable by others (mode 640); chmod 600 it")
    assert wacz_error.value.message == (
        f"WACZ signing key {wacz} is readable by others (mode 640); chmod 600 it")


def test_an_unreadable_key_is_named_in_each_callers_words(tmp_path: Path) -> None:
    missing = tmp_path / "none.key"
    with pytest.raises(InputError) as custody_error:
        signing.load_private(missing)
    with pytest.raises(InputError) as wacz_error:
        waczsigning._load(missing)
    assert custody_error.value.message == f"cannot read signing key {missing}: No such file or directory"
    assert wacz_error.value.message == f"cannot read the WACZ signing key {missing}: No such file or directory"


def test_keep_existing_leaves_a_key_already_there_and_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    keyfiles.write_private_file(path, b"first", tmp_path / "a.tmp", keep_existing=True)
    keyfiles.write_private_file(path, b"second", tmp_path / "b.tmp", keep_existing=True)
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["k.pem"]


def test_without_keep_existing_the_new_key_replaces_the_old(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    keyfiles.write_private_file(path, b"first", tmp_path / "a.tmp", keep_existing=False)
    keyfiles.write_private_file(path, b"second", tmp_path / "b.tmp", keep_existing=False)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["k.pem"]
