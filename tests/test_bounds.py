"""Bounded work on hostile input: huge pages, decompression bombs, deep nesting.

Each case is served by the shared local server or built as a real file, and
the commands run as real processes whose peak memory is read from the kernel
(``os.wait4``), so "bounded" is measured, not assumed.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes import NoSleep
from localserver import (
    _WORDS,
    LocalServer,
    article_page,
    gzip_bomb_response,
    one_line_page_response,
)

from evarchive import textdiff
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.textdiff import PageText

RSS_LIMIT_MB = 300


@dataclass
class Finished:
    code: int
    out: str
    err: str
    seconds: float
    peak_mb: float


# The CLI, run so that it reports its own peak RSS on the way out. Why not the kernel's
# ru_maxrss for the child: it starts from the parent's peak at fork (so a large pytest
# process inflates it), where VmHWM belongs to the memory the program got at exec.
_MEASURED_CLI = """
import atexit, runpy, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("\\n" + PEAK + line.split()[1] + "\\n")
PEAK = "peak-rss-kb: "
atexit.register(_peak)
sys.argv = ["evarchive", *sys.argv[1:]]
runpy.run_module("evarchive.cli", run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], tmp_path: Path, deadline: float) -> Finished:
    """Run the evarchive CLI with ARGS and return its exit code, output, wall
    time and peak RSS."""
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _MEASURED_CLI, *args], stdout=out, stderr=err)
        watchdog = threading.Timer(deadline, proc.kill)  # a hang fails the test, never the suite
        watchdog.start()
        try:
            proc.wait()
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - started
    err_text, _, peak = err_path.read_text().rpartition("\npeak-rss-kb: ")
    assert peak, f"no peak reported (killed?): exit {proc.returncode}, {err_text}"
    return Finished(proc.returncode, out_path.read_text(), err_text, seconds, int(peak) / 1024)


def capture(archive_dir: Path, server: LocalServer, url: str) -> None:
    archive = Archive.open(archive_dir)
    try:
        outcomes = capture_urls(archive, [url], CaptureSettings(sleep=NoSleep(), ca_file=server.ca_pem_path))
        assert [o.status for o in outcomes] == ["captured"], outcomes
    finally:
        archive.close()


def check_json(finished: Finished) -> dict:
    lines = [json.loads(line) for line in finished.out.splitlines() if line.startswith("{")]
    assert len(lines) == 1, (finished.out, finished.err)
    return lines[0]


# ------------------------------------------------------------------ check: the bar

@pytest.mark.slow
def test_check_of_a_100_mb_single_line_page_is_bounded(local_server: LocalServer, tmp_path: Path) -> None:
    """Captured as 100 MB on one line, edited at its start: the check reads a bounded part of
    each side, ends well within --timeout under 300 MB, and says it could not compare it all."""
    url, archive_dir, size = local_server.url("/one-line/report"), tmp_path / "archive", 100_000_000
    local_server.set_route("/one-line/report", handler=lambda _r: one_line_page_response(size, "1"))
    capture(archive_dir, local_server, url)
    local_server.set_route("/one-line/report", handler=lambda _r: one_line_page_response(size, "2"))
    timeout = 20
    done = run_measured(["check", url, "--archive", str(archive_dir), "--json", "--timeout", str(timeout),
                         "--retries", "0"], tmp_path, deadline=120)
    assert done.code == 1, done.err  # newly drifted: a finding
    result = check_json(done)
    assert (result["verdict"], result["detail"]) == ("drifted", "too-large"), result["reason"]
    assert "too large to compare in full" in result["reason"]
    assert "the live page (its body goes on beyond the bytes fetched)" in result["reason"]
    assert "the capture (over 4 MiB of HTML)" in result["reason"]
    print(f"check: {done.seconds:.1f} s, peak RSS {done.peak_mb:.0f} MB")
    assert done.seconds < timeout, done.seconds
    assert done.peak_mb < RSS_LIMIT_MB, done.peak_mb


