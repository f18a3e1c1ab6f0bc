"""Knowledge as real documents against the same knowledge as folders with cards: seek accuracy.

From an MVTec-layout dataset, N defect photos per type become (a) document folders
``<category>/<type>/`` with a ``card.yaml``, and (b) PDFs in real-world layouts without
kbengine's heading lines, one knowledge base per layout, labelled only through a taxonomy file:
a guide with numbered headings (``numbered``), a datasheet with headings and figure captions
(``captions``), a defect table ruled as a grid (``grid``) or by horizontal lines only (``rules``;
a row per type, its photos side by side in the image column), and the scan of each
(``numbered-scan``, ...: the layout's pages rasterised into an image-only PDF, read by OCR; needs
Tesseract). Every knowledge base gets the same normal references; the other defect photos query
each (``eval seek --kb``). A row per layout: its documents, how many nothing labelled, its table
rows and OCR'd pages, and seek type top-1 / top-3.

    python benchmarks/documents_vs_cards.py DATASET --examples 3 --references 16 --limit 20
    python benchmarks/documents_vs_cards.py DATASET --layouts rules rules-scan
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import pymupdf
import yaml
from PIL import Image

BOX = 150
THUMB = 80
"""A table's photos are smaller: three side by side in its image column."""


def photo_bytes(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    image.thumbnail((400, 400))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


LAYOUTS = ("numbered", "captions", "grid", "rules")
SCAN_DPI = 200
"""The resolution a scanned layout's pages are rasterised at (``synth.write_scan``; an office scan)."""


def write_pdf(path: Path, category: str, groups: dict[str, list[Path]], layout: str) -> None:
    """One PDF for a category: a section per defect type, in one of ``LAYOUTS``."""
    doc = pymupdf.open()
    words = {t: t.replace("_", " ").capitalize() for t in groups}
    if layout in ("grid", "rules"):  # a table: defect | description | images (the type's photos side by side)
        page = doc.new_page()
        page.insert_text((50, 50), f"{category.replace('_', ' ').title()} defect table", fontsize=18, fontname="hebo")
        xs = (50, 150, 290, 545)

        def header(page: pymupdf.Page, y: float) -> float:
            for x, name in zip(xs, ("Defect", "Description", "Image"), strict=False):
                page.insert_text((x + 4, y + 15), name, fontsize=10, fontname="hebo")
            if layout == "rules":
                page.draw_line((xs[0], y), (xs[-1], y), color=(0, 0, 0), width=1.2)
                page.draw_line((xs[0], y + 22), (xs[-1], y + 22), color=(0, 0, 0), width=0.6)
            return y + 22

        y = header(page, 64)
        for defect, photos in groups.items():
            height = 10 + THUMB
            if y + height > 800:
                page = doc.new_page()
                y = header(page, 50)  # the header repeated on the next page
            if layout == "grid":
                for c in range(3):
                    page.draw_rect(pymupdf.Rect(xs[c], y, xs[c + 1], y + height), color=(0, 0, 0), width=0.8)
            page.insert_textbox(pymupdf.Rect(xs[0] + 4, y + 4, xs[1] - 4, y + 60), words[defect], fontsize=10)
            page.insert_textbox(
                pymupdf.Rect(xs[1] + 4, y + 4, xs[2] - 4, y + 60),
                f"Description: a {words[defect].lower()} defect.",
                fontsize=10,
            )
            for i, photo in enumerate(photos[:3]):
                x = xs[2] + 5 + i * (THUMB + 5)
                page.insert_image(pymupdf.Rect(x, y + 5, x + THUMB, y + 5 + THUMB), stream=photo_bytes(photo))
            y += height
            if layout == "rules":
                page.draw_line((xs[0], y), (xs[-1], y), color=(0, 0, 0), width=0.6)
        doc.save(path)
        return
    page = doc.new_page()
    page.insert_text((50, 60), f"{category.replace('_', ' ').title()} inspection guide", fontsize=20, fontname="hebo")
    y = 100
    for number, (defect, photos) in enumerate(groups.items(), 1):
        need = 60 + BOX + 30
        if y + need > 800:
            page, y = doc.new_page(), 60
        heading = f"3.{number} {words[defect]}" if layout == "numbered" else words[defect]
        page.insert_text((50, y), heading, fontsize=13, fontname="hebo")
        page.insert_textbox(
            pymupdf.Rect(50, y + 8, 545, y + 40), f"A {words[defect].lower()} on the part.", fontsize=10
        )
        for i, photo in enumerate(photos[:3]):
            x = 50 + i * (BOX + 10)
            page.insert_image(pymupdf.Rect(x, y + 45, x + BOX, y + 45 + BOX), stream=photo_bytes(photo))
            if layout == "captions":
                page.insert_text((x, y + 45 + BOX + 12), f"Figure {number}.{i + 1} - {words[defect]}", fontsize=8)
        y += need
    doc.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("-k", type=int, default=3)
    every = [*LAYOUTS, *(f"{layout}-scan" for layout in LAYOUTS)]
    parser.add_argument("--layouts", nargs="+", choices=every, default=every, metavar="LAYOUT", help=", ".join(every))
    args = parser.parse_args()

    from kbengine.core.settings import Settings
    from kbengine.evaluation.seek import run_queries, split_examples, summarise, write_knowledge
    from kbengine.facade import KnowledgeBase
    from kbengine.synth import write_scan

    knowledge, normals, queries = split_examples(args.dataset, args.examples, args.references, None, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cards = write_knowledge(root / "cards", knowledge, normals)
        for category_dir in cards.iterdir():
            for type_dir in category_dir.iterdir():
                if type_dir.name != "good":
                    card = {"title": f"{category_dir.name}: {type_dir.name}", "description": f"A {type_dir.name}."}
                    (type_dir / "card.yaml").write_text(yaml.safe_dump(card))
        references = write_knowledge(root / "references", [], normals)
        taxonomy: dict[str, dict[str, list[str]]] = {"categories": {}, "defect_types": {}}
        groups: dict[str, dict[str, list[Path]]] = {}
        for image in knowledge:
            groups.setdefault(image.category, {}).setdefault(image.defect_type, []).append(image.path)
        for category, by_type in groups.items():
            taxonomy["categories"][category] = [category.replace("_", " ")]
            for defect in by_type:
                taxonomy["defect_types"][defect] = [defect.replace("_", " ")]
        (root / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
        runs: list[tuple[str, list[Path], dict[str, object]]] = [("folders with cards", [cards], {})]
        for layout in args.layouts:
            folder = root / f"pdfs-{layout}"
            folder.mkdir()
            for category, by_type in sorted(groups.items()):
                text = folder / f"{category}.pdf"
                write_pdf(text, category, by_type, layout.removesuffix("-scan"))
                if layout.endswith("-scan"):
                    write_scan(text, folder / f"{category}-scan.pdf", SCAN_DPI)
                    text.unlink()
            runs.append((layout, [folder, references], {"taxonomy": root / "taxonomy.yaml"}))
        rows = []
        for name, sources, options in runs:
            settings = Settings(kb=root / "kb" / name.replace(" ", "-"), encoder="packaged")
            with KnowledgeBase.open(settings=settings) as kb:
                report = kb.ingest(sources, **options)  # type: ignore[arg-type]
                records = run_queries(kb, queries, "topk", args.k, None)
                overall = summarise(str(args.dataset), name, "topk", args.k, records, 0.0).overall
            table_rows = sum(t.rows for t in report.tables)
            ocr = sum(1 for page in report.ocr if page.read)
            unread = sum(1 for page in report.ocr if not page.read)
            rows.append((name, report.documents, len(report.unlabeled), table_rows, ocr, unread, overall))
            print(f"{name}: {report.documents} documents, {len(report.unlabeled)} unlabeled", flush=True)
        print(f"\n{'knowledge':20s} {'docs':>5s} {'unlabeled':>9s} {'table rows':>10s} {'OCR pages':>9s}  seek type")
        cards_top1 = rows[0][-1].top1
        for name, documents, unlabeled, table_rows, ocr, unread, row in rows:
            keys = ", ".join(f"{k} {s.top1:.3f}" for k, s in row.keys.items())
            pages = f"{ocr}" + (f" ({unread} unread)" if unread else "")
            gap = "" if name == rows[0][0] else f" ({row.top1 - cards_top1:+.3f} vs cards)"
            print(
                f"{name:20s} {documents:5d} {unlabeled:9d} {table_rows:10d} {pages:>9s}  top-1 {row.top1:.3f}{gap} "
                f"top-3 {row.top3:.3f} type prediction {row.type_accuracy}; {keys}"
            )


if __name__ == "__main__":
    main()
