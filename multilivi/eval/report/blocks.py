"""The report's building blocks: what sections return and renderers draw (no content, no markup)."""

from __future__ import annotations

import re
from dataclasses import dataclass


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
    """A table cell: ``text`` and, for a compared metric, the difference and its arrow ('' = no direction)."""

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
