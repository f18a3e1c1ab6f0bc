"""Defect tables, however they are ruled: a full grid, horizontal rules only (as most datasheets
set them), or columns aligned by whitespace alone; on a text page or on a scan (``pdf_scan`` finds
a scan's rules).

A table is found by its *header*: a line of at least two short cells, one of which names defects
("Defect", "Defect type", "Fault", ...: ``TABLE_KEY``), never a document itself. The header's cells
give the columns: between the vertical rules around them when there are any (a grid), else each
column starts where its header cell starts (tables are set flush left). The body is the lines
below the header whose pieces each sit in one column; a line of prose running across the columns
ends the table, as do a heading, a caption, another header, a gap wider than the rows' spacing
(a row reaches down through the images beside it and to the rule under it), and the table's
bottom rule. The body's rows are split at the horizontal rules between them when the table has
any, else where the key column starts an entry (its wrapped second line is no new row). Each row's
cells are the words in each column; the images beside the key column in a row's height are its
figures (an image across the key column is a figure under the table, no row's). A table whose
last row reaches the foot of its page goes on on the next page when that page begins with its
header again, or with lines that fit its columns (a row's wrapped rest, or new rows).

Tables of other things (no defect column: specifications, dimensions) are left to be read as text,
and so is prose set in two columns under a "Defects" heading (its key cells are sentences).
"""

from __future__ import annotations

import bisect
import re
import statistics
from dataclasses import dataclass, field
from typing import Literal

from ingest.pdf_page import CAPTION, Box, Figure, Rules, Word

TABLE_KEY = re.compile(r"defect|fault|flaw|failure|imperfection|nonconformit", re.IGNORECASE)
"""A table is a defect table when a header cell names defects (not any "type" or "name" column)."""
MAX_HEADER_WORDS = 4
MAX_KEY_WORDS = 6
"""A key cell is a name: a column of sentences is prose set in columns, not a table."""
FOOT = 0.93
"""Below this share of the page height: the page's foot (page numbers), not content."""
REACH = 0.7
"""A table whose rows end below this share of the page height may go on on the next page."""

Ruling = Literal["grid", "rules", "whitespace"]


@dataclass
class Row:
    """One entry of a table: its cells (one per column), where it lies, its figures."""

    cells: list[str]
    boxes: dict[int, Box] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)

    def add(self, page: int, box: Box) -> None:
        old = self.boxes.get(page)
        self.boxes[page] = box if old is None else _union(old, box)


@dataclass
class Table:
    header: list[str]
    key: int
    bounds: list[float]
    """Column boundaries (one more than the columns; the last may be infinite)."""
    grid: bool
    size: float
    """The header's text height: a taller line below is a heading, not a row."""
    width: float
    """The header's width: a rule at least half as wide is one of the table's."""
    rows: list[Row] = field(default_factory=list)
    areas: dict[int, Box] = field(default_factory=dict)
    ruled: bool = False
    open: bool = False
    """Its last row reaches the foot of its page: it may go on on the next."""

    @property
    def ruling(self) -> Ruling:
        return "grid" if self.grid else "rules" if self.ruled else "whitespace"

    @property
    def pages(self) -> list[int]:
        return sorted(self.areas)

    def column(self, word: Word) -> int:
        x = (word.x0 + word.x1) / 2 if self.grid else word.x0 + 1
        return min(max(bisect.bisect_right(self.bounds, x) - 1, 0), len(self.header) - 1)


@dataclass
class _Line:
    """The words of one line across the page (all columns)."""

    words: list[Word]

    @property
    def y0(self) -> float:
        return min(w.y0 for w in self.words)

    @property
    def y1(self) -> float:
        return max(w.y1 for w in self.words)

    @property
    def size(self) -> float:
        return statistics.median(w.size or w.y1 - w.y0 for w in self.words)

    def pieces(self) -> list[list[Word]]:
        """The line cut where the space between words is a column's gap, not a word space."""
        gap = max(5.0, 0.45 * self.size)  # a word space is about a quarter of the size
        out: list[list[Word]] = []
        for word in self.words:
            if out and word.x0 - out[-1][-1].x1 <= gap:
                out[-1].append(word)
            else:
                out.append([word])
        return out


