"""Scanned pages (no text layer) read by OCR, on real Tesseract: a scan of a layout is labelled as
the layout with its text layer is, its locks say they were read by OCR, the pictures on the scan
are its figures; a page OCR cannot read is reported with what to do, and nothing fails."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from ingest.pdf_scan import OCR_MAX_PIXELS, ocr_setup, read_scan
from kbengine.cli import app
from kbengine.core.schemas import DocumentPreview, LockPayload
from kbengine.core.settings import Settings
from kbengine.synth import write_scan
from tests.conftest import open_kb
from tests.ingest.conftest import found, preview

TESSERACT = shutil.which("tesseract") is not None
needs_tesseract = pytest.mark.skipif(not TESSERACT, reason="needs Tesseract OCR (apt-get install tesseract-ocr)")


def labels(docs: list[DocumentPreview]) -> list[tuple[str, str, str, list[int]]]:
    return [(d.title, d.category, d.defect_type, sorted(d.pages)) for d in docs]


@needs_tesseract
@pytest.mark.parametrize("layout", ["numbered", "columns", "page-break", "rules", "table"])
def test_a_scan_is_labelled_as_the_same_pages_with_a_text_layer(layout, layouts, tmp_path, packaged):
    pdf, expected = layouts[layout]
    scan = write_scan(pdf, tmp_path / f"{layout}-scan.pdf")
    taxonomy = pdf.parent / "taxonomy.yaml"
    text = preview(tmp_path / "kb", packaged, pdf, taxonomy=taxonomy)
    read = preview(tmp_path / "kb", packaged, scan, taxonomy=taxonomy)
    assert labels(found(read)) == labels(found(text)) and len(found(read)) == len(expected)
    assert [(t.ruling, t.header, t.rows) for t in read.tables] == [(t.ruling, t.header, t.rows) for t in text.tables]
    pages = sorted({p for e in expected for p in e.pages} | {1})
    assert [(p.page, p.problem) for p in read.ocr] == [(p, None) for p in pages] and not text.ocr
    for doc in found(read):
        assert doc.ocr_pages == doc.pages and len(doc.figures) == 1  # its photo, cut out of the scan
        assert doc.labels is not None and doc.labels.defect_type.confidence >= 0.9  # named by its heading
    captions = [f.caption for d in found(text) for f in d.figures]
    assert [f.caption for d in found(read) for f in d.figures] == captions  # "Figure 1 - ...", read by OCR


@needs_tesseract
def test_ocr_locks_say_so_and_hold_the_scans_pictures(layouts, tmp_path, packaged):
    pdf, _ = layouts["numbered"]
    scan = write_scan(pdf, tmp_path / "guide-scan.pdf")
    with open_kb(tmp_path / "kb", packaged) as kb:
        report = kb.ingest([pdf, scan], taxonomy=pdf.parent / "taxonomy.yaml")
        assert report.ok and not report.unlabeled and [p.page for p in report.ocr] == [1, 2]
        locks = [LockPayload.read(h.payload) for h in kb.store.scroll()]
    by_source: dict[str, list[LockPayload]] = {}
    for lock in locks:
        by_source.setdefault(Path(lock.source).name, []).append(lock)
    scanned_locks, text_locks = by_source["guide-scan.pdf"], by_source[pdf.name]
    assert all(lock.ocr for lock in scanned_locks) and not any(lock.ocr for lock in text_locks)
    assert sorted(lock.kind for lock in scanned_locks) == sorted(lock.kind for lock in text_locks)
    crack = next(lock for lock in scanned_locks if lock.title == "Shell cracks" and lock.kind == "text")
    assert crack.sections.causes == "Drying too fast after harvest." and "fissure" in crack.sections.description


@needs_tesseract
def test_ocr_always_reads_text_pages_too(layouts, tmp_path, packaged):
    pdf, _ = layouts["numbered"]
    taxonomy = pdf.parent / "taxonomy.yaml"
    auto = preview(tmp_path / "kb", packaged, pdf, taxonomy=taxonomy)
    always = preview(tmp_path / "kb", packaged, pdf, {"ocr": "always"}, taxonomy=taxonomy)
    assert labels(found(always)) == labels(found(auto))
    assert [p.page for p in always.ocr if p.read] == [1, 2] and all(d.ocr_pages for d in always.preview)


@needs_tesseract
def test_a_scan_ocr_cannot_read_is_reported_with_what_to_do(layouts, tmp_path, packaged):
    pdf, _ = layouts["numbered"]
    scan = write_scan(pdf, tmp_path / "guide-scan.pdf")
    for settings, says in (
        ({"ocr_lang": "xyz"}, "apt-get install tesseract-ocr-xyz"),
        ({"ocr": "never"}, "--ocr never"),
    ):
        with open_kb(tmp_path / "kb", packaged, **settings) as kb:
            report = kb.ingest(scan)
        assert report.ok and report.pages == 2 and report.texts == 0  # page images, nothing failed
        assert [p.page for p in report.ocr] == [1, 2] and all("needs OCR" in (p.problem or "") for p in report.ocr)
        assert all(says in (p.problem or "") for p in report.ocr) and len(report.unlabeled) == 2


@pytest.mark.skipif(TESSERACT, reason="Tesseract is installed here (a missing language stands in for it above)")
def test_without_tesseract_the_report_says_how_to_install_it(layouts, tmp_path, packaged):
    pdf, _ = layouts["numbered"]
    report = preview(tmp_path / "kb", packaged, write_scan(pdf, tmp_path / "guide-scan.pdf"))
    assert not report.failed and len(report.preview) == 2
    assert all("apt-get install tesseract-ocr" in (p.problem or "") for p in report.ocr) and len(report.ocr) == 2


@needs_tesseract
def test_the_ocr_resolution_is_capped_for_a_huge_page(tmp_path):
    """A 25 x 25 inch scan is read at the resolution that keeps its render under OCR_MAX_PIXELS."""
    sheet = pymupdf.open()
    page = sheet.new_page(width=1800, height=1800)
    page.insert_text((100, 200), "4.2 Shell cracks", fontsize=40)
    image = page.get_pixmap(dpi=40).tobytes("png")
    scan = pymupdf.open()
    scan.new_page(width=1800, height=1800).insert_image(pymupdf.Rect(0, 0, 1800, 1800), stream=image)
    read = read_scan(scan[0], 1, ocr_setup(Settings(ocr_dpi=300)))
    assert read.dpi < 300 and (1800 * read.dpi / 72) ** 2 <= OCR_MAX_PIXELS
    assert [line.text for line in read.lines] == ["4.2 Shell cracks"]
    assert abs(read.lines[0].size - 40) <= 4  # the size estimated from the glyphs: headings are found by it


@needs_tesseract
def test_cli_dry_run_shows_tables_and_ocr_pages(layouts, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    pdf, _ = layouts["rules"]
    scan = write_scan(layouts["numbered"][0], tmp_path / "guide-scan.pdf")
    runner = CliRunner()
    args = [
        "ingest",
        str(pdf),
        str(scan),
        "--kb",
        str(tmp_path / "kb"),
        "--taxonomy",
        str(pdf.parent / "taxonomy.yaml"),
    ]
    shown = runner.invoke(app, [*args, "--dry-run"])
    assert shown.exit_code == 0, shown.output
    assert "table rules.pdf p.1: 3 row(s), ruled by horizontal rules only; header: Defect | Description | Image" in (
        shown.output
    )
    assert "OCR guide-scan.pdf p.1:" in shown.output and "1 OCR" in shown.output
    never = runner.invoke(app, [*args, "--dry-run", "--ocr", "never"])
    assert never.exit_code == 0 and "needs OCR, but OCR is off" in never.output
    data = json.loads(runner.invoke(app, [*args, "--dry-run", "--json"]).stdout)
    assert [t["rows"] for t in data["tables"]] == [3] and [p["page"] for p in data["ocr"]] == [1, 2]
    assert runner.invoke(app, [*args, "--ocr", "sometimes"]).exit_code != 0
