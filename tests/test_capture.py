"""Capture against the shared local server; every WARC is read back with warcio and checked."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fakes import NoSleep
from warcio.archiveiterator import ArchiveIterator

from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.catalogue import captures_of, find_source
from evarchive.errors import InputError
from evarchive.warcwriter import warc_digest


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    arch = Archive.open(tmp_path / "archive")
    yield arch
    arch.close()


@pytest.fixture
def sleeper() -> NoSleep:
    return NoSleep()


@pytest.fixture
def settings(local_server: Any, sleeper: NoSleep) -> CaptureSettings:
    return CaptureSettings(ca_file=local_server.ca_pem_path, sleep=sleeper, retries=2,
                           read_timeout=5, connect_timeout=5, total_timeout=20)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a WARC file, read by warcio, with digests checked."""
    records = []
    data = path.read_bytes()
    with open(path, "rb") as fh:
        iterator = ArchiveIterator(fh, check_digests="raise")
        for record in iterator:
            headers = dict(record.rec_headers.headers)
            record.content_stream().read()  # reading to the end makes warcio check the digests
            offset, length = iterator.get_record_offset(), iterator.get_record_length()
            # The whole block as stored (HTTP head included), from the gzip member itself.
            raw = gzip.decompress(data[offset: offset + length]).partition(b"\r\n\r\n")[2][:-4]
            records.append({"type": record.rec_type, "headers": headers, "raw": raw,
                            "offset": offset, "length": length})
    return records


def warcs(archive: Archive) -> list[Path]:
    return sorted(archive.warcs_dir.glob("*.warc.gz"))


def all_records(archive: Archive) -> list[dict[str, Any]]:
    return [r for path in warcs(archive) for r in read_records(path)]


def warcio_check(archive: Archive) -> None:
    for path in warcs(archive):
        result = subprocess.run([sys.executable, "-m", "warcio.cli", "check", "-v", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "digest pass" in result.stdout


def by_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


# --------------------------------------------------------------------------- faithful bytes

@pytest.mark.parametrize("path", ["/plain", "/gzip", "/chunked", "/chunked-gzip"])
def test_payload_digest_matches_bytes_served(archive, settings, local_server, path):
    url = local_server.url(path)
    [outcome] = capture_urls(archive, [url], settings)
    assert outcome.status == "captured"
    served = local_server.last_exchange(path)
    assert outcome.payload_sha256 == served.body_sha256
    records = all_records(archive)
    assert records[0]["type"] == "warcinfo"
    [response] = by_type(records, "response")
    assert response["headers"]["WARC-Payload-Digest"] == warc_digest(served.body_sha256)
    # The stored body is what the server sent as entity: gzip stays gzip, chunking is removed.
    head, _, body = response["raw"].partition(b"\r\n\r\n")
    assert hashlib.sha256(body).hexdigest() == served.body_sha256
    if "gzip" in path:
        assert body[:2] == b"\x1f\x8b"
        assert b"content-encoding: gzip" in head.lower()
    if "chunked" in path:
        assert b"\r\nTransfer-Encoding:" not in head
        assert b"X-Original-Transfer-Encoding: chunked" in head
    warcio_check(archive)


def test_request_record_holds_bytes_sent(archive, settings, local_server):
    url = local_server.url("/plain")
    capture_urls(archive, [url], settings)
    [request] = by_type(all_records(archive), "request")
    assert request["raw"] == local_server.last_exchange("/plain").raw_request
    assert b"User-Agent: evarchive/" in request["raw"]
    assert b"br" not in request["raw"].split(b"Accept-Encoding:")[1].split(b"\r\n")[0]


def test_records_share_date_and_link_together(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.url("/plain")], settings)
    records = all_records(archive)[1:]
    dates = {r["headers"]["WARC-Date"] for r in records}
    assert len(dates) == 1
    response = by_type(records, "response")[0]["headers"]
    request = by_type(records, "request")[0]["headers"]
    metadata = by_type(records, "metadata")[0]
    assert request["WARC-Concurrent-To"] == response["WARC-Record-ID"]
    assert response["WARC-Concurrent-To"] == request["WARC-Record-ID"]
    assert response["WARC-IP-Address"] == "127.0.0.1"
    assert metadata["headers"]["WARC-Refers-To"] == response["WARC-Record-ID"]
    assert metadata["headers"]["Content-Type"] == "application/warc-fields"
    assert b"software: evarchive/" in metadata["raw"]
    assert f"payload-sha256: {outcome.payload_sha256}".encode() in metadata["raw"]


def test_catalogue_row_points_at_each_record(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.url("/plain")], settings)
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["status"] == "ok" and capture["server_ip"] == "127.0.0.1"
    assert capture["http_version"] == "HTTP/1.1"
    assert capture["started_at"].endswith("Z") and capture["ended_at"] >= capture["started_at"]
    path = archive.warcs_dir / capture["warc_file"]
    data = path.read_bytes()
    on_disk = {r["headers"]["WARC-Record-ID"]: r for r in read_records(path)}
    for row in capture["records"]:
        member = data[row["offset"]: row["offset"] + row["length"]]
        assert hashlib.sha256(member).hexdigest() == row["member_sha256"]
        block = gzip.decompress(member).partition(b"\r\n\r\n")[2][:-4]
        assert hashlib.sha256(block).hexdigest() == row["block_sha256"]
        assert on_disk[row["record_id"]]["offset"] == row["offset"]


