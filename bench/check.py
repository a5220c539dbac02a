"""Link-check throughput and correctness, against the issue's references.

Serves 1,000 sources from 8 loopback addresses (127.0.0.2-127.0.0.9) with 50 ms latency per
response (tests/localserver.py in its own process): mostly article pages, plus the hostile
pages a link checker gets wrong (soft 404s, redirects to the home page, 404/410, login,
captcha and consent walls, a page that changes on every request). Captures them once (the
baselines), then times ``evarchive check`` over all of them with its default settings and
prints:

- sources/s, and the ratio of the run time to the limit N x latency / C, where C is the
  concurrency the defaults allow over 8 hosts (target: within 1.5x);
- every verdict against the expected one;
- the same URLs checked by LinkChecker (pip package ``linkchecker``, installed into its own
  virtual environment under bench/out/) through a local page that links them, what it calls
  each hostile page, and the speed-up (reference: about 123 s here; target: evarchive at
  least 20x faster, with correct verdicts).

Usage: python bench/check.py [--sources 1000] [--no-linkchecker]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
HOSTS = [f"127.0.0.{i}" for i in range(2, 10)]
LATENCY = 0.05
LINKCHECKER_REFERENCE_S = 123.0

# (path template, expected verdict, how many of the 1,000)
HOSTILE = [
    ("/soft404-site/report/{n}", "soft-404", 20),
    ("/redirect-home?from={n}", "gone", 20),
    ("/status/404?n={n}", "gone", 20),
    ("/status/410?n={n}", "gone", 10),
    ("/login-wall?n={n}", "blocked", 10),
    ("/captcha?n={n}", "blocked", 10),
    ("/consent?n={n}", "blocked", 10),
    ("/mutating?n={n}", "ok", 10),
]

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from evarchive.archive import Archive
    from evarchive.capture import CaptureSettings, capture_urls
    from evarchive import CheckSettings, check_sources, select_sources
    archive = Archive.open(sys.argv[1])
    urls = open(sys.argv[2]).read().split()
    if sys.argv[3] == "capture":
        capture_urls(archive, urls, CaptureSettings())
        print(json.dumps({}))
        sys.exit(0)
    settings = CheckSettings()
    sources = select_sources(archive, urls)
    times = []
    for _night in range(2):  # the first check after capture, then a nightly re-check
        start = time.perf_counter()
        report = check_sources(archive, sources, settings)
        times.append(time.perf_counter() - start)
    print(json.dumps({
        "seconds": times[0], "nightly_seconds": times[1],
        "verdicts": {r.url: r.verdict for r in report.results},
        "details": {r.url: r.detail for r in report.results},
        "concurrency": settings.network.concurrency, "per_host": settings.network.per_host,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))
""")


def start_server(articles: int) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "localserver.py"), "--hosts", f"{HOSTS[0]}-{HOSTS[-1]}",
         "--latency", str(LATENCY), "--bench-articles", str(articles)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def source_urls(info: dict, total: int) -> dict[str, str]:
    """URL -> expected verdict, spread evenly over the 8 hosts."""
    port = info["hosts"][HOSTS[0]]["http"]
    expected: dict[str, str] = {}
    paths = [(tpl.format(n=n), verdict) for tpl, verdict, count in HOSTILE for n in range(count)]
    articles = total - len(paths)
    paths += [(f"/bench/article/{n}", "ok") for n in range(articles)]
    for i, (path, verdict) in enumerate(paths):
        expected[f"http://{HOSTS[i % len(HOSTS)]}:{port}{path}"] = verdict
    return expected


def run_child(archive: Path, urls: list[str], mode: str, workdir: Path) -> dict:
    url_file = workdir / "urls.txt"
    url_file.write_text("\n".join(urls))
    result = subprocess.run([sys.executable, "-c", CHILD, str(archive), str(url_file), mode],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"evarchive {mode} failed")
    return json.loads(result.stdout)


def linkchecker_bin() -> Path:
    """LinkChecker in its own virtual environment (never in evarchive's)."""
    venv = OUT / "linkchecker-venv"
    exe = venv / "bin" / "linkchecker"
    if not exe.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "linkchecker"], check=True)
    return exe


