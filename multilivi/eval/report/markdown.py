"""Markdown rendering of report blocks; figures link to ``figures/<name>.png``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multilivi.eval.report.blocks import Block, Bullets, Cell, FigureRef, Heading, Paragraph, Table


def _cell(cell: Cell) -> str:
    text = cell.text
    if cell.delta:
        text += f" ({cell.arrow or 'Δ'} {cell.delta})"
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _heading(block: Heading) -> str:
    return f"{'#' * block.level} {block.text}"


def _paragraph(block: Paragraph) -> str:
    return f"> **Note:** {block.text}" if block.note else block.text


def _bullets(block: Bullets) -> str:
    return "\n".join(f"- {item}" for item in block.items)


def _table(block: Table) -> str:
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in block.header) + " |"]
    lines.append(
        "|" + "|".join("---:" if c.numeric else "---" for c in block.rows[0]) + "|"
        if block.rows
        else "|" + "---|" * len(block.header)
    )
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
    if block.caption:
        lines.append("")
        lines.append(f"*{block.caption}*")
    return "\n".join(lines)


def _figure(block: FigureRef) -> str:
    return f"![{block.caption}](figures/{block.name}.png)\n\n*{block.caption}*"


_RENDER: dict[type, Callable] = {
    Heading: _heading,
    Paragraph: _paragraph,
    Bullets: _bullets,
    Table: _table,
    FigureRef: _figure,
}


def render_markdown(blocks: Sequence[Block]) -> str:
    """Markdown text of ``blocks``; figures link to ``figures/<name>.png``."""
    return "\n\n".join(_RENDER[type(block)](block) for block in blocks) + "\n"
