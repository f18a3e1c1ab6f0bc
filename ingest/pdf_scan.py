"""Pages without a text layer (scans), read by Tesseract through PyMuPDF's OCR.

A page is read by OCR when it has no text layer but shows something (``KBENGINE_OCR=auto``), or
every page with ``--ocr always`` (``never``: none). The page is rendered once at the OCR resolution
(``KBENGINE_OCR_DPI``, lowered for a huge page so the render stays under ``OCR_MAX_PIXELS``), and on
that render:

1. *pictures*: regions of dense non-paper pixels at least ``PICTURE_MIN_SIDE`` points a side (the
   photos of a scanned catalogue) become figures, cut out of the page;
2. *rules*: runs of ink at least ``RULE_RUN`` points long and thin (a table's lines) are the
   page's ruling, read as a drawn table's would be;
3. both are whited out (Tesseract reads text, not photos: on a photo it invents words, and a rule
   next to a word garbles it), and the rest goes to Tesseract (``Pixmap.pdfocr_tobytes``, language
   ``KBENGINE_OCR_LANG``); its lines and words come back in the page's coordinates.

Tesseract's lines carry no font: a line's size is estimated from its height, the extent of its
glyphs (:func:`glyph_size`), so headings are found by size and numbering as on a text page.

Tesseract's language data is found where PyMuPDF looks (``TESSDATA_PREFIX``, the ``tesseract``
program) and in the usual system folders; without it a scan stays a page image and the report says
the page needs OCR and how to install it.
"""

from __future__ import annotations

import contextlib
import functools
import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pymupdf
from scipy import ndimage

from ingest.pdf_page import Box, Line, Rules, Word, capped_dpi
from kbengine.core.settings import Settings

