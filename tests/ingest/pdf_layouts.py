"""Real-world PDF layouts, written with pymupdf at test time: catalogues and manuals that do not use
kbengine's ``Category:`` / ``Defect type:`` lines. Each writer returns the path and the sections a
reader should find (title, category, defect type, figure captions)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

from kbengine import synth

PHOTO = 120


@dataclass
class Expected:
    title: str
    category: str
    defect_type: str
    captions: list[str] = field(default_factory=list)
    pages: tuple[int, ...] = (1,)
    causes: str = ""


def _photo(category: str, defect: str | None, seed: int) -> bytes:
    buffer = io.BytesIO()
    synth.sample(category, defect, seed, PHOTO)[0].save(buffer, format="PNG")
    return buffer.getvalue()


def _text(page: pymupdf.Page, x: float, y: float, text: str, size: float = 10, bold: bool = False) -> None:
    page.insert_text((x, y), text, fontsize=size, fontname="hebo" if bold else "helv")


def _box(page: pymupdf.Page, rect: pymupdf.Rect, text: str, size: float = 10) -> None:
    page.insert_textbox(rect, text, fontsize=size, fontname="helv")


def numbered_guide(path: Path) -> tuple[Path, list[Expected]]:
    """A two-page hazelnut inspection guide: a title, numbered headings "4.2 Shell cracks" and
    "4.3 Holes", a paragraph, a root-cause paragraph and a photo each."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 60, "Hazelnut incoming inspection guide", 20, bold=True)
    _text(page, 50, 100, "4 Visual defects", 14, bold=True)
    _box(page, pymupdf.Rect(50, 110, 545, 150), "This chapter lists the defects an inspector rejects at intake.")
    _text(page, 50, 180, "4.2 Shell cracks", 13, bold=True)
    _box(page, pymupdf.Rect(50, 190, 545, 240), "A thin dark fissure runs across the shell of the nut.")
    page.insert_image(pymupdf.Rect(50, 250, 50 + PHOTO, 250 + PHOTO), stream=_photo("disc", "scratch", 1))
    _text(page, 50, 400, "Root cause", 11, bold=True)
    _box(page, pymupdf.Rect(50, 405, 545, 450), "Drying too fast after harvest.")
    page = doc.new_page()
    _text(page, 50, 60, "4.3 Holes", 13, bold=True)
    _box(page, pymupdf.Rect(50, 70, 545, 120), "A round hole bored through the shell by an insect larva.")
    page.insert_image(pymupdf.Rect(50, 130, 50 + PHOTO, 130 + PHOTO), stream=_photo("tile", "hole", 2))
    _text(page, 50, 280, "Impact", 11, bold=True)
    _box(page, pymupdf.Rect(50, 285, 545, 330), "The kernel rots; the lot is rejected.")
    doc.save(path)
    return path, [
        Expected("Shell cracks", "hazelnut", "crack", causes="Drying too fast after harvest."),
        Expected("Holes", "hazelnut", "hole", pages=(2,)),
    ]


def bookmarked_manual(path: Path) -> tuple[Path, list[Expected]]:
    """Headings in the body font (nothing visual to find them by), with an outline (bookmarks)."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 60, "Cable harness quality manual", 10)
    _text(page, 50, 100, "Insulation cuts", 10)
    _box(page, pymupdf.Rect(50, 110, 545, 160), "The insulation of a wire is cut open and copper shows.")
    page.insert_image(pymupdf.Rect(50, 170, 50 + PHOTO, 170 + PHOTO), stream=_photo("fabric", "hole", 3))
    _text(page, 50, 330, "Bent pins", 10)
    _box(page, pymupdf.Rect(50, 340, 545, 380), "A connector pin is bent out of its row.")
    page.insert_image(pymupdf.Rect(50, 390, 50 + PHOTO, 390 + PHOTO), stream=_photo("disc", "missing", 4))
    doc.set_toc([[1, "Cable harness quality manual", 1], [2, "Insulation cuts", 1, 92], [2, "Bent pins", 1, 322]])
    doc.save(path)
    return path, [
        Expected("Insulation cuts", "cable_harness", "cut"),
        Expected("Bent pins", "cable_harness", "bent_pin"),
    ]


def two_column_datasheet(path: Path) -> tuple[Path, list[Expected]]:
    """A datasheet in two columns, each a defect with a figure and its caption below it."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Housing defect datasheet", 18, bold=True)
    for x, name, text, (cat, defect), caption, seed in (
        (50, "Scratches", "Long bright lines in the coating.", ("disc", "scratch"), "Figure 1 - Scratch on the lid", 5),
        (310, "Dents", "A shallow dent deforms the wall.", ("tile", "hole"), "Figure 2 - Dent near the rim", 6),
    ):
        _text(page, x, 90, name, 13, bold=True)
        _box(page, pymupdf.Rect(x, 100, x + 230, 150), text)
        page.insert_image(pymupdf.Rect(x, 160, x + PHOTO, 160 + PHOTO), stream=_photo(cat, defect, seed))
        _text(page, x, 160 + PHOTO + 14, caption, 8)
        _box(page, pymupdf.Rect(x, 300, x + 230, 360), "Consequence: the housing leaks.", 10)
    doc.save(path)
    return path, [
        Expected("Scratches", "housing", "scratch", ["Figure 1 - Scratch on the lid"]),
        Expected("Dents", "housing", "dent", ["Figure 2 - Dent near the rim"]),
    ]


