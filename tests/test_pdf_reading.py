"""PDFs as real documents print them: URLs broken over lines and columns, ligatures, numbered
and author-year reference lists, running heads and feet, and the real PDFs of the shared corpus.

The small PDFs are generated with pypdf (``make_pdf``), one per class of layout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evarchive.extract import segment
from evarchive.reports import parse_report, read_report_file

from test_import import claims_of, make_pdf

CORPUS = Path("/work/shared/corpus/reports")
if not CORPUS.is_dir():
    CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "reports"


def cited_urls(path: Path) -> set[str]:
    return {c.url for claim in segment(parse_report(read_report_file(path))) for c in claim.citations}


def test_url_broken_after_the_scheme_and_at_a_dot_of_its_host(tmp_path: Path) -> None:
    page = [
        (72, 700, 10, "Comments may be sent through the portal at https://"),
        (72, 688, 10, "www.regulations.gov by searching for the docket."),
        (72, 650, 10, "The dataset is described in the paper at http://arxiv."),
        (72, 638, 10, "org/abs/2206.10883 which the authors keep up to date."),
        (72, 600, 10, "The project site is https://multilexsum."),
        (72, 588, 10, "github.io and it hosts the summaries for every case."),
    ]
    path = make_pdf(tmp_path / "broken.pdf", [page])
    assert [cites for _, cites in claims_of(path)] == [
        [("https://www.regulations.gov", "inline")],
        [("http://arxiv.org/abs/2206.10883", "inline")],
        [("https://multilexsum.github.io", "inline")],
    ]


def test_url_under_a_link_annotation_is_the_annotation_target(tmp_path: Path) -> None:
    # Hyphenated at the line end by the typesetter, and an underscore drawn as a gap: the text
    # alone cannot say, the annotation over it can.
    page = [
        (72, 700, 10, "The accident report (http://knkt.example.go.id/knkt/final%20-"),
        (72, 688, 10, "report_2018.pdf) shows the sensor input. Its rules are at "
                      "http://ieee.example.org/freeabs all.jsp?"),
        (72, 676, 10, "arnumber=6795963 for reference."),
    ]
    target1 = "http://knkt.example.go.id/knkt/final%20report_2018.pdf"
    target2 = "http://ieee.example.org/freeabs_all.jsp?arnumber=6795963"
    links = [(0, (160, 697, 400, 710), target1), (0, (72, 685, 160, 698), target1),
             (0, (350, 685, 560, 698), target2), (0, (72, 673, 150, 686), target2)]
    path = make_pdf(tmp_path / "annotated.pdf", [page], links)
    assert cited_urls(path) == {target1, target2}


def test_hyphen_that_belongs_to_the_url_is_kept(tmp_path: Path) -> None:
    page = [(72, 700, 10, "Service information is at https://www.pilatus-"),
            (72, 688, 10, "aircraft.com/en for operators of the type.")]
    path = make_pdf(tmp_path / "hyphen.pdf", [page])
    assert cited_urls(path) == {"https://www.pilatus-aircraft.com/en"}


def _with_ligature_font(path: Path) -> Path:
    """Give the test font a code (0x1f) for the ``fi`` ligature glyph, as TeX fonts have."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject

    writer = PdfWriter(clone_from=PdfReader(str(path)))
    for page in writer.pages:
        font = page["/Resources"]["/Font"]["/F1"].get_object()
        font[NameObject("/Encoding")] = DictionaryObject({
            NameObject("/BaseEncoding"): NameObject("/WinAnsiEncoding"),
            NameObject("/Differences"): ArrayObject([NumberObject(31), NameObject("/fi")])})
    writer.write(str(path))
    return path


def test_ligature_inside_a_url_is_spelled_out_and_the_prose_keeps_it(tmp_path: Path) -> None:
    page = [(72, 700, 10, "The \x1fnal report is at https://example.org/\x1fles/of\x1fcial.pdf today.")]
    path = _with_ligature_font(make_pdf(tmp_path / "ligature.pdf", [page]))
    assert claims_of(path) == [("The \ufb01nal report is at https://example.org/files/official.pdf today.",
                                [("https://example.org/files/official.pdf", "inline")])]


