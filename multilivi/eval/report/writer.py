"""Writing the report: the registered sections' blocks, rendered to ``report.md`` and ``report.html``."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from multilivi.atomic import atomic_write, atomic_write_text
from multilivi.eval.figures import check_scores
from multilivi.eval.outputs import DEFAULT_FDR
from multilivi.eval.report.baseline import choose_baseline
from multilivi.eval.report.blocks import Block, Heading
from multilivi.eval.report.html import render_html
from multilivi.eval.report.inputs import ReportInputs, registered_sections
from multilivi.eval.report.markdown import render_markdown

logger = logging.getLogger("multilivi.eval.report")

FIGURE_DPI = 110
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def build_blocks(
    scores: pd.DataFrame,
    meta: Mapping[str, Any],
    extra_figures: Mapping[str, Figure] | None = None,
    *,
    baseline: str | None = None,
    fdr: float = DEFAULT_FDR,
    artefacts: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[list[Block], dict[str, Figure]]:
    """The report's blocks and the figures they reference (name → Figure).

    ``baseline=None`` chooses the run's LIVI model (:func:`choose_baseline`).
    """
    check_scores(scores)
    chosen = baseline if baseline is not None else choose_baseline(scores, meta)
    inputs = ReportInputs.build(scores, meta, dict(extra_figures or {}), baseline=chosen, fdr=fdr)
    inputs.artefacts = dict(artefacts or {})
    blocks = [block for section in registered_sections() for block in section.build(inputs)]
    return blocks, inputs.figures


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def write_report(
    run_dir: Path,
    scores: pd.DataFrame,
    meta: Mapping[str, Any],
    extra_figures: Mapping[str, Figure] | None = None,
    *,
    baseline: str | None = None,
    fdr: float = DEFAULT_FDR,
    artefacts: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/<name>.png`` into ``run_dir``, atomically.

    Parameters
    ----------
    run_dir
        The run folder (created if missing).
    scores
        The long score table (columns ``SCORE_COLUMNS`` of ``multilivi.eval.results``).
    meta
        Run metadata: ``dataset`` (name, n_cells, n_donors, modalities, n_variants,
        semi_synthetic, note), ``models`` ({name: {family, config, fit_seconds, cached, status}}),
        ``versions``, ``git_sha``, ``argv``, ``created``, ``seed``, ``preset``, ``wall_seconds``.
        Missing keys are shown as ``n/a``.
    extra_figures
        Figures made by the harness: ``umap*`` go to the UMAP section, ``qq*`` to the
        association section, anything else to "Other figures". Names must be file-name safe.
    baseline
        The model every value is compared with; None: the run's first LIVI model (family
        ``livi`` in ``meta["models"]``, else a name starting with ``livi``), or no comparison.
    fdr
        The false-discovery rate of the association calls, for captions and figures.
    artefacts
        Model → its tasks' artefacts, for the sections that draw per-model tables and figures
        (programs, hits, Manhattan); None: those sections say they have nothing to show.

    Returns
    -------
    The paths of ``report.md`` and ``report.html``.
    """
    run_dir = Path(run_dir)
    extra_figures = dict(extra_figures or {})
    bad = [k for k in extra_figures if not _FIGURE_NAME.match(k)]
    if bad:
        raise ValueError(f"figure names {bad} are not file-name safe; use letters, digits, '_', '-' or '.'")
    blocks, figs = build_blocks(scores, meta, extra_figures, baseline=baseline, fdr=fdr, artefacts=artefacts)
    pngs = {name: _png(fig) for name, fig in figs.items()}
    for name, data in pngs.items():
        atomic_write(run_dir / "figures" / f"{name}.png", lambda tmp, data=data: tmp.write_bytes(data))
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    title = blocks[0].text if blocks and isinstance(blocks[0], Heading) else "multilivi report"
    atomic_write_text(md_path, render_markdown(blocks))
    atomic_write_text(html_path, render_html(blocks, pngs, title))
    logger.info("wrote %s and %s with %d figures", md_path, html_path, len(pngs))
    return md_path, html_path
