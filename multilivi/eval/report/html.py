"""HTML rendering of report blocks: one self-contained page, figures embedded, inline CSS."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence

from multilivi.eval.report.baseline import DOWN, SAME, UP
from multilivi.eval.report.blocks import Block, Bullets, Cell, FigureRef, Heading, Paragraph, Table, slug

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       max-width: 1180px; margin: 1.5em auto; padding: 0 1.5em; color: #1f2328; line-height: 1.45; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d8dee4; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
nav { font-size: 14px; background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px;
      padding: .4em .9em; }
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
p, li, figcaption { overflow-wrap: anywhere; }
.table-scroll { max-width: 100%; overflow-x: auto; margin: .5em 0 .3em; }
.table-scroll > table { margin: 0; }
"""
TABLE_WRAPPER = "table-scroll"  # every table sits in a box that scrolls sideways instead of widening the page
_ARROW_CLASS = {UP: "up", DOWN: "down", SAME: "same"}


def _inline(text: str) -> str:
    """Escape ``text`` for HTML; `backtick` spans become <code>."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _cell(cell: Cell) -> str:
    classes = " ".join(c for c in ("num" if cell.numeric else "", "muted" if cell.muted else "") if c)
    attr = f' class="{classes}"' if classes else ""
    body = _inline(cell.text)
    if cell.delta:
        body += (
            f'<span class="delta {_ARROW_CLASS.get(cell.arrow, "same")}">'
            f"{html.escape(cell.arrow or 'Δ')} {html.escape(cell.delta)}</span>"
        )
    return f"<td{attr}>{body}</td>"


def _heading(block: Heading, toc: Sequence[Heading]) -> list[str]:
    out = [f'<h{block.level} id="{slug(block.text)}">{html.escape(block.text)}</h{block.level}>']
    if block.level == 1 and toc:
        links = " ".join(f'<a href="#{slug(h.text)}">{html.escape(h.text)}</a>' for h in toc)
        out.append(f"<nav>{links}</nav>")
    return out


def _paragraph(block: Paragraph) -> list[str]:
    return [f'<p class="note">{_inline(block.text)}</p>' if block.note else f"<p>{_inline(block.text)}</p>"]


def _bullets(block: Bullets) -> list[str]:
    return ["<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>"]


def _table(block: Table) -> list[str]:
    numeric = [any(row[i].numeric for row in block.rows) for i in range(len(block.header))]
    head = "".join(
        f'<th class="num">{_inline(h)}</th>' if n else f"<th>{_inline(h)}</th>"
        for h, n in zip(block.header, numeric)
    )
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in block.rows)
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    out = [f'<div class="{TABLE_WRAPPER}">{table}</div>']
    if block.caption:
        out.append(f'<p class="caption">{_inline(block.caption)}</p>')
    return out


def _figure(block: FigureRef, pngs: Mapping[str, bytes]) -> list[str]:
    data = base64.b64encode(pngs[block.name]).decode("ascii")
    return [
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.caption)}" />'
        f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
    ]


def _block(block: Block, pngs: Mapping[str, bytes], toc: Sequence[Heading]) -> list[str]:
    if isinstance(block, Heading):
        return _heading(block, toc)
    if isinstance(block, Paragraph):
        return _paragraph(block)
    if isinstance(block, Bullets):
        return _bullets(block)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, FigureRef):
        return _figure(block, pngs)
    return []


def render_html(blocks: Sequence[Block], pngs: Mapping[str, bytes], title: str) -> str:
    """A self-contained XHTML-compatible page of ``blocks``; ``pngs`` maps figure names to PNG bytes."""
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    body = [line for block in blocks for line in _block(block, pngs, toc)]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1" />\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
