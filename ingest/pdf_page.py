"""What one PDF page gives the structure reader: its text lines and words (from the text layer, or
from OCR: ``ingest.pdf_scan``), its figures, and its ruling (the horizontal and vertical lines a
table is drawn with)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import pymupdf

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 in page points (y down), as pymupdf gives them."""
CAPTION = re.compile(r"^\s*(fig(ure)?\.?|abb\.?|image|photo)\s*\d+", re.IGNORECASE)
"""A figure's caption: "Figure 3 ...", "Fig. 3", "Abb. 3", "Photo 3"."""


@dataclass
class Line:
    page: int
    bbox: Box
    text: str
    size: float
    bold: bool
    column: int = 0
    ocr: bool = False
    """Read by OCR from a page image (its size estimated from its height; ``pdf_scan.glyph_size``)."""


class Word(NamedTuple):
    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    size: float = 0.0
    """Its text's size, comparable between the words of one page (a text layer's font box height,
    OCR's estimate from the glyphs)."""


@dataclass
class Figure:
    page: int
    xref: int
    """The embedded image; 0 for a picture cut out of a scanned page (``clip`` says where)."""
    bbox: Box
    caption: str | None = None
    clip: Box | None = None
    dpi: int | None = None
    """A picture on a scan: the scan's own resolution (it is cut out at that, not resampled)."""

    @property
    def key(self) -> tuple[int, ...]:
        """One figure, whichever sections name it: the embedded image, or the place on a scan."""
        return (self.xref,) if self.xref else (self.page, *(round(v) for v in self.bbox))


@dataclass
class Rules:
    """A page's straight lines: horizontal ``(x0, x1, y)`` and vertical ``(y0, y1, x)``."""

    horizontal: list[tuple[float, float, float]] = field(default_factory=list)
    vertical: list[tuple[float, float, float]] = field(default_factory=list)


RULE_THICKNESS = 2.5
"""A filled rectangle at most this thick (points) is a rule, as word processors draw them."""
RULE_MIN_LENGTH = 20.0


def text_lines(page: pymupdf.Page, number: int, textpage: pymupdf.TextPage | None = None) -> list[Line]:
    """The text layer's lines (in no particular order), with their size and weight."""
    lines: list[Line] = []
    data = page.get_text("dict", flags=pymupdf.TEXT_PRESERVE_WHITESPACE, textpage=textpage)
    for block in data.get("blocks", []):
        if block.get("type") != 0:
            continue
        for line in block.get("lines", []):
            spans = [s for s in line.get("spans", []) if s.get("text", "").strip()]
            if not spans:
                continue
            text = " ".join(" ".join(s["text"].split()) for s in spans).strip()
            chars = [len(s["text"].strip()) for s in spans]
            size = sum(s["size"] * c for s, c in zip(spans, chars, strict=True)) / max(sum(chars), 1)
            bold = all(bool(s.get("flags", 0) & 16) or "bold" in s.get("font", "").lower() for s in spans)
            lines.append(Line(number, tuple(line["bbox"]), text, round(size, 2), bold))
    return lines


def text_words(page: pymupdf.Page) -> list[Word]:
    return [Word(w[0], w[1], w[2], w[3], w[4], w[3] - w[1]) for w in page.get_text("words") if w[4].strip()]


def drawn_rules(page: pymupdf.Page) -> Rules:
    """The page's vector lines: stroked lines, thin filled rectangles, and the edges of stroked
    rectangles (a grid drawn cell by cell)."""
    rules = Rules()
    try:
        drawings = page.get_drawings()
    except Exception:  # a drawing pymupdf cannot read: no ruling, the text is still read
        return rules

    def segment(x0: float, y0: float, x1: float, y1: float) -> None:
        if abs(y1 - y0) <= RULE_THICKNESS and abs(x1 - x0) >= RULE_MIN_LENGTH:
            rules.horizontal.append((min(x0, x1), max(x0, x1), (y0 + y1) / 2))
        elif abs(x1 - x0) <= RULE_THICKNESS and abs(y1 - y0) >= RULE_MIN_LENGTH / 2:
            rules.vertical.append((min(y0, y1), max(y0, y1), (x0 + x1) / 2))

    for drawing in drawings:
        stroked = drawing.get("color") is not None and drawing.get("type") in ("s", "fs")
        for item in drawing.get("items", []):
            if item[0] == "l":
                segment(item[1].x, item[1].y, item[2].x, item[2].y)
            elif item[0] in ("re", "qu"):
                rect = item[1] if item[0] == "re" else item[1].rect
                middle = ((rect.x0 + rect.x1) / 2, (rect.y0 + rect.y1) / 2)
                if rect.height <= RULE_THICKNESS:  # a filled bar: a horizontal rule
                    segment(rect.x0, middle[1], rect.x1, middle[1])
                elif rect.width <= RULE_THICKNESS:
                    segment(middle[0], rect.y0, middle[0], rect.y1)
                elif stroked:
                    for a, b in ((rect.tl, rect.tr), (rect.bl, rect.br), (rect.tl, rect.bl), (rect.tr, rect.br)):
                        segment(a.x, a.y, b.x, b.y)
    return Rules(_joined(rules.horizontal), _joined(rules.vertical))


def _joined(segments: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Collinear segments that touch as one: a grid drawn cell by cell has whole rules."""
    out: list[tuple[float, float, float]] = []
    for start, end, at in sorted(segments, key=lambda s: (round(s[2]), s[0])):
        if out and abs(out[-1][2] - at) <= 1 and start <= out[-1][1] + 3:
            out[-1] = (out[-1][0], max(out[-1][1], end), out[-1][2])
        else:
            out.append((start, end, at))
    return out


def capped_dpi(clip: Box, dpi: int, max_pixels: int) -> int:
    """``dpi``, lowered (to 1 at least) so a render of ``clip`` stays under ``max_pixels``."""
    area = max((clip[2] - clip[0]) * (clip[3] - clip[1]), 1.0)
    if area * (dpi / 72) ** 2 <= max_pixels:
        return dpi
    return max(1, int(72 * math.sqrt(max_pixels / area)))
