"""RFC 3161 trusted timestamps: request a token, and verify one offline.

A token is the TSA's signed statement "this digest existed at genTime". We
keep the token DER exactly as received (it is the evidence) and verify it
again, without any network, on every `evarchive verify`:

* the imprint in the TSTInfo is the digest we asked for (and, at verify time,
  the digest recomputed from the current custody log),
* the nonce is the one we sent (replay protection at request time),
* the CMS signature over the signed attributes is valid, the messageDigest
  attribute matches the TSTInfo bytes, and the ESS signing-certificate
  attribute names the certificate that actually signed,
* the signer certificate is for time stamping and chains to one of the
  configured roots, each certificate valid at genTime (a token must stay
  verifiable after the TSA certificate has expired).
"""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_modules import rfc2634, rfc3161, rfc5035, rfc5280, rfc5652

from . import __version__, custody
from .archive import Archive
from .catalogue import insert, to_json, transaction, utc_now
from .errors import CouldNotRunError, InputError, UsageError, first_line

# Hash algorithms by OID: the name hashlib knows and the cryptography class.
HASHES: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "1.3.14.3.2.26": ("sha1", hashes.SHA1),
    "2.16.840.1.101.3.4.2.1": ("sha256", hashes.SHA256),
    "2.16.840.1.101.3.4.2.2": ("sha384", hashes.SHA384),
    "2.16.840.1.101.3.4.2.3": ("sha512", hashes.SHA512),
}
HASH_OID_BY_NAME = {name: oid for oid, (name, _cls) in HASHES.items()}

# Signature algorithm OIDs -> (kind, hash OID or None = take the digestAlgorithm).
SIG_ALGS: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),  # rsaEncryption: hash from digestAlgorithm
    "1.2.840.113549.1.1.5": ("rsa", "1.3.14.3.2.26"),
    "1.2.840.113549.1.1.11": ("rsa", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.113549.1.1.12": ("rsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.113549.1.1.13": ("rsa", "2.16.840.1.101.3.4.2.3"),
    "1.2.840.10045.4.3.2": ("ecdsa", "2.16.840.1.101.3.4.2.1"),
    "1.2.840.10045.4.3.3": ("ecdsa", "2.16.840.1.101.3.4.2.2"),
    "1.2.840.10045.4.3.4": ("ecdsa", "2.16.840.1.101.3.4.2.3"),
    "1.3.101.112": ("ed25519", None),
}

MAX_CHAIN = 8
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


class TimestampError(Exception):
    """A TSA could not give us a usable token (network, refusal, garbage)."""