@pytest.mark.slow
def test_check_and_diff_of_a_1_gib_gzip_bomb_are_bounded(local_server: LocalServer, tmp_path: Path) -> None:
    """An article replaced by 1.5 MB of gzip that inflates to 1 GiB: the check inflates at most
    4 MiB of it and says so; `diff` on the evidence it kept is bounded too."""
    url, archive_dir = local_server.url("/bomb/article"), tmp_path / "archive"
    local_server.set_route("/bomb/article", body=article_page("bomb", False, 1))
    capture(archive_dir, local_server, url)
    local_server.set_route("/bomb/article", handler=lambda _r: gzip_bomb_response(1 << 30))
    timeout = 20
    done = run_measured(["check", url, "--archive", str(archive_dir), "--json", "--timeout", str(timeout),
                         "--retries", "0"], tmp_path, deadline=120)
    assert done.code == 1, done.err
    result = check_json(done)
    assert (result["verdict"], result["detail"]) == ("drifted", "text"), result["reason"]
    assert "only the start of the live page (its gzip body inflates past 4 MiB) was compared" \
        in result["reason"]
    print(f"check: {done.seconds:.1f} s, peak RSS {done.peak_mb:.0f} MB")
    assert done.seconds < timeout, done.seconds
    assert done.peak_mb < RSS_LIMIT_MB, done.peak_mb

    shown = run_measured(["diff", url, "--archive", str(archive_dir), "--json"], tmp_path, deadline=120)
    assert shown.code == 0, shown.err
    data = json.loads(shown.out)
    assert data["stored"] and data["changes"]
    assert data["new"].endswith("(only its start is compared: over 4 MiB of HTML)")
    print(f"diff: {shown.seconds:.1f} s, peak RSS {shown.peak_mb:.0f} MB")
    assert shown.seconds < timeout, shown.seconds
    assert shown.peak_mb < RSS_LIMIT_MB, shown.peak_mb


# ------------------------------------------------------------------ the comparison itself

def _prose(seed: str, size: int) -> list[str]:
    """Paragraphs of about ``size`` bytes in all, from a 60-word vocabulary: the
    repeated words on which difflib's matcher is quadratic."""
    rng = random.Random(seed)
    paragraphs, total = [], 0
    while total < size:
        para = " ".join(rng.choice(_WORDS) for _ in range(120))
        paragraphs.append(para)
        total += len(para)
    return paragraphs


