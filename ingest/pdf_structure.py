"""The structure of a real PDF: its sections, figures with their captions, and defect tables.

Real catalogues and manuals do not carry kbengine's ``Category:`` lines; a knowledge document is
one *section*, found in this order:

1. the outline (bookmarks), when the PDF has one: each entry below the top level starts a section
   at its position on its page;
2. else headings: short lines set larger than the body text (1.15x its median size), or bold, or
   numbered ("4.2 Shell cracks") in at least the body size, that do not end a sentence and are not
   paragraph headings of the text sections ("Root cause", "Impact", ...); a line read by OCR has
   no font, its size is estimated from its glyphs, and a heading stands out 1.2x;
3. a defect table (ruled by a grid, by horizontal lines only, or by whitespace; its header names a
   defect column: ``ingest.pdf_tables``): one section per row, titled by that cell, its other
   cells as the description (each under its column's name), the images in the row as figures,
   rows that go on over a page break included; the header is never a section;
4. a page with no text layer (a scan) is read by OCR (``ingest.pdf_scan``) and then like any
   other page; one OCR cannot read (no Tesseract, ``--ocr never``, nothing legible) is a section
   of its own, without a title or labels;
5. a PDF with none of these: one section per page, titled by its first line, as kbengine's own
   catalogue format expects; a page without ``Category:`` / ``Defect type:`` lines (and not named
   in the sidecar) continues the page before it (a defect entry may span pages).

Reading order: lines are read column by column when a page is set in two columns (text blocks on
both halves of the page), top to bottom otherwise. A section runs across page breaks until the next
heading. The biggest heading of the first page, when it is the only one at its size, is the
document's title, not a section. A heading that only introduces sub-headings ("4 Visual defects")
is kept as the sections' parent (context for labels), not as a section of its own; the heading a
defect table sits under is its rows' parent. Figures belong
to the section whose lines surround them, and a line beginning "Figure N" / "Fig. N" near a figure
is its caption.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

import pymupdf

from ingest.pdf_page import CAPTION, Box, Figure, Line, Rules, Word, drawn_rules, text_lines, text_words
from ingest.pdf_scan import OcrSetup, ScanPage, read_scan
from ingest.pdf_tables import Table, read_tables
from kbengine.core.vocabulary import SECTION_NAMES

HEADING_SCALE = 1.15
OCR_HEADING_SCALE = 1.2
"""OCR estimates a line's size from its glyphs (to within ~5%): a heading stands out a little more."""
LEVEL_STEP = 0.92
"""Heading sizes within 8% of each other are one level (OCR's estimates of one size differ)."""
SCAN_COVER = 0.5
"""An image covering half the page or more is the page's scan, not a figure on it."""
MAX_HEADING_WORDS = 12
NUMBERED = re.compile(r"^\s*(\d+(\.\d+)*)\.?\s+(\S.*)$")
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
class Section:
    """One knowledge document's worth of a PDF."""

    title: str | None
    heading_source: str
    """outline | heading | table | page (no structure found) | scan (no text layer)."""
    parents: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    pages: list[int] = field(default_factory=list)
    clips: dict[int, Box] = field(default_factory=dict)
    """Per page, the area the section covers (for its page image)."""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def ocr(self) -> bool:
        """Its text was read by OCR."""
        return any(line.ocr for line in self.lines)

    def touch(self, page: int, bbox: Box) -> None:
        if page not in self.pages:
            self.pages.append(page)
        old = self.clips.get(page)
        self.clips[page] = (
            bbox
            if old is None
            else (min(old[0], bbox[0]), min(old[1], bbox[1]), max(old[2], bbox[2]), max(old[3], bbox[3]))
        )


@dataclass
class PageRead:
    """A page OCR read, or one without a text layer that it could not (``problem`` says why)."""

    page: int
    dpi: int = 0
    characters: int = 0
    problem: str | None = None


