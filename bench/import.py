"""Import a generated 10,000-citation report, then re-import it unchanged; print both with their targets.

    python bench/import.py [--citations 10000] [--skipped 0] [--keep DIR]

The report looks like the seed: prose paragraphs followed by one to three URLs on their own
lines, some URLs inline at the end of a sentence, about one citation in ten repeating an earlier
source. ``--skipped N`` adds N paragraphs citing what cannot be captured (a host IDNA refuses, a
host starting with a hyphen): the re-import must list them all again. Each figure is measured
twice: in-process (the library call a command makes) and as the whole ``evarchive import``
command in a fresh process (interpreter start-up included).
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evarchive.archive import Archive
from evarchive.reports import import_report

TARGET_IMPORT = 3.0
TARGET_REIMPORT = 1.0
WORDS = ("the ministry confirmed that expulsions of activists rose sharply in border regions during "
         "autumn while courts refused appeals and officials declined to comment on allegations").split()


def sentence(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 22))
    return " ".join(words).capitalize() + "."


def generate(path: Path, citations: int, seed: int = 7, skipped: int = 0) -> None:
    """Write a plain-text report with exactly ``citations`` citations (and ``skipped`` URLs that
    cannot be captured, one in each of as many extra paragraphs)."""
    rng = random.Random(seed)
    earlier: list[str] = []
    parts: list[str] = []
    made = 0

    def next_url() -> str:
        if earlier and rng.random() < 0.1:
            return rng.choice(earlier)
        url = f"https://news{rng.randint(1, 400)}.example.org/{rng.randint(2019, 2024)}/article-{len(earlier)}-" \
              f"{rng.choice(['arrests', 'deportations', 'appeals', 'sanctions'])}.html"
        earlier.append(url)
        return url

    while made < citations:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))
        if rng.random() < 0.2:
            parts.append(f"{paragraph} {next_url()}")
            made += 1
            continue
        parts.append(paragraph)
        for _ in range(min(rng.randint(1, 3), citations - made)):
            parts.append(next_url())
            made += 1
    for n in range(skipped):
        host = f"\u2603{n}.example.org" if n % 2 else f"-bad{n}.example.org"
        parts.append(f"{sentence(rng)} It cites https://{host}/page-{n} which cannot be captured.")
    path.write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def edit(source: Path, target: Path, seed: int = 11) -> None:
    """A later draft: some claims reworded, some paragraphs and URL lines dropped."""
    rng = random.Random(seed)
    parts = source.read_text(encoding="utf-8").split("\n\n")
    for i in rng.sample(range(len(parts)), len(parts) // 20):
        parts[i] = parts[i].replace("the", "a", 1) if not parts[i].startswith("https") else ""
    target.write_text("\n\n".join(p for p in parts if p), encoding="utf-8")


def timed_library(archive_dir: Path, report: Path) -> tuple[float, object]:
    archive = Archive.open(archive_dir)
    try:
        start = time.perf_counter()
        result = import_report(archive.db, report)
        return time.perf_counter() - start, result
    finally:
        archive.close()


def timed_command(archive_dir: Path, report: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evarchive.cli", "import", str(report), "--archive", str(archive_dir),
                    "--quiet"], check=True)
    return time.perf_counter() - start


def line(label: str, seconds: float, target: float) -> str:
    verdict = "ok" if seconds < target else "SLOWER THAN TARGET"
    return f"{label:<44} {seconds:7.3f} s   (target < {target:.0f} s: {verdict})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citations", type=int, default=10_000)
    parser.add_argument("--skipped", type=int, default=0, help="paragraphs citing an uncapturable URL")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="evarchive-bench-import-"))
    work.mkdir(parents=True, exist_ok=True)
    report = work / "generated-report.txt"
    generate(report, args.citations, skipped=args.skipped)

    first, result = timed_library(work / "archive-lib", report)
    again, unchanged = timed_library(work / "archive-lib", report)
    assert result.citations == args.citations and unchanged.status == "unchanged", (result, unchanged)
    assert len(result.skipped_urls) == args.skipped and unchanged.skipped_urls == result.skipped_urls
    edited = work / "generated-report-edited.txt"
    edit(report, edited)
    shutil.copy(edited, report)
    changed, new_version = timed_library(work / "archive-lib", report)
    assert new_version.status == "updated", new_version
    generate(report, args.citations, skipped=args.skipped)
    first_cmd = timed_command(work / "archive-cmd", report)
    again_cmd = timed_command(work / "archive-cmd", report)

    print(f"report: {report.stat().st_size / 1e6:.1f} MB, {result.claims} claims, {result.citations} citations, "
          f"{result.sources} distinct sources, {len(result.skipped_urls)} skipped URLs "
          f"(listed again by the unchanged re-import: {len(unchanged.skipped_urls)})")
    print(line("import (library call)", first, TARGET_IMPORT))
    print(line("re-import unchanged (library call)", again, TARGET_REIMPORT))
    changes = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in new_version.changes.items())
    print(f"{'import of an edited version (diff included)':<44} {changed:7.3f} s   (no target; {changes})")
    print(line("import (`evarchive import`, new process)", first_cmd, TARGET_IMPORT))
    print(line("re-import unchanged (`evarchive import`)", again_cmd, TARGET_REIMPORT))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if max(first, first_cmd) < TARGET_IMPORT and max(again, again_cmd) < TARGET_REIMPORT else 1


if __name__ == "__main__":
    sys.exit(main())
