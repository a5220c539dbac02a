"""Court-bundle bench: export and verify_bundle.py times of one archive under two evarchive trees.

The reference is an older checkout's ``src`` (the code the bar is measured against); the
candidate is this tree's. Each tree gets its own copy of the archive (the newer code migrates its
copy on first open, which is done before the clock starts), exports all of it, then the bundle's
own ``verify_bundle.py`` checks it. Wall and CPU time (children's user+sys) are printed for both,
with the ratio and the 1.5x bar, and the load average before each run, in one run of the script.

Build the archive first, for example with the older tree's export bench:

    git worktree add --detach /tmp/ref 15fc3d8
    PYTHONPATH=/tmp/ref/src python bench/export.py --pages 2000 --dir /tmp/bundle-bench/archive
    python bench/bundle_times.py --archive /tmp/bundle-bench/archive --reference /tmp/ref/src

(``bench/export.py`` builds it with the code on PYTHONPATH, so an archive built by the reference
tree opens in both.)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
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


def run_tree(name: str, src: Path, archive: Path, work: Path) -> dict[str, tuple[float, float, int]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    copy = work / f"{name}-archive"
    shutil.copytree(archive, copy)
    subprocess.run([sys.executable, "-m", "evarchive.cli", "sources", "--archive", str(copy), "--json"],
                   env=env, stdout=subprocess.DEVNULL, check=True)  # migrations, outside the clock
    subprocess.run([sys.executable, "-c", "import evarchive.cli, evarchive.export"], env=env,
                   check=True)  # bytecode cached, as in any installed copy
    bundle = work / f"{name}-bundle"
    load = os.getloadavg()[0]
    export = timed([sys.executable, "-m", "evarchive.cli", "export", str(bundle), "--archive", str(copy),
                    "--quiet"], env)
    verify = timed([sys.executable, "-I", str(bundle / "verify_bundle.py"), "--quiet"],
                   {**env, "PYTHONPATH": ""}) if (bundle / "verify_bundle.py").exists() else (0.0, 0.0, -1)
    print(f"{name:>9}: load {load:4.1f}  export {export[0]:6.2f} s wall {export[1]:6.2f} s CPU (exit {export[2]})"
          f"   verify_bundle {verify[0]:6.2f} s wall {verify[1]:6.2f} s CPU (exit {verify[2]})")
    return {"export": export, "verify": verify}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, required=True, help="archive to export (left untouched)")
    parser.add_argument("--reference", type=Path, required=True, help="the older tree's src folder")
    parser.add_argument("--candidate", type=Path, default=ROOT / "src", help="this tree's src folder")
    args = parser.parse_args()
    size = sum(p.stat().st_size for p in (args.archive / "warcs").glob("*"))
    print(f"archive {args.archive}: {size / 2**20:.0f} MiB of WARC; cores {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="evarchive-bundle-times-") as tmp:
        ref = run_tree("reference", args.reference, args.archive, Path(tmp))
        new = run_tree("candidate", args.candidate, args.archive, Path(tmp))
    for step in ("export", "verify"):
        wall = new[step][0] / ref[step][0] if ref[step][0] else float("nan")
        cpu = new[step][1] / ref[step][1] if ref[step][1] else float("nan")
        verdict = "within" if wall <= BAR else "OVER"
        print(f"{step:>9}: candidate/reference {wall:.2f}x wall, {cpu:.2f}x CPU ({verdict} the {BAR}x bar by wall)")


if __name__ == "__main__":
    main()
