"""client.py, the HTTP client every network command shares, tested directly against the shared
loopback server: no cookie jar, per-origin pools sized by the per-host limit, --resolve,
proxy validation and redaction."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest

from evarchive.client import (
    ClientSettings,
    build_client,
    build_ssl_context,
    redact_proxy,
    redact_proxy_authorization,
    validate_proxy,
)
from evarchive.errors import InputError


def settings(**kw: Any) -> ClientSettings:
    return ClientSettings(user_agent="evarchive-test", **kw)


def get_all(client_settings: ClientSettings, urls: list[str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with build_client(client_settings) as client:
            return [await client.get(u) for u in urls]
    return asyncio.run(run())


def test_the_client_keeps_no_cookie_between_requests(local_server: Any) -> None:
    first, second = get_all(settings(), [local_server.url("/cookie/set?c=session%3Dabc"),
                                         local_server.url("/plain")])
    assert first.headers["set-cookie"] == "session=abc"
    assert second.status_code == 200
    sent = dict(local_server.last_exchange("/plain").request.headers)
    assert b"cookie" not in {k.lower() for k in sent}


def test_requests_name_evarchive_and_ask_for_codings_warc_readers_decode(local_server: Any) -> None:
    get_all(settings(), [local_server.url("/plain")])
    sent = {k.lower(): v for k, v in local_server.last_exchange("/plain").request.headers}
    assert (sent[b"user-agent"], sent[b"accept-encoding"]) == (b"evarchive-test", b"gzip, deflate")


def test_one_pool_per_origin_holds_at_most_per_host_connections(local_server: Any) -> None:
    local_server.set_latency(0.05)  # the server's delay makes the 12 requests overlap

    async def run() -> set[tuple[str, int]]:
        async with build_client(settings(per_host=2)) as client:
            await asyncio.gather(*(client.get(local_server.url(f"/plain?n={i}")) for i in range(12)))
        return {e.request.client for e in local_server.exchanges("/plain")}

    assert len(asyncio.run(run())) == 2  # overlapping requests, and never a third connection


def test_resolve_connects_elsewhere_and_keeps_the_host_name(local_server: Any) -> None:
    host, port = local_server.url("/").split("//")[1].rstrip("/").split(":")
    [response] = get_all(settings(resolve={"evidence.test": (host, int(port))}),
                         [f"http://evidence.test:{port}/plain"])
    assert response.status_code == 200
    assert local_server.last_exchange("/plain").request.host == "evidence.test"


def test_an_insecure_context_checks_nothing_and_a_normal_one_everything() -> None:
    assert build_ssl_context(True, None).verify_mode == ssl.CERT_NONE
    strict = build_ssl_context(False, None)
    assert (strict.verify_mode, strict.check_hostname) == (ssl.CERT_REQUIRED, True)


@pytest.mark.parametrize("proxy", ["ftp://proxy.example:21", "socks4://127.0.0.1:1080", "http://"])
def test_an_unusable_proxy_is_refused_before_anything_runs(proxy: str) -> None:
    with pytest.raises(InputError):
        validate_proxy(proxy)


@pytest.mark.parametrize("proxy", [None, "http://127.0.0.1:3128", "socks5://user:pw@127.0.0.1:1080"])
def test_usable_proxies_pass(proxy: str | None) -> None:
    validate_proxy(proxy)


def test_a_proxys_address_and_credentials_never_reach_a_message() -> None:
    proxy = "socks5://agent:s3cret@10.9.8.7:1080"
    message = ("connect to socks5://agent:s3cret@10.9.8.7:1080 failed: ('10.9.8.7', 1080) refused; "
               "agent tried s3cret at 10.9.8.7:1080")
    cleaned = redact_proxy(message, proxy)
    for secret in ("agent", "s3cret", "10.9.8.7", "1080"):
        assert secret not in cleaned
    assert cleaned.startswith("connect to <proxy> failed")


def test_proxy_credentials_are_withheld_from_a_request_head() -> None:
    head = b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic YWdlbnQ6czNjcmV0\r\n\r\n"
    assert redact_proxy_authorization(head) == (
        b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n"
        b"Proxy-Authorization: [withheld by evarchive: proxy credentials]\r\n\r\n")