OcrMode = Literal["auto", "always", "never"]
OCR_MAX_PIXELS = 20_000_000
"""An OCR render holds at most 20 megapixels (A3 at 300 dpi is 17 MP; 60 MB of RGB)."""
PICTURE_MIN_SIDE = 24.0
PICTURE_DENSITY = 0.5
"""A picture: a region where at least half the pixels are printed, after text is opened away."""
RULE_RUN = 40.0
"""Points of unbroken ink that make a rule (no letter is that long; a table's lines are)."""
RULE_MAX_THICKNESS = 4.0
LOOK_DPI = 100
"""Pictures and rules are found on a render at this resolution (cells of 1.44 points, rules 0.5
points thick and up); only Tesseract reads the page at ``KBENGINE_OCR_DPI``."""
INSTALL = "apt-get install tesseract-ocr"
TESSDATA_FOLDERS = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/usr/local/share/tesseract-ocr/*/tessdata",
    "/opt/homebrew/share/tessdata",
)


@functools.cache
def find_tessdata() -> Path | None:
    """Tesseract's language data folder: where PyMuPDF finds it (``TESSDATA_PREFIX``, else the
    ``tesseract`` program's own), else the first of ``TESSDATA_FOLDERS`` that holds any language."""
    candidates: list[Path] = []
    with contextlib.suppress(Exception):  # no variable and no tesseract program: look in the usual places
        candidates.append(Path(pymupdf.get_tessdata()))
    for pattern in TESSDATA_FOLDERS:
        candidates += [Path(p) for p in sorted(glob.glob(pattern), reverse=True)]
    return next((c for c in candidates if c.is_dir() and any(c.glob("*.traineddata"))), None)


@dataclass(frozen=True)
class OcrSetup:
    """How pages are read by OCR, and whether they can be: ``problem`` says why not, and what to do."""

    mode: OcrMode = "auto"
    language: str = "eng"
    dpi: int = 300
    tessdata: Path | None = None
    problem: str | None = "OCR is off"

    @property
    def available(self) -> bool:
        return self.tessdata is not None and self.problem is None

    @property
    def fingerprint(self) -> str:
        """What OCR'd content depends on besides the file (part of a PDF's fingerprint)."""
        state = "on" if self.available else "off"
        return f"ocr={self.mode}:{self.language}:{self.dpi}:{state}:{SCAN_VERSION}"

    @staticmethod
    def textless(page: pymupdf.Page) -> bool:
        """Whether ``page`` shows something but has no text layer (a scan, text set as outlines)."""
        return not page.get_text("text").strip() and bool(page.get_images() or page.get_drawings())


SCAN_VERSION = "1"


def ocr_setup(settings: Settings) -> OcrSetup:
    """The OCR settings, with Tesseract and the language data looked up (once per process)."""
    mode, language, dpi = settings.ocr, settings.ocr_lang, settings.ocr_dpi
    if mode == "never":
        return OcrSetup(mode, language, dpi, None, "OCR is off (--ocr never / KBENGINE_OCR=never)")
    tessdata = find_tessdata()
    if tessdata is None:
        return OcrSetup(mode, language, dpi, None, f"Tesseract is not installed ({INSTALL}; then ingest again)")
    missing = [code for code in language.split("+") if not (tessdata / f"{code}.traineddata").is_file()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{code.lower()}" for code in missing)
        return OcrSetup(
            mode,
            language,
            dpi,
            tessdata,
            f"Tesseract has no language data for {', '.join(missing)} in {tessdata} (apt-get install {packages}; "
            f"or set KBENGINE_OCR_LANG to one of {', '.join(sorted(p.stem for p in tessdata.glob('*.traineddata')))})",
        )
    return OcrSetup(mode, language, dpi, tessdata, None)


@dataclass
class ScanPage:
    """What OCR read on a page, in the page's coordinates."""

    lines: list[Line] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    pictures: list[Box] = field(default_factory=list)
    rules: Rules = field(default_factory=Rules)
    dpi: int = 0
    """The resolution OCR read the page at."""
    native_dpi: int | None = None
    """The scan's own resolution (its page image's pixels over the page's size), if it is one image."""

    @property
    def characters(self) -> int:
        return sum(len(line.text) for line in self.lines)


_DESCENDERS = frozenset("gjpqy,;()[]{}|@$")
_ASCENDERS = frozenset("bdfhiklt0123456789!?/&%#'\"ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def glyph_size(text: str, height: float) -> float:
    """The font size of a line of ``height`` points of glyphs: its height over the share of the
    em its letters cover (capitals and ascenders 0.77, descenders 0.19 more, x-height 0.52),
    measured on Helvetica; Tesseract's boxes hug the glyphs, so a line's letters decide."""
    chars = frozenset(text)
    tall, deep = bool(chars & _ASCENDERS), bool(chars & _DESCENDERS)
    share = 0.96 if tall and deep else 0.77 if tall else 0.73 if deep else 0.52
    return round(height / share, 2)


def read_scan(page: pymupdf.Page, number: int, setup: OcrSetup) -> ScanPage:
    """OCR ``page`` (see the module docstring). Raises what Tesseract raises (the caller reports it)."""
    look = page.get_pixmap(dpi=capped_dpi(tuple(page.rect), LOOK_DPI, OCR_MAX_PIXELS), alpha=False)
    darkest = _pixels(look).min(axis=2)  # a coloured print is printed too
    paper = float(np.percentile(darkest, 98))
    scale = look.width / page.rect.width
    found = _pictures(darkest < paper - 25, scale)
    pictures = [tight for tight, _ in found]
    ink = darkest < paper - 70
    for x0, y0, x1, y1 in (loose for _, loose in found):  # a photo's edges are no rules
        ink[max(0, int(y0 * scale) - 2) : int(y1 * scale) + 3, max(0, int(x0 * scale) - 2) : int(x1 * scale) + 3] = (
            False
        )
    rules = _rules(ink, scale)
    dpi = capped_dpi(tuple(page.rect), setup.dpi, OCR_MAX_PIXELS)
    pixmap = page.get_pixmap(dpi=dpi, alpha=False)
    rgb = _pixels(pixmap)
    to_px = pixmap.width / page.rect.width
    blanks = [(x0 - 2, y0 - 2, x1 + 2, y1 + 2) for _, (x0, y0, x1, y1) in found]
    blanks += [(x0 - 1, y - RULE_MAX_THICKNESS, x1 + 1, y + RULE_MAX_THICKNESS) for x0, x1, y in rules.horizontal]
    blanks += [(x - RULE_MAX_THICKNESS, y0 - 1, x + RULE_MAX_THICKNESS, y1 + 1) for y0, y1, x in rules.vertical]
    for x0, y0, x1, y1 in blanks:  # Tesseract reads text, not photos and lines
        rgb[max(0, round(y0 * to_px)) : round(y1 * to_px), max(0, round(x0 * to_px)) : round(x1 * to_px)] = 255
    clean = pymupdf.Pixmap(pymupdf.csRGB, pixmap.width, pixmap.height, np.ascontiguousarray(rgb).tobytes(), 0)
    clean.set_dpi(dpi, dpi)
    data = clean.pdfocr_tobytes(compress=False, language=setup.language, tessdata=str(setup.tessdata))
    lines: list[Line] = []
    words: list[Word] = []
    with pymupdf.open("pdf", data) as read:
        ocr_page = read[0]
        sx, sy = page.rect.width / ocr_page.rect.width, page.rect.height / ocr_page.rect.height

        def box(b: tuple[float, float, float, float]) -> Box:
            return (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)

        flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES  # the page's image is the scan itself
        for block in ocr_page.get_text("dict", flags=flags).get("blocks", []):
            for line in block.get("lines", []):
                spans = [s for s in line.get("spans", []) if s["text"].strip()]  # a span is a word
                text = " ".join(" ".join(s["text"].split()) for s in spans)
                if not _readable(text):
                    continue
                bbox = box(line["bbox"])
                size = glyph_size(text, bbox[3] - bbox[1])
                lines.append(Line(number, bbox, text, size, False, ocr=True))
                words += [Word(*box(s["bbox"]), s["text"].strip(), size) for s in spans]
    return ScanPage(lines=lines, words=words, pictures=pictures, rules=rules, dpi=dpi, native_dpi=_native_dpi(page))


def _native_dpi(page: pymupdf.Page) -> int | None:
    """The resolution of the image that covers the page (a scan's), if one does."""
    for info in page.get_images(full=True):
        try:
            rects = page.get_image_rects(info[0])
        except Exception:  # a broken image reference: no resolution to read
            continue
        if rects and rects[0].width >= page.rect.width * 0.9 and rects[0].height >= page.rect.height * 0.9:
            return max(36, min(600, round(info[2] * 72 / rects[0].width)))
    return None


def _pixels(pixmap: pymupdf.Pixmap) -> np.ndarray:
    """An RGB pixmap's pixels as a writable (height, width, 3) array."""
    rows = np.frombuffer(pixmap.samples, np.uint8).reshape(pixmap.height, -1)[:, : pixmap.width * 3]
    return rows.reshape(pixmap.height, pixmap.width, 3).copy()


def _readable(text: str) -> bool:
    """Text, not a rule's or a speck's remains ("|", "—", "_")."""
    return any(c.isalnum() for c in text)


def _pictures(printed: np.ndarray, scale: float) -> list[tuple[Box, Box]]:
    """Dense printed regions (photos) of a page seen at ``scale`` pixels a point: each as its box
    to the pixel (the figure) and as the cells it was found in (what to white out)."""
    block = max(1, round(scale * 72 / 50))  # cells of about 1.44 points
    height, width = printed.shape[0] // block, printed.shape[1] // block
    density = printed[: height * block, : width * block].reshape(height, block, width, block).mean(axis=(1, 3))
    dense = ndimage.binary_opening(density > PICTURE_DENSITY, np.ones((5, 5), bool))  # text and rules open away
    labels, _ = ndimage.label(dense)
    pictures: list[tuple[Box, Box]] = []
    cell = block / scale
    for found, region in enumerate(ndimage.find_objects(labels), 1):
        if region is None:
            continue
        rows, cols = region
        x0, x1, y0, y1 = cols.start * cell, cols.stop * cell, rows.start * cell, rows.stop * cell
        if min(x1 - x0, y1 - y0) >= PICTURE_MIN_SIDE and float((labels[region] == found).mean()) >= 0.6:
            pictures.append((_tighten(printed, (x0, y0, x1, y1), scale), (x0, y0, x1, y1)))
    return pictures


def _tighten(printed: np.ndarray, box: Box, scale: float) -> Box:
    """The picture's box to the pixel (its cells overhang it by up to one), less a pixel each side:
    a strip of paper along a photo's edge reads as a defect to the patch features."""
    left, top = max(0, int(box[0] * scale) - 1), max(0, int(box[1] * scale) - 1)
    inside = printed[top : int(box[3] * scale) + 2, left : int(box[2] * scale) + 2]
    rows, cols = np.flatnonzero(inside.mean(axis=1) >= 0.3), np.flatnonzero(inside.mean(axis=0) >= 0.3)
    if not len(rows) or not len(cols):
        return box
    y0, y1, x0, x1 = top + int(rows[0]) + 1, top + int(rows[-1]), left + int(cols[0]) + 1, left + int(cols[-1])
    return (x0 / scale, y0 / scale, x1 / scale, y1 / scale) if x1 > x0 and y1 > y0 else box


def _rules(ink: np.ndarray, scale: float) -> Rules:
    """Long thin runs of ink (``scale`` pixels a point): the horizontal and vertical rules."""
    run = max(2, round(RULE_RUN * scale))
    dark = ink.view(np.uint8)
    across = ndimage.maximum_filter1d(ndimage.minimum_filter1d(dark, run, axis=1), run, axis=1)
    down = ndimage.maximum_filter1d(ndimage.minimum_filter1d(dark, run, axis=0), run, axis=0)
    rules = Rules()
    thick = RULE_MAX_THICKNESS * scale
    for mask, horizontal in ((across, True), (down, False)):
        labels, _ = ndimage.label(mask)
        for region in ndimage.find_objects(labels):
            if region is None:
                continue
            rows, cols = region
            if horizontal and rows.stop - rows.start <= thick:
                rules.horizontal.append((cols.start / scale, cols.stop / scale, (rows.start + rows.stop) / 2 / scale))
            elif not horizontal and cols.stop - cols.start <= thick:
                rules.vertical.append((rows.start / scale, rows.stop / scale, (cols.start + cols.stop) / 2 / scale))
    return rules
