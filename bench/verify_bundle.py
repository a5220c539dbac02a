"""verify_bundle bench: a bundle whose pages are all gzip-encoded against a plain one.

Builds two archives of N pages each as bench/export.py does, one served plain, the other with
Content-Encoding: gzip and as much more HTML per page as makes its records as large (so the two
bundles are about the same size), exports each once, then times a verify_bundle.py script on both
bundles, alternating runs and keeping each one's best, and prints the ratio against the 1.5x bar
with the machine's load.
Give --script to time another tree's verifier on the same bundles (before/after a change).

    PYTHONPATH=src python bench/verify_bundle.py [--pages 400] [--runs 3] [--dir DIR] [--script PATH]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import export as export_bench  # noqa: E402  (it puts tests/ on the path, for evidence)
import evidence  # noqa: E402

from evarchive import warcwriter  # noqa: E402

BAR = 1.5


def gzip_scale() -> float:
    """How much more HTML a gzip-encoded page needs for its WARC record to be as large as a plain
    page's: the plain one is deflated once by the WARC writer, the coded one by gzip -6 first."""
    rng = random.Random(2)
    html = evidence.html_body(rng, 200_000)

    def member(body: bytes) -> int:
        packer = warcwriter._deflate.compressobj(warcwriter.GZIP_LEVEL, zlib.DEFLATED, 31)
        return len(packer.compress(body) + packer.flush())

    return member(html) / member(gzip.compress(html, compresslevel=6, mtime=0))


def build(root: Path, pages: int, plain: bool) -> None:
    """bench/export.py's archive of ``pages`` pages; coded pages scaled to the same record size."""
    export_bench.build(root, pages, plain, 1.0 if plain else gzip_scale())


def bundle_for(root: Path, pages: int, plain: bool) -> Path:
    """The exported bundle of an archive of ``pages`` pages, built once and kept under ``root``."""
    kind = "plain" if plain else "gzip"
    archive, out = root / f"archive-{kind}", root / f"bundle-{kind}"
    if not out.exists():
        if not (archive / "catalogue.sqlite").exists():
            build(archive, pages, plain)
        subprocess.run([sys.executable, "-m", "evarchive.cli", "export", str(out), "--archive", str(archive),
                        "--quiet"], check=True)
    return out


def time_verifier(script: Path, bundle: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run: on a shared machine the CPU time is the steadier."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-I", "-S", str(script), str(bundle), "--quiet"],
                         capture_output=True, text=True)
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise SystemExit(f"verify_bundle failed on {bundle} (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    return took, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per bundle (the best counts)")
    parser.add_argument("--dir", type=Path, default=None, help="keep (or reuse) the archives and bundles here")
    parser.add_argument("--script", type=Path, default=ROOT / "src" / "evarchive" / "verify_bundle.py",
                        help="the verify_bundle.py to time (default: this tree's)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="evarchive-verify-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    bundles = {"plain": bundle_for(root, args.pages, True), "gzip": bundle_for(root, args.pages, False)}
    wall = {kind: float("inf") for kind in bundles}
    cpu = dict(wall)
    for _ in range(args.runs):  # alternate, so a burst of load elsewhere hits both alike
        for kind, bundle in bundles.items():
            took, used = time_verifier(args.script, bundle)
            wall[kind], cpu[kind] = min(wall[kind], took), min(cpu[kind], used)
    size = {kind: (bundle / "evidence.wacz").stat().st_size for kind, bundle in bundles.items()}
    print(f"script: {args.script}")
    for kind in bundles:
        print(f"{kind:5} bundle, {args.pages} pages, evidence.wacz {size[kind] / 2**20:.1f} MiB: verify_bundle "
              f"{wall[kind]:.2f} s wall, {cpu[kind]:.2f} s CPU (best of {args.runs})")
    for name, best in (("CPU", cpu), ("wall", wall)):
        ratio = best["gzip"] / best["plain"]
        print(f"all-gzip / plain, {name}: {ratio:.2f}x (bar {BAR}x): {'within' if ratio <= BAR else 'OVER'} the bar")
    print("load:", os.getloadavg(), subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