def test_duplicate_and_non_utf8_headers_kept_verbatim(archive, settings, local_server):
    capture_urls(archive, [local_server.url("/dup-headers")], settings)
    [response] = by_type(all_records(archive), "response")
    served = local_server.last_exchange("/dup-headers").response_head
    head = response["raw"].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert head == served
    assert head.count(b"Set-Cookie") >= 2
    warcio_check(archive)


# --------------------------------------------------------------------------- redirects

def test_each_redirect_hop_is_its_own_pair(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.url("/redirect/3")], settings)
    assert outcome.status == "captured" and outcome.final_url.endswith("/plain")
    records = all_records(archive)
    assert len(by_type(records, "request")) == 4 and len(by_type(records, "response")) == 4
    [capture] = captures_of(archive.db, outcome.source_id)
    chain = capture["redirect_chain"]
    assert [hop["status"] for hop in chain] == [302, 302, 302, 200]
    warcio_check(archive)


def test_redirect_loop_is_a_recorded_failure(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.url("/loop/a")], settings)
    assert outcome.status == "failed" and outcome.error_class == "RedirectLoop"
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["status"] == "failed" and "loop" in capture["error_message"]


def test_too_many_redirects(archive, settings, local_server):
    settings.max_redirects = 2
    [outcome] = capture_urls(archive, [local_server.url("/redirect/5")], settings)
    assert outcome.error_class == "TooManyRedirects"


# --------------------------------------------------------------------------- status and retries

@pytest.mark.parametrize("code", [404, 410])
def test_client_errors_fail_but_keep_the_answer(archive, settings, local_server, code):
    [outcome] = capture_urls(archive, [local_server.url(f"/status/{code}")], settings)
    assert outcome.status == "failed" and outcome.http_status == code
    assert outcome.error_class == "HTTPStatus"
    assert len(by_type(all_records(archive), "response")) == 1  # the 404 page is evidence too


def test_500_then_200_is_retried(archive, settings, local_server, sleeper):
    [outcome] = capture_urls(archive, [local_server.url("/flaky/a?fail=1&code=500")], settings)
    assert outcome.status == "captured" and outcome.http_status == 200
    assert len(sleeper.waits) == 1


def test_429_honours_retry_after(archive, settings, local_server, sleeper):
    [outcome] = capture_urls(archive, [local_server.url("/ratelimit/b?retry_after=7&times=1")],
                             settings)
    assert outcome.status == "captured"
    assert sleeper.waits == [7.0]


def test_retries_give_up(archive, settings, local_server, sleeper):
    [outcome] = capture_urls(archive, [local_server.url("/flaky/c?fail=10&code=503")], settings)
    assert outcome.status == "failed" and outcome.http_status == 503
    assert len(sleeper.waits) == settings.retries