REFERENCES_PAGES = [
    [(72, 700, 10, "Deportations rose sharply in 2024 as shown in [2]. The ministry denied it [1]."),
     (72, 660, 10, "Courts ruled on the matter twice [Kar15a]."),
     (72, 620, 10, "Both reports agree on the figures [1,"),
     (72, 608, 10, "2].")],
    [(72, 720, 12, "REFERENCES"),
     (72, 700, 8, "[1] A. Author, \u201cA report,\u201d 2024. [Online]. Available: https://example.org/ref-one"),
     (72, 690, 8, "[2] B. Author, \u201cAnother report,\u201d Journal, vol. 3, 2024. [Online]. Available:"),
     (72, 680, 8, "https://example.org/ref-two"),
     (72, 670, 8, "[Kar15a] A. Karpathy, \u201cchar-rnn,\u201d GitHub, 2015. [Online]. Available: https://"),
     (72, 660, 8, "github.com/karpathy/char-rnn"),
     (72, 650, 8, "i t"),
     (72, 640, 8, "[3] C. Author, \u201cUncited,\u201d 2020. [Online]. Available: https://example.org/ref-three")],
]


def test_numbered_reference_list_links_the_sentence_with_the_marker(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "references.pdf", REFERENCES_PAGES)
    claims = claims_of(path)
    assert claims == [
        ("Deportations rose sharply in 2024 as shown in [2].", [("https://example.org/ref-two", "endnote")]),
        ("The ministry denied it [1].", [("https://example.org/ref-one", "endnote")]),
        ("Courts ruled on the matter twice [Kar15a].", [("https://github.com/karpathy/char-rnn", "endnote")]),
        ("Both reports agree on the figures [1, 2].", [("https://example.org/ref-one", "endnote"),
                                                       ("https://example.org/ref-two", "endnote")]),
        # The entry no sentence cites keeps its URL, with its own text as the claim; no label or
        # stray letter of the list ("i t") is a claim.
        ("[3] C. Author, \u201cUncited,\u201d 2020. [Online]. Available: https://example.org/ref-three",
         [("https://example.org/ref-three", "inline")]),
    ]


def _book_pages(count: int) -> list[list[tuple[float, float, float, str]]]:
    pages = []
    for number in range(1, count + 1):
        head = f"{number} FREE CULTURE" if number % 2 == 0 else f"INTRODUCTION {number}"
        pages.append([(72, 760, 9, head),
                      (72, 700, 11, f"Body text of page {number} says something worth reading."),
                      (72, 40, 8, "Available free at https://example.org/free-culture.pdf")])
    pages[2].insert(2, (72, 660, 11, "A claim on the third page cites https://example.org/cited-claim"))
    return pages


def test_running_heads_feet_and_page_numbers_are_furniture(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "book.pdf", _book_pages(6))
    assert claims_of(path) == [
        ("A claim on the third page cites https://example.org/cited-claim",
         [("https://example.org/cited-claim", "inline")]),
        # The running foot's URL, once, for the document.
        ("Available free at https://example.org/free-culture.pdf",
         [("https://example.org/free-culture.pdf", "inline")]),
    ]


def test_two_columns_are_read_one_after_the_other(tmp_path: Path) -> None:
    left = ["The report of the accident", "is available from the board at", "(http://knkt.example.go.id/knkt/",
            "ntsc_aviation/final.pdf), which", "the agency reviewed in full."]
    right = ["A second column says", "other things entirely, and", "it never cites a source at", "all in this",
             "short example page."]
    # Drawn column after column, as the Federal Register's typesetter does.
    page = [(45, 700 - 11 * row, 9, text) for row, text in enumerate(left + ["More left text follows here."])]
    page += [(222, 700 - 11 * row, 9, text) for row, text in enumerate(right + ["More right text follows."])]
    path = make_pdf(tmp_path / "columns.pdf", [page])
    assert claims_of(path) == [
        ("The report of the accident is available from the board at (http://knkt.example.go.id/knkt/"
         "ntsc_aviation/final.pdf), which the agency reviewed in full.",
         [("http://knkt.example.go.id/knkt/ntsc_aviation/final.pdf", "inline")]),
    ]


