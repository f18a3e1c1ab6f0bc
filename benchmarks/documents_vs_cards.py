"""Knowledge as real documents against the same knowledge as folders with cards: seek accuracy.

From an MVTec-layout dataset, N defect photos per type become (a) document folders
``<category>/<type>/`` with a ``card.yaml``, and (b) PDFs in real-world layouts without
kbengine's heading lines (a guide with numbered headings, a two-column datasheet with captions, a
defect table; rotating per category), labelled only through a taxonomy file. Both knowledge bases
get the same normal references; the other defect photos query both (``eval seek --kb``).

    python benchmarks/documents_vs_cards.py DATASET --examples 3 --references 16 --limit 20
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


def photo_bytes(path: Path) -> bytes:
    image = Image.open(path).convert("RGB")
    image.thumbnail((400, 400))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_pdf(path: Path, category: str, groups: dict[str, list[Path]], layout: int) -> None:
    """One PDF for a category: a section per defect type, in one of three layouts."""
    doc = pymupdf.open()
    words = {t: t.replace("_", " ").capitalize() for t in groups}
    if layout == 2:  # a ruled table: defect | description | image
        page = doc.new_page()
        page.insert_text((50, 50), f"{category.replace('_', ' ').title()} defect table", fontsize=18, fontname="hebo")
        y = 80
        xs = (50, 170, 380, 545)
        for defect, photos in groups.items():
            height = 20 + BOX
            if y + height > 800:
                page, y = doc.new_page(), 50
            for c in range(3):
                page.draw_rect(pymupdf.Rect(xs[c], y, xs[c + 1], y + height), color=(0, 0, 0), width=0.8)
            page.insert_textbox(pymupdf.Rect(xs[0] + 4, y + 4, xs[1] - 4, y + 60), words[defect], fontsize=10)
            page.insert_textbox(
                pymupdf.Rect(xs[1] + 4, y + 4, xs[2] - 4, y + 60),
                f"Description: a {words[defect].lower()} defect.",
                fontsize=10,
            )
            page.insert_image(
                pymupdf.Rect(xs[2] + 5, y + 5, xs[2] + 5 + BOX, y + 5 + BOX), stream=photo_bytes(photos[0])
            )
            y += height
        header = doc[0]
        header.insert_text((xs[0] + 4, 76), "Defect", fontsize=10, fontname="hebo")
        header.insert_text((xs[1] + 4, 76), "Description", fontsize=10, fontname="hebo")
        header.insert_text((xs[2] + 4, 76), "Image", fontsize=10, fontname="hebo")
        doc.save(path)
        return
    page = doc.new_page()
    page.insert_text((50, 60), f"{category.replace('_', ' ').title()} inspection guide", fontsize=20, fontname="hebo")
    y = 100
    for number, (defect, photos) in enumerate(groups.items(), 1):
        need = 60 + BOX + 30
        if y + need > 800:
            page, y = doc.new_page(), 60
        heading = f"3.{number} {words[defect]}" if layout == 0 else words[defect]
        page.insert_text((50, y), heading, fontsize=13, fontname="hebo")
        page.insert_textbox(
            pymupdf.Rect(50, y + 8, 545, y + 40), f"A {words[defect].lower()} on the part.", fontsize=10
        )
        for i, photo in enumerate(photos[:3]):
            x = 50 + i * (BOX + 10)
            page.insert_image(pymupdf.Rect(x, y + 45, x + BOX, y + 45 + BOX), stream=photo_bytes(photo))
            if layout == 1:
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
    args = parser.parse_args()

    from kbengine.core.settings import Settings
    from kbengine.evaluation.seek import run_queries, split_examples, summarise, write_knowledge
    from kbengine.facade import KnowledgeBase

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
        pdfs = root / "pdfs"
        pdfs.mkdir()
        taxonomy: dict[str, dict[str, list[str]]] = {"categories": {}, "defect_types": {}}
        groups: dict[str, dict[str, list[Path]]] = {}
        for image in knowledge:
            groups.setdefault(image.category, {}).setdefault(image.defect_type, []).append(image.path)
        for i, (category, by_type) in enumerate(sorted(groups.items())):
            write_pdf(pdfs / f"{category}.pdf", category, by_type, i % 3)
            taxonomy["categories"][category] = [category.replace("_", " ")]
            for defect in by_type:
                taxonomy["defect_types"][defect] = [defect.replace("_", " ")]
        (root / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy))
        results = {}
        for name, sources, options in (
            ("folders with cards", [cards], {}),
            ("PDFs + taxonomy", [pdfs, references], {"taxonomy": root / "taxonomy.yaml"}),
        ):
            settings = Settings(kb=root / name.replace(" ", "-") / "kb", encoder="packaged")
            with KnowledgeBase.open(settings=settings) as kb:
                report = kb.ingest(sources, **options)  # type: ignore[arg-type]
                print(f"{name}: {report.documents} documents, {len(report.unlabeled)} unlabeled", flush=True)
                records = run_queries(kb, queries, "topk", args.k, None)
                results[name] = summarise(str(args.dataset), name, "topk", args.k, records, 0.0).overall
        for name, row in results.items():
            keys = ", ".join(f"{k} {s.top1:.3f}" for k, s in row.keys.items())
            print(
                f"{name:20s} type top-1 {row.top1:.3f} top-3 {row.top3:.3f} type prediction {row.type_accuracy}; {keys}"
            )


if __name__ == "__main__":
    main()