def _text(words: list[Word]) -> str:
    return " ".join(w.text for w in words).strip()


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _lines(words: list[Word]) -> list[_Line]:
    lines: list[_Line] = []
    for word in sorted(words, key=lambda w: (w.y0 + w.y1) / 2):
        middle = (word.y0 + word.y1) / 2
        if lines:
            last = lines[-1]
            if abs(middle - (last.y0 + last.y1) / 2) <= 0.45 * max(word.y1 - word.y0, last.y1 - last.y0):
                last.words.append(word)
                continue
        lines.append(_Line([word]))
    for line in lines:
        line.words.sort(key=lambda w: w.x0)
    return lines


def _header(line: _Line) -> int | None:
    """The key column's index when ``line`` is a defect table's header."""
    pieces = [_text(p) for p in line.pieces()]
    if not 2 <= len(pieces) <= 10:
        return None
    for text in pieces:
        words = text.split()
        if len(words) > MAX_HEADER_WORDS or not any(c.isalpha() for c in text):
            return None
        if text.endswith((",", ";")) or (text.endswith(".") and len(text) > 4):
            return None  # "No." names a column; "It is found." is a sentence
    return next((i for i, t in enumerate(pieces) if TABLE_KEY.search(t) and len(t.split()) <= 3), None)


def _start(line: _Line, key: int, rules: Rules) -> Table:
    """A table from its header line: the columns, between vertical rules when they frame the header."""
    pieces = line.pieces()
    y0, y1 = line.y0, line.y1
    walls = sorted({round(x, 1) for top, bottom, x in rules.vertical if top <= y1 + 40 and bottom >= y0 - 5})
    merged: list[float] = []
    for x in walls:
        if not merged or x - merged[-1] > 3:
            merged.append(x)
    middles = [(p[0].x0 + p[-1].x1) / 2 for p in pieces]
    cells = [bisect.bisect_right(merged, m) for m in middles]  # the wall each header cell follows
    if merged and len(set(cells)) == len(cells):  # a wall between every two header cells: a grid
        outer = (  # an outer wall may be hidden (a photo drawn over it)
            [pieces[0][0].x0 - 6] if cells[0] == 0 else [],
            [float("inf")] if cells[-1] == len(merged) else [],
        )
        bounds = outer[0] + merged[max(cells[0] - 1, 0) : cells[-1] + 1] + outer[1]
        names = [""] * (len(bounds) - 1)
        for piece, middle in zip(pieces, middles, strict=True):
            names[bisect.bisect_right(bounds, middle) - 1] = _text(piece)
        column = bisect.bisect_right(bounds, middles[key]) - 1
        width = (bounds[-1] if bounds[-1] < float("inf") else pieces[-1][-1].x1) - bounds[0]
        return Table(names, column, bounds, True, line.size, width)
    bounds = [pieces[0][0].x0 - 6, *(piece[0].x0 - 4 for piece in pieces[1:]), float("inf")]  # columns set flush left
    return Table([_text(p) for p in pieces], key, bounds, False, line.size, pieces[-1][-1].x1 - bounds[0])


def _fits(table: Table, line: _Line) -> bool:
    """Each piece of ``line`` sits in one column of ``table`` (prose runs across them)."""
    left, right = table.bounds[0] - 6, table.bounds[-1] + 6
    for piece in line.pieces():
        if piece[0].x0 < left or piece[-1].x1 > right:
            return False
        if not table.grid and table.column(piece[0]) != table.column(Word(piece[-1].x1 - 2, 0, piece[-1].x1, 0, "")):
            return False
    return True


def _cells(table: Table, lines: list[_Line]) -> list[str]:
    cells: list[list[str]] = [[] for _ in table.header]
    for line in lines:
        for word in line.words:
            cells[table.column(word)].append(word.text)
    return [" ".join(c) for c in cells]


def _same_header(a: list[str], b: list[str]) -> bool:
    def plain(names: list[str]) -> list[str]:
        return [" ".join(n.lower().split()) for n in names if n.strip()]

    return plain(a) == plain(b)


