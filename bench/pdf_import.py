"""Import a generated 350-page PDF report and print the time beside its target (under 10 s).

    python bench/pdf_import.py [--pages 350] [--keep DIR]

The PDF is laid out like a journal: a running head with the page number, two columns of body
text in 9 pt, a footnote with a URL at the foot of the left column, a URL broken over a line in
the right column with a link annotation over it, and a running foot with the publisher's URL.
It is written with pypdf (a dependency), one content stream per page.
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

TARGET_SECONDS = 10.0
WORDS = ("the ministry confirmed that expulsions of activists rose sharply in border regions during "
         "autumn while courts refused appeals and officials declined to comment on allegations").split()


def _escape(text: str) -> bytes:
    return text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_items(number: int, rng: random.Random) -> list[tuple[float, float, float, str]]:
    items = [(45, 760, 8, f"{number} JOURNAL OF EXAMPLES" if number % 2 == 0 else f"VOLUME 12 {number}")]
    for column, x in enumerate((45, 310)):
        y = 730.0
        for row in range(52):
            text = " ".join(rng.choices(WORDS, k=7))
            if column == 0 and row == 20:
                text += " as reported."
                items.append((x, y, 9, text))
                items.append((x + 190, y + 3, 6, "1"))
                y -= 11
                continue
            if column == 1 and row == 30:
                items.append((x, y, 9, f"see https://example.org/{number}/evidence/"))
                y -= 11
                items.append((x, y, 9, f"report-{number}.html for the record."))
                y -= 11
                continue
            items.append((x, y, 9, text))
            y -= 11
        if column == 0:
            items.append((x, 110, 7, f"1 Interview notes, https://example.org/notes/{number}"))
    items.append((45, 40, 7, "Published at https://journal.example.org"))
    return items


def generate(path: Path, pages: int, seed: int = 5) -> None:
    from pypdf import PdfWriter
    from pypdf.annotations import Link
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    rng = random.Random(seed)
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject("/Helvetica"), NameObject("/Encoding"): NameObject("/WinAnsiEncoding")}))
    for number in range(1, pages + 1):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Resources")] = DictionaryObject({
            NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})})
        stream = DecodedStreamObject()
        stream.set_data(b"".join(b"BT /F1 %.1f Tf 1 0 0 1 %.1f %.1f Tm (%s) Tj ET\n" % (size, x, y, _escape(text))
                                 for x, y, size, text in _page_items(number, rng)))
        page[NameObject("/Contents")] = writer._add_object(stream)
        url = f"https://example.org/{number}/evidence/report-{number}.html"
        for rect in ((325, 397, 560, 409), (310, 386, 400, 398)):
            writer.add_annotation(page_number=number - 1, annotation=Link(rect=rect, url=url))
    writer.write(str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=350)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="evarchive-bench-pdf-"))
    work.mkdir(parents=True, exist_ok=True)
    report = work / "generated-report.pdf"
    generate(report, args.pages)
    archive = Archive.open(work / "archive-lib")
    try:
        start = time.perf_counter()
        result = import_report(archive.db, report)
        library = time.perf_counter() - start
    finally:
        archive.close()
    # The command is timed into a new archive, the harder case: the report is checked before the
    # archive is created (unusable input must leave no empty archive), and that reading is reused.
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evarchive.cli", "import", str(report), "--archive",
                    str(work / "archive-cmd"), "--quiet"], check=True)
    command = time.perf_counter() - start
    print(f"report: {args.pages} pages, {report.stat().st_size / 1e6:.1f} MB, {result.claims} claims, "
          f"{result.citations} citations, {result.sources} distinct sources")
    for label, seconds in (("PDF import (library call)", library), ("PDF import (`evarchive import`)", command)):
        verdict = "ok" if seconds < TARGET_SECONDS else "SLOWER THAN TARGET"
        print(f"{label:<36} {seconds:7.2f} s   (target < {TARGET_SECONDS:.0f} s: {verdict})")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if max(library, command) < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
