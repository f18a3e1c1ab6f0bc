"""PDF knowledge documents (pymupdf): one document per *section* of the PDF (its outline, its
headings, the rows of a defect table; ``ingest.pdf_structure``), scanned pages read by OCR
(``ingest.pdf_scan``). Each section gets its page area rendered (page locks), its figures taken out
with their captions (figure locks; on a scan, the pictures cut out of the page) and its text (text
locks), split into the paper's text sections by paragraph headings in common wordings ("Root
cause", "Impact", ...); a lock read by OCR says so (``ocr`` in its payload). Labels come, in order
of precedence, from CLI options, the sidecar ``<file>.yaml``, ``Category:`` / ``Defect type:``
lines, then the taxonomy and inference (``ingest.labels``); every label records its source and
confidence."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import pymupdf
from PIL import Image

from ingest.cards import Sidecar, load_sidecar, sidecar_path
from ingest.labels import Evidence, Labeler
from ingest.pdf_page import Box, Figure, capped_dpi
from ingest.pdf_scan import OcrSetup, ocr_setup
from ingest.pdf_structure import Section, Structure, paragraph_heading, read_structure
from ingest.units import LockItem, Overrides, SourceUnit, doc_id, text_items
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import to_rgb
from kbengine.core.schemas import KnowledgeDocument, Labels, LabelSource, OcrPage, TableFound, TextSections
from kbengine.core.settings import Settings
from kbengine.core.vocabulary import DEFAULT_DOMAIN, SECTION_NAMES, UNSPECIFIED_TYPE, normalise_name

_META = re.compile(r"^\s*(domain|category|defect[ _-]?type)\s*[:\-\u2013]\s*(.+?)\s*$", re.IGNORECASE)


def open_pdf(path: Path, settings: Settings) -> pymupdf.Document:
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: empty file (0 bytes)")
    pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        document = pymupdf.open(path, filetype="pdf")
    except Exception as e:
        raise InvalidInputError(f"{path}: not a readable PDF ({e})") from e
    if document.is_repaired:
        # mupdf rebuilt a broken file (truncated, bad xref): what it recovers may be partial, so refuse.
        detail = (pymupdf.TOOLS.mupdf_warnings() or "damaged structure").splitlines()[0]
        document.close()
        raise InvalidInputError(
            f"{path}: not a readable PDF: the file is damaged or truncated ({detail}); re-export it"
        )
    if document.needs_pass or document.is_encrypted:
        document.close()
        raise InvalidInputError(f"{path}: the PDF is encrypted (password protected); decrypt it first")
    if document.page_count == 0:
        document.close()
        raise InvalidInputError(f"{path}: the PDF has no pages")
    if document.page_count > settings.max_pdf_pages:
        count = document.page_count
        document.close()
        raise InvalidInputError(
            f"{path}: {count} pages, over the limit of {settings.max_pdf_pages} (KBENGINE_MAX_PDF_PAGES)"
        )
    return document


def pdf_unit(
    path: Path, key: str, overrides: Overrides, settings: Settings, labeler: Labeler | None = None
) -> SourceUnit:
    refused: InvalidInputError | None = None
    try:
        sidecar_file = sidecar_path(path, settings.follow_symlinks)
    except InvalidInputError as e:
        sidecar_file, refused = None, e
    files = [path] + ([sidecar_file] if sidecar_file else [])
    labels = labeler or Labeler()
    ocr = ocr_setup(settings)

    def parts() -> Iterator[LockItem]:
        if refused is not None:
            raise refused
        try:
            sidecar = load_sidecar(sidecar_file) if sidecar_file else None
            document = open_pdf(path, settings)
        except InvalidInputError as e:  # the report names the file once, as its key
            raise InvalidInputError(f"{key}: {str(e).removeprefix(f'{path}: ')}") from e
        if sidecar is not None:
            outside = sorted(n for n in sidecar.pages if not 1 <= n <= document.page_count)
            if outside:
                unit.notes.append(
                    f"{sidecar_file}: page(s) {', '.join(map(str, outside))} not in {path.name} "
                    f"({document.page_count} pages); those entries were not used"
                )
        try:
            yield from _sections(document, path, key, overrides, sidecar, settings, labels, ocr, unit)
        finally:
            document.close()

    extra = f"dpi={settings.render_dpi}|structure={STRUCTURE_VERSION}|{labels.fingerprint}|{ocr.fingerprint}"
    unit = SourceUnit(key=key, kind="pdf", files=files, parts=parts, extra=extra)
    return unit


STRUCTURE_VERSION = "2"
MAX_PAGE_LOCKS = 3
"""A section over more pages is represented by the page images of its first three."""


def section_text(lines: list[str]) -> tuple[dict[str, str], TextSections]:
    """``Category:``-style metadata lines, and the text sections: lines under a paragraph heading
    ("Root cause", "Impact: ...") go to that section, the others to the description."""
    meta: dict[str, str] = {}
    parts: dict[str, list[str]] = {}
    current = "description"
    for line in lines:
        m = _META.match(line)
        if m:
            key = "defect_type" if m.group(1).lower().startswith("defect") else m.group(1).lower()
            meta[key] = m.group(2)
            continue
        heading = paragraph_heading(line)
        if heading is not None:
            current, rest = heading
            if rest:
                parts.setdefault(current, []).append(rest)
            continue
        parts.setdefault(current, []).append(line.strip())
    return meta, TextSections(**{k: " ".join(v).strip() for k, v in parts.items() if k in SECTION_NAMES})


def _sections(
    document: pymupdf.Document,
    path: Path,
    key: str,
    overrides: Overrides,
    sidecar: Sidecar | None,
    settings: Settings,
    labeler: Labeler,
    ocr: OcrSetup,
    unit: SourceUnit,
) -> Iterator[LockItem]:
    try:
        named = set(sidecar.pages) if sidecar else set()
        structure = read_structure(document, settings.min_figure_side, named, ocr)
    except Exception as e:
        raise InvalidInputError(f"{path}: its pages cannot be read ({e})") from e
    _found(structure, key, ocr, unit)
    if not structure.sections:
        raise InvalidInputError(f"{path}: no text, figures or scanned pages to take knowledge from")
    renders: OrderedDict[tuple[int, tuple[float, ...]], tuple[Image.Image, bytes]] = OrderedDict()
    seen: set[tuple[int, ...]] = set()
    ocr_pages = structure.ocr_pages
    for index, section in enumerate(structure.sections):
        first_page = min(section.pages) if section.pages else 1
        figures: list[tuple[Figure, tuple[Image.Image, bytes, str]]] = []
        for figure in section.figures:
            found = _figure(document, figure, settings) if figure.key not in seen else None
            if found is not None:
                figures.append((figure, found))
                seen.add(figure.key)
        doc = _document(
            structure, section, index, path, key, overrides, sidecar, labeler, [im for _, (im, _, _) in figures]
        )
        for number in sorted(section.pages)[:MAX_PAGE_LOCKS]:
            clip = _clip(document[number - 1], section, number)
            cache_key = (number, tuple(round(v, 1) for v in clip))
            if cache_key not in renders:
                dpi = render_dpi(clip, settings.render_dpi)
                if dpi < settings.render_dpi:
                    width, height = clip[2] - clip[0], clip[3] - clip[1]
                    unit.notes.append(
                        f"{path}: page {number} is {width:.0f}x{height:.0f} pt; rendered at {dpi} dpi instead of "
                        f"{settings.render_dpi} to stay under {RENDER_MAX_PIXELS // 1_000_000} megapixels"
                    )
                renders[cache_key] = _render(document, path, number, clip, dpi)
                if len(renders) > RENDER_CACHE:  # sections share pages with their neighbours only
                    renders.popitem(last=False)
            image, png = renders[cache_key]
            yield LockItem(doc=doc, kind="page", locator=f"page:{number}:section:{index}", image=image,
                           image_bytes=png, page=number, ocr=number in ocr_pages)  # fmt: skip
        for (figure, (image, data, suffix)), k in zip(figures, range(len(figures)), strict=True):
            where = f"figure:{figure.xref}" if figure.xref else "picture:{:.0f},{:.0f}".format(*figure.bbox[:2])
            yield LockItem(
                doc=doc,
                kind="figure",
                locator=f"page:{figure.page}:{where}:{k}",
                image=image,
                image_bytes=data,
                image_suffix=suffix,
                text=figure.caption,
                page=figure.page,
                ocr=not figure.xref,
            )
        for item in text_items(doc, settings.text_chunk_chars, page=first_page, raw=section.text):
            item.ocr = section.ocr
            yield item


def _found(structure: Structure, key: str, ocr: OcrSetup, unit: SourceUnit) -> None:
    """What the report says of the PDF's tables and of its pages read (or not) by OCR."""
    for table in structure.tables:
        unit.tables.append(
            TableFound(source=key, pages=table.pages, ruling=table.ruling, header=table.header, rows=len(table.rows))
        )
    for read in structure.scans:
        unit.ocr.append(
            OcrPage(
                source=key,
                page=read.page,
                language=ocr.language,
                dpi=read.dpi or None,
                characters=read.characters,
                problem=read.problem,
            )
        )


