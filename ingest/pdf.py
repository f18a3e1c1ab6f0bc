"""PDF knowledge documents (pymupdf): every page is rendered (page lock), its embedded images are
taken out (figure locks) and its text becomes text locks. Page metadata comes, in order of
precedence, from CLI options, the sidecar ``<file>.yaml``, the page's own headings
(``Category: x`` / ``Defect type: y`` lines, ``Description`` / ``Causes`` ... section headings),
and otherwise continues the previous page's (a defect entry may span pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pymupdf
from PIL import Image

from ingest.cards import Sidecar, load_sidecar, sidecar_path
from ingest.units import LockItem, Overrides, SourceUnit, doc_id, make_title, text_items
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import to_rgb
from kbengine.core.schemas import KnowledgeDocument, TextSections
from kbengine.core.settings import Settings
from kbengine.core.vocabulary import DEFAULT_DOMAIN, SECTION_NAMES, UNSPECIFIED_TYPE, normalise_name, section_pattern

_META = re.compile(r"^\s*(domain|category|defect[ _-]?type)\s*[:\-\u2013]\s*(.+?)\s*$", re.IGNORECASE)
_SECTION = re.compile(rf"^\s*({section_pattern()})\s*:?\s*(.*)$", re.IGNORECASE)


def parse_page_text(text: str) -> tuple[dict[str, str], str | None, TextSections | None]:
    """Headings of one page: metadata fields, a title (first other line) and sections, if any."""
    meta: dict[str, str] = {}
    title: str | None = None
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _META.match(line)
        if m:
            key = "defect_type" if m.group(1).lower().startswith("defect") else m.group(1).lower()
            meta[key] = m.group(2)
            continue
        s = _SECTION.match(line)
        if s and (line.strip().endswith(":") or ":" in line or line.strip().lower() == s.group(1).lower()):
            current = s.group(1).lower().replace(" ", "_")
            if s.group(2).strip():
                sections.setdefault(current, []).append(s.group(2).strip())
            continue
        if current:
            sections.setdefault(current, []).append(line.strip())
        elif title is None:
            title = line.strip()
    parsed = {k: " ".join(v) for k, v in sections.items() if k in SECTION_NAMES}
    return meta, title, TextSections(**parsed) if parsed else None


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


def pdf_unit(path: Path, key: str, overrides: Overrides, settings: Settings) -> SourceUnit:
    sidecar_file = sidecar_path(path)
    files = [path] + ([sidecar_file] if sidecar_file else [])

    def parts() -> Iterator[LockItem]:
        sidecar = load_sidecar(sidecar_file) if sidecar_file else None
        document = open_pdf(path, settings)
        try:
            yield from _pages(document, path, key, overrides, sidecar, settings)
        finally:
            document.close()

    return SourceUnit(key=key, kind="pdf", files=files, parts=parts, extra=f"dpi={settings.render_dpi}")


def _pages(
    document: pymupdf.Document,
    path: Path,
    key: str,
    overrides: Overrides,
    sidecar: Sidecar | None,
    settings: Settings,
) -> Iterator[LockItem]:
    previous: dict[str, str] = {}
    seen_xrefs: set[int] = set()
    for index in range(document.page_count):
        number = index + 1
        try:
            page = document[index]
            text = page.get_text()
            pixmap = page.get_pixmap(dpi=settings.render_dpi, alpha=False)
        except Exception as e:
            raise InvalidInputError(f"{path}: page {number} cannot be read ({e})") from e
        meta, title, sections = parse_page_text(text)
        spec = sidecar.pages.get(number) if sidecar else None
        fields: dict[str, str | None] = {}
        for name in ("domain", "category", "defect_type"):
            fields[name] = (
                getattr(overrides, name)
                or getattr(spec, name, None)
                or (getattr(sidecar, name) if sidecar else None)
                or meta.get(name)
                or previous.get(name)
            )
        domain = fields["domain"] or DEFAULT_DOMAIN
        category = normalise_name(fields["category"] or path.stem)
        defect_type = normalise_name(fields["defect_type"] or UNSPECIFIED_TYPE)
        continued = bool(previous) and not meta and spec is None
        doc_title = (spec.title if spec and spec.title else None) or title or make_title(category, defect_type)
        if continued:
            doc_title = previous.get("title", doc_title)
        doc_sections = (spec.sections if spec and spec.sections else None) or sections or TextSections()
        previous = {"domain": domain, "category": category, "defect_type": defect_type, "title": doc_title}
        doc = KnowledgeDocument(
            doc_id=doc_id(key, f"page:{number}"),
            domain=domain,
            category=category,
            defect_type=defect_type,
            title=doc_title,
            sections=doc_sections,
            source=key,
            page=number,
        )
        png = pixmap.tobytes("png")
        render = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
        yield LockItem(doc=doc, kind="page", locator=f"page:{number}", image=render, image_bytes=png, page=number)
        for figure_index, info in enumerate(page.get_images(full=True)):
            xref = info[0]
            if xref in seen_xrefs:
                continue
            seen_xrefs.add(xref)
            figure = _figure(document, xref, settings)
            if figure is not None:
                image, data, suffix = figure
                yield LockItem(
                    doc=doc,
                    kind="figure",
                    locator=f"page:{number}:figure:{figure_index}",
                    image=image,
                    image_bytes=data,
                    image_suffix=suffix,
                    page=number,
                )
        yield from text_items(doc, settings.text_chunk_chars, page=number, raw=text)


def _figure(document: pymupdf.Document, xref: int, settings: Settings) -> tuple[Image.Image, bytes, str] | None:
    """An embedded image as (RGB image, PNG bytes, suffix), or None when too small or undecodable."""
    try:
        pixmap = pymupdf.Pixmap(document, xref)
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
