"""The run report: ``report.md`` and a self-contained ``report.html`` rendered from the score table.

The report is an ordered list of sections (:mod:`.inputs`: :func:`register_section`), each a
function from :class:`ReportInputs` to blocks (:mod:`.blocks`: :class:`Heading`,
:class:`Paragraph`, :class:`Bullets`, :class:`Table`, :class:`FigureRef`). The blocks are rendered
twice: to Markdown (:mod:`.markdown`), with figures linked as ``figures/<name>.png``, and to HTML
(:mod:`.html`), with the same PNGs embedded as ``data:image/png;base64`` URIs, inline CSS and no
external reference (it opens offline).

Every metric stands beside the baseline model (by default the run's LIVI model): see
:func:`compare_to_baseline` for how the baseline value is matched and :func:`arrow` for the
arrows. Headers, directions and counts come from the metric registry (:mod:`multilivi.eval.metrics`).
"""

from multilivi.eval.report import interpretation as _interpretation  # noqa: F401  (programs, hits)
from multilivi.eval.report import scib_section as _scib_section  # noqa: F401  (scIB metrics)
from multilivi.eval.report import sections as _builtin_sections  # noqa: F401  (registers the sections)
from multilivi.eval.report import verdict as _verdict  # noqa: F401  (the answer first)
from multilivi.eval.report.baseline import DOWN, SAME, UP, arrow, choose_baseline, compare_to_baseline
from multilivi.eval.report.blocks import Block, Bullets, Cell, FigureRef, Heading, Paragraph, Table
from multilivi.eval.report.formatting import format_number, format_value
from multilivi.eval.report.html import render_html
from multilivi.eval.report.inputs import (
    ReportInputs,
    Section,
    register_section,
    registered_sections,
    unregister_section,
)
from multilivi.eval.report.markdown import render_markdown
from multilivi.eval.report.tables import Tables, columns_of
from multilivi.eval.report.writer import build_blocks, write_report

__all__ = [
    "DOWN",
    "SAME",
    "UP",
    "Block",
    "Bullets",
    "Cell",
    "FigureRef",
    "Heading",
    "Paragraph",
    "ReportInputs",
    "Section",
    "Table",
    "Tables",
    "arrow",
    "build_blocks",
    "choose_baseline",
    "columns_of",
    "compare_to_baseline",
    "format_number",
    "format_value",
    "register_section",
    "registered_sections",
    "render_html",
    "render_markdown",
    "unregister_section",
    "write_report",
]