class TokenInvalid(Exception):
    """A stored token does not prove what it should. `reason` is for people."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TimestampRequest:
    der: bytes
    digest: bytes
    hash_name: str
    nonce: int


@dataclass
class TokenInfo:
    gen_time: datetime
    serial: int
    policy: str
    hash_name: str
    imprint: bytes
    nonce: int | None
    signer_subject: str
    signer_sha256: str
    certificates: list[x509.Certificate] = field(default_factory=list)
    chain: list[x509.Certificate] = field(default_factory=list)  # signer .. root
    anchored: bool = False


@dataclass
class StampResult:
    tsa_url: str
    request: TimestampRequest
    token: bytes
    info: TokenInfo
    failures: list[tuple[str, str]]  # TSAs tried before this one, with the reason


# ---------------------------------------------------------------- request


def _algorithm(oid: str) -> rfc5280.AlgorithmIdentifier:
    alg = rfc5280.AlgorithmIdentifier()
    alg["algorithm"] = univ.ObjectIdentifier(oid)
    # sha-2 identifiers are sent with NULL parameters by most clients; TSAs
    # accept both, and the NULL form is the one openssl ts emits.
    alg["parameters"] = univ.Any(der_encoder.encode(univ.Null("")))
    return alg


def build_request(
    digest: bytes, hash_name: str = "sha256", nonce: int | None = None, cert_req: bool = True
) -> TimestampRequest:
    """A DER TimeStampReq for an already computed digest."""
    if hash_name not in HASH_OID_BY_NAME:
        raise ValueError(f"unsupported hash {hash_name}")
    if len(digest) != hashlib.new(hash_name).digest_size:
        raise ValueError(f"digest is not a {hash_name} digest")
    nonce = secrets.randbits(63) if nonce is None else nonce
    req = rfc3161.TimeStampReq()
    req["version"] = 1
    imprint = req["messageImprint"]
    imprint["hashAlgorithm"] = _algorithm(HASH_OID_BY_NAME[hash_name])
    imprint["hashedMessage"] = digest
    req["nonce"] = nonce
    req["certReq"] = cert_req
    return TimestampRequest(der_encoder.encode(req), digest, hash_name, nonce)


def parse_response(der: bytes) -> bytes:
    """The token (DER ContentInfo) from a TimeStampResp, or TimestampError."""
    try:
        resp, rest = der_decoder.decode(der, asn1Spec=rfc3161.TimeStampResp())
    except PyAsn1Error as exc:
        raise TimestampError(f"not a TimeStampResp: {first_line(exc)}") from exc
    if rest:
        raise TimestampError("trailing bytes after TimeStampResp")
    status = int(resp["status"]["status"])
    if status not in (0, 1):  # granted, grantedWithMods
        text = ""
        if resp["status"]["statusString"].isValue:
            text = "; ".join(str(s) for s in resp["status"]["statusString"])
        raise TimestampError(f"TSA refused (PKIStatus {status}) {text}".strip())
    if not resp["timeStampToken"].isValue:
        raise TimestampError("TSA granted but sent no token")
    return der_encoder.encode(resp["timeStampToken"])


def library_versions() -> dict[str, str]:
    """Versions of everything that produced or will check a token."""
    out = {"python": platform.python_version()}
    for dist in ("evarchive", "cryptography", "pyasn1", "pyasn1-modules", "httpx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def request_timestamp(
    tsa_urls: Sequence[str],
    digest: bytes,
    *,
    roots: Sequence[x509.Certificate] | None = None,
    hash_name: str = "sha256",
    timeout: float = 30.0,
    user_agent: str = "evarchive",
) -> StampResult:
    """Ask each TSA in order until one returns a token that verifies.

    The token is verified before it is accepted, so a TSA that answers with a
    wrong imprint, a stale nonce or a bad signature is skipped like one that
    is down. With no roots the chain is not anchored (checked again later).
    """
    import httpx  # imported here: offline verification must not need it

    if not tsa_urls:
        raise TimestampError("no TSA configured (use --tsa URL or EVARCHIVE_TSA)")
    failures: list[tuple[str, str]] = []
    for url in tsa_urls:
        req = build_request(digest, hash_name)
        try:
            resp = httpx.post(
                url,
                content=req.der,
                headers={"Content-Type": QUERY_TYPE, "User-Agent": user_agent},
                timeout=timeout,
            )
            if resp.status_code != 200:
                raise TimestampError(f"HTTP {resp.status_code}")
            token = parse_response(resp.content)
            info = verify_token(token, digest, nonce=req.nonce, roots=roots)
        except (httpx.HTTPError, TimestampError) as exc:
            failures.append((url, f"{type(exc).__name__}: {exc}"))
            continue
        except TokenInvalid as exc:
            failures.append((url, f"token rejected: {exc.reason}"))
            continue
        return StampResult(url, req, token, info, failures)
    detail = "; ".join(f"{u}: {why}" for u, why in failures)
    raise TimestampError(f"no TSA gave a valid token ({detail})")


# ---------------------------------------------------------------- verify


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    return list(x509.load_pem_x509_certificates(data)) if data.strip() else []


def certs_to_pem(certs: Iterable[x509.Certificate]) -> list[str]:
    return [c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs]


def _decode(der: bytes, spec: univ.Asn1Item, what: str):  # type: ignore[no-untyped-def]
    try:
        value, rest = der_decoder.decode(der, asn1Spec=spec)
    except PyAsn1Error as exc:
        # pyasn1 messages dump whole schemas; keep the first line, shortened.
        raise TokenInvalid(f"{what} does not parse: {first_line(exc)}") from exc
    if rest:
        raise TokenInvalid(f"{what} has trailing bytes")
    return value


def _hash_name(oid: str) -> str:
    if oid not in HASHES:
        raise TokenInvalid(f"unsupported hash algorithm {oid}")
    return HASHES[oid][0]


def _gen_time(tst: rfc3161.TSTInfo) -> datetime:
    raw = str(tst["genTime"])
    # GeneralizedTime in DER: YYYYMMDDHHMMSS[.fff]Z
    base, _, frac = raw.rstrip("Z").partition(".")
    when = datetime.strptime(base, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    if frac:
        when = when.replace(microsecond=int((frac + "000000")[:6]))
    return when


def _signed_attrs(signer_info: rfc5652.SignerInfo) -> dict[str, list[bytes]]:
    attrs: dict[str, list[bytes]] = {}
    for attr in signer_info["signedAttrs"]:
        values = [der_encoder.encode(v) for v in attr["attrValues"]]
        attrs.setdefault(str(attr["attrType"]), []).extend(values)
    return attrs


def _single_attr(attrs: dict[str, list[bytes]], oid: univ.ObjectIdentifier, what: str) -> bytes:
    values = attrs.get(str(oid), [])
    if len(values) != 1:
        raise TokenInvalid(f"signed attribute {what} missing or repeated")
    return values[0]


def _find_signer(sid: rfc5652.SignerIdentifier, pool: Sequence[x509.Certificate]) -> x509.Certificate:
    choice = sid.getName()
    for cert in pool:
        if choice == "issuerAndSerialNumber":
            ias = sid["issuerAndSerialNumber"]
            if int(ias["serialNumber"]) == cert.serial_number and der_encoder.encode(
                ias["issuer"]
            ) == cert.issuer.public_bytes():
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            except x509.ExtensionNotFound:
                continue
            if ski.digest == bytes(sid["subjectKeyIdentifier"]):
                return cert
    raise TokenInvalid("the signing certificate is neither in the token nor in the stored chain")


def _verify_signature(
    cert: x509.Certificate, sig_oid: str, digest_oid: str, signature: bytes, data: bytes
) -> None:
    if sig_oid not in SIG_ALGS:
        raise TokenInvalid(f"unsupported signature algorithm {sig_oid}")
    kind, hash_oid = SIG_ALGS[sig_oid]
    key = cert.public_key()
    try:
        if kind == "rsa" and isinstance(key, rsa.RSAPublicKey):
            algo = HASHES[hash_oid or digest_oid][1]()
            key.verify(signature, data, padding.PKCS1v15(), algo)
        elif kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(HASHES[hash_oid or digest_oid][1]()))
        elif kind == "ed25519" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            raise TokenInvalid("signature algorithm does not match the signer's key")
    except InvalidSignature as exc:
        raise TokenInvalid("the TSA signature does not verify") from exc


def _check_ess(attrs: dict[str, list[bytes]], signer: x509.Certificate) -> None:
    """The signing-certificate attribute must name the certificate used."""
    der = signer.public_bytes(serialization.Encoding.DER)
    v2 = attrs.get(str(rfc5035.id_aa_signingCertificateV2))
    if v2:
        sc = _decode(v2[0], rfc5035.SigningCertificateV2(), "SigningCertificateV2")
        ess = sc["certs"][0]
        oid = "2.16.840.1.101.3.4.2.1"
        if ess["hashAlgorithm"].isValue:
            oid = str(ess["hashAlgorithm"]["algorithm"])
        expected = hashlib.new(_hash_name(oid), der).digest()
    elif attrs.get(str(rfc2634.id_aa_signingCertificate)):
        v1 = attrs[str(rfc2634.id_aa_signingCertificate)]
        sc = _decode(v1[0], rfc2634.SigningCertificate(), "SigningCertificate")
        ess = sc["certs"][0]
        expected = hashlib.sha1(der).digest()
    else:
        raise TokenInvalid("no signing-certificate attribute (RFC 3161 requires one)")
    if bytes(ess["certHash"]) != expected:
        raise TokenInvalid("signing-certificate attribute names another certificate")


def _valid_at(cert: x509.Certificate, when: datetime, role: str) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise TokenInvalid(f"{role} certificate {cert.subject.rfc4514_string()} not valid at {when:%Y-%m-%dT%H:%M:%SZ}")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def build_chain(
    signer: x509.Certificate,
    pool: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    when: datetime,
) -> list[x509.Certificate]:
    """signer .. root, each signature checked and each cert valid at `when`."""
    root_ders = {r.public_bytes(serialization.Encoding.DER) for r in roots}
    candidates = list(roots) + [c for c in pool if c.public_bytes(serialization.Encoding.DER) not in root_ders]
    chain = [signer]
    current = signer
    for _ in range(MAX_CHAIN):
        _valid_at(current, when, "TSA chain")
        if current.public_bytes(serialization.Encoding.DER) in root_ders:
            return chain
        issuer = _find_issuer(current, candidates)
        if issuer is None:
            raise TokenInvalid(
                f"the TSA chain does not reach a configured root (stops at {current.issuer.rfc4514_string()})"
            )
        if not _is_ca(issuer):
            raise TokenInvalid(f"{issuer.subject.rfc4514_string()} is not a CA")
        chain.append(issuer)
        current = issuer
    raise TokenInvalid("the TSA chain is too long")


def _find_issuer(cert: x509.Certificate, candidates: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for cand in candidates:
        if cand.subject != cert.issuer or cand is cert:
            continue
        try:
            cert.verify_directly_issued_by(cand)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return cand
    return None


def _check_tsa_usage(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise TokenInvalid("the signer certificate has no extended key usage") from exc
    if ExtendedKeyUsageOID.TIME_STAMPING not in eku:
        raise TokenInvalid("the signer certificate is not for time stamping")


def token_certificates(token: bytes) -> list[x509.Certificate]:
    signed = _signed_data(token)
    return _embedded_certs(signed)


def _signed_data(token: bytes) -> rfc5652.SignedData:
    ci = _decode(token, rfc5652.ContentInfo(), "token")
    if ci["contentType"] != rfc5652.id_signedData:
        raise TokenInvalid("token is not CMS SignedData")
    return _decode(bytes(ci["content"]), rfc5652.SignedData(), "SignedData")


def _embedded_certs(signed: rfc5652.SignedData) -> list[x509.Certificate]:
    certs = []
    if signed["certificates"].isValue:
        for choice in signed["certificates"]:
            if choice.getName() == "certificate":
                certs.append(x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"])))
    return certs


def verify_token(
    token: bytes,
    digest: bytes,
    *,
    nonce: int | None,
    roots: Sequence[x509.Certificate] | None,
    extra_certs: Sequence[x509.Certificate] = (),
) -> TokenInfo:
    """Check everything a token claims, offline. Raises TokenInvalid.

    `roots=None` skips anchoring (reported by the caller as unanchored);
    `nonce=None` skips the nonce (used only when none was recorded).
    """
    signed = _signed_data(token)
    encap = signed["encapContentInfo"]
    if encap["eContentType"] != rfc3161.id_ct_TSTInfo:
        raise TokenInvalid("token does not contain a TSTInfo")
    tst_der = bytes(encap["eContent"])
    tst = _decode(tst_der, rfc3161.TSTInfo(), "TSTInfo")

    hash_name = _hash_name(str(tst["messageImprint"]["hashAlgorithm"]["algorithm"]))
    imprint = bytes(tst["messageImprint"]["hashedMessage"])
    if imprint != digest:
        raise TokenInvalid("the token's imprint is not the digest of this data (token for other data)")
    token_nonce = int(tst["nonce"]) if tst["nonce"].isValue else None
    if nonce is not None and token_nonce != nonce:
        raise TokenInvalid(f"nonce mismatch (sent {nonce}, token has {token_nonce})")
    gen_time = _gen_time(tst)

    if len(signed["signerInfos"]) != 1:
        raise TokenInvalid("a timestamp token must have exactly one signer")
    si = signed["signerInfos"][0]
    embedded = _embedded_certs(signed)
    signer = _find_signer(si["sid"], embedded + list(extra_certs))
    digest_oid = str(si["digestAlgorithm"]["algorithm"])
    if not si["signedAttrs"].isValue:
        raise TokenInvalid("no signed attributes")
    attrs = _signed_attrs(si)
    ctype = _decode(_single_attr(attrs, rfc5652.id_contentType, "content-type"), univ.ObjectIdentifier(),
                    "content-type")
    if ctype != rfc3161.id_ct_TSTInfo:
        raise TokenInvalid("signed content-type is not TSTInfo")
    md = _decode(_single_attr(attrs, rfc5652.id_messageDigest, "message-digest"), univ.OctetString(), "message-digest")
    if bytes(md) != hashlib.new(_hash_name(digest_oid), tst_der).digest():
        raise TokenInvalid("message-digest does not match the TSTInfo (the token was altered)")
    # The signature covers the DER of the attributes as a SET OF (tag 0x31),
    # not as the [0] IMPLICIT field they are carried in.
    signed_bytes = bytearray(der_encoder.encode(si["signedAttrs"]))
    signed_bytes[0] = 0x31
    _verify_signature(signer, str(si["signatureAlgorithm"]["algorithm"]), digest_oid, bytes(si["signature"]),
                      bytes(signed_bytes))
    _check_ess(attrs, signer)
    _check_tsa_usage(signer)

    chain: list[x509.Certificate] = []
    if roots is not None:
        if not roots:
            raise TokenInvalid("no trusted TSA roots configured")
        chain = build_chain(signer, embedded + list(extra_certs), roots, gen_time)
    return TokenInfo(
        gen_time=gen_time,
        serial=int(tst["serialNumber"]),
        policy=str(tst["policy"]),
        hash_name=hash_name,
        imprint=imprint,
        nonce=token_nonce,
        signer_subject=signer.subject.rfc4514_string(),
        signer_sha256=signer.fingerprint(hashes.SHA256()).hex(),
        certificates=embedded,
        chain=chain,
        anchored=bool(chain),
    )


# ---------------------------------------------------------------- archive level

ENV_TSA = "EVARCHIVE_TSA"
ENV_TSA_ROOTS = "EVARCHIVE_TSA_ROOTS"


def configured_tsas(archive: Archive, given: Sequence[str]) -> list[str]:
    """--tsa options, else EVARCHIVE_TSA (space or comma separated), else keys/tsa-urls.txt."""
    if given:
        return list(given)
    env = os.environ.get(ENV_TSA, "")
    if env.strip():
        return [u for u in env.replace(",", " ").split() if u]
    listing = archive.tsa_urls_file
    if listing.exists():
        return [ln.strip() for ln in listing.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return []


def configured_roots(archive: Archive, given: Any = None) -> list[x509.Certificate] | None:
    """--tsa-roots PEM, else EVARCHIVE_TSA_ROOTS, else keys/tsa-roots.pem; None when none."""
    path = Path(given) if given else (Path(os.environ[ENV_TSA_ROOTS]) if os.environ.get(ENV_TSA_ROOTS) else None)
    if path is None:
        path = archive.tsa_roots_file if archive.tsa_roots_file.exists() else None
    if path is None:
        return None
    try:
        return load_pem_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read TSA roots from {path}: {exc}") from None


def stamp_archive(archive: Archive, tsa_urls: Sequence[str], roots: Sequence[x509.Certificate] | None,
                  timeout: float = 30.0) -> dict[str, Any]:
    """Timestamp the custody-log head: the token then covers every entry (and so every
    capture, file hash and row they vouch for) up to it. Stores the token and logs it."""
    try:
        return stamp_head(archive, tsa_urls, roots, timeout)
    except TimestampError as exc:
        raise CouldNotRunError(str(exc)) from None


def stamp_head(archive: Archive, tsa_urls: Sequence[str], roots: Sequence[x509.Certificate] | None,
               timeout: float = 30.0) -> dict[str, Any]:
    """stamp_archive, leaving a TSA failure to the caller as TimestampError (a run that
    anchors its captures records it as a finding instead of failing)."""
    db = archive.db
    head = custody.head(db)
    if head is None:
        raise UsageError("the custody log is empty: nothing to timestamp yet")
    digest = bytes.fromhex(head["entry_hash"])
    result = request_timestamp(tsa_urls, digest, roots=roots, timeout=timeout,
                               user_agent=f"evarchive/{__version__}")
    chain = result.info.chain or result.info.certificates
    row = {
        "created_at": utc_now(), "tsa_url": result.tsa_url, "covers_seq": head["seq"],
        "digest": head["entry_hash"], "hash_alg": "sha256", "nonce": str(result.request.nonce),
        "token": result.token, "token_sha256": hashlib.sha256(result.token).hexdigest(),
        "gen_time": result.info.gen_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "serial": str(result.info.serial), "policy": result.info.policy,
        "tsa_subject": result.info.signer_subject, "tsa_chain_pem": to_json(certs_to_pem(chain)),
        "library_versions": to_json(library_versions()),
    }
    with transaction(db):
        row["id"] = insert(db, "timestamps", row)
        custody.append(db, "timestamp", result.tsa_url, {
            "timestamp_id": row["id"], "covers_seq": head["seq"], "digest": head["entry_hash"],
            "token_sha256": row["token_sha256"], "tsa_url": result.tsa_url,
            "gen_time": row["gen_time"], "serial": row["serial"],
            "anchored": result.info.anchored,
            "tried_before": [{"tsa": u, "error": e} for u, e in result.failures]})
    out = {k: v for k, v in row.items() if k != "token"}
    out["anchored"] = result.info.anchored
    out["failures"] = result.failures
    return out