def test_connection_refused_is_recorded(archive, settings, sleeper):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    [outcome] = capture_urls(archive, [f"http://127.0.0.1:{port}/"], settings)
    assert outcome.status == "failed" and outcome.error_class == "ConnectError"
    assert len(sleeper.waits) == settings.retries


def test_slow_response_times_out(archive, settings, local_server):
    settings.read_timeout = 0.3
    settings.retries = 0
    [outcome] = capture_urls(archive, [local_server.url("/slow?delay=3")], settings)
    assert outcome.status == "failed" and outcome.error_class == "ReadTimeout"
    assert outcome.error_message == "ReadTimeout: the server sent nothing within the read timeout"


def test_hanging_response_hits_total_timeout(archive, settings, local_server):
    settings.total_timeout = 0.5
    settings.retries = 0
    [outcome] = capture_urls(archive, [local_server.url("/hang")], settings)
    assert outcome.status == "failed"
    assert outcome.error_class == "TotalTimeout"


# --------------------------------------------------------------------------- bodies

def test_max_body_truncates_and_says_so(archive, settings, local_server):
    settings.max_body = 10_000
    [outcome] = capture_urls(archive, [local_server.url("/large?size=50000")], settings)
    assert outcome.status == "captured" and outcome.truncated and outcome.payload_size == 10_000
    [response] = by_type(all_records(archive), "response")
    assert response["headers"]["WARC-Truncated"] == "length"
    warcio_check(archive)


def test_large_streamed_body(archive, settings, local_server):
    import localserver

    size = 5_000_000
    [outcome] = capture_urls(archive, [local_server.url(f"/large?size={size}&chunked=1")], settings)
    assert outcome.payload_size == size
    assert outcome.payload_sha256 == localserver.large_body_sha256(size)
    warcio_check(archive)


# --------------------------------------------------------------------------- revisits

def test_identical_payload_becomes_revisit(archive, settings, local_server):
    url = local_server.url("/plain")
    [first] = capture_urls(archive, [url], settings)
    [second] = capture_urls(archive, [url], settings)
    assert first.status == "captured" and second.status == "revisited"
    records = all_records(archive)
    [revisit] = by_type(records, "revisit")
    [response] = by_type(records, "response")
    assert revisit["headers"]["WARC-Profile"].endswith("/revisit/identical-payload-digest")
    assert revisit["headers"]["WARC-Refers-To"] == response["headers"]["WARC-Record-ID"]
    assert revisit["headers"]["WARC-Refers-To-Target-URI"] == url
    assert revisit["headers"]["WARC-Refers-To-Date"] == response["headers"]["WARC-Date"]
    assert revisit["headers"]["WARC-Payload-Digest"] == response["headers"]["WARC-Payload-Digest"]
    caps = captures_of(archive.db, second.source_id)
    assert [c["kind"] for c in caps] == ["response", "revisit"]
    warcio_check(archive)


def test_changed_payload_is_a_new_response(archive, settings, local_server):
    url = local_server.url("/mutating")
    capture_urls(archive, [url], settings)
    capture_urls(archive, [url], settings)
    assert len(by_type(all_records(archive), "response")) == 2


# --------------------------------------------------------------------------- TLS

def test_https_records_certificate_chain(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.https_url("/plain")], settings)
    assert outcome.status == "captured"
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["tls_version"].startswith("TLS") and capture["tls_cipher"]
    assert capture["cert_validated"] == 1
    assert len(capture["cert_chain_pem"]) >= 2  # leaf and the test CA
    records = all_records(archive)
    [cert] = by_type(records, "resource")
    assert cert["headers"]["WARC-Target-URI"].startswith("urn:evarchive:tls-certificate-chain:")
    assert capture["cert_sha256"] in cert["headers"]["WARC-Target-URI"]
    assert cert["headers"]["Content-Type"] == "application/pem-certificate-chain"
    assert b"-----BEGIN CERTIFICATE-----" in cert["raw"]
    response = by_type(records, "response")[0]["headers"]
    assert cert["headers"]["WARC-Concurrent-To"] == response["WARC-Record-ID"]
    warcio_check(archive)


