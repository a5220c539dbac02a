"""URL boundaries on the project's own corpus (tests/data/urls/): every hard case exactly, and
every URL shape in every prose context exactly. bench/url_extraction.py prints the same corpus
as recall and precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evarchive.citedurls import find_urls

DATA = Path(__file__).parent / "data" / "urls"


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line and not line.startswith("#")]


HARD = [json.loads(line) for line in _lines("cases.jsonl")]
SHAPES = _lines("shapes.txt")
CONTEXTS = [c.replace("\\n", "\n").replace("\\t", "\t") for c in _lines("contexts.txt")]


@pytest.mark.parametrize("case", HARD, ids=[c["why"] for c in HARD])
def test_hard_case(case: dict) -> None:
    found = find_urls(case["text"])
    assert [u.url for u in found] == case["urls"]
    assert all(case["text"][u.start:u.end] == u.url for u in found)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_shape_comes_back_exactly_in_every_context(shape: str) -> None:
    wrong = {}
    for context in CONTEXTS:
        text = context.replace("{url}", shape)
        found = [u.url for u in find_urls(text)]
        if found != [shape]:
            wrong[text] = found
    assert wrong == {}


def test_the_corpus_is_large_enough_to_mean_something() -> None:
    assert len(HARD) >= 75 and len(SHAPES) * len(CONTEXTS) >= 2500
    assert sum(1 for c in HARD if not c["urls"]) >= 12  # non-URLs, for precision
