"""The structure of a real PDF: its sections, figures with their captions, and defect tables.

Real catalogues and manuals do not carry kbengine's ``Category:`` lines; a knowledge document is
one *section*, found in this order:

1. the outline (bookmarks), when the PDF has one: each entry below the top level starts a section
   at its position on its page;
2. else headings: short lines set larger than the body text (1.15x its median size), or bold, or
   numbered ("4.2 Shell cracks") in at least the body size, that do not end a sentence and are not
   paragraph headings of the text sections ("Root cause", "Impact", ...);
3. a defect table (a ruled table whose header names a defect/type/name column): one section per
   row, titled by that cell, its other cells as the description, the images in the row as figures;
4. a page with no text layer (a scan) is a section of its own, without a title or labels;
5. a PDF with none of these: one section per page, titled by its first line, as kbengine's own
   catalogue format expects; a page without ``Category:`` / ``Defect type:`` lines (and not named
   in the sidecar) continues the page before it (a defect entry may span pages).

Reading order: lines are read column by column when a page is set in two columns (text blocks on
both halves of the page), top to bottom otherwise. A section runs across page breaks until the next
heading. The biggest heading of the first page, when it is the only one at its size, is the
document's title, not a section. A heading that only introduces sub-headings ("4 Visual defects")
is kept as the sections' parent (context for labels), not as a section of its own. Figures belong
to the section whose lines surround them, and a line beginning "Figure N" / "Fig. N" near a figure
is its caption.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

import pymupdf

from kbengine.core.vocabulary import SECTION_NAMES

HEADING_SCALE = 1.15
MAX_HEADING_WORDS = 12
CAPTION = re.compile(r"^\s*(fig(ure)?\.?|abb\.?|image|photo)\s*\d+", re.IGNORECASE)
NUMBERED = re.compile(r"^\s*(\d+(\.\d+)*)\.?\s+(\S.*)$")
TABLE_KEY = re.compile(r"defect|fault|flaw|failure|imperfection|nonconformit", re.IGNORECASE)
"""A table is a defect table when a header cell names defects (not any "type" or "name" column)."""
META_LINE = re.compile(r"^\s*(domain|category|defect[ _-]?type)\s*[:\-\u2013]", re.IGNORECASE)

SECTION_WORDS: dict[str, tuple[str, ...]] = {
    "description": ("description", "overview", "definition", "summary", "what it is"),
    "appearance": ("appearance", "visual appearance", "characteristics", "symptoms", "how to recognise",
                   "how to recognize", "identification", "look", "features"),
    "causes": ("causes", "cause", "root cause", "root causes", "origin", "reason", "reasons", "why it happens"),
    "consequences": ("consequences", "consequence", "effect", "effects", "impact", "risk", "risks", "severity",
                     "remedy", "remedies", "corrective action", "action", "disposition"),
    "production_scenarios": ("production scenarios", "production scenario", "where it occurs", "occurrence",
                             "process step", "production"),
    "application_scenarios": ("application scenarios", "application scenario", "application", "applications",
                              "use", "usage"),
}  # fmt: skip
"""Paragraph headings, in the wordings real documents use, of each text section."""
assert set(SECTION_WORDS) == set(SECTION_NAMES)
_SECTION_LOOKUP = {w: name for name, words in SECTION_WORDS.items() for w in words}
_PARAGRAPH = re.compile(
    r"^\s*(" + "|".join(sorted(map(re.escape, _SECTION_LOOKUP), key=len, reverse=True)) + r")\s*(:|-|–)?\s*(.*)$",
    re.IGNORECASE,
)


@dataclass
class Line:
    page: int
    bbox: tuple[float, float, float, float]
    text: str
    size: float
    bold: bool
    column: int = 0


@dataclass
class Figure:
    page: int
    xref: int
    bbox: tuple[float, float, float, float]
    caption: str | None = None


@dataclass
class Section:
    """One knowledge document's worth of a PDF."""

    title: str | None
    heading_source: str
    """outline | heading | table | page (no structure found) | scan (no text layer)."""
    parents: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    clips: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    """Per page, the area the section covers (for its page image)."""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def touch(self, page: int, bbox: tuple[float, float, float, float]) -> None:
        if page not in self.pages:
            self.pages.append(page)
        old = self.clips.get(page)
        self.clips[page] = (
            bbox
            if old is None
            else (min(old[0], bbox[0]), min(old[1], bbox[1]), max(old[2], bbox[2]), max(old[3], bbox[3]))
        )


@dataclass
class Structure:
    title: str | None
    sections: list[Section]


