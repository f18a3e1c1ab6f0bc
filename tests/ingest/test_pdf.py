"""PDF ingest on real pymupdf documents: pages, figures, text, headings and sidecars."""

from __future__ import annotations

import io

import pymupdf
import yaml
from PIL import Image

from ingest.pdf import section_text


def _pdf(path, pages):
    doc = pymupdf.open()
    for text, image in pages:
        page = doc.new_page()
        page.insert_textbox(pymupdf.Rect(40, 40, 550, 400), text, fontsize=11)
        if image is not None:
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            page.insert_image(pymupdf.Rect(40, 420, 240, 620), stream=buf.getvalue())
    doc.save(path)
    return path


def test_headings_give_metadata_and_sections():
    meta, sections = section_text(
        "Category: bottle\nDefect type: broken large\nDescription: The rim is chipped.\n"
        "Causes:\nimpact during transport\nConsequences: leaks\nRoot cause\nworn moulds\nImpact: rejects".splitlines()
    )
    assert meta == {"category": "bottle", "defect_type": "broken large"}
    assert sections.causes == "impact during transport worn moulds"  # "Root cause" is a causes heading too
    assert sections.description == "The rim is chipped." and sections.consequences == "leaks rejects"


def test_catalogue_pages_figures_and_text(make_kb, material):
    kb = make_kb()
    report = kb.ingest(material["catalogue"])
    assert report.ok and report.pages == 4 and report.figures == 4 and report.texts >= 4 * 6
    info = kb.info()
    entries = {(e.category, e.defect_type): e for e in info.entries}
    assert set(entries) == {("tile", "crack"), ("tile", "stain"), ("disc", "scratch"), ("disc", "missing")}
    assert entries[("tile", "crack")].locks == {"page": 1, "figure": 1, "text": 6}
    hits = kb.store.search("text", kb.encoder.embed_texts(["thermal shock during firing"])[0], 1)
    assert hits[0].payload["defect_type"] == "crack" and hits[0].payload["page"] == 1
    page_hit = next(h for h in kb.store.scroll() if h.payload["kind"] == "page")
    assert kb.blobs.has(page_hit.payload["blob"])
    with Image.open(kb.blobs.path(page_hit.payload["blob"])) as im:
        assert im.width > 500


def test_sidecar_and_continuation_pages(make_kb, tmp_path):
    red = Image.new("RGB", (80, 80), (200, 30, 30))
    path = _pdf(
        tmp_path / "manual.pdf",
        [
            ("Pump housing inspection manual\nGeneral notes on handling.", None),
            ("Porosity\nCategory: housing\nDefect type: porosity\nDescription: small pores in the casting", red),
            ("More about porosity: gas trapped during casting.", None),
        ],
    )
    (tmp_path / "manual.pdf.yaml").write_text(
        yaml.safe_dump({"domain": "castings", "pages": {1: {"defect_type": "good"}}})
    )
    kb = make_kb()
    report = kb.ingest(path)
    assert report.ok and report.pages == 3 and report.figures == 1
    pages = {h.payload["page"]: h.payload for h in kb.store.scroll() if h.payload["kind"] == "page"}
    assert pages[1]["defect_type"] == "good" and pages[1]["category"] == "manual"
    assert pages[2]["category"] == "housing" and pages[2]["defect_type"] == "porosity"
    assert pages[3]["defect_type"] == "porosity" and pages[3]["title"] == "Porosity"  # continues page 2
    assert {p["domain"] for p in pages.values()} == {"castings"}
