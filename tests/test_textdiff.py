"""Main-text extraction, similarity and diff (pure functions, no network)."""

from __future__ import annotations

import gzip
import time

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from evarchive import textdiff
from evarchive.textdiff import PageText, decode_body, extract, similarity

ARTICLE = """<!doctype html><html><head><title>Raid on the village | The Paper</title>
<style>body{{color:red}}</style><script>var t = "{stamp}";</script></head><body>
<header class="site-header"><nav><a href="/">Home</a> <a href="/world">World</a></nav></header>
<div class="cookie-banner">We use cookies. <button>Accept</button></div>
<main><article>
<header class="article-header"><h1>Twelve killed in <em>raid</em></h1>
<p class="byline">By A. Reporter</p></header>
<p>Twelve people were killed on <a href="#">Tuesday</a> when forces raided the village
of Example, according to three witnesses interviewed separately.</p>
<div class="share-tools">Share on social media</div>
<p>The raid began at dawn and lasted about two hours, the witnesses said.</p>
<ul><li>First witness statement</li><li>Second witness statement</li></ul>
</article>
<aside>Most read: an unrelated story</aside></main>
<footer>(c) The Paper. Page generated at {stamp}</footer>
</body></html>"""


def page(stamp: str = "12:00:00", **edits: str) -> str:
    html = ARTICLE.format(stamp=stamp)
    for old, new in edits.items():
        html = html.replace(old.replace("_", " "), new)
    return html


def test_extract_keeps_article_and_drops_boilerplate() -> None:
    got = extract(page())
    assert got.title == "Raid on the village | The Paper"
    assert got.h1 == "Twelve killed in raid"
    text = got.text
    assert "Twelve people were killed on Tuesday when forces raided the village" in text
    assert "By A. Reporter" in text  # the article's own header is kept
    assert "First witness statement" in got.paragraphs
    for boiler in ("Home", "World", "cookies", "Share on", "Most read", "generated at", "var t"):
        assert boiler not in text, boiler


def test_extract_without_semantic_tags_uses_body_minus_chrome() -> None:
    html = ("<html><body><div id='menu'>Home About</div><div class='content'><p>Body text "
            "of the report.</p></div><div class='footer'>contact</div></body></html>")
    got = extract(html)
    assert got.paragraphs == ("Body text of the report.",)


def test_extract_handles_broken_markup_and_forms() -> None:
    # ASP.NET-style pages wrap everything in a <form>; unclosed tags everywhere.
    html = "<html><body><form><p>First para<p>Second <b>bold para</form>"
    assert extract(html).paragraphs == ("First para", "Second bold para")


def test_extract_empty_and_non_html() -> None:
    assert extract("").paragraphs == ()
    assert extract(b"%PDF-1.7 \x00\xff binary").title == ""


def test_boilerplate_change_is_not_a_change() -> None:
    a, b = extract(page("12:00:00")), extract(page("23:59:59"))
    assert similarity(a, b) == 1.0
    assert textdiff.text_digest(a) == textdiff.text_digest(b)


def test_similarity_grades_edits() -> None:
    base = extract(page())
    one_word = extract(page(Twelve_people="Two people"))
    rewritten = extract(page(**{"The raid began at dawn and lasted about two hours, the "
                                "witnesses said.": "Officials denied that any raid took place "
                                "and called the reports fabricated."}))
    other = PageText(paragraphs=("Something else entirely about the weather today",))
    s1, s2, s3 = similarity(base, one_word), similarity(base, rewritten), similarity(base, other)
    assert 0.7 < s1 < 1.0
    assert s2 < s1
    assert s3 == 0.0
    assert similarity(base, base) == 1.0
    assert similarity(PageText(), PageText()) == 1.0
    assert similarity(base, PageText()) == 0.0


def test_similarity_ignores_case_width_and_punctuation() -> None:
    assert similarity("Twelve killed, witnesses say.", "twelve  KILLED witnesses say") == 1.0
    assert similarity("ＡＢＣ report", "abc report") == 1.0


def test_cjk_is_tokenised_per_character() -> None:
    assert textdiff.tokens("页面不存在") == ["页", "面", "不", "存", "在"]
    assert similarity("十二人在突袭中死亡", "十二人在突袭中受伤") < 1.0


def test_diff_shows_the_changed_words_only() -> None:
    old, new = extract(page()), extract(page(Twelve_people="Two people"))
    rendered = textdiff.render_diff(old, new)
    assert "[-Twelve-] {+Two+} people were killed" in rendered
    assert "dawn" not in rendered  # unchanged paragraphs are not repeated
    patch = textdiff.unified(old, new)
    assert "-Twelve people" in patch and "+Two people" in patch


def test_diff_inserted_and_deleted_paragraphs() -> None:
    old = PageText(paragraphs=("a b c", "d e f"))
    new = PageText(paragraphs=("a b c", "d e f", "correction: g h i"))
    assert textdiff.render_diff(old, new) == "+ correction: g h i"
    assert textdiff.render_diff(new, old) == "- correction: g h i"