def defect_table(path: Path) -> tuple[Path, list[Expected]]:
    """A table of defects: defect | description | image, one row each, ruled."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Bottle defect table", 18, bold=True)
    rows = [
        ("Defect", "Description", "Image"),
        ("Broken rim", "A piece of the rim is chipped off.", ("disc", "missing", 7)),
        ("Contamination", "Foreign matter sticks to the glass.", ("tile", "stain", 8)),
    ]
    xs = (50, 170, 400, 545)
    for r, row in enumerate(rows):
        y0, y1 = (80, 110) if r == 0 else (110 + (r - 1) * 90, 200 + (r - 1) * 90)
        for c in range(3):
            page.draw_rect(pymupdf.Rect(xs[c], y0, xs[c + 1], y1), color=(0, 0, 0), width=0.8)
        for c, cell in enumerate(row):
            if isinstance(cell, tuple):
                page.insert_image(pymupdf.Rect(xs[c] + 5, y0 + 5, xs[c] + 85, y0 + 85), stream=_photo(*cell))
            else:
                _box(page, pymupdf.Rect(xs[c] + 4, y0 + 4, xs[c + 1] - 4, y1 - 4), cell, 10)
    doc.save(path)
    return path, [Expected("Broken rim", "bottle", "broken_rim"), Expected("Contamination", "bottle", "contamination")]


def page_break_section(path: Path) -> tuple[Path, list[Expected]]:
    """A section that starts at the bottom of page 1 and continues, with its photo, on page 2."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 60, "Tile surface catalogue", 18, bold=True)
    _text(page, 50, 100, "1 Stains", 13, bold=True)
    _box(page, pymupdf.Rect(50, 110, 545, 160), "A soft-edged blotch of a different colour.")
    page.insert_image(pymupdf.Rect(50, 170, 50 + PHOTO, 170 + PHOTO), stream=_photo("tile", "stain", 9))
    _text(page, 50, 760, "2 Cracks", 13, bold=True)
    _box(page, pymupdf.Rect(50, 768, 545, 800), "A dark thin branching line across the glaze.")
    page = doc.new_page()
    _box(page, pymupdf.Rect(50, 50, 545, 100), "It often starts at a corner and grows under load.")
    page.insert_image(pymupdf.Rect(50, 110, 50 + PHOTO, 110 + PHOTO), stream=_photo("tile", "crack", 10))
    _text(page, 50, 260, "Cause", 11, bold=True)
    _box(page, pymupdf.Rect(50, 265, 545, 300), "Thermal shock in the kiln.")
    doc.save(path)
    return path, [
        Expected("Stains", "tile", "stain"),
        Expected("Cracks", "tile", "crack", pages=(1, 2), causes="Thermal shock in the kiln."),
    ]


def scanned_page(path: Path) -> tuple[Path, list[Expected]]:
    """A page with no text layer: a scan of a catalogue page, as one image."""
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_image(page.rect, stream=_photo("tile", "crack", 11))
    doc.save(path)
    return path, []


LAYOUTS = {
    "numbered": numbered_guide,
    "bookmarks": bookmarked_manual,
    "columns": two_column_datasheet,
    "table": defect_table,
    "page-break": page_break_section,
    "scan": scanned_page,
}

TAXONOMY = """\
categories:
  hazelnut: [hazelnuts, nut]
  cable_harness: [cable harness, harness, wire]
  housing: [housings]
  bottle: [bottles, glass]
  tile: [tiles]
defect_types:
  crack: [cracks, fissure, fracture]
  hole: [holes, puncture]
  cut: [cuts, insulation cut]
  bent_pin: [bent pins, bent pin]
  scratch: [scratches]
  dent: [dents]
  broken_rim: [broken rim, chipped rim]
  contamination: [foreign matter]
  stain: [stains, blotch]
"""