def _document(
    structure: Structure,
    section: Section,
    index: int,
    path: Path,
    key: str,
    overrides: Overrides,
    sidecar: Sidecar | None,
    labeler: Labeler,
    figures: list[Image.Image],
) -> KnowledgeDocument:
    """The section as a knowledge document, labelled (see ``ingest.labels`` for the order)."""
    first_page = min(section.pages) if section.pages else 1
    meta, sections = section_text([line.text for line in section.lines])
    spec = sidecar.pages.get(first_page) if sidecar else None
    chosen: dict[str, tuple[str, LabelSource]] = {}
    for name in ("domain", "category", "defect_type"):
        for value, source in (
            (getattr(overrides, name), "option"),
            (getattr(spec, name, None), "sidecar"),
            (getattr(sidecar, name, None) if sidecar else None, "sidecar"),
            (meta.get(name), "line"),
        ):
            if value:
                chosen[name] = (str(value), LabelSource(source=source))
                break
    scan = section.heading_source == "scan"
    evidence = Evidence(
        heading=section.title or "",
        context=[*section.parents, *([structure.title] if structure.title else [])],
        captions=[f.caption for f in section.figures if f.caption],
        body=section.text,
    )
    if "category" not in chosen and not scan:
        found = labeler.category(evidence)
        if found is not None:
            chosen["category"] = found
    if "defect_type" not in chosen and not scan:
        found = labeler.defect_type(
            evidence, figures, normalise_name(chosen["category"][0]) if "category" in chosen else None
        )
        if found is not None:
            chosen["defect_type"] = found
    category, category_source = chosen.get("category", (path.stem, LabelSource(source="file name", confidence=0.0)))
    defect_type, type_source = chosen.get(
        "defect_type", (UNSPECIFIED_TYPE, LabelSource(source="scan" if scan else "default", confidence=0.0))
    )
    category, defect_type = normalise_name(category), normalise_name(defect_type)
    title = (spec.title if spec and spec.title else None) or section.title
    if not title:
        title = f"{structure.title or path.stem}, page {first_page}" if scan or not structure.title else structure.title
    return KnowledgeDocument(
        doc_id=doc_id(key, f"section:{index}"),
        domain=chosen["domain"][0] if "domain" in chosen else DEFAULT_DOMAIN,
        category=category,
        defect_type=defect_type,
        title=title,
        sections=(spec.sections if spec and spec.sections else None) or sections,
        source=key,
        page=first_page,
        labels=Labels(category=category_source, defect_type=type_source),
    )