def test_resolve_maps_a_cited_host_to_the_local_server(archive, settings, local_server):
    url = "https://www.lrt.lt/naujienos/pasaulyje/2"
    local_server.set_route(url, body="<p>look-alike</p>")
    settings.resolve = {"www.lrt.lt": ("127.0.0.1", local_server.https_port)}
    [outcome] = capture_urls(archive, [url], settings)
    assert outcome.status == "captured"
    assert local_server.last_exchange().sni == "www.lrt.lt"


def test_untrusted_certificate_is_a_finding(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.untrusted_https_url("/plain")], settings)
    assert outcome.status == "failed" and outcome.error_class == "CertificateError"
    assert by_type(all_records(archive), "response") == []  # nothing from the untrusted server is evidence


def test_insecure_captures_and_says_so(archive, settings, local_server):
    settings.insecure = True
    [outcome] = capture_urls(archive, [local_server.untrusted_https_url("/plain")], settings)
    assert outcome.status == "captured"
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["insecure"] == 1 and capture["cert_validated"] == 0
    [metadata] = by_type(all_records(archive), "metadata")
    assert b"tls-validated: captured with --insecure; certificate not valid" in metadata["raw"]


# --------------------------------------------------------------------------- URLs

@pytest.mark.parametrize("url", ["file:///etc/passwd", "data:text/html,hi", "javascript:alert(1)",
                                 "ftp://example.org/x", "http://", "not a url", "http://exa mple/"])
def test_refused_urls_write_nothing(archive, settings, url):
    with pytest.raises(InputError):
        capture_urls(archive, [url], settings)
    assert warcs(archive) == []
    assert archive.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 0


def test_non_ascii_path_is_encoded_but_cited_form_kept(archive, settings, local_server):
    cited = local_server.url("/unicode/naujienos–pasaulyje/ä?q=ž")
    local_server.set_route("/unicode/naujienos%E2%80%93pasaulyje/%C3%A4", body="ok")
    [outcome] = capture_urls(archive, [cited], settings)
    assert outcome.status == "captured", outcome.error_message
    assert local_server.last_exchange().target == "/unicode/naujienos%E2%80%93pasaulyje/%C3%A4?q=%C5%BE"
    assert find_source(archive.db, cited)["url"] == cited


# --------------------------------------------------------------------------- the CLI

def run_cli(*args: str, archive: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evarchive.cli", *args, "--archive", str(archive)],
                          capture_output=True, text=True, timeout=120)


def test_cli_capture_json_and_exit_codes(tmp_path, local_server):
    ok = run_cli("capture", "--json", "--ca-file", local_server.ca_pem_path,
                 local_server.url("/plain"), archive=tmp_path / "a")
    assert ok.returncode == 0, ok.stderr
    [line] = ok.stdout.splitlines()
    assert json.loads(line)["status"] == "captured"
    bad = run_cli("capture", "--json", "--retries", "0", local_server.url("/status/404"),
                  archive=tmp_path / "a")
    assert bad.returncode == 1
    refused = run_cli("capture", "file:///etc/passwd", archive=tmp_path / "a")
    assert refused.returncode == 2 and "only http and https" in refused.stderr
    usage = run_cli("capture", "--concurrency", "zero", archive=tmp_path / "a")
    assert usage.returncode == 2
    shown = run_cli("show", "--json", local_server.url("/plain"), archive=tmp_path / "a")
    assert json.loads(shown.stdout)["captures"][0]["status"] == "ok"
    listed = run_cli("sources", "--json", archive=tmp_path / "a")
    assert len(json.loads(listed.stdout)) == 2


def test_cli_pending_captures_only_what_is_missing(tmp_path, local_server):
    arch = tmp_path / "a"
    run_cli("capture", "--retries", "0", local_server.url("/plain"), local_server.url("/status/500"),
            archive=arch)
    local_server.set_route("/status/500", body="fixed now")
    again = run_cli("capture", "--pending", "--json", archive=arch)
    assert again.returncode == 0, again.stderr
    urls = [json.loads(line)["url"] for line in again.stdout.splitlines()]
    assert urls == [local_server.url("/status/500")]