def read_tables(
    number: int, words: list[Word], rules: Rules, figures: list[Figure], height: float, previous: Table | None
) -> list[Table]:
    """The defect tables on page ``number`` (``height`` points tall), ``previous`` included when
    it goes on here (its rows are extended); see the module docstring."""
    lines = _lines(words)
    found: list[Table] = []
    index = 0
    if previous is not None and previous.open and lines:
        first = 1 if len(lines) > 1 and lines[0].y1 < height * (1 - FOOT) and not _fits(previous, lines[0]) else 0
        key = _header(lines[first])
        fresh = _start(lines[first], key, rules) if key is not None else None
        if fresh is not None and _same_header(fresh.header, previous.header):
            previous.bounds, previous.grid, previous.open = fresh.bounds, fresh.grid, False
            index = _body(previous, lines, first + 1, rules, figures, number, height, lines[first])
            found.append(previous)
        elif _goes_on(previous, lines[first], figures):
            previous.open = False
            index = _body(previous, lines, first, rules, figures, number, height, None)
            found.append(previous)
    while index < len(lines):
        key = _header(lines[index])
        if key is None:
            index += 1
            continue
        table = _start(lines[index], key, rules)
        after = _body(table, lines, index + 1, rules, figures, number, height, lines[index])
        if table.rows and _named(table):
            found.append(table)
            index = after
        else:
            index += 1
    return found