@dataclass
class Structure:
    title: str | None
    sections: list[Section]
    tables: list[Table] = field(default_factory=list)
    scans: list[PageRead] = field(default_factory=list)

    @property
    def ocr_pages(self) -> set[int]:
        return {read.page for read in self.scans if read.problem is None}


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
    return _reading_order(text_lines(page, number), page.rect.width)


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
    larger = line.size >= body * (OCR_HEADING_SCALE if line.ocr else HEADING_SCALE)
    if ":" in text and not larger:
        return False  # "Note: ..." in the body size is a sentence, not a heading
    numbered = NUMBERED.match(text) is not None and line.size >= body - 0.5
    return larger or numbered or (bold_counts and line.bold and line.size >= body - 0.5)


def _body_size(lines: list[Line]) -> float:
    sizes = [ln.size for ln in lines for _ in range(max(1, len(ln.text) // 10))]
    return statistics.median(sizes) if sizes else 10.0


def _figures(
    page: pymupdf.Page, number: int, lines: list[Line], min_side: int, scan: ScanPage | None = None
) -> list[Figure]:
    """The page's embedded images as figures with their captions; on a page read by OCR, the image
    that is the page's scan is none, and the pictures found on the scan are figures instead."""
    figures = []
    page_area = max(page.rect.width * page.rect.height, 1.0)
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
        if scan is not None and (rect & page.rect).get_area() >= SCAN_COVER * page_area:
            continue
        figures.append(Figure(number, xref, (rect.x0, rect.y0, rect.x1, rect.y1)))
    if scan is not None:
        for box in scan.pictures:
            if min(box[2] - box[0], box[3] - box[1]) >= min_side / 2 and not any(
                _overlap(box, f.bbox) for f in figures
            ):
                figures.append(Figure(number, 0, box, clip=box, dpi=scan.native_dpi))
    for figure in figures:
        figure.caption = _caption(figure, lines)
    return figures


def _overlap(a: Box, b: Box) -> bool:
    """Whether the boxes share more than half of the smaller one."""
    width, height = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width > 0 and height > 0 and width * height > 0.5 * max(smaller, 1e-6)


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


def _rows(table: Table, ocr_pages: set[int]) -> list[Section]:
    """A defect table's rows as sections: titled by the key cell, the other cells under their
    column's name."""
    sections = []
    for row in table.rows:
        section = Section(title=row.cells[table.key], heading_source="table")
        first = min(row.boxes)
        for i, (name, cell) in enumerate(zip(table.header, row.cells, strict=True)):
            if cell and i != table.key:
                text = f"{name}: {cell}" if name and not cell.lower().startswith(name.lower()) else cell
                section.lines.append(Line(first, row.boxes[first], text, 10.0, False, ocr=first in ocr_pages))
        for page, box in sorted(row.boxes.items()):
            section.touch(page, box)
        section.figures = list(row.figures)
        sections.append(section)
    return sections


def _read_page(
    page: pymupdf.Page, number: int, ocr: OcrSetup | None, scans: list[PageRead]
) -> tuple[list[Line], list[Word], Rules, ScanPage | None]:
    """The page's lines, words and ruling: from OCR when the page is to be read so (and can be),
    else from its text layer."""
    textless = ocr is not None and ocr.textless(page)
    if ocr is not None and (textless or ocr.mode == "always"):
        if ocr.mode == "never" or not ocr.available:
            if textless:
                scans.append(PageRead(number, problem=f"no text layer: it needs OCR, but {ocr.problem}"))
        else:
            try:
                scan = read_scan(page, number, ocr)
            except Exception as e:  # Tesseract failing on one page must not lose the file
                scans.append(PageRead(number, problem=f"OCR failed ({type(e).__name__}: {e})"))
            else:
                rules = scan.rules
                if not textless:  # --ocr always on a page with a text layer: its drawn rules hold too
                    drawn = drawn_rules(page)
                    rules = Rules(rules.horizontal + drawn.horizontal, rules.vertical + drawn.vertical)
                problem = None if scan.lines else "OCR found no text on it (a photo, or a blank page)"
                scans.append(PageRead(number, scan.dpi, scan.characters, problem))
                return _reading_order(scan.lines, page.rect.width), scan.words, rules, scan
    return _page_lines(page, number), text_words(page), drawn_rules(page), None


def _inside(bbox: Box, area: Box) -> bool:
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    return area[0] - 1 <= cx <= area[2] + 1 and area[1] - 1 <= cy <= area[3] + 1


def read_structure(
    document: pymupdf.Document,
    min_figure_side: int = 32,
    starts_pages: set[int] | frozenset[int] = frozenset(),
    ocr: OcrSetup | None = None,
) -> Structure:
    """The PDF's sections in reading order (see the module docstring). ``starts_pages``: pages
    that begin a section of their own when the PDF has no structure (a sidecar names them).
    ``ocr``: how pages are read by OCR (None: never)."""
    pages = [document[i] for i in range(document.page_count)]
    for page in pages:
        if page.rotation:
            page.remove_rotation()  # positions in the page as shown (in memory only)
    lines: list[Line] = []
    figures: list[Figure] = []
    tables: list[Table] = []
    scans: list[Section] = []
    reads: list[PageRead] = []
    middles: dict[int, float] = {}
    sized: list[Line] = []  # every line, a table's too: what the body size is read from
    for number, page in enumerate(pages, 1):
        page_lines, words, rules, scan = _read_page(page, number, ocr, reads)
        sized += page_lines
        if any(ln.column for ln in page_lines):
            middles[number] = page.rect.width / 2
        page_figures = _figures(page, number, page_lines, min_figure_side, scan)
        running = tables[-1] if tables and tables[-1].open else None
        try:
            on_page = read_tables(number, words, rules, page_figures, page.rect.height, running)
        except Exception:  # table reading is a heuristic; a page it cannot read is simply not a table
            on_page = []
        for table in on_page:
            if table is not running:
                tables.append(table)
            area = table.areas[number]
            taken = [f for row in table.rows for f in row.figures]
            page_figures = [f for f in page_figures if f not in taken and not _inside(f.bbox, area)]
            page_lines = [ln for ln in page_lines if not _inside(ln.bbox, area)]
        if running is not None and number not in running.areas:
            running.open = False  # the next page did not go on with it
        if not page_lines and not any(number in t.areas for t in tables) and (page_figures or scan is not None):
            section = Section(title=None, heading_source="scan", figures=[])
            section.touch(number, tuple(page.rect))
            scans.append(section)
            continue
        lines += page_lines
        figures += page_figures
    body = _body_size(sized)
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
        levels = _levels([ln.size for ln in headings])
        for ln in headings:
            numbering = NUMBERED.match(ln.text)
            level = numbering.group(1).count(".") + 1 if numbering else levels[ln.size]
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
    ocr_pages = {read.page for read in reads if read.problem is None}
    for table in tables:
        rows = _rows(table, ocr_pages)
        where = (table.pages[0], table.areas[table.pages[0]][1])
        owner = None
        for section in sections:  # the heading the table sits under: context for its rows' labels
            if section.title and section.pages and (min(section.pages), section.clips[min(section.pages)][1]) <= where:
                owner = section
        for row in rows:
            row.parents = [*owner.parents, owner.title] if owner is not None and owner.title else []
        kept += rows
    kept += scans
    kept.sort(key=_position)
    return Structure(title=title, sections=kept, tables=tables, scans=reads)


def _levels(sizes: list[float]) -> dict[float, int]:
    """Each heading size's level (1 the biggest): sizes within ``LEVEL_STEP`` of a level's
    biggest are that level."""
    levels: dict[float, int] = {}
    level, top = 0, 0.0
    for size in sorted(set(sizes), reverse=True):
        if level == 0 or size < top * LEVEL_STEP:
            level, top = level + 1, size
        levels[size] = level
    return levels


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