# --------------------------------------------------------------------------- proxies

def test_proxy_is_used_and_its_credentials_never_recorded(archive, settings, local_server, tmp_path):
    url = "https://www.lrt.lt/naujienos/proxy-test"
    local_server.set_route(url, body="<p>through a proxy</p>")
    settings.proxy = local_server.proxy_url.replace("http://", "http://researcher:s3cret-pw@")
    [outcome] = capture_urls(archive, [url], settings)
    assert outcome.status == "captured", outcome.error_message
    assert local_server.last_exchange().sni == "www.lrt.lt"
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["proxy_used"] == 1 and capture["server_ip"] is None
    [metadata] = by_type(all_records(archive), "metadata")
    assert b"proxy: http" in metadata["raw"]
    stored = b"".join(p.read_bytes() for p in archive.path.rglob("*") if p.is_file())
    for path in archive.warcs_dir.glob("*.warc.gz"):
        stored += gzip.decompress(path.read_bytes())
    assert b"s3cret-pw" not in stored and b"researcher" not in stored


def test_credentials_sent_to_an_http_proxy_stay_out_of_the_request_record(archive, settings, local_server):
    url = "http://www.lrt.lt/naujienos/plain-proxy-test"  # plain http: the proxy gets the request itself
    local_server.set_route(url, body="<p>through a proxy</p>")
    settings.proxy = local_server.proxy_url.replace("http://", "http://researcher:s3cret-pw@")
    [outcome] = capture_urls(archive, [url], settings)
    assert outcome.status == "captured", outcome.error_message
    assert b"Proxy-Authorization: Basic " in local_server.last_exchange().raw_request  # it was sent
    [request] = by_type(all_records(archive), "request")
    assert b"\r\nProxy-Authorization: [withheld by evarchive: proxy credentials]\r\n" in request["raw"]
    assert base64.b64encode(b"researcher:s3cret-pw") not in request["raw"]
    warcio_check(archive)


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_a_refusing_proxy_is_named_nowhere(tmp_path, local_server, scheme):
    import socket

    with socket.socket() as sock:  # nothing listens there
        sock.bind(("127.0.0.23", 0))
        port = sock.getsockname()[1]
    proxy = f"{scheme}://researcher:s3cret-pw@127.0.0.23:{port}"
    arch = tmp_path / "a"
    url = local_server.url("/plain")
    captured = run_cli("capture", url, "--json", "--retries", "0", "--proxy", proxy, archive=arch)
    assert captured.returncode == 1, captured.stderr
    [outcome] = [json.loads(line) for line in captured.stdout.splitlines()]
    assert (outcome["error_class"], outcome["error_message"]) == (
        "ConnectError", "All connection attempts failed; [Errno 111] Connect call failed (<proxy>)")
    checked = run_cli("check", url, "--json", "--retries", "0", "--proxy", proxy, archive=arch)
    [check] = [json.loads(line) for line in checked.stdout.splitlines()]
    assert (check["verdict"], check["detail"]) == ("unreachable", "refused"), checked.stderr
    assert "<proxy>" in check["reason"]
    stored = b"".join(p.read_bytes() for p in arch.rglob("*") if p.is_file())  # catalogue, its WAL, WARCs
    stored += b"".join(gzip.decompress(p.read_bytes()) for p in arch.rglob("*.warc.gz"))
    said = (captured.stdout + captured.stderr + checked.stdout + checked.stderr).encode()
    # (the port alone is a number that may occur anywhere; its forms next to an address are searched)
    for secret in (b"127.0.0.23", f":{port}".encode(), f", {port})".encode(), b"s3cret-pw", b"researcher"):
        assert secret not in stored and secret not in said, secret


def test_unsupported_proxy_scheme_is_a_usage_error(archive, settings, local_server):
    settings.proxy = "ftp://127.0.0.1:21"
    with pytest.raises(InputError, match="unsupported proxy"):
        capture_urls(archive, [local_server.url("/plain")], settings)
    assert archive.db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] == 0


