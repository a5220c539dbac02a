"""The custody log: chain, head, Ed25519 signing and signature checks by verify."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from evarchive.errors import UsageError

import evidence

from evarchive import custody, signing
from evarchive.archive import Archive
from evarchive.cli import main
from evarchive.verify import verify_archive
from evarchive.verify.log import check_chain


@pytest.fixture
def arch(tmp_path: Path) -> Archive:
    return evidence.build(tmp_path / "archive", pages=3, seed=5)


def failures(a: Archive, **kw: object) -> list[tuple[str, int | None]]:
    return [(p.kind, p.log_seq) for p in verify_archive(a, record=False, **kw).failures]


def test_chain_links_every_entry_to_the_previous(arch: Archive) -> None:
    rows = custody.entries(arch.db)
    assert rows[0]["prev_hash"] == custody.GENESIS_HASH
    for prev, row in zip(rows, rows[1:], strict=False):
        assert row["prev_hash"] == prev["entry_hash"] and row["seq"] == prev["seq"] + 1
    assert check_chain(rows) == []


def test_private_key_is_0600_and_never_in_the_catalogue(arch: Archive) -> None:
    pair = custody.introduce_key(arch)
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert pair.private_path.parent == arch.path / "keys"
    secret = pair.private_path.read_bytes()
    body = b"".join(secret.split(b"\n")[1:-2])  # base64 body of the PEM
    dump = "\n".join(arch.db.conn.iterdump()).encode()
    assert body not in dump and b"PRIVATE KEY" not in dump
    with pytest.raises(UsageError, match="refusing to overwrite"):
        custody.introduce_key(arch)  # never silently replaces a key


def test_entries_after_key_generation_are_signed_and_verify(arch: Archive) -> None:
    unsigned_before = len(custody.entries(arch.db))
    custody.introduce_key(arch)
    evidence.build(arch.path, pages=2, seed=9)  # more captures, now signed
    rows = custody.entries(arch.db)
    assert all(r["signature"] is None for r in rows[:unsigned_before])
    assert all(r["signature"] for r in rows[unsigned_before:])
    assert failures(arch) == []


def test_wrong_signature_is_detected_and_localised(arch: Archive) -> None:
    custody.introduce_key(arch)
    evidence.build(arch.path, pages=2, seed=9)
    rows = custody.entries(arch.db)
    target = rows[-2]
    other = signing.Ed25519PrivateKey.generate()
    forged = signing.sign_hash(other, target["entry_hash"])
    conn = sqlite3.connect(arch.path / "catalogue.sqlite")
    conn.execute("UPDATE custody_log SET signature = ? WHERE seq = ?", (forged, target["seq"]))
    conn.commit()
    conn.close()
    assert failures(arch) == [("log-signature", target["seq"])]


def test_signature_over_other_entry_and_stripped_signature(arch: Archive) -> None:
    custody.introduce_key(arch)
    evidence.build(arch.path, pages=2, seed=9)
    rows = custody.entries(arch.db)
    a, b = rows[-1], rows[-2]
    conn = sqlite3.connect(arch.path / "catalogue.sqlite")
    conn.execute("UPDATE custody_log SET signature = ? WHERE seq = ?", (b["signature"], a["seq"]))
    conn.execute("UPDATE custody_log SET signature = NULL WHERE seq = ?", (b["seq"],))
    conn.commit()
    conn.close()
    assert sorted(failures(arch), key=str) == sorted(
        [("log-signature", a["seq"]), ("log-unsigned", b["seq"])], key=str)


def test_replaced_key_is_caught_with_an_out_of_band_public_key(arch: Archive, tmp_path: Path) -> None:
    pair = custody.introduce_key(arch)
    kept = tmp_path / "kept.pub"
    kept.write_bytes(pair.public_path.read_bytes())  # the copy the lawyer keeps
    # An attacker rewrites keys/ and introduces their own key.
    pair.private_path.unlink()
    pair.public_path.unlink()
    custody.introduce_key(arch)
    problems = failures(arch, public_keys=[signing.load_public_file(kept)])
    assert problems and {k for k, _ in problems} == {"log-signature"}


def test_missing_private_key_leaves_entries_unsigned_then_sign_pending(arch: Archive, tmp_path: Path) -> None:
    pair = custody.introduce_key(arch, tmp_path / "usb" / "key.pem")
    away = tmp_path / "away.pem"
    pair.private_path.rename(away)
    evidence.build(arch.path, pages=1, seed=2)
    assert {k for k, _ in failures(arch)} == {"log-unsigned"}
    assert custody.sign_pending(arch.db, signing.load_private(away)) > 0
    assert failures(arch) == []


def test_cli_keys_generate_log_and_head(arch: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(arch.path)
    assert main(["keys", "generate", "-a", root]) == 0
    assert "custody-ed25519.key" in capsys.readouterr().out
    assert main(["log", "-a", root, "--head"]) == 0
    seq, digest = capsys.readouterr().out.split()
    assert digest == custody.head(arch.db)["entry_hash"] and int(seq) == custody.head(arch.db)["seq"]
    assert main(["log", "-a", root]) == 0
    assert "keys-generate" in capsys.readouterr().out
    assert main(["verify", "-a", root]) == 0