def run_linkchecker(urls: list[str], workdir: Path) -> tuple[float, dict[str, bool]]:
    """LinkChecker over a local page linking every URL (--check-extern, since a
    file: page makes every http link external; --verbose to log valid URLs too)."""
    exe = linkchecker_bin()
    # Run as root, LinkChecker drops privileges to nobody: the page must be readable.
    lcdir = workdir / "linkchecker"
    lcdir.mkdir()
    for path in (workdir, lcdir):
        path.chmod(0o755)
    page = lcdir / "links.html"
    page.write_text("<html><body>\n" + "\n".join(f'<a href="{u}">{i}</a>' for i, u in enumerate(urls))
                    + "\n</body></html>\n")
    page.chmod(0o644)
    start = time.perf_counter()
    done = subprocess.run([str(exe), "--check-extern", "--verbose", "--no-status", "-o", "csv",
                           str(page)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    alive: dict[str, bool] = {}
    lines = [line for line in done.stdout.splitlines() if line and not line.startswith("#")]
    rows = csv.reader(lines, delimiter=";")
    header = next(rows, [])
    if "urlname" not in header:
        raise SystemExit(f"LinkChecker printed no CSV:\n{done.stderr[-2000:]}")
    url_col, valid_col = header.index("urlname"), header.index("valid")
    wanted = set(urls)
    for row in rows:
        if len(row) > valid_col and row[url_col] in wanted:
            alive[row[url_col]] = row[valid_col].strip().lower() in ("true", "1")
    return seconds, alive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--no-linkchecker", action="store_true", help="skip the LinkChecker run")
    args = parser.parse_args()
    server, info = start_server(args.sources)
    try:
        with tempfile.TemporaryDirectory(prefix="evarchive-bench-check-") as tmp:
            work = Path(tmp)
            expected = source_urls(info, args.sources)
            urls = list(expected)
            print(f"capturing {len(urls)} baselines ...", file=sys.stderr)
            run_child(work / "archive", urls, "capture", work)
            print("checking ...", file=sys.stderr)
            result = run_child(work / "archive", urls, "check", work)
            report(expected, result, None if args.no_linkchecker else run_linkchecker(urls, work))
    finally:
        server.terminate()
        server.wait()
    return 0


def report(expected: dict[str, str], result: dict, linkchecker: tuple[float, dict[str, bool]] | None) -> None:
    n, seconds, nightly = len(expected), result["seconds"], result["nightly_seconds"]
    concurrency = min(result["concurrency"], result["per_host"] * len(HOSTS))
    limit = n * LATENCY / concurrency
    wrong = {u: (v, result["verdicts"].get(u)) for u, v in expected.items() if result["verdicts"].get(u) != v}
    print(f"evarchive check: {n} sources on {len(HOSTS)} hosts, {LATENCY * 1000:.0f} ms latency")
    print(f"  limit N x latency / C = {n} x {LATENCY} / {concurrency} = {limit:.2f} s (target <= 1.5x)")
    print(f"  first check after capture: {seconds:.2f} s, {n / seconds:.0f} sources/s, "
          f"ratio {seconds / limit:.2f}x")
    print(f"  nightly re-check:          {nightly:.2f} s, {n / nightly:.0f} sources/s, "
          f"ratio {nightly / limit:.2f}x; peak RSS {result['peak_rss_mb']:.0f} MB")
    print(f"  verdicts: {dict(Counter(result['verdicts'].values()))}; "
          f"{n - len(wrong)}/{n} as expected")
    for url, (want, got) in list(wrong.items())[:10]:
        print(f"    WRONG {url}: expected {want}, got {got} ({result['details'].get(url)})")
    if linkchecker is None:
        print(f"LinkChecker: skipped (reference {LINKCHECKER_REFERENCE_S:.0f} s)")
        return
    lc_seconds, alive = linkchecker
    print(f"LinkChecker: {lc_seconds:.1f} s (reference {LINKCHECKER_REFERENCE_S:.0f} s); "
          f"evarchive is {lc_seconds / seconds:.0f}x faster on a first check, "
          f"{lc_seconds / nightly:.0f}x nightly (target >= 20x)")
    for tpl, verdict, _count in HOSTILE:
        stem = tpl.split("{")[0].rstrip("?=")
        group = [u for u in expected if stem in u]
        called_alive = sum(alive.get(u, False) for u in group)
        print(f"  {stem:24} evarchive: {verdict:9} LinkChecker: {called_alive}/{len(group)} valid")
    articles = [u for u, v in expected.items() if "/bench/article/" in u]
    print(f"  {'/bench/article/':24} evarchive: ok        LinkChecker: "
          f"{sum(alive.get(u, False) for u in articles)}/{len(articles)} valid")


if __name__ == "__main__":
    sys.exit(main())
