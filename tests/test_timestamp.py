"""RFC 3161: requests, the loopback TSA, offline token verification, and verify's checks.

No real TSA is ever contacted: tests.tsa.LocalTSA serves on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import pytest

import evidence
from tsa import LocalTSA, TSAKeys

from evarchive import custody
from evarchive import timestamping as ts
from evarchive.archive import Archive
from evarchive.cli import main
from evarchive.verify import verify_archive

DIGEST = hashlib.sha256(b"evidence").digest()


@pytest.fixture(scope="module")
def keys() -> TSAKeys:
    return TSAKeys()


@pytest.fixture
def tsa(keys: TSAKeys):  # type: ignore[no-untyped-def]
    with LocalTSA(keys) as server:
        yield server


def test_request_is_valid_der_with_nonce() -> None:
    req = ts.build_request(DIGEST, nonce=12345)
    from pyasn1.codec.der import decoder
    from pyasn1_modules import rfc3161

    decoded, rest = decoder.decode(req.der, asn1Spec=rfc3161.TimeStampReq())
    assert rest == b"" and int(decoded["nonce"]) == 12345 and bool(decoded["certReq"])
    assert bytes(decoded["messageImprint"]["hashedMessage"]) == DIGEST
    with pytest.raises(ValueError):
        ts.build_request(b"short")


def test_token_verifies_offline_with_chain_to_root(tsa: LocalTSA) -> None:
    result = ts.request_timestamp([tsa.url], DIGEST, roots=[tsa.keys.root])
    info = ts.verify_token(result.token, DIGEST, nonce=result.request.nonce, roots=[tsa.keys.root])
    assert info.anchored and len(info.chain) == 3 and info.imprint == DIGEST
    assert abs(info.gen_time - datetime.now(UTC)) < timedelta(minutes=1)


def test_openssl_agrees_with_our_token(tsa: LocalTSA, tmp_path: Path) -> None:
    """An independent implementation accepts the loopback TSA's tokens."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl binary")
    from cryptography.hazmat.primitives.serialization import Encoding

    result = ts.request_timestamp([tsa.url], hashlib.sha256(b"data").digest(), roots=[tsa.keys.root])
    (tmp_path / "tok").write_bytes(result.token)
    (tmp_path / "data").write_bytes(b"data")
    (tmp_path / "root.pem").write_bytes(tsa.keys.root_pem)
    (tmp_path / "inter.pem").write_bytes(tsa.keys.inter.public_bytes(Encoding.PEM))
    run = subprocess.run(["openssl", "ts", "-verify", "-data", tmp_path / "data", "-in", tmp_path / "tok",
                          "-token_in", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "inter.pem"],
                         capture_output=True, text=True)
    assert "Verification: OK" in run.stdout, run.stderr


@pytest.mark.parametrize("fault,reason", [
    ("wrong_nonce", "nonce mismatch"),
    ("wrong_imprint", "token for other data"),
    ("bad_signature", "signature does not verify"),
    ("omit_ess", "signing-certificate"),
])
def test_misbehaving_tsa_is_rejected(tsa: LocalTSA, fault: str, reason: str) -> None:
    setattr(tsa, fault, True)
    with pytest.raises(ts.TimestampError, match=reason):
        ts.request_timestamp([tsa.url], DIGEST, roots=[tsa.keys.root])


def test_token_for_other_data_and_foreign_root(tsa: LocalTSA) -> None:
    result = ts.request_timestamp([tsa.url], DIGEST, roots=None)
    with pytest.raises(ts.TokenInvalid, match="other data"):
        ts.verify_token(result.token, hashlib.sha256(b"other").digest(), nonce=None, roots=[tsa.keys.root])
    with pytest.raises(ts.TokenInvalid, match="configured root"):
        ts.verify_token(result.token, DIGEST, nonce=None, roots=[TSAKeys("Other").root])
    tampered = bytearray(result.token)
    i = tampered.find(DIGEST)
    tampered[i] ^= 1  # edit the TSTInfo inside the signed token
    with pytest.raises(ts.TokenInvalid):
        ts.verify_token(bytes(tampered), bytes(tampered[i:i + 32]), nonce=None, roots=[tsa.keys.root])


def test_tsas_are_tried_in_order(keys: TSAKeys) -> None:
    with LocalTSA(keys) as down, LocalTSA(keys) as refusing, LocalTSA(keys) as good:
        down.http_status = 503
        refusing.refuse = True
        result = ts.request_timestamp([down.url, refusing.url, good.url], DIGEST, roots=[keys.root])
        assert result.tsa_url == good.url
        assert [u for u, _ in result.failures] == [down.url, refusing.url]
        assert "refused" in result.failures[1][1]


def stamped_archive(tmp_path: Path, tsa: LocalTSA) -> Archive:
    a = evidence.build(tmp_path / "archive", pages=3, seed=4)
    ts.stamp_archive(a, [tsa.url], [tsa.keys.root])
    return a