# Read by hand from the PDFs (pypdf text and link annotations, page by page).
FAA_URLS = {
    "https://www.regulations.gov",
    "https://regulations.gov",
    "https://www.myboeingfleet.com",
    "http://knkt.dephub.go.id/knkt/ntsc_aviation/baru/2018%20-%20035%20-%20PK-LQP%20Final%20Report.pdf",
    "https://www.faa.gov/aircraft/draft_docs/fsb/",
    "https://fsims.faa.gov/PICResults.aspx?mode=Publication&doctype=MMELByModel",
    "https://www.pilatus-aircraft.com/en",
}
CREATIVITY_URLS = {
    "http://hdl.handle.net/2027/spo.bbp2372.1987.025",
    "https://www.youtube.com/watch?v=jLR-_c_uCwI",
    "http://dl.acm.org/citation.cfm?id=2460444",
    "http://www.bbc.co.uk/blogs/adamcurtis/entries/78691781-c9b7-30a0-9a0a-3ff76e8bfe58",
    "http://arxiv.org/abs/1508.06576",
    "https://goo.gl/Bydofw",
    "http://ieeexplore.ieee.org/xpl/freeabs_all.jsp?arnumber=6795963",
    "http://prize.hutter1.net/",
    "http://arxiv.org/abs/1512.03385",
    "https://github.com/hexahedria/biaxial-rnn-music-composition",
    "http://www.hexahedria.com/2015/08/03/composing-music-with-recurrent-neural-networks/",
    "https://github.com/jcjohnson/neural-style",
    "https://github.com/karpathy/char-rnn",
    "http://karpathy.github.io/2015/05/21/rnn-effectiveness/",
    "http://googleresearch.blogspot.de/2015/06/inceptionism-going-deeper-into-neural.html",
    "http://neuralnetworksanddeeplearning.com/chap6.html#introducing_convolutional_networks",
    "http://cs224d.stanford.edu/reports/NayebiAran.pdf",
    "https://www.reddit.com/r/deepdream/",
    "https://www.youtube.com/watch?v=Hj5lGFzlubU",
    "http://dl.acm.org/citation.cfm?id=2601137",
    "https://youtu.be/0VTI1BBLydE",
    "http://ieeexplore.ieee.org/xpls/abs_all.jsp?arnumber=6751109",
    "http://arxiv.org/abs/1506.05869v2",
    "https://github.com/MattVitelli/GRUV",
}


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine")
def test_faa_nprm_urls_broken_across_lines_and_columns() -> None:
    assert cited_urls(CORPUS / "fedreg-2020-17221-faa-737max-nprm.pdf") == FAA_URLS


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine")
def test_ieee_paper_reference_urls_and_the_sentences_citing_them() -> None:
    path = CORPUS / "creativity-in-machine-learning-arxiv-1601.03642.pdf"
    claims = segment(parse_report(read_report_file(path)))
    found = {c.url for claim in claims for c in claim.citations}
    # Plus one URL printed inside the appendix's sample of generated text (not a reference).
    assert found - CREATIVITY_URLS == {"http://www.humah.yahoo.com/guardian"}
    assert CREATIVITY_URLS <= found
    by_text = {" ".join(c.text.split()): [x.url for x in c.citations] for c in claims}
    assert by_text["A demo can be seen on [Shi14]."] == ["https://www.youtube.com/watch?v=Hj5lGFzlubU"]
    assert by_text["An implementation can be found at [VN15] and a demonstration can be found at [Vit15]."] == [
        "https://github.com/MattVitelli/GRUV", "https://youtu.be/0VTI1BBLydE"]


MULTILEXSUM_URLS = {
    "http://aclweb.org/anthology/N18-1065",
    "http://aclweb.org/anthology/N18-2097",
    "http://arxiv.org/abs/1506.03340",
    "http://arxiv.org/abs/1602.06023",
    "http://arxiv.org/abs/1704.04368",
    "http://arxiv.org/abs/1806.03688",
    "http://arxiv.org/abs/1808.08745",
    "http://arxiv.org/abs/1906.01749",
    "http://arxiv.org/abs/1906.03741",
    "http://arxiv.org/abs/1910.00523",
    "http://arxiv.org/abs/2104.02112",
    "http://arxiv.org/abs/2104.06486",
    "http://arxiv.org/abs/2104.08671",
    "http://arxiv.org/abs/2105.03887",
    "http://arxiv.org/abs/2105.08209",
    "http://arxiv.org/abs/2108.07258",
    "http://arxiv.org/abs/2110.00976",
    "https://aclanthology.org/2020.coling-main.86",
    "https://aclanthology.org/2020.lrec-1.155",
    "https://aclanthology.org/D19-1500",
    "https://aclanthology.org/P18-2041",
    "https://aclanthology.org/P19-1424",
    "https://aclanthology.org/W04-1013",
    "https://aclanthology.org/W04-1907",
    "https://arxiv.org/abs/1908.10084",
    "https://clearinghouse.net",
    "https://clearinghouse.net/about",
    "https://clearinghouse.net/case-types",
    "https://clearinghouse.net/people",
    "https://clearinghouse.net/search/resources/?resource_types=6132",
    "https://github.com/huggingface/datasets",
    "https://github.com/lolipopshock/notion-df",
    "https://github.com/multilexsum/dataset",
    "https://multilexsum.github.io",
    "https://www.aclweb.org/anthology/2020.findings-emnlp.261",
    "https://www.courtlistener.com/recap/",
    "https://www.notion.so/",
    "https://www.uscourts.gov/about-federal-courts/types-cases/civil-cases",
    "https://www.uscourts.gov/statistics-reports/covering-civil-cases-journalists-guide",
}


