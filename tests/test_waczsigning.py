"""The WACZ's own signature (Webrecorder's WACZ Signing and Verification, anonymous form): made at
export with the archive's ECDSA key, accepted by `wacz validate`, checked by verify_bundle.py's
pure-Python ECDSA, which is itself checked here against signatures made by `cryptography`."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from thirdparty import tool

from evarchive import cli, waczsigning
from evarchive import verify_bundle as vb
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls

MESSAGE = b"sha256:" + b"ab" * 32
P256 = bytes.fromhex("2a8648ce3d030107")
P384 = bytes.fromhex("2b81040022")


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return waczsigning.public_der(key.public_key())


def raw(der: bytes, size: int) -> bytes:
    r, s = decode_dss_signature(der)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


# --------------------------------------------------------------------------- the pure-Python ECDSA

@pytest.mark.parametrize(("curve", "size"), [(ec.SECP256R1, 32), (ec.SECP384R1, 48)])
def test_signatures_made_by_cryptography_verify_raw_and_der(curve: Any, size: int) -> None:
    key = ec.generate_private_key(curve())
    for _ in range(3):  # fresh nonces: r and s of every length, leading zero bytes included
        der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
        assert vb.ecdsa_verify(spki(key), MESSAGE, der) is True
        assert vb.ecdsa_verify(spki(key), MESSAGE, raw(der, size)) is True


@pytest.mark.parametrize("curve", [ec.SECP256R1, ec.SECP384R1])
def test_a_wrong_key_a_flipped_byte_or_another_message_does_not_verify(curve: Any) -> None:
    key, other = ec.generate_private_key(curve()), ec.generate_private_key(curve())
    size = (key.curve.key_size + 7) // 8
    signature = raw(key.sign(MESSAGE, ec.ECDSA(hashes.SHA256())), size)
    assert vb.ecdsa_verify(spki(other), MESSAGE, signature) is False
    assert vb.ecdsa_verify(spki(key), MESSAGE[:-1] + b"c", signature) is False
    for at in (0, size - 1, size, 2 * size - 1):
        flipped = bytearray(signature)
        flipped[at] ^= 0x01
        assert vb.ecdsa_verify(spki(key), MESSAGE, bytes(flipped)) is False


def test_malformed_der_is_refused_not_guessed() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    cases = {
        "truncated DER": der[:-1],
        "trailing byte": der + b"\x00",
        "wrong outer tag": b"\x31" + der[1:],
        "three integers": vb_sequence(r, s, 1),
        "negative r": b"\x30\x06\x02\x01\xff\x02\x01\x01",
        "padded integer": b"\x30\x07\x02\x02\x00\x01\x02\x01\x01",
        "long-form short length": b"\x30\x81\x06\x02\x01\x01\x02\x01\x01",
        "zero r": vb_sequence(0, s),
        "s not below n": vb_sequence(r, vb.CURVES[P256][5]),
    }
    for why, signature in cases.items():
        with pytest.raises(ValueError):
            vb.ecdsa_verify(spki(key), MESSAGE, signature)
            pytest.fail(why)
    public = spki(key)
    for why, bad_key in {"truncated key": public[:-1], "not DER": b"\x04" + public[1:],
                         "trailing byte": public + b"\x00", "empty": b""}.items():
        with pytest.raises(ValueError):
            vb.ecdsa_verify(bad_key, MESSAGE, der)
            pytest.fail(why)


def vb_sequence(*values: int) -> bytes:
    """DER SEQUENCE of INTEGERs, for signatures cryptography would never write."""
    body = b""
    for v in values:
        content = v.to_bytes(v.bit_length() // 8 + 1, "big")
        body += b"\x02" + bytes([len(content)]) + content
    return b"\x30" + (bytes([len(body)]) if len(body) < 0x80 else b"\x81" + bytes([len(body)])) + body


def test_a_point_off_the_curve_or_another_curve_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = bytearray(spki(key))
    signature = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    public[-1] ^= 0x01  # y changed: (x, y) no longer on the curve
    with pytest.raises(ValueError, match="not on the curve"):
        vb.ecdsa_verify(bytes(public), MESSAGE, signature)
    compressed = spki(key)
    compressed = compressed.replace(b"\x00\x04" + compressed[-64:], b"\x00\x02" + compressed[-64:])
    with pytest.raises(ValueError, match="uncompressed"):
        vb.ecdsa_verify(compressed, MESSAGE, signature)
    k1 = ec.generate_private_key(ec.SECP256K1())
    with pytest.raises(ValueError, match="P-256 or P-384"):
        vb.ecdsa_verify(spki(k1), MESSAGE, k1.sign(MESSAGE, ec.ECDSA(hashes.SHA256())))


def test_the_curve_constants_are_the_standard_groups() -> None:
    for name, p, b, gx, gy, n in vb.CURVES.values():
        assert (gy * gy - (gx ** 3 - 3 * gx + b)) % p == 0, name
        assert vb._ec_mul(n, (gx, gy), p) is None, name  # G has order n


# --------------------------------------------------------------------------- the exported bundle

@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, local_server: Any) -> tuple[Path, Path]:
    """(archive, bundle): one captured page, exported once; tests copy the bundle."""
    root = tmp_path_factory.mktemp("waczsign")
    local_server.set_route("/waczsign/a", body="<html><body><p>Signed page</p></body></html>")
    arch = Archive.open(root / "archive")
    [outcome] = capture_urls(arch, [local_server.url("/waczsign/a")], CaptureSettings(retries=0, total_timeout=20))
    assert outcome.status == "captured"
    arch.close()
    out = root / "bundle"
    assert cli.main(["export", str(out), "--archive", str(root / "archive"), local_server.url("/waczsign/a")]) == 0
    return root / "archive", out


@pytest.fixture
def bundle(exported: tuple[Path, Path], tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(exported[1], target)
    return target


def digest_of(bundle: Path) -> dict[str, Any]:
    with zipfile.ZipFile(bundle / "evidence.wacz") as zf:
        return json.loads(zf.read("datapackage-digest.json"))


def archive_key(archive: Path) -> ec.EllipticCurvePrivateKey:
    arch = Archive.existing(archive)
    try:
        return waczsigning.archive_key(arch)
    finally:
        arch.close()


def test_the_wacz_is_signed_as_the_spec_describes(exported: tuple[Path, Path]) -> None:
    archive, bundle = exported
    digest = digest_of(bundle)
    with zipfile.ZipFile(bundle / "evidence.wacz") as zf:
        package = zf.read("datapackage.json")
    signed = digest["signedData"]
    assert sorted(signed) == sorted(["hash", "created", "software", "version", "signature", "publicKey"])
    assert signed["hash"] == digest["hash"] == "sha256:" + hashlib.sha256(package).hexdigest()
    assert signed["created"] == json.loads(package)["created"]
    key_file = archive / "keys" / "wacz-ecdsa-p384.key"
    public_file = archive / "keys" / "wacz-ecdsa-p384.public.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = archive_key(archive)
    assert serialization.load_pem_public_key(public_file.read_bytes()) == key.public_key()
    assert base64.b64decode(signed["publicKey"]) == spki(key)
    # cryptography itself accepts the signature over the hash text (raw r || s, SHA-256)
    sig = base64.b64decode(signed["signature"])
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    key.public_key().verify(der, signed["hash"].encode(), ec.ECDSA(hashes.SHA256()))


def test_the_archive_still_verifies_beside_the_new_key(exported: tuple[Path, Path]) -> None:
    """`verify` takes every keys/*.pub for an Ed25519 custody key: the WACZ key is not one of them."""
    assert cli.main(["verify", "--archive", str(exported[0])]) == 0


def test_verify_bundle_says_the_signature_is_valid_and_gives_the_fingerprint(exported: tuple[Path, Path]) -> None:
    archive, bundle = exported
    result = run_verifier(bundle, str(bundle))
    verdict = result.stdout.strip().splitlines()[-1]
    fingerprint = waczsigning.fingerprint(archive_key(archive).public_key())
    assert result.returncode == 0, result.stdout
    assert verdict.startswith("BUNDLE CONSISTENT, NOT ANCHORED")
    assert verdict.endswith("(the WACZ's own signature (WACZ Signing and Verification, anonymous ECDSA P-384) is "
                            f"valid, key fingerprint SHA-256 {fingerprint})")


def test_wacz_validate_accepts_the_signed_wacz(exported: tuple[Path, Path]) -> None:
    """py-wacz checks the digest, and that signedData was created when the package was; it can only
    verify domain signatures (through authsign), not anonymous ones: that is ours and ReplayWeb.page's."""
    result = subprocess.run([tool("wacz"), "validate", "-f", str(exported[1] / "evidence.wacz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Has signature" in result.stdout and "Validation succeeded, the passed WACZ is valid" in result.stdout


REPLAYWEB_CHECK = """
const [spki, sig, hash] = process.argv.slice(1).map(a => Buffer.from(a, "base64"));
const {subtle} = globalThis.crypto;
// What ReplayWeb.page does with an anonymous signedData: an SPKI key imported as ECDSA P-384.
const key = await subtle.importKey("spki", spki, {name: "ECDSA", namedCurve: "P-384"}, true, ["verify"]);
console.log(await subtle.verify({name: "ECDSA", hash: "SHA-256"}, key, sig, hash));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node (WebCrypto) is not installed")
def test_webcrypto_verifies_it_as_replaywebpage_does(exported: tuple[Path, Path]) -> None:
    signed = digest_of(exported[1])["signedData"]
    result = subprocess.run(["node", "--input-type=module", "-e", REPLAYWEB_CHECK, signed["publicKey"],
                             signed["signature"], base64.b64encode(signed["hash"].encode()).decode()],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "true"), result.stderr


def test_a_second_export_signs_with_the_same_key(exported: tuple[Path, Path], local_server: Any,
                                                tmp_path: Path) -> None:
    archive, bundle = exported
    again = tmp_path / "again"
    assert cli.main(["export", str(again), "--archive", str(archive), local_server.url("/waczsign/a")]) == 0
    assert digest_of(again)["signedData"]["publicKey"] == digest_of(bundle)["signedData"]["publicKey"]


def rewrite_wacz(bundle: Path, change: dict[str, bytes]) -> None:
    """The WACZ with some entries' bytes replaced, every entry stored as before."""
    path = bundle / "evidence.wacz"
    new = path.with_suffix(".new")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(new, "w") as dest:
        for info in src.infolist():
            dest.writestr(info, change.get(info.filename, src.read(info.filename)))
    new.replace(path)


def failures(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("FAIL") and "SHA256SUMS" not in line]


WHERE = "evidence.wacz > datapackage-digest.json"


def test_an_edited_datapackage_fails_with_the_digest_finding(bundle: Path) -> None:
    with zipfile.ZipFile(bundle / "evidence.wacz") as zf:
        package = json.loads(zf.read("datapackage.json"))
    package["title"] = "Edited"
    edited = json.dumps(package).encode()
    rewrite_wacz(bundle, {"datapackage.json": edited})
    result = run_verifier(bundle, str(bundle))
    assert result.returncode == 1
    assert failures(result) == [
        "FAIL  evidence.wacz: datapackage.json does not match datapackage-digest.json",
        f"FAIL  {WHERE}: signedData signs the hash {digest_of(bundle)['hash']}, not datapackage.json's "
        f"sha256:{hashlib.sha256(edited).hexdigest()}"]


def test_an_edited_datapackage_with_a_recomputed_hash_fails_the_signature(bundle: Path) -> None:
    """The forger recomputes the digest's hash but cannot re-sign with the archive's key."""
    with zipfile.ZipFile(bundle / "evidence.wacz") as zf:
        package = json.loads(zf.read("datapackage.json"))
    package["title"] = "Edited"
    edited = json.dumps(package).encode()
    digest = digest_of(bundle)
    digest["hash"] = digest["signedData"]["hash"] = "sha256:" + hashlib.sha256(edited).hexdigest()
    rewrite_wacz(bundle, {"datapackage.json": edited, "datapackage-digest.json": json.dumps(digest).encode()})
    result = run_verifier(bundle, str(bundle))
    fingerprint = hashlib.sha256(base64.b64decode(digest["signedData"]["publicKey"])).hexdigest()
    assert result.returncode == 1
    assert f"FAIL  {WHERE}: the WACZ signature does not verify with its publicKey (P-384, fingerprint " \
           f"{fingerprint})" in failures(result)
    assert result.stdout.strip().splitlines()[-1].endswith(
        "this bundle is NOT as exported (the WACZ's own signature is NOT valid "
        f"(key fingerprint SHA-256 {fingerprint}))")


def test_a_flipped_signature_byte_fails(bundle: Path) -> None:
    digest = digest_of(bundle)
    sig = bytearray(base64.b64decode(digest["signedData"]["signature"]))
    sig[10] ^= 0x01
    digest["signedData"]["signature"] = base64.b64encode(bytes(sig)).decode()
    rewrite_wacz(bundle, {"datapackage-digest.json": json.dumps(digest).encode()})
    result = run_verifier(bundle, str(bundle))
    fingerprint = hashlib.sha256(base64.b64decode(digest["signedData"]["publicKey"])).hexdigest()
    assert result.returncode == 1
    assert failures(result) == [f"FAIL  {WHERE}: the WACZ signature does not verify with its publicKey (P-384, "
                                f"fingerprint {fingerprint})"]


def test_a_signature_that_is_not_base64_is_a_finding_not_a_crash(bundle: Path) -> None:
    digest = digest_of(bundle)
    digest["signedData"]["signature"] = "not base64!"
    rewrite_wacz(bundle, {"datapackage-digest.json": json.dumps(digest).encode()})
    result = run_verifier(bundle, str(bundle))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [f.split(": the WACZ signature")[0] for f in failures(result)] == [f"FAIL  {WHERE}"]
    assert "cannot be checked" in failures(result)[0]