def paragraph_heading(text: str) -> tuple[str, str] | None:
    """``("causes", rest)`` when ``text`` opens a text section ("Root cause: ..."), else None."""
    match = _PARAGRAPH.match(text)
    if not match:
        return None
    rest = match.group(3).strip()
    if not match.group(2) and rest and rest[:1].islower():
        return None  # "Use the ..." is a sentence, not a heading
    return _SECTION_LOOKUP[match.group(1).lower()], rest


def strip_numbering(title: str) -> str:
    match = NUMBERED.match(title)
    return match.group(3).strip() if match else title.strip()


def _page_lines(page: pymupdf.Page, number: int) -> list[Line]:
    lines: list[Line] = []
    data = page.get_text("dict", flags=pymupdf.TEXT_PRESERVE_WHITESPACE)
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
    return _reading_order(lines, page.rect.width)


def _reading_order(lines: list[Line], width: float) -> list[Line]:
    """Top to bottom; column by column when the page is set in two columns."""
    middle = width / 2
    left = [ln for ln in lines if ln.bbox[2] <= middle + 5]
    right = [ln for ln in lines if ln.bbox[0] >= middle - 5]
    spanning = [ln for ln in lines if ln not in left and ln not in right]
    # captions under a row of photos are no column of text: only other lines decide
    two_columns = (
        sum(1 for ln in left if not CAPTION.match(ln.text)) >= 2
        and sum(1 for ln in right if not CAPTION.match(ln.text)) >= 2
    )
    if not two_columns:
        return sorted(lines, key=lambda ln: (round(ln.bbox[1], 1), ln.bbox[0]))
    top = min((ln.bbox[1] for ln in left + right), default=0.0)
    head = sorted((ln for ln in spanning if ln.bbox[1] < top), key=lambda ln: ln.bbox[1])
    rest = sorted((ln for ln in spanning if ln.bbox[1] >= top), key=lambda ln: ln.bbox[1])
    for ln in right:
        ln.column = 1
    ordered = (
        head
        + sorted(left, key=lambda ln: (ln.bbox[1], ln.bbox[0]))
        + sorted(right, key=lambda ln: (ln.bbox[1], ln.bbox[0]))
        + rest
    )
    return ordered


def _is_heading(line: Line, body: float, bold_counts: bool = True) -> bool:
    text = line.text.strip()
    words = text.split()
    if not words or len(words) > MAX_HEADING_WORDS or text.endswith((".", ",", ";")) or CAPTION.match(text):
        return False
    if paragraph_heading(text) is not None or META_LINE.match(text) or not any(c.isalpha() for c in text):
        return False
    larger = line.size >= body * HEADING_SCALE
    if ":" in text and not larger:
        return False  # "Note: ..." in the body size is a sentence, not a heading
    numbered = NUMBERED.match(text) is not None and line.size >= body - 0.5
    return larger or numbered or (bold_counts and line.bold and line.size >= body - 0.5)


