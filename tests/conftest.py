"""Shared pytest fixtures for evarchive.

Local server (see tests/localserver.py):

* ``local_ca``          session ``trustme.CA`` trusted by the servers below
* ``local_server``      session ``LocalServer`` on 127.0.0.1
* ``multi_host_server`` session ``LocalServer`` on 127.0.0.1-127.0.0.9
* ``local_ssl_context`` session client ``ssl.SSLContext`` trusting ``local_ca``

Any test that uses ``local_server`` or ``multi_host_server`` (directly or via
another fixture) gets it reset first (dynamic routes, counters, latency, log)
and fails at teardown if a server-side handler crashed during the test.

Add new fixtures below the local-server section, grouped by concern.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from localserver import DEFAULT_HOST, EXTRA_HOSTS, LocalServer

# --------------------------------------------------------------------------
# Local server
# --------------------------------------------------------------------------

_SERVER_FIXTURES = ("local_server", "multi_host_server")


@pytest.fixture(scope="session")
def local_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def local_ssl_context(local_ca: trustme.CA) -> ssl.SSLContext:
    # Verifies chain and hostname, and trusts local_ca only (not the system store).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    local_ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="session")
def local_server(local_ca: trustme.CA) -> Iterator[LocalServer]:
    with LocalServer(ca=local_ca) as server:
        yield server


@pytest.fixture(scope="session")
def multi_host_server(local_ca: trustme.CA) -> Iterator[LocalServer]:
    server = LocalServer((DEFAULT_HOST, *EXTRA_HOSTS), ca=local_ca)
    try:
        server.start()
    except OSError as exc:  # e.g. macOS only routes 127.0.0.1 by default
        pytest.skip(f"cannot listen on {EXTRA_HOSTS[0]}..{EXTRA_HOSTS[-1]}: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _reset_local_servers(request: pytest.FixtureRequest) -> Iterator[None]:
    # Only touches servers the test asked for, so tests without a server
    # never start one.
    servers = [request.getfixturevalue(n) for n in _SERVER_FIXTURES if n in request.fixturenames]
    for server in servers:
        server.reset()
    yield
    for server in servers:
        server.raise_errors()


# --------------------------------------------------------------------------
# Small filesystems (disk-full cases)
# --------------------------------------------------------------------------


class SmallFilesystem:
    """A real tmpfs of a few MB: writes past its size fail with ENOSPC, as on a full disk."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mount(self, megabytes: int) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(self.path)],
                       check=True, capture_output=True)

    def resize(self, megabytes: int) -> None:
        """Give the filesystem more room (what freeing space does), keeping every byte on it."""
        subprocess.run(["mount", "-o", f"remount,size={megabytes}m", str(self.path)],
                       check=True, capture_output=True)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFilesystem]:
    """A 30 MB tmpfs at ``small_fs.path``, unmounted after the test (needs root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("disk-full tests need root to mount a tmpfs, and CI runs them")
        pytest.skip("mounting a tmpfs needs root")
    fs = SmallFilesystem(tmp_path / "small-fs")
    fs.path.mkdir()
    fs.mount(30)
    try:
        yield fs
    finally:
        fs.unmount()


# --------------------------------------------------------------------------
# Capture engine
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _http_engine_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # With Chromium installed, `capture` would default to the browser engine; the tests of the
    # HTTP engine (everything outside test_browser.py) pin it. Browser tests pass --engine browser.
    monkeypatch.setenv("EVARCHIVE_ENGINE", "http")


# --------------------------------------------------------------------------
# Exported bundles
# --------------------------------------------------------------------------


@pytest.fixture
def copy(bundle: Path, tmp_path: Path) -> Path:
    """A fresh copy of the requesting module's ``bundle`` fixture, for one test to tamper with
    (links copied as links: a hostile bundle's symlinks must reach the verifier as they are)."""
    target = tmp_path / "bundle"
    shutil.copytree(bundle, target, symlinks=True)
    return target