def test_internationalised_host_is_sent_as_idna(archive, settings, local_server):
    cited = "https://bücher.example/straße"
    local_server.set_route("https://xn--bcher-kva.example/stra%C3%9Fe", body="<p>IDN</p>")
    settings.resolve = {"bücher.example": ("127.0.0.1", local_server.https_port)}
    [outcome] = capture_urls(archive, [cited], settings)
    assert outcome.status == "captured", outcome.error_message
    exchange = local_server.last_exchange()
    assert exchange.sni == "xn--bcher-kva.example" and exchange.target == "/stra%C3%9Fe"
    assert find_source(archive.db, cited)["url"] == cited
    [metadata] = by_type(all_records(archive), "metadata")
    assert f"cited-url: {cited}".encode() in metadata["raw"]


def test_redirect_to_a_refused_scheme_fails_clearly(archive, settings, local_server):
    [outcome] = capture_urls(archive, [local_server.url("/redirect-to?url=ftp://example.org/x")], settings)
    assert outcome.status == "failed" and outcome.error_class == "RefusedRedirect"
    assert "only http and https" in outcome.error_message


def _refused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("target", "error_class"), [
    ("data:text/html,hi", "RefusedRedirect"), ("javascript:alert(1)", "RefusedRedirect"),
    ("ftp://example.org/x", "RefusedRedirect"), ("http://[bad/x", "RefusedRedirect"),
    ("http://127.0.0.1:{port}/gone", "ConnectError")])
def test_a_failed_redirect_keeps_the_hops_received_before_it(archive, settings, local_server, target, error_class):
    from urllib.parse import quote

    settings.retries = 0
    target = target.format(port=_refused_port())
    hop2 = local_server.url("/redirect-to?url=" + quote(target, safe=""))
    local_server.set_route("/moved-then-refused", status=301, location=hop2, body="")
    cited = local_server.url("/moved-then-refused")
    [outcome] = capture_urls(archive, [cited], settings)
    assert (outcome.status, outcome.error_class, outcome.http_status) == ("failed", error_class, 302)
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["redirect_chain"] == [{"url": cited, "status": 301, "location": hop2},
                                           {"url": hop2, "status": 302, "location": target}]
    records = all_records(archive)
    assert [(r["type"], r["headers"]["WARC-Target-URI"]) for r in records[1:]] == [
        ("request", cited), ("response", cited), ("request", hop2), ("response", hop2), ("metadata", cited)]
    assert by_type(records, "response")[1]["raw"].startswith(b"HTTP/1.1 302 ")
    stored = {r["record_id"] for r in archive.db.query("SELECT record_id FROM capture_records WHERE capture_id = ?",
                                                       [capture["id"]])}
    assert stored == {r["headers"]["WARC-Record-ID"] for r in records[1:]}
    warcio_check(archive)


# --------------------------------------------------------------------------- worker processes

def test_large_run_spreads_over_worker_processes(tmp_path, multi_host_server):
    # Through the CLI: the pytest process runs the server in a thread, and workers are only
    # forked from a process without other threads.
    hosts = multi_host_server.hosts
    urls = [multi_host_server.url(f"/plain?n={n}", host_ip=hosts[n % len(hosts)]) for n in range(240)]
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(urls))
    result = run_cli("capture", "--workers", "2", "--json", "--from", str(url_file), archive=tmp_path / "a")
    assert result.returncode == 0, result.stderr
    reported = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["url"] for r in reported) == sorted(urls)
    assert {r["status"] for r in reported} == {"captured"}
    arch = Archive.open(tmp_path / "a")
    try:
        files = list(arch.db.query("SELECT name, pid, status FROM warc_files"))
        assert len(files) == 2 and len({f["pid"] for f in files}) == 2
        assert {f["status"] for f in files} == {"closed"}
        # Whole hosts go to one worker, so the per-host limit holds across processes.
        for host in hosts:
            used = {r["warc_file"] for r in arch.db.query(
                "SELECT warc_file FROM captures WHERE url_requested LIKE ?", [f"http://{host}:%"])}
            assert len(used) == 1
        warcio_check(arch)
    finally:
        arch.close()


