"""TLS provenance: the certificate chain a server presented, and whether it validates.

When a capture runs with ``--insecure`` the handshake does not validate the certificate, so
evarchive asks again with a verifying handshake and records the verdict and the reason: a court
should learn *why* a certificate was not trusted, not only that the check was skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from typing import Any



def _peer_chain_pem(ssl_object: Any) -> list[str]:
    """The chain as validated (leaf to root) when it was, else as the server sent it.

    Python 3.11 has the chain accessors only on the private ``_sslobj`` (public from 3.13).
    """
    inner = getattr(ssl_object, "_sslobj", ssl_object)
    for name in ("get_verified_chain", "get_unverified_chain"):
        getter = getattr(inner, name, None)
        try:
            chain = getter() if getter is not None else None
        except (ssl.SSLError, ValueError):
            chain = None
        if chain:
            return [cert.public_bytes(ssl._ssl.ENCODING_PEM) for cert in chain]  # type: ignore[attr-defined]
    return []


def tls_info(stream: Any) -> dict[str, Any] | None:
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    chain_pem = _peer_chain_pem(ssl_object)
    leaf_der = ssl_object.getpeercert(binary_form=True)
    if not chain_pem and leaf_der:
        chain_pem.append(ssl.DER_cert_to_PEM_cert(leaf_der))
    cipher = ssl_object.cipher()
    return {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "chain_pem": chain_pem,
        "leaf_sha256": hashlib.sha256(leaf_der).hexdigest() if leaf_der else None,
    }




async def validate_by_handshake(address: str, port: int, hostname: str, ca_file: str | None,
                                leaf_sha256: str | None, timeout: float) -> tuple[bool, str]:
    """Would the server's certificate validate? Asked of OpenSSL with a second, verifying handshake.

    Used for captures made with ``--insecure``, whose own handshake skipped validation. OpenSSL
    is the judge here (not a stricter offline verifier) so the verdict matches what a normal
    capture would have said. The leaf is compared so a different certificate is not vouched for.
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    if ca_file is None:
        try:
            import certifi

            ctx.load_verify_locations(certifi.where())
        except ImportError:
            pass
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=ctx, server_hostname=hostname), timeout)
    except ssl.SSLCertVerificationError as exc:
        return False, f"certificate not valid: {exc.verify_message}"
    except (TimeoutError, OSError, ssl.SSLError) as exc:
        return False, f"could not re-check the certificate: {exc or type(exc).__name__}"
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        same = der is not None and hashlib.sha256(der).hexdigest() == leaf_sha256
    finally:
        writer.close()
    if not same:
        return False, "the server presented a different certificate on a second connection"
    return True, "valid: the same certificate validated in a second handshake"
