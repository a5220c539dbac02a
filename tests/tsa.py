"""A local RFC 3161 time-stamping authority on loopback, for tests and bench.

It builds its own PKI (root CA -> intermediate -> TSA certificate with the
critical timeStamping EKU) and encodes TimeStampResp by hand with a tiny DER
writer, so the client's pyasn1 decoding is checked against an independent
encoder. No test ever contacts a real TSA.

Misbehaviours for tests are switched by attributes: `refuse`, `http_status`,
`wrong_nonce`, `wrong_imprint`, `bad_signature`, `omit_ess`.
"""

from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timedelta, UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1_modules import rfc3161

# ----------------------------------------------------------- tiny DER writer


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def set_of(*parts: bytes) -> bytes:
    return tlv(0x31, b"".join(sorted(parts)))  # DER sorts SET OF members


def integer(n: int) -> bytes:
    raw = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, raw)


def octets(b: bytes) -> bytes:
    return tlv(0x04, b)


def null() -> bytes:
    return b"\x05\x00"


def oid(dotted: str) -> bytes:
    nums = [int(x) for x in dotted.split(".")]
    body = bytearray([40 * nums[0] + nums[1]])
    for n in nums[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def gentime(when: datetime) -> bytes:
    return tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def ctx(n: int, body: bytes, constructed: bool = True) -> bytes:
    return tlv((0xA0 if constructed else 0x80) | n, body)


SHA256 = "2.16.840.1.101.3.4.2.1"
SHA256_RSA = "1.2.840.113549.1.1.11"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_TSTINFO = "1.2.840.113549.1.9.16.1.4"
ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ID_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47"


def alg(dotted: str, params: bool = True) -> bytes:
    return seq(oid(dotted), null()) if params else seq(oid(dotted))


# ------------------------------------------------------------------- PKI


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evarchive test TSA")])


def _cert(subject: str, key: Any, issuer_name: x509.Name, issuer_key: Any, *, ca: bool, tsa: bool,
          days: int = 3650) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if tsa:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


class TSAKeys:
    """Root -> intermediate -> TSA signer. EC keys: fast to make in tests."""

    def __init__(self, name: str = "Local", signer_rsa: bool = True) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"{name} Root CA")
        self.root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(days=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = _cert(f"{name} Intermediate CA", self.inter_key, root_name, self.root_key, ca=True, tsa=False)
        # Real TSAs mostly sign with RSA; keep that path exercised.
        self.key: Any = rsa.generate_private_key(65537, 2048) if signer_rsa else ec.generate_private_key(ec.SECP256R1())
        self.cert = _cert(f"{name} TSA", self.key, self.inter.subject, self.inter_key, ca=False, tsa=True)

    @property
    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)


# ------------------------------------------------------------------- TSA


class LocalTSA:
    def __init__(self, keys: TSAKeys | None = None, *, include_chain: bool = True) -> None:
        self.keys = keys or TSAKeys()
        self.include_chain = include_chain
        self.serial = 0
        self.requests = 0
        self.refuse = False
        self.http_status = 200
        self.wrong_nonce = False
        self.wrong_imprint = False
        self.bad_signature = False
        self.omit_ess = False
        self.gen_time: datetime | None = None  # fixed genTime, else now
        self._server: ThreadingHTTPServer | None = None

    # -- token construction
    def respond(self, request_der: bytes) -> bytes:
        req, _ = der_decoder.decode(request_der, asn1Spec=rfc3161.TimeStampReq())
        if self.refuse:
            return seq(seq(integer(2), seq(tlv(0x0C, b"refused by test"))))
        imprint = bytes(req["messageImprint"]["hashedMessage"])
        hash_oid = str(req["messageImprint"]["hashAlgorithm"]["algorithm"])
        nonce = int(req["nonce"]) if req["nonce"].isValue else None
        if self.wrong_imprint:
            imprint = hashlib.sha256(imprint).digest()
        if self.wrong_nonce and nonce is not None:
            nonce += 1
        self.serial += 1
        token = self.token(imprint, hash_oid, nonce, bool(req["certReq"]))
        return seq(seq(integer(0)), token)

    def token(self, imprint: bytes, hash_oid: str, nonce: int | None, cert_req: bool = True) -> bytes:
        when = self.gen_time or datetime.now(UTC)
        tst = seq(
            integer(1),
            oid("1.2.3.4.1"),
            seq(alg(hash_oid), octets(imprint)),
            integer(self.serial),
            gentime(when),
            seq(integer(1)),  # accuracy: 1 second
            *( [integer(nonce)] if nonce is not None else [] ),
        )
        cert_der = self.keys.cert.public_bytes(serialization.Encoding.DER)
        attrs = [
            seq(oid(ID_CONTENT_TYPE), set_of(oid(ID_TSTINFO))),
            seq(oid(ID_MESSAGE_DIGEST), set_of(octets(hashlib.sha256(tst).digest()))),
        ]
        if not self.omit_ess:
            ess = seq(seq(seq(octets(hashlib.sha256(cert_der).digest()))))
            attrs.append(seq(oid(ID_SIGNING_CERT_V2), set_of(ess)))
        attrs_body = b"".join(sorted(attrs))
        # Signed as SET OF (0x31), carried as [0] IMPLICIT: same body.
        signature, sig_alg = self._sign(tlv(0x31, attrs_body))
        if self.bad_signature:
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        certs = [cert_der]
        if self.include_chain:
            certs.append(self.keys.inter.public_bytes(serialization.Encoding.DER))
        issuer_serial = seq(self.keys.cert.issuer.public_bytes(), integer(self.keys.cert.serial_number))
        signer_info = seq(
            integer(1),
            issuer_serial,
            alg(SHA256),
            ctx(0, attrs_body),
            alg(sig_alg, params=sig_alg == SHA256_RSA),
            octets(signature),
        )
        signed_data = seq(
            integer(3),
            set_of(alg(SHA256)),
            seq(oid(ID_TSTINFO), ctx(0, octets(tst))),
            *([ctx(0, b"".join(certs))] if cert_req else []),
            set_of(signer_info),
        )
        return seq(oid(ID_SIGNED_DATA), ctx(0, signed_data))

    def _sign(self, data: bytes) -> tuple[bytes, str]:
        key = self.keys.key
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256()), SHA256_RSA
        return key.sign(data, ec.ECDSA(hashes.SHA256())), ECDSA_SHA256

    # -- HTTP server
    def start(self) -> LocalTSA:
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                tsa.requests += 1
                if tsa.http_status != 200:
                    self.send_response(tsa.http_status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                out = tsa.respond(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/tsa"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalTSA:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
