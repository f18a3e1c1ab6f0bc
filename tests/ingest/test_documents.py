"""Real product documents: PDFs in real-world layouts without kbengine's heading lines (numbered
guides, outlines, two columns, defect tables ruled by a grid, by horizontal lines only or by
whitespace, tables over two pages) become one knowledge document per section, titled by its
heading, labelled by a taxonomy (or the knowledge base's own names), with figures tied to their
captions; a dry run shows it all and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import LockPayload
from kbengine.core.store import Where
from tests.conftest import open_kb
from tests.ingest.conftest import found, preview
from tests.ingest.pdf_layouts import TABLES, limits_table, table_in_a_manual, two_column_prose


@pytest.mark.parametrize("layout", ["numbered", "bookmarks", "columns", "page-break", *TABLES])
def test_sections_titles_labels_and_captions(layout, layouts, tmp_path, packaged):
    pdf, expected = layouts[layout]
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=pdf.parent / "taxonomy.yaml")
    docs = found(report)
    assert [d.title for d in docs] == [e.title for e in expected]  # the heading, not the document's title
    for doc, want in zip(docs, expected, strict=True):
        assert (doc.category, doc.defect_type) == (want.category, want.defect_type), doc
        assert doc.labels is not None and doc.labels.defect_type.source == "taxonomy"
        assert doc.labels.defect_type.confidence >= 0.9  # named in the heading itself
        assert tuple(doc.pages) == want.pages
        assert [f.caption for f in doc.figures if f.caption] == want.captions
        assert len(doc.figures) == 1  # each section's own photo, none of its neighbour's
    assert not report.unlabeled and not (tmp_path / "kb" / "qdrant").exists()  # a dry run writes nothing
    assert [t.ruling for t in report.tables] == ([TABLES[layout]] if layout in TABLES else [])  # prose is no table


@pytest.mark.parametrize("layout", list(TABLES))
def test_a_table_of_any_ruling_is_a_document_per_row_and_its_header_none(layout, layouts, tmp_path, packaged):
    pdf, expected = layouts[layout]
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=pdf.parent / "taxonomy.yaml")
    (table,) = report.tables  # one table, though split over two pages
    assert table.header == ["Defect", "Description", "Image"] and table.rows == len(expected)
    assert table.pages == sorted({page for want in expected for page in want.pages})
    assert not {d.title for d in report.preview} & {"Defect", "Description", "Image"}
    assert all(d.sections == ["description"] and d.text_locks == 1 for d in report.preview)


def test_a_table_inside_a_chapter_ends_where_the_text_goes_on(tmp_path, packaged, layouts):
    """A table between paragraphs: the paragraph after it is its chapter's, not a row; its rows'
    category comes from the chapter's heading."""
    pdf, expected = table_in_a_manual(tmp_path / "manual.pdf")
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=layouts["numbered"][0].parent / "taxonomy.yaml")
    rows = [d for d in report.preview if d.defect_type != "unspecified"]
    assert [(d.title, d.category, d.defect_type) for d in rows] == [(e.title, e.category, e.defect_type)
                                                                     for e in expected]  # fmt: skip
    assert all(d.labels is not None and d.labels.category.confidence == 0.85 for d in rows)  # the heading above
    assert [t.rows for t in report.tables] == [2]
    assert [d.title for d in report.preview if d not in rows] == ["Tile surface defects", "Packaging"]


def test_a_compact_table_of_text_only_is_a_document_per_line(tmp_path, packaged, layouts):
    pdf, expected = limits_table(tmp_path / "limits.pdf")
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=layouts["numbered"][0].parent / "taxonomy.yaml")
    rows = [d for d in report.preview if d.defect_type != "unspecified"]  # the note under the table is no row
    assert [(d.title, d.category, d.defect_type) for d in rows] == [(e.title, e.category, e.defect_type)
                                                                     for e in expected]  # fmt: skip
    assert [(t.ruling, t.header, t.rows) for t in report.tables] == [("rules", ["Defect", "Acceptance limit"], 2)]


def test_prose_in_two_columns_under_a_defects_heading_is_no_table(tmp_path, packaged):
    report = preview(tmp_path / "kb", packaged, two_column_prose(tmp_path / "notes.pdf"))
    assert not report.tables and not report.failed
    assert any("broken rim" in d.title.lower() or d.sections for d in report.preview)  # the prose is still read


