"""The run report: ``report.md`` and a self-contained ``report.html`` rendered from the score table.

The report is built once as a short list of blocks (:class:`Heading`, :class:`Paragraph`,
:class:`Bullets`, :class:`Table`, :class:`FigureRef`) and rendered twice: to Markdown, with
figures linked as ``figures/<name>.png``, and to HTML, with the same PNGs embedded as
``data:image/png;base64`` URIs, inline CSS and no external reference (it opens offline).

Every metric stands beside the LIVI baseline (model ``livi``): see :func:`compare_to_baseline`
for how the baseline value is matched and :func:`direction` for the arrows.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from multilivi.atomic import atomic_write, atomic_write_text
from multilivi.eval import figures
from multilivi.eval.figures import BASELINE_MODEL, CLASS_PREFIX, check_scores, model_order

logger = logging.getLogger(__name__)

UP, DOWN, SAME = "▲", "▼", "="
EQUAL_TOLERANCE = 1e-12
CLOSER_TO_ONE_PREFIX = "lambda"  # lambda_gc, lambda_gc_null: inflation factors, best at 1
TASK_NOT_RUN = "*"  # metric of a row saying a whole task did not run (multilivi.eval.results.not_run)
DESCRIPTIVE = frozenset({"n_tests", "n_monomorphic_skipped"})  # differences shown, no better/worse
CELL_VIEWS = frozenset({"c", "shared", "all", "emb", "rna", "rna+prot"})
FIGURE_DPI = 110
_FIGURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ----------------------------------------------------------------------------------------------
# Comparison with the LIVI baseline
# ----------------------------------------------------------------------------------------------
def direction(metric: str, value: float, baseline: float, higher_is_better: bool) -> str:
    """The arrow for ``value`` against ``baseline``: ``▲`` better, ``▼`` worse, ``=`` equal, ``""`` if undefined.

    Inflation factors (metrics named ``lambda...``: ``lambda_gc``, ``lambda_gc_null``) are better
    when closer to 1; every other metric follows
    ``higher_is_better``. Values within ``EQUAL_TOLERANCE`` (1e-12) of each other are equal.
    """
    if not (math.isfinite(value) and math.isfinite(baseline)):
        return ""
    if metric.startswith(CLOSER_TO_ONE_PREFIX):
        gain = abs(baseline - 1.0) - abs(value - 1.0)
    else:
        gain = (value - baseline) if higher_is_better else (baseline - value)
    if abs(gain) <= EQUAL_TOLERANCE:
        return SAME
    return UP if gain > 0 else DOWN


def _baseline_view(view: str, livi_views: set[str]) -> str | None:
    if view in livi_views:
        return view
    if view in CELL_VIEWS and "c" in livi_views:
        return "c"
    if view.startswith("donor_means") and "D" in livi_views:
        return "D"
    return None


def compare_to_baseline(scores: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows of ``scores`` with the LIVI baseline value, the difference and an arrow.

    The baseline of a row is LIVI's ``ok`` row of the same task and metric on the same view
    when LIVI has that view; otherwise LIVI's cell state ``c`` for a cell-state view (``shared``,
    ``all``, ``emb``, ``rna``, ``rna+prot``) and LIVI's donor factors ``D`` for ``donor_means*``.

    Returns
    -------
    A copy of the ``ok`` rows with added columns ``baseline_view`` (str, '' when none),
    ``baseline`` (float, NaN when none), ``diff`` (value − baseline) and ``arrow``
    (``▲``/``▼``/``=``, '' when there is no baseline, the row is LIVI itself, or the metric is
    descriptive: ``n_tests``, ``n_monomorphic_skipped``).
    """
    check_scores(scores)
    ok = scores.loc[scores["status"] == "ok"].copy()
    ok["view"] = ok["view"].astype(str)
    livi = ok.loc[ok["model"] == BASELINE_MODEL]
    livi_values = {(r.task, r.metric, r.view): float(r.value) for r in livi.itertuples(index=False)}
    baseline_views, baselines, diffs, arrows = [], [], [], []
    for r in ok.itertuples(index=False):
        livi_views = {v for (t, m, v) in livi_values if t == r.task and m == r.metric}
        bview = None if r.model == BASELINE_MODEL else _baseline_view(r.view, livi_views)
        base = livi_values.get((r.task, r.metric, bview), math.nan) if bview is not None else math.nan
        baseline_views.append(bview or "")
        baselines.append(base)
        diffs.append(float(r.value) - base)
        arrows.append(
            ""
            if r.metric in DESCRIPTIVE
            else direction(r.metric, float(r.value), base, bool(r.higher_is_better))
        )
    ok["baseline_view"] = baseline_views
    ok["baseline"] = baselines
    ok["diff"] = diffs
    ok["arrow"] = arrows
    return ok


