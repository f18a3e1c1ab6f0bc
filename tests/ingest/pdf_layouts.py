"""Real-world PDF layouts, written with pymupdf at test time: catalogues and manuals that do not use
kbengine's ``Category:`` / ``Defect type:`` lines. Each writer returns the path and the sections a
reader should find (title, category, defect type, figure captions); ``synth.write_scan`` turns any
of them into the scan a plant keeps (its pages as images, no text layer)."""

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


def two_column_prose(path: Path) -> Path:
    """Prose in two columns under the headings "Typical defects" and "Their causes": no table."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Notes on glass inspection", 18, bold=True)
    _text(page, 50, 90, "Typical defects", 10, bold=True)
    _text(page, 310, 90, "Their causes", 10, bold=True)
    left = "Most rejected bottles show a broken rim or a stone in the glass. " * 4
    right = "A broken rim comes from knocks on the conveyor; stones from the batch. " * 4
    _box(page, pymupdf.Rect(50, 100, 290, 300), left)
    _box(page, pymupdf.Rect(310, 100, 545, 300), right)
    doc.save(path)
    return path


def limits_table(path: Path) -> tuple[Path, list[Expected]]:
    """A compact table of text only, one line a row, rules between the rows: defect | limit."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Housing acceptance limits", 18, bold=True)
    y = 80.0
    for cells, bold in ((("Defect", "Acceptance limit"), True), (("Scratches", "Up to 5 mm long."), False),
                        (("Dents", "None on a sealing face."), False)):  # fmt: skip
        page.draw_line((50, y), (545, y), color=(0, 0, 0), width=0.6)
        _text(page, 52, y + 13, cells[0], 10, bold=bold)
        _text(page, 200, y + 13, cells[1], 10, bold=bold)
        y += 18
    page.draw_line((50, y), (545, y), color=(0, 0, 0), width=0.6)
    _box(page, pymupdf.Rect(50, y + 20, 545, y + 60), "Measure under the inspection lamp at arm's length.")
    doc.save(path)
    return path, [Expected("Scratches", "housing", "scratch"), Expected("Dents", "housing", "dent")]


def defect_table(path: Path) -> tuple[Path, list[Expected]]:
    """A table of defects: defect | description | image, one row each, ruled."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Bottle defect table", 18, bold=True)
    rows: list[tuple[str, str, str | tuple[str, str, int]]] = [
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
            if isinstance(cell, str):
                _box(page, pymupdf.Rect(xs[c] + 4, y0 + 4, xs[c + 1] - 4, y1 - 4), cell, 10)
            else:
                page.insert_image(pymupdf.Rect(xs[c] + 5, y0 + 5, xs[c] + 85, y0 + 85), stream=_photo(*cell))
    doc.save(path)
    return path, [Expected("Broken rim", "bottle", "broken_rim"), Expected("Contamination", "bottle", "contamination")]


def _rules_table(
    doc: pymupdf.Document,
    rows: list[tuple[str, str, tuple[str, str, int]]],
    *,
    title: str | None,
    rules: bool = True,
    per_page: int = 9,
    repeat_header: bool = True,
    height: float = 842,
    at: tuple[pymupdf.Page, float] | None = None,
    drop: float = 0,
) -> tuple[pymupdf.Page, float]:
    """A defect | description | image table typeset the way datasheets do: bold header, no vertical
    lines; horizontal rules above and below the header, between rows and under the table (or, with
    ``rules=False``, none at all: columns aligned by whitespace only). Rows over ``per_page`` go on to
    a new page, with the header repeated or not. The key column is narrow: a long name wraps. The
    table starts on a new page, or ``at`` a page and height; the page and height after it come back.
    ``drop``: the photos sit that much lower than the row's text (centred in a tall row)."""
    xs = (50, 124, 400)
    page, y = at or (doc.new_page(height=height), 50.0)
    if title:
        _text(page, 50, y, title, 18, bold=True)
        y += 30

    def header(page: pymupdf.Page, y: float) -> float:
        if rules:
            page.draw_line((50, y), (545, y), color=(0, 0, 0), width=1.2)
        for x, name in zip(xs, ("Defect", "Description", "Image"), strict=True):
            _text(page, x + 2, y + 15, name, 10, bold=True)
        if rules:
            page.draw_line((50, y + 22), (545, y + 22), color=(0, 0, 0), width=0.6)
        return y + 22

    y = header(page, y)
    on_page = 0
    for name, text, photo in rows:
        if on_page == per_page:
            page, y, on_page = doc.new_page(height=height), 50.0, 0
            if repeat_header:
                y = header(page, y)
            elif rules:
                page.draw_line((50, y), (545, y), color=(0, 0, 0), width=0.6)
        _box(page, pymupdf.Rect(xs[0] + 2, y + 6, xs[1] - 6, y + 40), name)
        _box(page, pymupdf.Rect(xs[1] + 2, y + 6, xs[2] - 6, y + 80), text)
        page.insert_image(pymupdf.Rect(xs[2] + 2, y + 6 + drop, xs[2] + 82, y + 86 + drop), stream=_photo(*photo))
        y += 92 + drop
        on_page += 1
        if rules:
            page.draw_line((50, y), (545, y), color=(0, 0, 0), width=0.6 if on_page < per_page else 1.2)
    return page, y


