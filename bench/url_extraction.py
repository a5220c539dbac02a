"""Recall and precision of URL extraction on the project's own test corpus.

tests/data/urls/ holds URL shapes as reports cite them (shapes.txt), the prose that surrounds
them (contexts.txt: every shape in every context), and hand-written hard cases with the URLs a
careful reader takes from them (cases.jsonl, non-URLs included). Prints recall and precision on
http(s) URLs per set beside the target, and each miss, so a regression names its case.

    python bench/url_extraction.py [--misses N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from evarchive.citedurls import find_urls  # noqa: E402

DATA = ROOT / "tests" / "data" / "urls"
TARGET = 0.98


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


def embedded_cases() -> list[tuple[str, list[str]]]:
    contexts = [c.replace("\\n", "\n").replace("\\t", "\t") for c in _lines("contexts.txt")]
    return [(context.replace("{url}", shape), [shape]) for shape in _lines("shapes.txt") for context in contexts]


def hard_cases() -> list[tuple[str, list[str]]]:
    return [(case["text"], case["urls"]) for case in map(json.loads, _lines("cases.jsonl"))]


def score(cases: list[tuple[str, list[str]]]) -> tuple[float, float, list[tuple[str, list[str], list[str]]]]:
    """(recall, precision, misses): URLs compared as multisets, case by case."""
    hits = expected_total = found_total = 0
    misses = []
    for text, expected in cases:
        found = [u.url for u in find_urls(text)]
        hits += sum((Counter(expected) & Counter(found)).values())
        expected_total += len(expected)
        found_total += len(found)
        if Counter(found) != Counter(expected):
            misses.append((text, expected, found))
    recall = hits / expected_total if expected_total else 1.0
    precision = hits / found_total if found_total else 1.0
    return recall, precision, misses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--misses", type=int, default=10, help="misses to print per set")
    args = parser.parse_args()
    worst = 1.0
    for name, cases in (("shapes x contexts", embedded_cases()), ("hard cases", hard_cases())):
        recall, precision, misses = score(cases)
        worst = min(worst, recall, precision)
        print(f"{name:18} {len(cases):5} cases   recall {recall:.4f}   precision {precision:.4f}   "
              f"(target >= {TARGET})   {len(misses)} cases not exact")
        for text, expected, found in misses[: args.misses]:
            print(f"    {text!r}\n        expected {expected}\n        found    {found}")
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