def test_a_table_row_stores_its_image_as_a_figure_and_its_cells_as_text(layouts, tmp_path, packaged):
    with open_kb(tmp_path / "kb", packaged) as kb:
        pdf, expected = layouts["split-no-header"]
        report = kb.ingest(pdf, taxonomy=pdf.parent / "taxonomy.yaml")
        assert report.ok and report.documents == 3 and [t.rows for t in report.tables] == [3]
        locks = [LockPayload.read(h.payload) for h in kb.store.scroll()]
        for want in expected:
            mine = [lock for lock in locks if lock.title == want.title]
            assert sorted(lock.kind for lock in mine) == ["figure", "page", "text"]
            assert {lock.page for lock in mine} == set(want.pages) and not any(lock.ocr for lock in mine)
            text = next(lock for lock in mine if lock.kind == "text")
            assert text.text is not None and text.text.startswith(f"{want.title}. description: ")


def test_labels_right_for_at_least_95_percent_of_the_sections(layouts, tmp_path, packaged):
    right = total = 0
    for pdf, expected in layouts.values():
        docs = found(preview(tmp_path / "kb", packaged, pdf, taxonomy=pdf.parent / "taxonomy.yaml"))
        wanted = {e.title: (e.category, e.defect_type) for e in expected}
        total += len(expected)
        right += sum(1 for d in docs if wanted.get(d.title) == (d.category, d.defect_type))
    assert total == 21 and right / total >= 0.95


def test_ingested_sections_keep_their_text_sections_figures_and_pages(layouts, tmp_path, packaged):
    with open_kb(tmp_path / "kb", packaged) as kb:
        taxonomy = layouts["numbered"][0].parent / "taxonomy.yaml"
        report = kb.ingest([layouts[n][0] for n in ("numbered", "columns", "page-break")], taxonomy=taxonomy)
        assert report.ok and report.documents == 6 and not report.unlabeled
        locks = [LockPayload.read(h.payload) for h in kb.store.scroll()]
        cracks = {lock.doc_id: lock for lock in locks if lock.title == "Shell cracks"}
        crack = next(iter(cracks.values()))
        assert crack.sections.causes == "Drying too fast after harvest."  # "Root cause" heading
        assert "fissure" in crack.sections.description and crack.category == "hazelnut"
        assert crack.labels is not None and crack.labels.category.source == "taxonomy"
        holes = next(lock for lock in locks if lock.title == "Holes")
        assert holes.sections.consequences == "The kernel rots; the lot is rejected."  # "Impact"
        figures = {lock.text for lock in locks if lock.kind == "figure" and lock.text}
        assert figures == {"Figure 1 - Scratch on the lid", "Figure 2 - Dent near the rim"}
        spanning = [lock for lock in locks if lock.title == "Cracks" and lock.kind == "page"]
        assert sorted(lock.page for lock in spanning) == [1, 2]  # the section's area on both pages
        assert next(lock for lock in locks if lock.title == "Cracks").sections.causes == "Thermal shock in the kiln."
        found_crack = kb.seek(synth.sample("tile", "crack", 12, 120)[0], k=1, category="tile", key="global")
        assert found_crack.hits[0].title == "Cracks"  # its own section's image, not its neighbour's


def test_a_scanned_page_is_an_unlabeled_page_image(layouts, tmp_path, packaged):
    with open_kb(tmp_path / "kb", packaged) as kb:
        report = kb.ingest(layouts["scan"][0])
        assert report.ok and report.pages == 1 and report.texts == 0
        (entry,) = report.unlabeled
        assert entry.page == 1 and entry.missing == ["category", "defect type"] and "scan" in entry.hint
        (page,) = [LockPayload.read(h.payload) for h in kb.store.scroll(Where.of(kind="page"))]
        assert (
            page.defect_type == "unspecified" and page.labels is not None and page.labels.defect_type.source == "scan"
        )


def test_without_a_taxonomy_the_knowledge_base_names_the_types(layouts, tmp_path, packaged):
    folders = tmp_path / "docs" / "hazelnut"
    for defect in ("crack", "hole"):
        (folders / defect).mkdir(parents=True)
        synth.sample("disc", "scratch", 40 + len(defect), 64)[0].save(folders / defect / "ref.png")
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest(tmp_path / "docs")
        report = kb.ingest(layouts["numbered"][0], dry_run=True)
    labelled = {d.title: d for d in found(report)}
    assert (labelled["Shell cracks"].category, labelled["Shell cracks"].defect_type) == ("hazelnut", "crack")
    assert labelled["Holes"].defect_type == "hole"
    assert labelled["Holes"].labels is not None and labelled["Holes"].labels.defect_type.source == "knowledge base"
    unknown = preview(tmp_path / "empty", packaged, layouts["bookmarks"][0])  # nothing names these types
    assert {u.title for u in unknown.unlabeled} == {"Insulation cuts", "Bent pins"}
    assert all(d.defect_type == "unspecified" for d in found(unknown))