def _body_size(lines: list[Line]) -> float:
    sizes = [ln.size for ln in lines for _ in range(max(1, len(ln.text) // 10))]
    return statistics.median(sizes) if sizes else 10.0


def _figures(page: pymupdf.Page, number: int, lines: list[Line], min_side: int) -> list[Figure]:
    figures = []
    for info in page.get_images(full=True):
        xref = info[0]
        try:
            rects = page.get_image_rects(xref)
        except Exception:  # a broken image reference: the figure is still extracted, without a place
            rects = []
        if not rects:
            continue
        rect = rects[0]
        if rect.width < min_side / 2 or rect.height < min_side / 2:
            continue
        figure = Figure(number, xref, (rect.x0, rect.y0, rect.x1, rect.y1))
        figure.caption = _caption(figure, lines)
        figures.append(figure)
    return figures


def _caption(figure: Figure, lines: list[Line]) -> str | None:
    """The nearest "Figure N ..." line just below (or above) the figure, overlapping it horizontally."""
    x0, y0, x1, y1 = figure.bbox
    best: tuple[float, str] | None = None
    for line in lines:
        if not CAPTION.match(line.text) or line.bbox[2] < x0 or line.bbox[0] > x1:
            continue
        gap = line.bbox[1] - y1 if line.bbox[1] >= y1 - 2 else y0 - line.bbox[3]
        if -2 <= gap <= 40 and (best is None or gap < best[0]):
            best = (gap, line.text)
    return best[1] if best else None


def _plain(text: str) -> str:
    return " ".join(strip_numbering(text).lower().split())


def _outline_sections(document: pymupdf.Document, lines: list[Line]) -> list[tuple[Line | None, int, str, int]]:
    """(the heading line, or None; its page; its title; its level) for each outline entry. The
    line is the entry's text on its page (numbering and case aside), else the first line at or
    below the entry's target point."""
    found = []
    for entry in document.get_toc(simple=False):
        level, title, page = entry[0], str(entry[1]).strip(), int(entry[2])
        if page < 1:
            continue
        target = _plain(title)
        on_page = [ln for ln in lines if ln.page == page]
        match = next((ln for ln in on_page if _plain(ln.text) == target), None)
        point = entry[3].get("to") if len(entry) > 3 and isinstance(entry[3], dict) else None
        if match is None and point is not None:
            height = document[page - 1].rect.height
            y = height - float(point.y) if float(point.y) > 0 else 0.0  # PDF points count from the bottom
            match = min((ln for ln in on_page if ln.bbox[1] >= y - 14), key=lambda ln: ln.bbox[1], default=None)
        found.append((match, page, title, level))
    return found


def _tables(page: pymupdf.Page, number: int) -> list[tuple[tuple[float, float, float, float], list[Section]]]:
    """Defect tables of the page: (their area, one section per row). Only ruled pages are searched."""
    try:
        if not page.get_drawings():
            return []
        tables = page.find_tables().tables
    except Exception:  # table detection is a heuristic; a page it cannot read is simply not a table
        return []
    words = page.get_text("words")

    def cell_text(bbox: tuple[float, float, float, float] | None) -> str:
        if bbox is None:
            return ""
        inside = [w for w in words if _inside((w[0], w[1], w[2], w[3]), bbox)]
        inside.sort(key=lambda w: (round(w[1]), w[0]))
        return " ".join(w[4] for w in inside).strip()

    found = []
    for table in tables:
        rows = table.rows
        if len(rows) < 2:
            continue
        header = [cell_text(c) for c in rows[0].cells]
        key = next((i for i, h in enumerate(header) if TABLE_KEY.search(h)), None)
        if key is None:
            continue
        sections = []
        for row in rows[1:]:
            cells = [cell_text(c) for c in row.cells]
            if key >= len(cells) or not cells[key]:
                continue
            section = Section(title=cells[key], heading_source="table")
            body = [f"{header[i]}: {c}" if header[i] and i != key else c for i, c in enumerate(cells) if c and i != key]
            bbox = tuple(row.bbox)
            section.lines = [Line(number, bbox, text, 10.0, False) for text in body]
            section.touch(number, bbox)
            sections.append(section)
        if sections:
            found.append((tuple(table.bbox), sections))
    return found


def _gap(y: float, bbox: tuple[float, float, float, float]) -> float:
    """Vertical distance of ``y`` from the box (0 inside)."""
    return max(bbox[1] - y, 0.0, y - bbox[3])


def _inside(bbox: tuple[float, float, float, float], area: tuple[float, float, float, float]) -> bool:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return area[0] - 1 <= cx <= area[2] + 1 and area[1] - 1 <= cy <= area[3] + 1


def read_structure(
    document: pymupdf.Document, min_figure_side: int = 32, starts_pages: set[int] | frozenset[int] = frozenset()
) -> Structure:
    """The PDF's sections in reading order (see the module docstring). ``starts_pages``: pages
    that begin a section of their own when the PDF has no structure (a sidecar names them)."""
    pages = [document[i] for i in range(document.page_count)]
    for page in pages:
        if page.rotation:
            page.remove_rotation()  # positions in the page as shown (in memory only)
    lines: list[Line] = []
    figures: list[Figure] = []
    tables: list[tuple[int, tuple[float, float, float, float], list[Section]]] = []
    scans: list[Section] = []
    middles: dict[int, float] = {}
    for number, page in enumerate(pages, 1):
        page_lines = _page_lines(page, number)
        if any(ln.column for ln in page_lines):
            middles[number] = page.rect.width / 2
        page_figures = _figures(page, number, page_lines, min_figure_side)
        for area, rows in _tables(page, number):
            tables.append((number, area, rows))
            taken = []
            reach = max(r.clips[number][3] - r.clips[number][1] for r in rows)
            for figure in page_figures:
                middle = (figure.bbox[1] + figure.bbox[3]) / 2
                if figure.bbox[2] < area[0] or not area[1] - 5 <= middle <= area[3] + reach:
                    continue
                row = min(rows, key=lambda r: _gap(middle, r.clips[number]))
                row.figures.append(figure)
                row.touch(number, figure.bbox)
                taken.append(figure)
            page_figures = [f for f in page_figures if f not in taken and not _inside(f.bbox, area)]
            page_lines = [ln for ln in page_lines if not _inside(ln.bbox, area)]
        if not page_lines and not any(t[0] == number for t in tables) and page_figures:
            scan = Section(title=None, heading_source="scan", figures=[])
            scan.touch(number, tuple(page.rect))
            scans.append(scan)
            continue
        lines += page_lines
        figures += page_figures
    body = _body_size(lines)
    outline = _outline_sections(document, lines) if document.get_toc() else []
    if outline and sum(line is not None for line, *_ in outline) < len(outline) / 2:
        outline = []  # an outline that points at no text: find the headings instead
    title: str | None = None
    starts: dict[int, tuple[str, int, str]] = {}  # id(line) -> (title, level, source)
    if outline:
        top_level = min(level for _, _, _, level in outline)
        nested = any(level > top_level for _, _, _, level in outline)
        for line, _page, text, level in outline:
            if nested and level == top_level and title is None:
                title = text
                continue
            if line is not None:
                starts[id(line)] = (text, level, "outline")
    else:
        bold_counts = (
            len(lines) < 6 or sum(ln.bold for ln in lines) <= len(lines) / 2
        )  # all-bold text: weight says nothing
        headings = [ln for ln in lines if _is_heading(ln, body, bold_counts)]
        if headings:
            biggest = max(ln.size for ln in headings)
            top = [ln for ln in headings if ln.size >= biggest - 0.1]
            opening = next((ln for ln in lines if ln.page == 1), None)
            if len(top) == 1 and top[0].page == 1 and (len(headings) > 1 or top[0] is opening):
                title = top[0].text
                headings.remove(top[0])
        sizes = sorted({ln.size for ln in headings}, reverse=True)
        for ln in headings:
            numbering = NUMBERED.match(ln.text)
            level = numbering.group(1).count(".") + 1 if numbering else sizes.index(ln.size) + 1
            starts[id(ln)] = (strip_numbering(ln.text), level, "heading")
    sections: list[Section] = []
    parents: list[tuple[int, str]] = []
    current: Section | None = None
    for ln in lines:
        if title is not None and ln.text == title and current is None:
            continue
        start = starts.get(id(ln))
        if start is not None:
            text, level, source = start
            parents = [p for p in parents if p[0] < level]
            current = Section(title=text, heading_source=source, parents=[p[1] for p in parents])
            current.touch(ln.page, ln.bbox)
            sections.append(current)
            parents.append((level, text))
            continue
        if current is None or (not starts and ln.page not in current.pages and _opens_page(ln, lines, starts_pages)):
            current = Section(title=None, heading_source="page")  # no structure found: a page each
            sections.append(current)
        current.lines.append(ln)
        current.touch(ln.page, ln.bbox)
    for figure in figures:
        owner = _owner(sections, figure, middles)
        if owner is None:
            owner = Section(title=None, heading_source="page")
            sections.append(owner)
        owner.figures.append(figure)
        owner.touch(figure.page, figure.bbox)
    # a heading followed by deeper headings introduces them: it is their parent, not a document
    parents_only = {p for s in sections for p in s.parents}
    kept = [s for s in sections if (s.lines or s.figures) and not (s.title in parents_only and not s.figures)]
    for section in kept:
        if section.heading_source == "page" and section.lines and _title_like(section.lines[0].text):
            section.title = section.lines.pop(0).text  # the first line of a page without structure
    for _, _, rows in tables:
        kept += rows
    kept += scans
    kept.sort(key=_position)
    return Structure(title=title, sections=kept)


def _title_like(text: str) -> bool:
    return len(text.split()) <= MAX_HEADING_WORDS and not META_LINE.match(text) and paragraph_heading(text) is None


def _opens_page(line: Line, lines: list[Line], starts_pages: set[int] | frozenset[int]) -> bool:
    """Without structure: whether ``line``'s page starts a section (it has metadata lines, or the
    sidecar names it)."""
    return line.page in starts_pages or any(ln.page == line.page and META_LINE.match(ln.text) for ln in lines)


def _position(section: Section) -> tuple[int, int, float]:
    """Where a section starts: page, column, height."""
    page = min(section.pages) if section.pages else 0
    clip = section.clips.get(page, (0.0, 0.0, 0.0, 0.0))
    column = min((ln.column for ln in section.lines if ln.page == page), default=0)
    return page, column, clip[1]


def _owner(sections: list[Section], figure: Figure, middles: dict[int, float]) -> Section | None:
    """The section the figure sits in: on its page, the latest-starting section above it in its
    column (``middles``: the pages set in two columns, and where they divide); else the section
    running over from an earlier page."""
    y0 = figure.bbox[1]
    middle = middles.get(figure.page)
    column = 0 if middle is None or figure.bbox[0] < middle - 5 else 1
    best: tuple[float, Section] | None = None
    running: Section | None = None
    for section in sections:
        if section.pages and min(section.pages) < figure.page:
            running = section
        clip = section.clips.get(figure.page)
        if clip is None:
            continue
        columns = {ln.column for ln in section.lines if ln.page == figure.page} or {0 if middle is None else
                   (0 if clip[0] < middle - 5 else 1)}  # fmt: skip
        if column in columns and clip[1] <= y0 + 1 and (best is None or clip[1] >= best[0]):
            best = (clip[1], section)
    return best[1] if best else running
