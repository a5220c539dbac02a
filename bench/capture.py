"""Capture throughput and memory, against the issue's references.

Serves 1,000 article pages from 8 loopback addresses (127.0.0.2-127.0.0.9) with 50 ms latency
per response (tests/localserver.py in its own process), captures them with evarchive's default
settings and prints:

- pages/s, and the ratio of the run time to the limit N x latency / C, where C is the
  concurrency the defaults allow over 8 hosts (target: within 1.5x);
- the speed-up over GNU wget --warc-file, which is sequential (reference: about 52 s here;
  ``--wget`` measures it in the same run; target: at least 20x);
- peak RSS of the capture, and of capturing one 200 MB response (target: under 150 MB);
- that the WARCs pass ``warcio check`` and index with ``cdxj-indexer``.

Usage: python bench/capture.py [--pages 1000] [--wget] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOSTS = [f"127.0.0.{i}" for i in range(2, 10)]
LATENCY = 0.05
WGET_REFERENCE_S = 52.0

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from evarchive.archive import Archive
    from evarchive.capture import CaptureSettings, capture_urls
    urls = open(sys.argv[2]).read().split()
    settings = CaptureSettings()
    archive = Archive.open(sys.argv[1])
    start = time.perf_counter()
    outcomes = capture_urls(archive, urls, settings)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds,
        "ok": sum(o.status != "failed" for o in outcomes),
        "failed": sum(o.status == "failed" for o in outcomes),
        "concurrency": settings.concurrency, "per_host": settings.per_host,
        # the largest of this process and its capture workers
        "peak_rss_mb": max(resource.getrusage(who).ru_maxrss
                           for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024,
    }))
""")


def start_server(pages: int) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "localserver.py"), "--hosts", f"{HOSTS[0]}-{HOSTS[-1]}",
         "--latency", str(LATENCY), "--bench-articles", str(pages)],
        stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    return proc, info


def run_child(archive: Path, urls: list[str], workdir: Path) -> dict:
    url_file = workdir / "urls.txt"
    url_file.write_text("\n".join(urls))
    result = subprocess.run([sys.executable, "-c", CHILD, str(archive), str(url_file)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def run_wget(urls: list[str], workdir: Path) -> float:
    url_file = workdir / "wget-urls.txt"
    url_file.write_text("\n".join(urls))
    start = time.perf_counter()
    subprocess.run(["wget", "--quiet", "--warc-file", str(workdir / "wget"), "-O", "/dev/null",
                    "-i", str(url_file)], cwd=workdir, check=False)
    return time.perf_counter() - start


def third_party_checks(archive: Path) -> tuple[bool, bool]:
    bindir = Path(sys.executable).parent
    files = [str(p) for p in sorted((archive / "warcs").glob("*.warc.gz"))]
    warcio = subprocess.run([str(bindir / "warcio"), "check", *files], capture_output=True)
    cdxj = subprocess.run([str(bindir / "cdxj-indexer"), *files], capture_output=True)
    return warcio.returncode == 0, cdxj.returncode == 0 and bool(cdxj.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--wget", action="store_true", help="also time GNU wget --warc-file (about 52 s)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 200 MB response")
    args = parser.parse_args()

    server, info = start_server(args.pages)
    port = info["hosts"][HOSTS[0]]["http"]
    urls = [f"http://{HOSTS[n % len(HOSTS)]}:{port}/bench/article/{n}" for n in range(args.pages)]
    workdir = Path(tempfile.mkdtemp(prefix="evarchive-bench-"))
    try:
        result = run_child(workdir / "archive", urls, workdir)
        concurrency = min(result["concurrency"], result["per_host"] * len(HOSTS))
        limit = args.pages * LATENCY / concurrency
        ratio = result["seconds"] / limit
        wget_s = run_wget(urls, workdir) if args.wget and shutil.which("wget") else None
        reference = wget_s if wget_s is not None else WGET_REFERENCE_S
        warcio_ok, cdxj_ok = third_party_checks(workdir / "archive")
        print(f"pages captured          {result['ok']} of {args.pages} ({result['failed']} failed)")
        print(f"capture time            {result['seconds']:.2f} s   ({args.pages / result['seconds']:.0f} pages/s)")
        print(f"limit N x latency / C   {limit:.2f} s   (C = {concurrency}: {result['per_host']} per host x "
              f"{len(HOSTS)} hosts, total cap {result['concurrency']})")
        print(f"ratio to the limit      {ratio:.2f}x   (target: within 1.5x)")
        source = "measured now" if wget_s is not None else "reference from the issue"
        print(f"wget --warc-file        {reference:.1f} s ({source});  evarchive is "
              f"{reference / result['seconds']:.0f}x faster (target: at least 20x)")
        print(f"peak RSS, 1,000 pages   {result['peak_rss_mb']:.0f} MB (largest process)")
        print(f"warcio check            {'pass' if warcio_ok else 'FAIL'}")
        print(f"cdxj-indexer            {'pass' if cdxj_ok else 'FAIL'}")
        if not args.skip_large:
            size = 200 * 1024 * 1024
            large = run_child(workdir / "large", [f"http://{HOSTS[0]}:{port}/large?size={size}"], workdir)
            print(f"peak RSS, one 200 MB    {large['peak_rss_mb']:.0f} MB   (target: under 150 MB; "
                  f"{large['seconds']:.1f} s)")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