def test_a_drifted_1_mb_page_is_compared_and_diffed_quickly() -> None:
    old = _prose("old", 1 << 20)
    new = list(old)
    new[len(new) // 2] = "Correction: the figures in this paragraph were wrong and have been replaced."
    one_line_old = PageText("t", "h", (" ".join(old),))
    one_line_new = PageText("t", "h", (" ".join(new),))
    started = time.monotonic()
    sim = textdiff.similarity(one_line_old, one_line_new)
    vol = textdiff.stable_similarity(one_line_old, one_line_new, one_line_new)
    shown = textdiff.render_diff(PageText("t", "h", tuple(old)), PageText("t", "h", tuple(new)))
    patch = textdiff.unified(PageText("t", "h", tuple(old)), PageText("t", "h", tuple(new)))
    word_level = textdiff.render_diff(one_line_old, one_line_new)
    elapsed = time.monotonic() - started
    assert 0.99 < sim < 1.0 and vol.volatile_share == 0 and vol.similarity == pytest.approx(sim)
    assert shown.count("\n") == 0 and "{+Correction: the figures" in shown
    hunk = patch.splitlines()[2:]
    assert [line[0] for line in hunk if line[0] in "+-"] == ["-", "+"]
    assert "{+Correction:" in word_level
    assert elapsed < 15, elapsed  # difflib took over 300 s on such a page


def test_alignment_is_exact_within_budget_and_coarse_but_correct_beyond() -> None:
    rng = random.Random(7)
    for budget in (textdiff.DIFF_BUDGET, 10):
        for _ in range(200):
            a = [rng.choice("abcdefgh") for _ in range(rng.randint(0, 30))]
            b = [rng.choice("abcdefgh") for _ in range(rng.randint(0, 30))]
            ops = textdiff.opcodes(a, b, budget)
            at_a = at_b = 0
            for op, i1, i2, j1, j2 in ops:  # contiguous, covering, equal where it says so
                assert (i1, j1) == (at_a, at_b)
                if op == "equal":
                    assert a[i1:i2] == b[j1:j2]
                at_a, at_b = i2, j2
            assert (at_a, at_b) == (len(a), len(b))


def test_main_text_is_capped_and_says_so() -> None:
    huge = "<html><body><main><p>" + "word " * (1 << 20) + "</p></main></body></html>"
    page = textdiff.extract(huge)
    assert page.cut == "over 4 MiB of HTML"
    assert len(page.text) <= textdiff.MAX_TEXT_CHARS
    long_text = "<html><body><main><p>" + "word " * 300_000 + "</p></main></body></html>"
    assert textdiff.extract(long_text).cut == "over 1 MiB of main text"
    assert textdiff.extract("<html><body><p>short</p></body></html>").cut == ""


def test_deeply_nested_markup_is_read_to_a_bounded_depth() -> None:
    """100,000 unclosed <div>s (1 MB) kept the HTML5 parser busy for minutes."""
    started = time.monotonic()
    page = textdiff.extract("<html><body><main>" + '<div class="menu">word ' * 100_000 + "</main></body></html>")
    assert page.cut == "elements nested too deep to read in full"
    unclosed_paragraphs = textdiff.extract("<html><body><main>" + "<p>word " * 50_000 + "</main></body></html>")
    assert unclosed_paragraphs.cut == "" and len(unclosed_paragraphs.paragraphs) == 50_000
    assert time.monotonic() - started < 10


def test_a_flood_of_elements_is_read_to_a_bounded_count() -> None:
    """A million <br>s (4 MB) took 12 s and 530 MB; a million <p>s 600 MB."""
    started = time.monotonic()
    page = textdiff.extract("<html><body><main>" + "<p>a<br>" * 1_000_000 + "</main></body></html>")
    assert page.cut == "over 100,000 elements"
    assert len(page.paragraphs) == 49_999  # html, body, main, then 49,999 <p>s and 49,998 <br>s
    assert time.monotonic() - started < 10


def test_inflation_is_bounded_and_reports_the_overflow() -> None:
    import gzip

    from localserver import gzip_bomb

    bomb = gzip_bomb(64 << 20)
    data, over = textdiff.inflate(bomb, "gzip", 1 << 20)
    assert len(data) == 1 << 20 and over
    page = textdiff.page_of(bomb, "text/html", "gzip")
    assert page.cut == "its gzip body inflates past 4 MiB"
    small = gzip.compress(b"<p>fine</p>", mtime=0)
    assert textdiff.inflate(small, "gzip") == (b"<p>fine</p>", False)


# ------------------------------------------------------------------ import: structure and bombs

DATA = Path(__file__).resolve().parent / "data"


def _import(path: Path, archive_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from evarchive import cli

    capsys.readouterr()
    code = cli.main(["import", str(path), "--archive", str(archive_dir)])
    return code, " ".join(capsys.readouterr().err.split())


def _claim_count(archive_dir: Path) -> int:
    archive = Archive.open(archive_dir)
    try:
        return archive.db.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
    finally:
        archive.close()


def _unclosed_divs(count: int) -> str:
    lines = "".join(f"<div>Claim number {i} is stated here https://example.org/deep/{i}\n"
                    for i in range(count))
    return f"<!DOCTYPE html><html><head><title>Deep</title></head><body>{lines}</body></html>"


def test_html_nested_400_deep_imports_every_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "deep.html"
    report.write_text(_unclosed_divs(400), encoding="utf-8")
    code, err = _import(report, tmp_path / "archive", capsys)
    assert code == 0, err
    assert _claim_count(tmp_path / "archive") == 400


def test_html_nested_past_the_readers_limit_is_refused_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "deeper.html"
    report.write_text(_unclosed_divs(3000), encoding="utf-8")
    code, err = _import(report, tmp_path / "archive", capsys)
    assert code == 2
    assert "nested deeper than 2048 levels" in err and "nothing was imported" in err
    assert not (tmp_path / "archive").exists()


def _nested_list(depth: int) -> str:
    return "".join("  " * i + f"- Claim number {i} is stated here https://example.org/list/{i}\n"
                   for i in range(depth))


def test_markdown_nested_60_deep_imports_every_claim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "deep.md"
    report.write_text(_nested_list(60), encoding="utf-8")  # commonmark's own limit lost 51 of them
    code, err = _import(report, tmp_path / "archive", capsys)
    assert code == 0, err
    assert _claim_count(tmp_path / "archive") == 60


def test_markdown_nested_past_the_readers_limit_is_refused_whole(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "deeper.md"
    report.write_text(_nested_list(150) + "> " * 3000 + "quoted https://example.org/q\n", encoding="utf-8")
    code, err = _import(report, tmp_path / "archive", capsys)
    assert code == 2
    assert "the Markdown is nested deeper than the Markdown reader can follow" in err
    assert "nothing was imported" in err
    assert not (tmp_path / "archive").exists()


def _docx_bomb(path: Path, inflated: int) -> Path:
    """The test suite's real docx with its document part padded (inside a comment, so it is
    still well-formed XML) until it inflates to ``inflated`` bytes."""
    with zipfile.ZipFile(DATA / "writer_report.docx") as src:
        parts = {info.filename: src.read(info) for info in src.infolist()}
    document = parts.pop("word/document.xml")
    head, tail = document.split(b"?>", 1)
    pad = b" " * (1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for name, blob in parts.items():
            out.writestr(name, blob)
        with out.open("word/document.xml", "w", force_zip64=True) as fh:
            fh.write(head + b"?><!--")
            full, rest = divmod(inflated - len(document) - len(b"<!---->"), len(pad))
            for _ in range(full):
                fh.write(pad)
            fh.write(pad[:rest] + b"-->" + tail)
    return path


@pytest.mark.slow
def test_a_docx_zip_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    bomb = _docx_bomb(tmp_path / "bomb.docx", 256 << 20)
    assert bomb.stat().st_size < 4 << 20
    archive_dir = tmp_path / "archive"
    done = run_measured(["import", str(bomb), "--archive", str(archive_dir)], tmp_path, deadline=120)
    assert done.code == 2, done.err
    message = " ".join(done.err.split())
    assert "the document inflates past the limit" in message
    assert "word/document.xml inflates to 256 MiB, more than the 64 MiB" in message
    assert "nothing was imported" in message
    assert not archive_dir.exists()
    assert done.peak_mb < RSS_LIMIT_MB, done.peak_mb
    assert done.seconds < 30, done.seconds


def test_a_docx_whose_parts_stay_within_the_limits_still_imports(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    padded = _docx_bomb(tmp_path / "padded.docx", 8 << 20)  # large, but a report may be
    code, err = _import(padded, tmp_path / "archive", capsys)
    assert code == 0, err
    assert _claim_count(tmp_path / "archive") > 0


# ------------------------------------------------------------------ other readers of gzip

def test_the_clerks_verifier_inflates_a_bomb_member_in_bounded_steps() -> None:
    import tracemalloc

    from localserver import gzip_bomb

    from evarchive.verify_bundle import parse_member

    bomb = gzip_bomb(1 << 30)  # a "record" that inflates to 1 GiB of HTML, no WARC header
    tracemalloc.start()
    try:
        fields, block, payload, error = parse_member([bomb[i:i + (1 << 20)] for i in range(0, len(bomb), 1 << 20)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (fields, block, payload) == (None, None, None)
    assert error == "no end of the WARC header within 1 MiB"
    assert peak < 32 << 20, peak


# ------------------------------------------------------------------ one page never ends the run

def test_a_page_whose_judging_fails_gets_a_verdict_and_the_run_goes_on(
        local_server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of memory while judging one page (forced here: the bounds above leave no real page
    that does it) costs that page its comparison, not the night's run."""
    from evarchive import CheckSettings, check_sources, select_sources

    poisoned, fine = local_server.url("/article/poisoned"), local_server.url("/article/fine")
    archive_dir = tmp_path / "archive"
    for url in (poisoned, fine):
        capture(archive_dir, local_server, url)
    local_server.set_route("/article/poisoned", body=article_page("poisoned", True, 1))
    real_extract = textdiff.extract

    def extract(html: str | bytes, words_enough: int = 0) -> PageText:
        if "Correction: an earlier version" in str(html):  # only the edited page says so
            raise MemoryError("forced")
        return real_extract(html, words_enough)

    monkeypatch.setattr(textdiff, "extract", extract)
    archive = Archive.open(archive_dir)
    try:
        net = CaptureSettings(sleep=NoSleep(), ca_file=local_server.ca_pem_path, retries=0)
        report = check_sources(archive, select_sources(archive, [poisoned, fine]),
                               CheckSettings(network=net, commit_interval=0.0))
        by_url = {r.url: r for r in report.results}
        assert (by_url[poisoned].verdict, by_url[poisoned].detail) == ("drifted", "not-judged")
        assert "could not be judged (MemoryError: forced)" in by_url[poisoned].reason
        assert (by_url[fine].verdict, by_url[fine].detail) == ("ok", "same-text")
        assert archive.db.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 2
    finally:
        archive.close()


def test_a_docx_listing_a_flood_of_parts_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flood = tmp_path / "flood.docx"
    with zipfile.ZipFile(DATA / "writer_report.docx") as src, zipfile.ZipFile(flood, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        for n in range(20_000):
            out.writestr(f"word/media/empty{n}.bin", b"")
        count = len(out.infolist())
    code, err = _import(flood, tmp_path / "archive", capsys)
    assert code == 2
    assert f"the document has {count:,} parts, more than the 10,000 a report may have" in err
    assert not (tmp_path / "archive").exists()