# ----------------------------------------------------------------------------------------------
# Number formatting
# ----------------------------------------------------------------------------------------------
def is_count(metric: str) -> bool:
    """Whether ``metric`` is a count (``n_...``), shown as an integer."""
    return metric.split("/", 1)[0].startswith("n_")


def format_number(value: float, *, count: bool = False, signed: bool = False) -> str:
    """Format a metric value: counts as integers; else 1 decimal at ≥ 100, 4 significant digits in [1, 100),
    3 significant digits below 1 (scientific below 1e-4), ``n/a`` for NaN.
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    sign = "+" if signed else ""
    if count:
        return f"{int(round(value)):{sign},d}" if round(value) else "0"
    a = abs(value)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{value:{sign},.1f}"
    if a >= 1:
        return f"{value:{sign}.4g}"
    if a >= 1e-4:
        return f"{value:{sign}.3g}"
    return f"{value:{sign}.2e}"


def format_value(value: float, sd: float, metric: str) -> str:
    """``mean ± sd`` when ``sd`` is finite, else the value alone."""
    text = format_number(value, count=is_count(metric))
    if sd is not None and math.isfinite(sd):
        text += f" ± {format_number(sd, count=is_count(metric))}"
    return text


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Text; `backticks` mark code. ``note`` paragraphs are highlighted."""

    text: str
    note: bool = False


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    """A table cell: ``text`` plus, for a compared metric, the difference and its arrow ('' = no direction)."""

    text: str
    numeric: bool = False
    delta: str = ""
    arrow: str = ""
    muted: bool = False


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class FigureRef:
    """A figure saved as ``figures/<name>.png``."""

    name: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | FigureRef


def slug(text: str) -> str:
    """Anchor of a heading (GitHub style: lower case, punctuation dropped, spaces to hyphens)."""
    return re.sub(r"[^a-z0-9 _-]", "", text.lower()).strip().replace(" ", "-")