def _clip(page: pymupdf.Page, section: Section, number: int) -> tuple[float, float, float, float]:
    """The section's area of the page, full page width (a whole page for a scan or a lone section)."""
    full = page.rect
    area = section.clips.get(number)
    if area is None or section.heading_source in ("scan", "page"):
        return (full.x0, full.y0, full.x1, full.y1)
    top, bottom = max(full.y0, area[1] - 12), min(full.y1, area[3] + 12)
    if bottom - top < 8:
        return (full.x0, full.y0, full.x1, full.y1)
    return (full.x0, top, full.x1, bottom)


RENDER_MAX_PIXELS = 4_000_000
"""A page render holds at most 4 megapixels (A4 at 200 dpi; 12 MB of RGB): a huge page is rendered
at a lower DPI, so a render's memory does not grow with the page's size."""
RENDER_CACHE = 4
PICTURE_DPI = 200
"""A picture cut out of a scan is rendered at the scan's own resolution, else at this (capped like
a page)."""


def render_dpi(clip: Box, dpi: int) -> int:
    """``dpi``, lowered (to 1 at least) so the clip's render stays under ``RENDER_MAX_PIXELS``."""
    return capped_dpi(clip, dpi, RENDER_MAX_PIXELS)


def _render(
    document: pymupdf.Document, path: Path, number: int, clip: tuple[float, float, float, float], dpi: int
) -> tuple[Image.Image, bytes]:
    try:
        pixmap = document[number - 1].get_pixmap(dpi=dpi, alpha=False, clip=pymupdf.Rect(clip))
    except Exception as e:
        raise InvalidInputError(f"{path}: page {number} cannot be rendered ({e})") from e
    image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
    return image, pixmap.tobytes("png")


def _figure(document: pymupdf.Document, figure: Figure, settings: Settings) -> tuple[Image.Image, bytes, str] | None:
    """An embedded image (or a picture cut out of a scanned page) as (RGB image, PNG bytes,
    suffix), or None when too small or undecodable."""
    try:
        if figure.clip is not None:
            dpi = capped_dpi(figure.clip, figure.dpi or PICTURE_DPI, RENDER_MAX_PIXELS)
            pixmap = document[figure.page - 1].get_pixmap(dpi=dpi, alpha=False, clip=pymupdf.Rect(figure.clip))
        else:
            pixmap = pymupdf.Pixmap(document, figure.xref)
        if pixmap.width < settings.min_figure_side or pixmap.height < settings.min_figure_side:
            return None
        if pixmap.width * pixmap.height > settings.max_image_pixels:
            return None
        if pixmap.n - pixmap.alpha not in (1, 3):
            pixmap = pymupdf.Pixmap(pymupdf.csRGB, pixmap)
        if pixmap.alpha:
            pixmap = pymupdf.Pixmap(pixmap, 0)
        mode = "L" if pixmap.n == 1 else "RGB"
        image = to_rgb(Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples))
        return image, pixmap.tobytes("png"), ".png"
    except Exception:
        return None
