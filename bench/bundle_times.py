"""Court-bundle bench: export and verify_bundle.py times of one archive under two evarchive trees.

The reference is an older checkout's ``src`` (the code the bar is measured against); the
candidate is this tree's. Each run gets its own copy of an archive (the newer code migrates its
copy on first open, which is done before the clock starts), exports all of it, then the bundle's
own ``verify_bundle.py`` checks it. Wall and CPU time (children's user+sys) are printed for each
run, with the ratios and the 1.5x bar, and the load average before each run, in one run of the
script. The rows:

- reference: the reference tree exports the archive it built;
- candidate, legacy archive: this tree exports that same archive, made before pages carried
  their stored decoded-content hash (decoded.py), so it inflates every page as the reference
  does, and stores the values; "2nd export" exports that copy again, now with them;
- candidate, stored values: this tree exports an archive of the same pages built by this tree's
  builder (bench/export.py, which stores the values through the function a capture calls), as
  every archive captured by this version is.

The bar is read on the last row: it is what exporting any archive captured by this version
costs, and a legacy archive costs the same from its second export on (its first export pays
once for the pages its captures never decoded; its ratio is printed too).

Build the reference archive first, for example with the older tree's export bench:

    git worktree add --detach /tmp/ref 15fc3d8
    PYTHONPATH=/tmp/ref/src python bench/export.py --pages 2000 --dir /tmp/bundle-bench/archive
    python bench/bundle_times.py --archive /tmp/bundle-bench/archive --reference /tmp/ref/src

(``bench/export.py`` builds it with the code on PYTHONPATH, so an archive built by the reference
tree opens in both; the candidate's archive is built the same way, outside the clock, unless
``--stored-archive`` names one already built.)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BAR = 1.5


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr.decode("utf-8", "replace")[-2000:])
    return wall, cpu, done.returncode


def copy_archive(name: str, src: Path, archive: Path, work: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(src)}
    copy = work / f"{name}-archive"
    shutil.copytree(archive, copy)
    subprocess.run([sys.executable, "-m", "evarchive.cli", "sources", "--archive", str(copy), "--json"],
                   env=env, stdout=subprocess.DEVNULL, check=True)  # migrations, outside the clock
    subprocess.run([sys.executable, "-c", "import evarchive.cli, evarchive.export"], env=env,
                   check=True)  # bytecode cached, as in any installed copy
    return copy


def export_and_verify(name: str, src: Path, copy: Path, bundle: Path) -> dict[str, tuple[float, float, int]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    load = os.getloadavg()[0]
    export = timed([sys.executable, "-m", "evarchive.cli", "export", str(bundle), "--archive", str(copy),
                    "--quiet"], env)
    verify = timed([sys.executable, "-I", str(bundle / "verify_bundle.py"), "--quiet"],
                   {**env, "PYTHONPATH": ""}) if (bundle / "verify_bundle.py").exists() else (0.0, 0.0, -1)
    print(f"{name:>42}: load {load:4.1f}  export {export[0]:6.2f} s wall {export[1]:6.2f} s CPU (exit {export[2]})"
          f"   verify_bundle {verify[0]:6.2f} s wall {verify[1]:6.2f} s CPU (exit {verify[2]})")
    return {"export": export, "verify": verify}


def build_with(src: Path, pages: int, root: Path) -> None:
    """The same pages bench/export.py builds, written by ``src``'s code."""
    subprocess.run([sys.executable, str(ROOT / "bench" / "export.py"), "--pages", str(pages), "--dir", str(root),
                    "--build-only"], env={**os.environ, "PYTHONPATH": str(src)}, check=True)


def page_count(archive: Path) -> int:
    with sqlite3.connect(f"file:{archive / 'catalogue.sqlite'}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM captures").fetchone()[0])


def ratios(label: str, new: dict[str, tuple[float, float, int]], ref: dict[str, tuple[float, float, int]],
           bar_row: bool) -> None:
    for step in ("export", "verify"):
        wall = new[step][0] / ref[step][0] if ref[step][0] else float("nan")
        cpu = new[step][1] / ref[step][1] if ref[step][1] else float("nan")
        verdict = ("within" if wall <= BAR else "OVER") + f" the {BAR}x bar by wall" if bar_row else "information"
        print(f"{label + ', ' + step:>42}: candidate/reference {wall:.2f}x wall, {cpu:.2f}x CPU ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True, help="archive to export (left untouched)")
    parser.add_argument("--reference", type=Path, required=True, help="the older tree's src folder")
    parser.add_argument("--candidate", type=Path, default=ROOT / "src", help="this tree's src folder")
    parser.add_argument("--stored-archive", type=Path, default=None,
                        help="the same pages built by the candidate's bench/export.py (built here if not given)")
    args = parser.parse_args()
    size = sum(p.stat().st_size for p in (args.archive / "warcs").glob("*"))
    print(f"archive {args.archive}: {size / 2**20:.0f} MiB of WARC; cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="evarchive-bundle-times-") as tmp:
        work = Path(tmp)
        stored = args.stored_archive
        if stored is None:
            stored = work / "built-by-candidate"
            build_with(args.candidate, page_count(args.archive), stored)
        ref = export_and_verify("reference", args.reference,
                                copy_archive("reference", args.reference, args.archive, work), work / "ref-bundle")
        legacy = copy_archive("legacy", args.candidate, args.archive, work)
        first = export_and_verify("candidate, legacy archive", args.candidate, legacy, work / "legacy-bundle")
        again = export_and_verify("candidate, legacy archive, 2nd export", args.candidate, legacy,
                                  work / "legacy-bundle-2")
        new = export_and_verify("candidate, stored values", args.candidate,
                                copy_archive("stored", args.candidate, stored, work), work / "stored-bundle")
    ratios("legacy archive", first, ref, bar_row=False)
    ratios("legacy archive, 2nd export", again, ref, bar_row=False)
    ratios("stored values (the bar)", new, ref, bar_row=True)


if __name__ == "__main__":
    main()