def table_in_a_manual(path: Path) -> tuple[Path, list[Expected]]:
    """A manual's chapter: a numbered heading, a paragraph, a horizontally ruled defect table, a
    paragraph after it, and the next chapter. The rows' category is named by the chapter's heading
    only (not by the document's title)."""
    doc = pymupdf.open()
    page = doc.new_page()
    _text(page, 50, 50, "Inspection manual", 18, bold=True)
    _text(page, 50, 90, "5 Tile surface defects", 14, bold=True)
    _box(page, pymupdf.Rect(50, 100, 545, 140), "Reject a tile with any of the defects in this table.")
    page, y = _rules_table(
        doc,
        [
            ("Blisters", "Raised bubbles in the glaze.", ("tile", "hole", 20)),
            ("Crazing", "A net of fine cracks all over the glaze, like a cobweb.", ("tile", "crack", 21)),
        ],
        title=None,
        at=(page, 150.0),
    )
    _box(page, pymupdf.Rect(50, y + 20, 545, y + 60), "Other marks on the glaze are judged by the shift supervisor.")
    _text(page, 50, y + 90, "6 Packaging", 14, bold=True)
    _box(page, pymupdf.Rect(50, y + 100, 545, y + 140), "Pack the tiles on edge, never flat, with a sheet between.")
    doc.save(path)
    return path, [Expected("Blisters", "tile", "blister"), Expected("Crazing", "tile", "crazing")]


def ruled_table(path: Path) -> tuple[Path, list[Expected]]:
    """A defect table ruled by horizontal lines only (no vertical lines), as most datasheets are."""
    doc = pymupdf.open()
    _rules_table(
        doc,
        [
            (
                "Chipped edge or corner",
                "A piece of the tile's edge is broken off, mostly at a corner knocked in transport or stacking.",
                ("tile", "missing", 12),
            ),
            ("Pinholes", "Tiny holes in the glaze, like needle pricks.", ("tile", "hole", 13)),
            (
                "Glaze crawling",
                "The glaze pulls back from the body and leaves bare spots with thick rolled edges.",
                ("tile", "stain", 14),
            ),
        ],
        title="Tile defect table",
        drop=40,
    )
    doc.save(path)
    return path, [
        Expected("Chipped edge or corner", "tile", "chipped_edge"),
        Expected("Pinholes", "tile", "pinhole"),
        Expected("Glaze crawling", "tile", "crawling"),
    ]


def whitespace_table(path: Path) -> tuple[Path, list[Expected]]:
    """A defect table without any rule: its columns aligned by whitespace only."""
    doc = pymupdf.open()
    _rules_table(
        doc,
        [
            ("Porosity", "Small gas pores in the casting surface, open or just under the skin.", ("disc", "hole", 15)),
            ("Cold shut", "Two metal fronts met without fusing.", ("disc", "scratch", 16)),
        ],
        title="Housing casting defects",
        rules=False,
        drop=40,
    )
    doc.save(path)
    return path, [Expected("Porosity", "housing", "porosity"), Expected("Cold shut", "housing", "cold_shut")]


def split_table(path: Path, repeat_header: bool = True) -> tuple[Path, list[Expected]]:
    """A horizontally ruled defect table over two pages, its header repeated on the second or not."""
    doc = pymupdf.open()
    _rules_table(
        doc,
        [
            ("Broken rim", "A piece of the rim is chipped off.", ("disc", "missing", 17)),
            ("Contamination", "Foreign matter sticks to the glass.", ("tile", "stain", 18)),
            ("Scratches", "Fine bright lines on the glass.", ("disc", "scratch", 19)),
        ],
        title="Bottle defect table",
        per_page=2,
        repeat_header=repeat_header,
        height=340,  # two rows fill a page
    )
    doc.save(path)
    return path, [
        Expected("Broken rim", "bottle", "broken_rim"),
        Expected("Contamination", "bottle", "contamination"),
        Expected("Scratches", "bottle", "scratch", pages=(2,)),
    ]


def split_table_no_header(path: Path) -> tuple[Path, list[Expected]]:
    """The same table over two pages, its second page going on without the header."""
    return split_table(path, repeat_header=False)


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
    "rules": ruled_table,
    "whitespace": whitespace_table,
    "split": split_table,
    "split-no-header": split_table_no_header,
    "page-break": page_break_section,
    "scan": scanned_page,
}
TABLES = {"table": "grid", "rules": "rules", "whitespace": "whitespace", "split": "rules", "split-no-header": "rules"}
"""The table layouts, and how each is ruled."""

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
  chipped_edge: [chipped edge, chipped edges]
  pinhole: [pinholes]
  crawling: [glaze crawling]
  porosity: [pores, porous]
  cold_shut: [cold shut, cold shuts]
  blister: [blisters]
  crazing: [crazed]
"""