def test_options_and_sidecars_win_over_inference(layouts, tmp_path, packaged):
    pdf, _ = layouts["columns"]
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=pdf.parent / "taxonomy.yaml", category="lid")
    assert {d.category for d in report.preview} == {"lid"}
    assert all(d.labels is not None and d.labels.category.source == "option" for d in report.preview)


def test_a_bad_taxonomy_is_a_clear_error(tmp_path, packaged, layouts):
    bad = tmp_path / "taxonomy.yaml"
    bad.write_text("categories: [a, b]\n")
    with pytest.raises(InvalidInputError, match=r"taxonomy .*categories"):
        preview(tmp_path / "kb", packaged, layouts["numbered"][0], taxonomy=bad)
    bad.write_text("colours: {red: []}\n")
    with pytest.raises(InvalidInputError, match="colours"):
        preview(tmp_path / "kb", packaged, layouts["numbered"][0], taxonomy=bad)


def test_cli_dry_run_prints_the_plan_and_writes_nothing(layouts, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    pdf, _ = layouts["numbered"]
    kb = tmp_path / "kb"
    runner = CliRunner()
    args = ["ingest", str(pdf), "--kb", str(kb), "--taxonomy", str(pdf.parent / "taxonomy.yaml"), "--dry-run"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "Shell" in table.output and "taxonom" in table.output and "nothing written" in table.output
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert data["dry_run"] and [d["defect_type"] for d in data["preview"]] == ["crack", "hole"]
    assert not (kb / "qdrant").exists()


def _hostile_pdf(path: Path, *, bold: bool = False, rotate: int = 0, outline: bool = False) -> Path:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    font = "hebo" if bold else "helv"
    page.insert_text((50, 60), "Cover defect sheet", fontsize=20, fontname="hebo")
    y = 110
    for number, (heading, text) in enumerate((("Cracks", "A thin fissure."), ("Holes", "A round puncture.")), 1):
        page.insert_text((50, y), f"{number}. {heading}", fontsize=14, fontname="hebo")
        for line in (text, "It is found at intake.", "The part is rejected."):
            y += 18
            page.insert_text((50, y), line, fontsize=10, fontname=font)
        y += 40
    if outline:
        doc.set_toc([[1, "Cover defect sheet", 1], [2, "Cracks", 1], [2, "Holes", 1]])  # no numbering, as often
    if rotate:
        page.set_rotation(rotate)
    doc.save(path)
    return path


@pytest.mark.parametrize("variant", [{"bold": True}, {"outline": True}, {"rotate": 90}])
def test_hostile_layouts_still_give_the_sections(variant, tmp_path, packaged, layouts):
    """All-bold body text, an outline whose titles lack the headings' numbering, and a page whose
    text runs sideways (rotated): read, not refused; sections where the reading order allows."""
    pdf = _hostile_pdf(tmp_path / "sheet.pdf", **variant)
    report = preview(tmp_path / "kb", packaged, pdf, taxonomy=layouts["numbered"][0].parent / "taxonomy.yaml")
    assert not report.failed, report.failed
    titles = [(d.title, d.defect_type) for d in found(report)]
    if "rotate" in variant:
        assert ("Cracks", "crack") in titles and ("Holes", "hole") in titles
    else:
        assert titles == [("Cracks", "crack"), ("Holes", "hole")]
    with open_kb(tmp_path / "kb", packaged) as kb:
        assert kb.ingest(pdf, taxonomy=layouts["numbered"][0].parent / "taxonomy.yaml").ok


def test_empty_pages_and_scalar_synonyms(tmp_path, packaged):
    import pymupdf

    doc = pymupdf.open()
    doc.new_page()
    doc.save(tmp_path / "blank.pdf")
    with open_kb(tmp_path / "kb", packaged) as kb:
        report = kb.ingest(tmp_path / "blank.pdf")
    assert report.failed and "no text, figures or scanned pages" in report.failed[0].reason
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text("defect_types:\n  crack: fracture\n")  # one synonym written as a string
    from ingest.labels import load_taxonomy

    assert load_taxonomy(taxonomy).defect_types == {"crack": ["fracture"]}