def test_stamp_archive_stores_token_chain_versions_and_logs_it(tmp_path: Path, tsa: LocalTSA) -> None:
    a = stamped_archive(tmp_path, tsa)
    row = a.db.execute("SELECT covers_seq, tsa_chain_pem, library_versions FROM timestamps").fetchone()
    last = list(a.db.query("SELECT * FROM custody_log ORDER BY seq DESC LIMIT 1"))[0]
    assert last["event"] == "timestamp" and row[0] == last["seq"] - 1
    assert row[1].count("BEGIN CERTIFICATE") == 3 and "cryptography" in row[2]
    assert verify_archive(a, tsa_roots=[tsa.keys.root], record=False).intact


def test_verify_rejects_a_token_for_other_data(tmp_path: Path, tsa: LocalTSA) -> None:
    a = stamped_archive(tmp_path, tsa)
    other = ts.request_timestamp([tsa.url], hashlib.sha256(b"something else").digest(), roots=None)
    conn = sqlite3.connect(a.path / "catalogue.sqlite")
    conn.execute("UPDATE timestamps SET token = ?, token_sha256 = ?",
                 (other.token, hashlib.sha256(other.token).hexdigest()))
    conn.commit()
    conn.close()
    result = verify_archive(a, tsa_roots=[tsa.keys.root], record=False)
    msgs = [p.message for p in result.failures if p.kind == "timestamp"]
    assert any("other data" in m for m in msgs), result.failures


def test_verify_notices_a_stamped_entry_edited(tmp_path: Path, tsa: LocalTSA) -> None:
    a = stamped_archive(tmp_path, tsa)
    seq = a.db.execute("SELECT covers_seq FROM timestamps").fetchone()[0]
    conn = sqlite3.connect(a.path / "catalogue.sqlite")
    conn.execute("UPDATE custody_log SET at = '2001-01-01T00:00:00.000000Z' WHERE seq = ?", (seq,))
    conn.commit()
    conn.close()
    result = verify_archive(a, tsa_roots=[tsa.keys.root], record=False)
    assert {p.kind for p in result.failures} == {"log-edited", "timestamp"}
    assert {p.log_seq for p in result.failures} == {seq}


def test_unanchored_verification_is_a_note(tmp_path: Path, tsa: LocalTSA) -> None:
    a = stamped_archive(tmp_path, tsa)
    result = verify_archive(a, tsa_roots=None, record=False)
    assert result.intact and "timestamp-unanchored" in {n.kind for n in result.notes}
    assert not verify_archive(a, tsa_roots=[TSAKeys("Else").root], record=False).intact


def test_cli_timestamp_and_verify(tmp_path: Path, tsa: LocalTSA, capsys: pytest.CaptureFixture[str]) -> None:
    a = evidence.build(tmp_path / "archive", pages=2, seed=1)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(tsa.keys.root_pem)
    root = str(a.path)
    assert main(["timestamp", "-a", root, "--tsa", "http://127.0.0.1:9/none", "--tsa", tsa.url,
                 "--tsa-roots", str(roots)]) == 0
    assert "stamped by" in capsys.readouterr().out
    assert main(["verify", "-a", root, "--tsa-roots", str(roots)]) == 0
    assert main(["timestamp", "-a", root]) == 2  # no TSA configured


def test_cli_timestamp_with_every_tsa_down_logs_the_attempt_and_exits_3(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cron job's `evarchive timestamp` that reaches no TSA leaves its attempt in the custody log,
    as a capture run's does, and says where; the next stamp covers everything, that entry included."""
    a = evidence.build(tmp_path / "archive", pages=2, seed=1)
    before = custody.head(a.db)["seq"]
    assert main(["timestamp", "-a", str(a.path), "--tsa", "http://127.0.0.1:9/none", "--timeout", "5"]) == 3
    after = custody.head(a.db)
    assert (after["seq"], after["event"]) == (before + 1, "timestamp-failed")
    details = json.loads(after["details"])
    assert details["tsa_urls"] == ["http://127.0.0.1:9/none"] and details["head_seq"] == before
    assert f"recorded in log entry {after['seq']}" in capsys.readouterr().err
    assert main(["verify", "-a", str(a.path)]) == 0


def test_a_tsa_answering_200_with_no_body_is_a_failed_attempt_and_the_next_tsa_is_asked(
        tmp_path: Path, tsa: LocalTSA, local_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty 200 made the ASN.1 decoder raise an error with no message: a traceback, exit 1, no
    log entry, and the next TSA never asked. It is a TSA failure like any other."""
    a = evidence.build(tmp_path / "archive", pages=2, seed=1)
    empty = local_server.url("/drip?count=0")  # 200, empty body
    assert main(["timestamp", "-a", str(a.path), "--tsa", empty, "--timeout", "5"]) == 3
    failed = custody.head(a.db)
    assert failed["event"] == "timestamp-failed"
    assert "not a TimeStampResp: EndOfStreamError" in json.loads(failed["details"])["error"]
    assert "Traceback" not in capsys.readouterr().err
    assert main(["timestamp", "-a", str(a.path), "--tsa", empty, "--tsa", tsa.url, "--timeout", "5"]) == 0
    assert custody.head(a.db)["event"] == "timestamp"