# ----------------------------------------------------------------------------------------------
# Markdown renderer
# ----------------------------------------------------------------------------------------------
def _md_cell(cell: Cell) -> str:
    text = cell.text
    if cell.delta:
        text += f" ({cell.arrow or 'Δ'} {cell.delta})"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown text of ``blocks``; figures link to ``figures/<name>.png``."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(f"> **Note:** {block.text}" if block.note else block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |"]
            lines.append(
                "|" + "|".join("---:" if c.numeric else "---" for c in block.rows[0]) + "|"
                if block.rows
                else "|" + "---|" * len(block.header)
            )
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            if block.caption:
                lines.append("")
                lines.append(f"*{block.caption}*")
            out.append("\n".join(lines))
        elif isinstance(block, FigureRef):
            out.append(f"![{block.caption}](figures/{block.name}.png)\n\n*{block.caption}*")
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# HTML renderer
# ----------------------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       max-width: 1180px; margin: 1.5em auto; padding: 0 1.5em; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
nav { font-size: 14px; background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px; padding: .4em .9em; }
nav a { margin-right: 1.1em; color: #0969da; text-decoration: none; white-space: nowrap; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0 .3em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e3e6e8; text-align: left; vertical-align: top; }
thead th { position: sticky; top: 0; background: #eef1f4; border-bottom: 2px solid #c4cad0; z-index: 1; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td:first-child { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.delta { font-size: 11px; margin-left: .5em; }
.up { color: #1a7f37; } .down { color: #cf222e; } .same { color: #6e7781; }
.muted { color: #8c959f; }
.caption { font-size: 12px; color: #57606a; margin: 0 0 1.2em; }
.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .5em .9em; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 12px; color: #57606a; }
code { background: #f1f3f5; padding: 0 .25em; border-radius: 3px; font-size: 90%; }
ul { margin: .3em 0; }
"""
_ARROW_CLASS = {UP: "up", DOWN: "down", SAME: "same"}


def _inline(text: str) -> str:
    """Escape ``text`` for HTML; `backtick` spans become <code>."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _html_cell(cell: Cell) -> str:
    classes = " ".join(c for c in ("num" if cell.numeric else "", "muted" if cell.muted else "") if c)
    attr = f' class="{classes}"' if classes else ""
    body = _inline(cell.text)
    if cell.delta:
        body += (
            f'<span class="delta {_ARROW_CLASS.get(cell.arrow, "same")}">'
            f"{html.escape(cell.arrow or 'Δ')} {html.escape(cell.delta)}</span>"
        )
    return f"<td{attr}>{body}</td>"


def render_html(blocks: Sequence[Block], pngs: Mapping[str, bytes], title: str) -> str:
    """A self-contained XHTML-compatible page of ``blocks``; ``pngs`` maps figure names to PNG bytes."""
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f'<h{block.level} id="{slug(block.text)}">{html.escape(block.text)}</h{block.level}>')
            if block.level == 1 and toc:
                links = "".join(f'<a href="#{slug(h.text)}">{html.escape(h.text)}</a>' for h in toc)
                body.append(f"<nav>{links}</nav>")
        elif isinstance(block, Paragraph):
            body.append(
                f'<p class="note">{_inline(block.text)}</p>'
                if block.note
                else f"<p>{_inline(block.text)}</p>"
            )
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            numeric = [any(row[i].numeric for row in block.rows) for i in range(len(block.header))]
            head = "".join(
                f'<th class="num">{_inline(h)}</th>' if n else f"<th>{_inline(h)}</th>"
                for h, n in zip(block.header, numeric)
            )
            rows = "".join("<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            if block.caption:
                body.append(f'<p class="caption">{_inline(block.caption)}</p>')
        elif isinstance(block, FigureRef):
            data = base64.b64encode(pngs[block.name]).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}" />'
                f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
            )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1" />\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# ----------------------------------------------------------------------------------------------
# Report content
# ----------------------------------------------------------------------------------------------
Column = tuple[str, str, str]  # (task, metric, header)


class _Tables:
    """Builds model-view × metric tables and remembers which ``ok`` rows were placed in one."""

    def __init__(self, cmp: pd.DataFrame, scores: pd.DataFrame) -> None:
        self.cmp, self.scores = cmp, scores
        self.placed: set[tuple[str, str, str, str]] = set()
        self.rank = {m: i for i, m in enumerate(model_order(scores))}

    def table(
        self, columns: Sequence[Column], views: Callable[[str], bool] = lambda v: True, caption: str = ""
    ) -> Table | None:
        """Model views × ``columns``; each cell is ``value ± sd`` with its difference from LIVI.

        Cells of rows that are not ``ok`` show their status; a whole task that did not run
        (metric ``*``) shows as that status in each of its columns. ``None`` if nothing is ``ok``.
        """
        cmp, scores = self.cmp, self.scores
        wanted = {(t, m) for t, m, _ in columns}
        rows = cmp.loc[
            np.array(
                [(t, m) in wanted and views(v) for t, m, v in zip(cmp["task"], cmp["metric"], cmp["view"])],
                dtype=bool,
            )
        ]
        if rows.empty:
            return None
        tasks = {t for t, _, _ in columns}
        bad = scores.loc[
            (scores["status"] != "ok").to_numpy()
            & np.array(
                [
                    ((t, m) in wanted or (t in tasks and m == TASK_NOT_RUN)) and views(str(v))
                    for t, m, v in zip(scores["task"], scores["metric"], scores["view"])
                ],
                dtype=bool,
            )
        ]
        both = pd.concat([rows[["model", "view"]], bad[["model", "view"]].astype(str)])
        pairs = sorted(dict.fromkeys(zip(both["model"], both["view"])), key=lambda mv: self.rank[mv[0]])
        present = [c for c in columns if ((rows["task"] == c[0]) & (rows["metric"] == c[1])).any()]
        index = {(r.model, r.view, r.task, r.metric): r for r in rows.itertuples(index=False)}
        failed = {(r.model, str(r.view), r.task, r.metric): r.status for r in bad.itertuples(index=False)}
        self.placed |= set(index)
        body = []
        for model, view in pairs:
            cells = [Cell(f"{model} (baseline)" if model == BASELINE_MODEL else model), Cell(view)]
            for task, metric, _ in present:
                r = index.get((model, view, task, metric))
                if r is None:
                    status = failed.get((model, view, task, metric)) or failed.get(
                        (model, view, task, TASK_NOT_RUN)
                    )
                    cells.append(Cell(status or "—", numeric=True, muted=True))
                    continue
                text = format_value(r.value, r.sd, metric)
                if math.isfinite(r.diff):
                    delta = format_number(r.diff, count=is_count(metric), signed=True)
                    if r.baseline_view != view:
                        delta += f" vs {r.baseline_view}"
                    cells.append(Cell(text, numeric=True, delta=delta, arrow=r.arrow))
                else:
                    cells.append(Cell(text, numeric=True))
            body.append(tuple(cells))
        return Table(("model", "view", *(h for _, _, h in present)), tuple(body), caption)

    def per_key(self, task: str, prefix: str, caption: str) -> Table | None:
        """A table of the ``<prefix><key>`` metrics of ``task``, one column per key."""
        metrics = self.cmp.loc[
            (self.cmp["task"] == task) & self.cmp["metric"].str.startswith(prefix), "metric"
        ]
        return self.table(
            [(task, m, m.removeprefix(prefix)) for m in dict.fromkeys(metrics)], caption=caption
        )

    def leftovers(self, tasks: Sequence[str]) -> list[Block]:
        """Tables of the ``ok`` rows of ``tasks`` not yet placed (metrics outside SCORES.md included).

        Per-class probe accuracies (``class_accuracy/...``) are left to the figures.
        """
        keys = zip(self.cmp["model"], self.cmp["view"], self.cmp["task"], self.cmp["metric"])
        rest = self.cmp.loc[
            np.array(
                [k not in self.placed and k[2] in tasks and not k[3].startswith(CLASS_PREFIX) for k in keys],
                dtype=bool,
            )
        ]
        blocks: list[Block] = []
        for task in dict.fromkeys(rest["task"]):
            metrics = list(dict.fromkeys(rest.loc[rest["task"] == task, "metric"]))
            plain = [(task, m, m) for m in metrics if "/" not in m]
            groups = dict.fromkeys(m.split("/", 1)[0] for m in metrics if "/" in m)
            tables = [self.table(plain, caption=f"Further `{task}` metrics.")] if plain else []
            tables += [self.per_key(task, f"{g}/", caption=f"`{g}` by `{task}` key.") for g in groups]
            tables = [t for t in tables if t is not None]
            if tables:
                blocks += [Heading(f"Further {task} metrics", 3), *tables]
        return blocks


def _config_text(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    items: list[str] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items += _config_text(value, f"{prefix}{key}.")
        else:
            items.append(f"{prefix}{key}={value}")
    return items


_MODEL_COLUMNS = frozenset({"family", "config", "fit_seconds", "cached", "status", "reason"})


def _meta_cell(value: Any) -> Cell:
    """A run-summary cell: ints with thousands separators, mappings as ``key (value)``, None as n/a."""
    if value is None:
        return Cell("n/a", muted=True)
    if isinstance(value, bool):
        return Cell("yes" if value else "no")
    if isinstance(value, int):
        return Cell(f"{value:,}", numeric=True)
    if isinstance(value, float):
        return Cell(format_number(value), numeric=True)
    if isinstance(value, Mapping):
        return Cell(
            ", ".join(f"{k} ({v:,})" if isinstance(v, int) else f"{k} ({v})" for k, v in value.items())
        )
    if isinstance(value, (list, tuple)):
        return Cell(", ".join(map(str, value)))
    return Cell(str(value))


def _summary_blocks(meta: Mapping[str, Any], scores: pd.DataFrame, tables: _Tables) -> list[Block]:
    blocks: list[Block] = [Heading("Run summary")]
    run = [
        f"created {meta.get('created') or 'n/a'}",
        f"preset `{meta.get('preset') or 'n/a'}`",
        f"seed {meta.get('seed', 'n/a')}",
        f"git `{str(meta.get('git_sha') or 'n/a')[:12]}`",
    ]
    wall = meta.get("wall_seconds")
    if isinstance(wall, (int, float)):
        run.append(f"wall time {format_number(float(wall))} s")
    blocks.append(Paragraph(" · ".join(run)))
    argv = meta.get("argv")
    if argv:
        blocks.append(
            Paragraph(f"Command: `{' '.join(map(str, argv)) if not isinstance(argv, str) else argv}`")
        )

    dataset = dict(meta.get("dataset", {}))
    blocks.append(Heading("Dataset", 3))
    keys = ("name", "n_cells", "n_donors", "modalities", "n_variants")
    rows = [(Cell(key), _meta_cell(dataset.get(key))) for key in keys]
    rows += [
        (Cell(key), _meta_cell(value))
        for key, value in dataset.items()
        if key not in keys and key not in ("semi_synthetic", "note")
    ]
    blocks.append(Table(("property", "value"), tuple(rows)))
    if dataset.get("semi_synthetic"):
        note = dataset.get("note", "")
        blocks.append(
            Paragraph(
                "Semi-synthetic cohort: the genotypes are simulated, not measured"
                + (f" ({note})." if note else "."),
                note=True,
            )
        )

    blocks.append(Heading("Models", 3))
    models = dict(meta.get("models", {}))
    if not (tables.cmp["model"] == BASELINE_MODEL).any():
        blocks.append(
            Paragraph(
                "No `livi` model in this run (or none of its tasks succeeded): there is no LIVI "
                "baseline, so values are shown without differences.",
                note=True,
            )
        )
    model_rows = []
    for name in list(dict.fromkeys([*models, *model_order(scores)])):
        info = dict(models.get(name, {}))
        fit = info.get("fit_seconds")
        settings = {k: v for k, v in info.items() if k not in _MODEL_COLUMNS} | dict(info.get("config") or {})
        config = "; ".join(_config_text(settings)) or "—"
        status = str(info.get("status", "n/a")) + (f": {info['reason']}" if info.get("reason") else "")
        model_rows.append(
            (
                Cell(name),
                Cell(str(info.get("family", "n/a"))),
                Cell(status),
                Cell("yes" if info.get("cached") else "no"),
                Cell(format_number(float(fit)) if isinstance(fit, (int, float)) else "n/a", numeric=True),
                Cell(config),
            )
        )
    blocks.append(Table(("model", "family", "status", "cached", "fit (s)", "config"), tuple(model_rows)))
    training = tables.table(
        [("training", "fit_seconds", "fit seconds"), ("training", "seconds_per_epoch", "seconds / epoch")]
    )
    if training is not None:
        blocks += [Heading("Timings", 3), training]
    blocks += tables.leftovers(["training"])

    versions = dict(meta.get("versions", {}))
    if versions:
        blocks += [Heading("Versions", 3), Paragraph(" · ".join(f"{k} `{v}`" for k, v in versions.items()))]
    return blocks


def _figure(name: str, fig: Figure | None, caption: str, figs: dict[str, Figure]) -> list[Block]:
    if fig is None:
        return []
    figs[name] = fig
    return [FigureRef(name, caption)]


def build_blocks(
    scores: pd.DataFrame, meta: Mapping[str, Any], extra_figures: Mapping[str, Figure]
) -> tuple[list[Block], dict[str, Figure]]:
    """The report's blocks and the figures they reference (name → Figure)."""
    check_scores(scores)
    cmp = compare_to_baseline(scores)
    figs: dict[str, Figure] = {}
    has_livi = bool((cmp["model"] == BASELINE_MODEL).any())
    dataset_name = dict(meta.get("dataset", {})).get("name", "cohort")
    blocks: list[Block] = [Heading(f"multilivi benchmark: {dataset_name}", 1)]
    if has_livi:
        blocks.append(
            Paragraph(
                "Each value is shown beside the LIVI baseline (model `livi`) as Δ = value − LIVI with ▲ better, "
                "▼ worse, = equal; λ is better the closer it is to 1. The baseline is LIVI's same view, else its "
                "cell state `c` for cell-state views and its donor factors `D` for `donor_means` (marked “vs c”). "
                "Probe values are mean ± sd over probe seeds."
            )
        )

    tables = _Tables(cmp, scores)
    blocks += _summary_blocks(meta, scores, tables)

    # Reconstruction
    blocks.append(Heading("Reconstruction"))
    recon = tables.table(
        [
            ("reconstruction", "nll_per_cell_rna", "RNA NLL / cell"),
            ("reconstruction", "nll_per_cell_prot", "protein NLL / cell"),
            ("reconstruction", "nll_per_feature_rna", "RNA NLL / feature"),
            ("reconstruction", "nll_per_feature_prot", "protein NLL / feature"),
        ],
        caption="Held-out negative log-likelihood; lower is better.",
    )
    blocks += [recon] if recon else [Paragraph("No model reported a reconstruction likelihood.")]
    blocks += _figure(
        "nll_tradeoff",
        figures.nll_tradeoff(scores),
        "RNA vs protein held-out NLL per cell (thesis Fig. 4a); dashed line: LIVI's RNA NLL.",
        figs,
    )
    for modality, label in (("rna", "RNA"), ("prot", "protein")):
        table = tables.per_key(
            "reconstruction",
            f"nll_per_cell_{modality}/",
            caption=f"{label} NLL per cell by cell type; lower is better.",
        )
        if table is not None:
            blocks += [Heading(f"{label} NLL per cell type", 3), table]
    blocks += tables.leftovers(["reconstruction"])

    # Probes
    blocks.append(Heading("Probes"))
    probes = tables.table(
        [
            ("probe_cell_type", "accuracy", "cell type acc."),
            ("probe_cell_type", "balanced_accuracy", "cell type bal. acc."),
            ("probe_cell_subtype", "accuracy", "subtype acc."),
            ("probe_cell_subtype", "balanced_accuracy", "subtype bal. acc."),
        ],
        caption="Linear probes on each cell view; higher is better.",
    )
    blocks += [probes] if probes else [Paragraph("No cell-type or subtype probe ran.")]
    blocks += _figure(
        "per_class_subtype",
        figures.per_class_accuracy(scores, "probe_cell_subtype"),
        "Per-class accuracy for cell subtypes (thesis Fig. 4b).",
        figs,
    )
    blocks += _figure(
        "per_class_cell_type",
        figures.per_class_accuracy(scores, "probe_cell_type"),
        "Per-class accuracy for cell types (thesis Fig. 4c).",
        figs,
    )
    blocks += _figure(
        "subtype_donor_accuracy",
        figures.subtype_and_donor_accuracy(scores),
        "Cell-subtype accuracy and donor accuracy (leakage) per cell view, mean ± sd (thesis Fig. 4e).",
        figs,
    )
    blocks += tables.leftovers(["probe_cell_type", "probe_cell_subtype"])

    # Donor leakage
    blocks.append(Heading("Donor leakage"))
    blocks.append(
        Paragraph(
            "Donor identity predicted from the cell-state views. The cell state should describe "
            "the cell, not its donor: lower is better."
        )
    )
    leakage = tables.table(
        [("probe_donor", "accuracy", "donor acc."), ("probe_donor", "balanced_accuracy", "donor bal. acc.")],
        views=lambda v: v in CELL_VIEWS,
    )
    blocks += [leakage] if leakage else [Paragraph("No donor probe ran on a cell-state view.")]
    blocks += tables.leftovers(["probe_donor"])

    # Association
    blocks.append(Heading("Association"))
    assoc = tables.table(
        [
            ("association", "n_significant_pairs", "significant pairs"),
            ("association", "n_significant_variants", "significant variants"),
            ("association", "lambda_gc", "λ_GC"),
            ("association", "n_tests", "tests"),
            ("association", "n_monomorphic_skipped", "monomorphic skipped"),
        ],
        caption="Factor–variant tests at FDR 5 %; λ_GC is better the closer it is to 1.",
    )
    blocks += [assoc] if assoc else [Paragraph("No association test ran.")]
    blocks += _figure(
        "association_counts",
        figures.association_counts(scores),
        "Significant factor–variant pairs and distinct variants per model view (thesis Fig. 4d).",
        figs,
    )
    blocks += tables.leftovers(["association"])
    placed = set()
    for name in sorted(k for k in extra_figures if k.startswith("qq")):
        view = name.removeprefix("qq").lstrip("_") or "all"
        blocks += _figure(name, extra_figures[name], f"QQ plot of association p-values ({view}).", figs)
        placed.add(name)

    # Ground truth
    blocks.append(Heading("Ground truth"))
    dataset = dict(meta.get("dataset", {}))
    if dataset.get("semi_synthetic"):
        blocks.append(
            Paragraph(
                "The genotypes of this cohort are simulated: power and FDR measure recovery of "
                "planted effects, not biology.",
                note=True,
            )
        )
    elif dataset.get("simulated_truth"):
        blocks.append(
            Paragraph(
                "This cohort is simulated: power and FDR measure recovery of the planted effects.", note=True
            )
        )
    truth = tables.table(
        [
            ("truth", "power", "power"),
            ("truth", "empirical_fdr", "empirical FDR"),
            ("truth", "lambda_gc_null", "λ on null variants"),
            ("truth", "factor_recovery", "donor-factor recovery (best |r| per true factor)"),
            ("truth", "cell_state_r2", "cell-state recovery (held-out R²)"),
        ],
        caption="Against the simulated truth; FDR is lower-better, λ closer to 1 is better.",
    )
    per_program = tables.per_key(
        "truth",
        "factor_recovery/",
        caption="Best |correlation| of any learnt donor factor with each true program.",
    )
    truth_blocks = [truth] if truth else []
    if per_program is not None:
        truth_blocks += [Heading("Donor-factor recovery per true program", 3), per_program]
    truth_blocks += _figure(
        "power_fdr", figures.power_fdr(scores), "Power and empirical FDR; dashed line: nominal FDR 5 %.", figs
    )
    truth_blocks += tables.leftovers(["truth"])
    blocks += truth_blocks or [Paragraph("The cohort has no ground truth (or no truth task ran).")]

    # UMAP
    blocks.append(Heading("UMAP"))
    umaps = sorted(k for k in extra_figures if k.startswith("umap"))
    for name in umaps:
        blocks += _figure(
            name,
            extra_figures[name],
            "UMAP of the cell-state views, coloured by cell type (thesis Fig. 5).",
            figs,
        )
        placed.add(name)
    if not umaps:
        blocks.append(Paragraph("No UMAP figure was made for this run."))
    others = [k for k in extra_figures if k not in placed]
    if others:
        blocks.append(Heading("Other figures"))
        for name in others:
            blocks += _figure(name, extra_figures[name], name, figs)

    known = {
        "training",
        "reconstruction",
        "probe_cell_type",
        "probe_cell_subtype",
        "probe_donor",
        "association",
        "truth",
    }
    other = tables.leftovers([t for t in dict.fromkeys(cmp["task"]) if t not in known])
    if other:
        blocks += [Heading("Other metrics"), *other]

    # Skipped tasks
    blocks.append(Heading("Skipped tasks"))
    failed = scores.loc[scores["status"] != "ok"]
    if failed.empty:
        blocks.append(Paragraph("Every task ran."))
    else:
        blocks.append(
            Table(
                ("model", "view", "task", "metric", "status", "reason"),
                tuple(
                    (
                        Cell(str(r.model)),
                        Cell(str(r.view)),
                        Cell(str(r.task)),
                        Cell(str(r.metric)),
                        Cell(str(r.status)),
                        Cell(str(r.reason) or "—"),
                    )
                    for r in failed.itertuples(index=False)
                ),
            )
        )
    return blocks, figs


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------
def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", facecolor="white")
    return buffer.getvalue()


def write_report(
    run_dir: Path,
    scores: pd.DataFrame,
    meta: Mapping[str, Any],
    extra_figures: Mapping[str, Figure] | None = None,
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

    Returns
    -------
    The paths of ``report.md`` and ``report.html``.
    """
    run_dir = Path(run_dir)
    extra_figures = dict(extra_figures or {})
    bad = [k for k in extra_figures if not _FIGURE_NAME.match(k)]
    if bad:
        raise ValueError(f"figure names {bad} are not file-name safe; use letters, digits, '_', '-' or '.'")
    blocks, figs = build_blocks(scores, meta, extra_figures)
    pngs = {name: _png(fig) for name, fig in figs.items()}
    for name, data in pngs.items():
        atomic_write(run_dir / "figures" / f"{name}.png", lambda tmp, data=data: tmp.write_bytes(data))
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    title = blocks[0].text if isinstance(blocks[0], Heading) else "multilivi report"
    atomic_write_text(md_path, render_markdown(blocks))
    atomic_write_text(html_path, render_html(blocks, pngs, title))
    logger.info("wrote %s and %s with %d figures", md_path, html_path, len(pngs))
    return md_path, html_path