def _named(table: Table) -> bool:
    """Whether the key column holds names: prose in two columns under "Defects" / "Causes" is no table."""
    words = sorted(len(row.cells[table.key].split()) for row in table.rows)
    return words[len(words) // 2] <= MAX_KEY_WORDS


def _goes_on(table: Table, line: _Line, figures: list[Figure]) -> bool:
    """Whether a page that begins with ``line`` continues ``table``: the line fits its columns and
    is a row (cells in two columns, or an image beside it) or a row's rest (no key cell), not a
    heading."""
    if not _fits(table, line) or line.size > 1.3 * table.size:
        return False
    columns = {table.column(piece[0]) for piece in line.pieces()}
    beside = any(f.bbox[1] <= line.y1 and f.bbox[3] >= line.y0 and f.bbox[0] >= table.bounds[0] for f in figures)
    return len(columns) >= 2 or table.key not in columns or beside


def _body(
    table: Table,
    lines: list[_Line],
    start: int,
    rules: Rules,
    figures: list[Figure],
    number: int,
    height: float,
    header: _Line | None,
) -> int:
    """Read the table's rows on this page from ``lines[start]`` on; the index after its last line."""
    left = table.bounds[0]
    top = header.y0 if header is not None else (lines[start].y0 if start < len(lines) else 0.0)
    width = table.width
    across = sorted(y for x0, x1, y in rules.horizontal if x1 - x0 >= 0.5 * width and x0 <= left + 0.5 * width)
    above = [y for y in across if top - 10 <= y <= top + 1]
    if above:
        top = above[-1]
    names = (table.bounds[table.key], table.bounds[table.key + 1])

    def beside(figure: Figure) -> bool:
        """An image beside the key column (a row's), not across it (a figure under the table)."""
        x0, x1 = figure.bbox[0], figure.bbox[2]
        return (x0 + x1) / 2 >= left and (x1 <= names[0] or x0 >= names[1] - 2)

    figures = [f for f in figures if beside(f)]
    body: list[_Line] = []
    bottom = header.y1 if header is not None else top
    end = start
    while end < len(lines):
        line = lines[end]
        if not _fits(table, line) or line.size > 1.3 * table.size or _header(line) is not None:
            break  # prose, a heading, or the next table
        if CAPTION.match(line.words[0].text + " " + " ".join(w.text for w in line.words[1:2])):
            break  # a figure's caption under the table
        limit = max(1.8 * table.size, 14.0)
        reach = _reach(bottom, line.y0, figures)
        crossed = [y for y in across if bottom - 1 <= y <= min(line.y0 + 1, reach + 3 * limit)]
        if crossed:  # the rule under a row: the next row begins at it
            reach = max(reach, crossed[-1])
        if line.y0 - reach > limit:
            break
        bottom = reach
        body.append(line)
        bottom = max([line.y1, *(f.bbox[3] for f in figures if f.bbox[1] <= line.y1 and f.bbox[3] >= line.y0)])
        end += 1
    if body:  # the last row reaches through its images too
        bottom = _reach(bottom, lines[end].y0 if end < len(lines) else height, figures)
    below = [y for y in across if (header.y1 if header is not None else top) < y <= bottom + 12]
    table.ruled = table.ruled or bool(below) or bool(above)
    at_foot = bottom > height * REACH and all(ln.y0 > height * FOOT for ln in lines[end:])
    if len(below) >= 2 and body and not at_foot:  # a ruled table ends at its last rule
        closing = max((y for y in below if y < lines[end].y0), default=None) if end < len(lines) else None
        if closing is not None:
            kept = [ln for ln in body if (ln.y0 + ln.y1) / 2 < closing]
            end -= len(body) - len(kept)
            body = kept
            bottom = max([closing, *(ln.y1 for ln in body)])
            at_foot = False
    if not body:
        return end
    table.open = at_foot
    groups = _groups(table, body, [y for y in below if body[0].y0 + 1 < y < body[-1].y1 - 1])
    tops = [g[0].y0 - 3 for g in groups]
    ends = [*tops[1:], bottom + 3]
    right = max(
        [*(w.x1 for ln in body for w in ln.words), *(x1 for x0, x1, y in rules.horizontal if top <= y <= bottom + 3)]
    )
    for group, y0, y1 in zip(groups, tops, ends, strict=True):
        cells = _cells(table, group)
        box = (left, y0, right, y1)
        if cells[table.key].strip():
            row = Row(cells)
            table.rows.append(row)
        elif table.rows:  # a row's rest: under its own rows, or at the top of the next page
            row = table.rows[-1]
            row.cells = [f"{a} {b}".strip() for a, b in zip(row.cells, cells, strict=True)]
        else:
            continue
        for figure in figures:
            middle = (figure.bbox[1] + figure.bbox[3]) / 2
            if y0 <= middle < y1 and figure not in row.figures:
                row.figures.append(figure)
                box = _union(box, figure.bbox)
        row.add(number, box)
    if table.rows:
        right = max([right, *(f.bbox[2] for r in table.rows for f in r.figures if f.page == number)])
        area = (left, top, right, bottom)
        table.areas[number] = area if number not in table.areas else _union(table.areas[number], area)
    return end


def _reach(bottom: float, before: float, figures: list[Figure]) -> float:
    """How far down a row reaches through the images beside it (under its text, or centred in a
    tall row) that begin above the next line (at ``before``)."""
    reached = True
    while reached:
        reached = False
        for figure in figures:
            if figure.bbox[3] > bottom and figure.bbox[1] < before:
                bottom, reached = figure.bbox[3], True
    return bottom


def _groups(table: Table, body: list[_Line], inner: list[float]) -> list[list[_Line]]:
    """The body's lines in rows: between the rules when there are rules between them, else a new
    row where the key column starts an entry (not its wrapped second line: close under a key cell
    whose row's sentence goes on)."""
    groups: list[list[_Line]] = []
    for line in body:
        if not groups:
            groups.append([line])
            continue
        last = groups[-1][-1]
        if inner:
            band = sum(1 for y in inner if y < (line.y0 + line.y1) / 2)
            same = band == sum(1 for y in inner if y < (last.y0 + last.y1) / 2)
        else:
            keyed = any(table.column(w) == table.key for w in line.words)
            rest = " ".join(w.text for w in last.words if table.column(w) != table.key)
            wrapped = (
                any(table.column(w) == table.key for w in last.words)
                and line.y0 - last.y1 <= 0.6 * table.size
                and not rest.endswith(".")
            )
            same = not keyed or wrapped
        if same:
            groups[-1].append(line)
        else:
            groups.append([line])
    return groups
