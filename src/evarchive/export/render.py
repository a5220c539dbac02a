"""The human-readable renderings of ``bundle.json``: exhibits.csv, exhibits.txt, exhibits.html and
the report itself as report.html with its citations as Robust Links.

They are written in verify_bundle.py, the standalone verifier that travels in every bundle: it
renders each file again from the facts the custody log vouches for and compares, so that whatever
a reader is shown is vouched for. Export writes them with the very same functions."""

from __future__ import annotations

from ..verify_bundle import (REPORT_PAGE, csv_cell, render_csv, render_html, render_report, render_text,
                             support_words)

__all__ = ["REPORT_PAGE", "csv_cell", "render_csv", "render_html", "render_report", "render_text", "support_words"]