@pytest.mark.slow
@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine")
def test_arxiv_paper_footnote_and_bibliography_urls_split_at_a_dot() -> None:
    path = CORPUS / "multilexsum-civil-rights-lawsuits-arxiv-2206.10883v3.pdf"
    claims = segment(parse_report(read_report_file(path)))
    assert {c.url for claim in claims for c in claim.citations} == MULTILEXSUM_URLS
    # "[2, 3, 6, 8, ...]" over a line break cites each reference, with its URL.
    first = next(c for c in claims if "focused on the legal domain" in c.text)
    assert ("http://arxiv.org/abs/1806.03688", "endnote", "2") in [(x.url, x.via, x.note) for x in first.citations]


def test_footnotes_that_differ_only_in_a_number_are_not_furniture(tmp_path: Path) -> None:
    pages = [[(72, 720, 11, "A page of the report with enough body text to set its type size."),
              (72, 700, 11, f"Claim number {n} is made here."), (240, 704, 7, "1"),
              (72, 90, 8, f"1 See https://example.org/notes/{n}")] for n in range(1, 5)]
    path = make_pdf(tmp_path / "notes.pdf", pages)
    assert claims_of(path) == [(f"Claim number {n} is made here.", [(f"https://example.org/notes/{n}", "footnote")])
                               for n in range(1, 5)]



# A reference list that runs over two page breaks: entry [2]'s URL is printed at the head of the
# next page, and entry [3]'s URL is cut by the page break itself.
REFERENCES_OVER_PAGE_BREAKS = [
    [(72, 700, 10, "Deportations rose sharply in 2024 as shown in [2]. The ministry denied it [1]."),
     (72, 686, 10, "The courts later quashed most of the orders [3]."),
     (72, 650, 12, "REFERENCES"),
     (72, 630, 10, "[1] A. Author, \u201cA report,\u201d 2024. [Online]. Available: https://example.org/ref-one"),
     (72, 618, 10, "[2] B. Author, \u201cAnother report,\u201d Journal, vol. 3, 2024. [Online]. Available:"),
     (300, 40, 9, "1")],
    [(72, 720, 10, "https://example.org/ref-two"),
     (72, 708, 10, "[3] C. Author, \u201cThe judgments,\u201d 2025. [Online]. Available: https://example.org/"),
     (300, 40, 9, "2")],
    [(72, 720, 10, "judgments/2025/quashed-orders.pdf"),
     (72, 708, 10, "[4] D. Author, \u201cUncited,\u201d 2020. [Online]. Available: https://example.org/ref-four"),
     (300, 40, 9, "3")],
]


def test_reference_entry_continued_on_the_next_page_links_its_sentence(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "over-page-breaks.pdf", REFERENCES_OVER_PAGE_BREAKS)
    assert claims_of(path) == [
        ("Deportations rose sharply in 2024 as shown in [2].", [("https://example.org/ref-two", "endnote")]),
        ("The ministry denied it [1].", [("https://example.org/ref-one", "endnote")]),
        ("The courts later quashed most of the orders [3].",
         [("https://example.org/judgments/2025/quashed-orders.pdf", "endnote")]),
        ("[4] D. Author, \u201cUncited,\u201d 2020. [Online]. Available: https://example.org/ref-four",
         [("https://example.org/ref-four", "inline")]),
    ]


def test_columns_drawn_row_by_row_are_read_column_by_column(tmp_path: Path) -> None:
    left = ["The report of the accident", "is available from the board at", "(http://knkt.example.go.id/knkt/",
            "ntsc_aviation/final.pdf), which", "the agency reviewed in full.", "More left text follows here."]
    right = ["A second column says that", "the minister resigned, as the", "press reported at the time",
             "(https://example.org/news/", "resignation.html) in May.", "More right text follows."]
    # Each row drawn left piece then right piece, as some producers write a page: top to bottom.
    page = []
    for row, (a, b) in enumerate(zip(left, right, strict=True)):
        page += [(45, 700 - 11 * row, 9, a), (222, 700 - 11 * row, 9, b)]
    path = make_pdf(tmp_path / "rows.pdf", [page])
    assert claims_of(path) == [
        ("The report of the accident is available from the board at (http://knkt.example.go.id/knkt/"
         "ntsc_aviation/final.pdf), which the agency reviewed in full.",
         [("http://knkt.example.go.id/knkt/ntsc_aviation/final.pdf", "inline")]),
        ("A second column says that the minister resigned, as the press reported at the time "
         "(https://example.org/news/resignation.html) in May.",
         [("https://example.org/news/resignation.html", "inline")]),
    ]