def test_decode_body_undoes_gzip_and_honours_charset() -> None:
    html = "<p>Café in Zürich</p>".encode("latin-1")
    assert "Café" in decode_body(gzip.compress(html), "text/html; charset=iso-8859-1", "gzip")
    meta = b'<meta charset="windows-1251"><p>' + "Привет".encode("cp1251") + b"</p>"
    assert "Привет" in decode_body(meta, "text/html")
    # A truncated gzip body still yields what arrived.
    body = "<p>" + " ".join(str(i * 7919 % 10007) for i in range(3000)) + "</p>"
    truncated = gzip.compress(body.encode())[:-200]
    assert decode_body(truncated, None, "gzip").startswith("<p>0 7919")


def test_thousand_pages_are_fast() -> None:
    # A nightly check compares up to thousands of pages: extraction plus
    # similarity must stay around a millisecond a page.
    html = page().replace("<ul>", "<p>" + "More reporting on the raid. " * 100 + "</p><ul>")
    edited = html.replace("dawn", "dusk")
    start = time.perf_counter()
    for _ in range(1000):
        similarity(extract(html), extract(edited))
    assert time.perf_counter() - start < 10  # generous for slow CI; ~2 s here


_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x85\xa0\u1680\u2003\u2028\u3000"


@given(st.lists(st.text(alphabet=st.sampled_from("aé1ß\ufb01-'") | st.sampled_from(_WHITESPACE), max_size=40),
                max_size=30), st.integers(min_value=0, max_value=60))
def test_fewer_words_than_agrees_with_the_word_count(paragraphs: list[str], limit: int) -> None:
    """The classifier's early-stopping count must decide exactly as ``words < limit`` would."""
    page = PageText(paragraphs=tuple(paragraphs))
    assert page.fewer_words_than(limit) == (page.words < limit)


@given(st.text(alphabet=st.sampled_from("ab\ufb01 ") | st.sampled_from(_WHITESPACE), max_size=80))
def test_paragraph_cleaning_collapses_every_unicode_space_as_the_regex_did(text: str) -> None:
    import re
    import unicodedata
    assert textdiff._clean(text) == re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


_MARKUP = ["<p>", "</p>", "<div>", "</div>", "<br>", "<b>", "</b>", "<em>", "</em>", "<span>", "</span>",
           "<li>", "<nav>", "</nav>", "<h1>", "</h1>", "<script>x y z</script>", "<aside>", "</aside>", "<td>"]
# Letters, digits, CJK, a combining accent, NFKC-expanding ligatures, spaces of every kind
_PIECES = st.sampled_from(["a", "é", "1", "一", "\u0301", "\ufb01", "\ufdfa", "_", "-", " ", "\xa0", "\u3000"])


@settings(max_examples=300)
@given(st.lists(st.one_of(st.text(alphabet=_PIECES, min_size=1, max_size=8), st.sampled_from(_MARKUP)),
                max_size=120), st.integers(min_value=1, max_value=40))
def test_a_page_read_only_for_its_length_agrees_with_the_full_reading(parts: list[str], limit: int) -> None:
    """``words_enough``: title, heading and cut as the full reading gives them, and "at least n
    words" only where the full reading has them; otherwise the full reading itself."""
    html = "<html><head><title>T</title></head><body><main>" + "".join(parts) + "</main></body></html>"
    full, counted = extract(html), extract(html, words_enough=limit)
    if counted.words_at_least:
        assert counted.words_at_least == limit and full.words >= limit
        assert (counted.title, counted.h1, counted.cut, counted.paragraphs) == (full.title, full.h1, full.cut, ())
        assert counted.fewer_words_than(limit) is False
    else:
        assert counted == full


def test_a_long_page_read_only_for_its_length_keeps_no_text_to_misread() -> None:
    counted = extract(page(), words_enough=10)
    assert counted.words_at_least == 10 and counted.title == "Raid on the village | The Paper"
    assert counted.h1 == "Twelve killed in raid"
    with pytest.raises(ValueError, match="only the length"):
        _ = counted.text
    short = extract("<html><body><main><p>Page not found</p></main></body></html>", words_enough=150)
    assert short.words_at_least == 0 and short.text == "Page not found"


@pytest.mark.parametrize(("nested", "cut"), [(textdiff.MAX_DEPTH, None), (textdiff.MAX_DEPTH + 1, "too deep")])
def test_the_markup_scan_is_skipped_only_where_it_could_not_cut(nested: int, cut: str | None) -> None:
    """Fewer opening tags than the depth limit cannot pass any limit; one more is scanned."""
    found = textdiff._markup_end("<div>" * nested + "word")
    assert (found is None) if cut is None else (cut in found[1])