def test_small_runs_stay_in_one_process(archive, settings, local_server):
    settings.workers = 2
    capture_urls(archive, [local_server.url(f"/plain?n={n}") for n in range(20)], settings)
    assert archive.db.execute("SELECT COUNT(*) FROM warc_files").fetchone()[0] == 1


def test_files_rotate_at_the_size_limit_and_captures_never_span_two(archive, settings, local_server):
    settings.max_warc_size = 30_000
    urls = [local_server.url(f"/large?size=12000&n={n}") for n in range(8)]
    capture_urls(archive, urls, settings)
    files = list(archive.db.query("SELECT * FROM warc_files ORDER BY id"))
    assert len(files) >= 3 and {f["status"] for f in files} == {"closed"}
    for f in files:
        path = archive.warcs_dir / f["name"]
        assert f["size"] == path.stat().st_size
        assert f["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert read_records(path)[0]["type"] == "warcinfo"
    spans = archive.db.execute(
        "SELECT capture_id FROM capture_records GROUP BY capture_id HAVING COUNT(DISTINCT warc_file) > 1")
    assert spans.fetchall() == []
    warcio_check(archive)


def test_socks5_proxy_resolves_names_remotely(archive, settings, local_server):
    from socks5 import Socks5Proxy

    url = "https://www.lrt.lt/naujienos/socks"
    local_server.set_route(url, body="<p>through socks</p>")
    routes = {("www.lrt.lt", 443): ("127.0.0.1", local_server.https_port)}
    with Socks5Proxy(routes, credentials=("researcher", "s3cret-pw")) as proxy:
        settings.proxy = proxy.url
        [outcome] = capture_urls(archive, [url], settings)
        assert outcome.status == "captured", outcome.error_message
        assert proxy.requests == [("www.lrt.lt", 443)]  # the name, not an address: no local DNS
    [capture] = captures_of(archive.db, outcome.source_id)
    assert capture["proxy_used"] == 1 and capture["server_ip"] is None
    [metadata] = by_type(all_records(archive), "metadata")
    assert b"proxy: socks5" in metadata["raw"] and b"s3cret-pw" not in metadata["raw"]


def test_the_next_request_to_a_host_leaves_before_the_last_page_is_recorded(
        archive: Archive, settings: CaptureSettings, local_server: Any) -> None:
    """A host's slot bounds requests in flight; writing and judging a page is local work. The
    next request goes out first, so the host's latency and the recording overlap."""
    import asyncio

    from evarchive.capture import CaptureRun

    events: list[tuple[str, str]] = []

    class WatchedRun(CaptureRun):
        async def fetch(self, fetcher: Any, url: str) -> Any:
            events.append(("fetch", url))
            return await super().fetch(fetcher, url)

        def _record(self, fetched: Any) -> Any:
            events.append(("record", fetched.url))
            return super()._record(fetched)

    a, b, c = (local_server.url(f"/article/{name}") for name in "abc")
    one_at_a_time = CaptureSettings(**{**settings.__dict__, "per_host": 1, "concurrency": 1})
    outcomes = asyncio.run(WatchedRun(archive, one_at_a_time).run([a, b, c]))
    assert [o.status for o in outcomes] == ["captured"] * 3
    assert events == [("fetch", a), ("fetch", b), ("record", a), ("fetch", c), ("record", b), ("record", c)]


def test_ctrl_c_ends_a_capture_with_exit_130_and_says_so(local_server: Any, tmp_path: Path) -> None:
    """A script or cron job must never read an interrupted capture as a success: exit 130, the
    documented message, and an archive that verifies."""
    import signal

    archive_dir = tmp_path / "archive"
    proc = subprocess.Popen(
        [sys.executable, "-m", "evarchive.cli", "capture", "--archive", str(archive_dir), "--retries", "0",
         "--read-timeout", "120", "--timeout", "120", local_server.url("/plain"), local_server.url("/hang")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    try:
        local_server.wait_for_exchange("/hang", finished=False, timeout=30)  # at work
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "evarchive: interrupted; the archive is consistent, run the command again to finish" in stderr
    assert "Traceback" not in stderr
    verify = subprocess.run([sys.executable, "-m", "evarchive.cli", "verify", "--deep", "--archive", str(archive_dir)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
