"""How a clerk runs a bundle's own verifier, for every test that checks an exported bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_verifier(bundle: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``bundle``/verify_bundle.py from inside the bundle, isolated from evarchive and site-packages
    (``-I -S``): a clerk has neither, and a bundle's own files must not shadow the standard library."""
    return subprocess.run([sys.executable, "-I", "-S", str(bundle / "verify_bundle.py"), *args],
                          cwd=bundle, capture_output=True, text=True, timeout=timeout)
