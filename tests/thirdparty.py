"""Third-party archive tools the suite uses as judges: their binaries, and pywb replaying a collection."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A console script installed with the test extras (pywb, cdxj-indexer, wacz, warcio)."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def pywb_collection(root: Path, *add_args: str) -> Iterator[str]:
    """pywb serving collection ``ev`` made from ``wb-manager add ev ADD_ARGS``; yields its base URL."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([tool("wb-manager"), "init", "ev"], cwd=root, check=True, capture_output=True)
    subprocess.run([tool("wb-manager"), "add", *add_args], cwd=root, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([tool("wayback"), "-b", "127.0.0.1", "-p", str(port)], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:  # poll until pywb answers: its start-up time varies with the machine
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/ev"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
