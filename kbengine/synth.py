"""Synthetic but realistic inspection material for tests, the demo and benchmarks.

Procedural parts (textures and objects with lighting, colour and pose variation) with defects
(scratch, crack, hole, stain, missing piece) and their pixel masks, written as an MVTec-layout
dataset, as document folders with cards, and as PDF catalogues (pymupdf) holding the reference
images and the defect knowledge text. Everything is deterministic for a seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw, ImageFilter

from kbengine.core.vocabulary import SECTION_NAMES, section_heading

Array = np.ndarray

CATEGORIES: dict[str, tuple[str, ...]] = {
    "tile": ("crack", "stain", "hole"),
    "fabric": ("hole", "stain", "scratch"),
    "disc": ("scratch", "missing", "stain"),
}

KNOWLEDGE: dict[str, dict[str, str]] = {
    "scratch": {
        "description": "A scratch is a thin, straight or gently curved groove in the surface.",
        "appearance": "A narrow bright or dark line, a few pixels wide, crossing the surface texture.",
        "causes": "Contact with sharp tooling, abrasive particles on conveyors, careless handling.",
        "consequences": "Cosmetic rejection; on sealing faces it can cause leaks and corrosion.",
        "production_scenarios": "Machining, polishing and transfer between stations.",
        "application_scenarios": "Visible surfaces and sealing faces in assemblies.",
    },
    "crack": {
        "description": "A crack is a fracture that runs through the material along a jagged path.",
        "appearance": "A dark, thin, branching line with an irregular zig-zag course.",
        "causes": "Thermal shock during firing or cooling, impact, internal stress.",
        "consequences": "Loss of mechanical strength; the part can break in service. Always reject.",
        "production_scenarios": "Kiln firing, pressing, and drop impacts during packing.",
        "application_scenarios": "Load-bearing and water-tight surfaces.",
    },
    "hole": {
        "description": "A hole is a missing area of material that goes through the surface.",
        "appearance": "A compact dark round or oval region with sharp edges.",
        "causes": "Puncture by foreign objects, broken threads, gas inclusions.",
        "consequences": "Functional failure: leaks, tears that grow under load. Reject.",
        "production_scenarios": "Weaving, moulding and stamping.",
        "application_scenarios": "Barriers, covers and filters.",
    },
    "stain": {
        "description": "A stain is a discoloured patch on an otherwise intact surface.",
        "appearance": "A soft-edged blotch of different colour, brownish or dark, without depth.",
        "causes": "Oil or coolant drips, dirty gloves, residues from cleaning agents.",
        "consequences": "Mostly cosmetic; oil residues can prevent coating adhesion.",
        "production_scenarios": "Lubricated machinery, manual handling, storage.",
        "application_scenarios": "Visible and coated surfaces.",
    },
    "missing": {
        "description": "A missing piece is a chip broken off the edge of the part.",
        "appearance": "A notch in the outline where the background shows through.",
        "causes": "Impact on edges during transport, brittle material, tool collision.",
        "consequences": "The part no longer fits or seals; sharp edges are a safety risk. Reject.",
        "production_scenarios": "Deburring, bulk transport, assembly.",
        "application_scenarios": "Fitted and sealing parts.",
    },
}

NORMAL_KNOWLEDGE = {
    "description": "A normal part: uniform texture and intact outline, no marks.",
    "appearance": "Regular pattern, even colour, sharp and complete edges.",
}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> Array:
    small = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, np.float32) / 255.0


def _lighting(rng: np.random.Generator, size: int) -> Array:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gx, gy = rng.uniform(-0.15, 0.15, 2)
    return 1.0 + gx * (xx - 0.5) + gy * (yy - 0.5)


def _tile(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    base = np.array([196, 170, 140], np.float32) + rng.normal(0, 6, 3)
    n = _smooth_noise(rng, size, 24) * 0.5 + _smooth_noise(rng, size, 96) * 0.5
    img = base[None, None, :] * (0.85 + 0.3 * n[..., None])
    period = int(rng.integers(56, 72))
    offset = int(rng.integers(0, period))
    grout = (np.arange(size) + offset) % period < 4
    img[grout, :, :] *= 0.55
    img[:, grout, :] *= 0.55
    return img, np.ones((size, size), bool)


def _fabric(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    base = np.array([70, 90, 140], np.float32) + rng.normal(0, 6, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    freq = rng.uniform(0.55, 0.65)
    weave = 0.5 + 0.25 * np.sin(xx * freq) * np.sign(np.sin(yy * freq / 2)) + 0.25 * np.sin(yy * freq)
    n = _smooth_noise(rng, size, 32)
    img = base[None, None, :] * (0.75 + 0.35 * weave[..., None] + 0.1 * n[..., None])
    return img, np.ones((size, size), bool)


def _disc(rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    bg = np.array([40, 40, 45], np.float32) + rng.normal(0, 3, 3)
    img = np.ones((size, size, 3), np.float32) * bg * (0.9 + 0.2 * _smooth_noise(rng, size, 8)[..., None])
    cy, cx = size / 2 + rng.normal(0, size * 0.02, 2)
    radius = size * rng.uniform(0.36, 0.4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(yy - cy, xx - cx)
    angle = np.arctan2(yy - cy, xx - cx)
    body = (r < radius) & (r > radius * 0.28)
    metal = (
        np.array([175, 178, 185], np.float32) * (0.85 + 0.1 * np.sin(angle * 40 + rng.uniform(0, 6)) ** 2)[..., None]
    )
    metal *= (0.9 + 0.15 * (1 - r / radius))[..., None]
    img[body] = metal[body]
    return img, body


MAKERS: dict[str, Callable[[np.random.Generator, int], tuple[Array, Array]]] = {
    "tile": _tile,
    "fabric": _fabric,
    "disc": _disc,
}


def normal_image(category: str, rng: np.random.Generator, size: int = 256) -> tuple[Array, Array]:
    """A defect-free part as float RGB (0-255) and the mask of where the part is."""
    img, region = MAKERS[category](rng, size)
    img = img * _lighting(rng, size)[..., None] + rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255), region


def _point_in(region: Array, rng: np.random.Generator, margin: int) -> tuple[int, int]:
    size = region.shape[0]
    inner = np.zeros_like(region)
    inner[margin : size - margin, margin : size - margin] = region[margin : size - margin, margin : size - margin]
    ys, xs = np.nonzero(inner)
    i = int(rng.integers(0, len(ys)))
    return int(ys[i]), int(xs[i])


def _draw_mask(size: int, draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> Array:
    canvas = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(canvas))
    if blur:
        canvas = canvas.filter(ImageFilter.GaussianBlur(float(blur)))
    return np.asarray(canvas, np.float32) / 255.0


def add_defect(img: Array, region: Array, defect: str, rng: np.random.Generator) -> tuple[Array, Array]:
    """Paint ``defect`` on a part; return the image and its binary ground-truth mask."""
    size = img.shape[0]
    out = img.copy()
    y, x = _point_in(region, rng, size // 6)
    if defect == "scratch":
        length, angle = rng.uniform(0.25, 0.45) * size, rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        bend = rng.normal(0, size * 0.03, 2)
        pts = [(x - dx, y - dy), (x + bend[0], y + bend[1]), (x + dx, y + dy)]
        width = int(rng.integers(2, 4))
        alpha = _draw_mask(size, lambda d: d.line(pts, fill=255, width=width), 0.6)
        shade = 235.0 if rng.random() < 0.6 else 30.0
        out = out * (1 - alpha[..., None]) + shade * alpha[..., None]
        mask = alpha > 0.3
    elif defect == "crack":
        pts = [(float(x), float(y))]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(10, 16))):
            heading += rng.normal(0, 0.6)
            step = rng.uniform(5, 10)
            pts.append((pts[-1][0] + np.cos(heading) * step, pts[-1][1] + np.sin(heading) * step))
        alpha = _draw_mask(size, lambda d: d.line(pts, fill=255, width=2), 0.5)
        out = out * (1 - 0.85 * alpha[..., None])
        mask = alpha > 0.3
    elif defect == "hole":
        rx, ry = (float(v) for v in rng.uniform(0.04, 0.08, 2) * size)
        alpha = _draw_mask(size, lambda d: d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=255), 1.0)
        out = out * (1 - alpha[..., None]) + 12.0 * alpha[..., None]
        mask = alpha > 0.5
    elif defect == "stain":
        rx, ry = (float(v) for v in rng.uniform(0.06, 0.11, 2) * size)
        alpha = _draw_mask(size, lambda d: d.ellipse((x - rx, y - ry, x + rx, y + ry), fill=255), rx / 3)
        colour = np.array([95, 60, 25], np.float32) + rng.normal(0, 8, 3)
        out = out * (1 - 0.7 * alpha[..., None]) + colour * 0.7 * alpha[..., None]
        mask = alpha > 0.35
    elif defect == "missing":
        ys, xs = np.nonzero(region)
        cy, cx = ys.mean(), xs.mean()
        radius = np.sqrt(region.sum() / np.pi) * 1.1
        angle = rng.uniform(0, 2 * np.pi)
        ex, ey = cx + np.cos(angle) * radius * 0.95, cy + np.sin(angle) * radius * 0.95
        r = rng.uniform(0.08, 0.12) * size
        chip = _draw_mask(size, lambda d: d.ellipse((ex - r, ey - r, ex + r, ey + r), fill=255)) > 0.5
        mask = chip & region
        background = np.array([40, 40, 45], np.float32)
        out[mask] = background + rng.normal(0, 2, (int(mask.sum()), 3))
    else:
        raise ValueError(f"unknown defect {defect!r}; known: scratch, crack, hole, stain, missing")
    return np.clip(out, 0, 255), mask


def to_uint8(img: Array) -> Image.Image:
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def sample(category: str, defect: str | None, seed: int, size: int = 256) -> tuple[Image.Image, Array]:
    """One part image (``defect`` None for a normal one) and its boolean mask."""
    rng = np.random.default_rng(seed)
    img, region = normal_image(category, rng, size)
    mask = np.zeros(region.shape, bool)
    if defect is not None:
        img, mask = add_defect(img, region, defect, rng)
    return to_uint8(img), mask


def hash_str(text: str) -> int:
    value = 1469598103934665603
    for byte in text.encode():
        value = ((value ^ byte) * 1099511628211) % (1 << 63)
    return value


def write_mvtec(
    root: Path,
    categories: dict[str, tuple[str, ...]] | None = None,
    n_train: int = 8,
    n_test_good: int = 3,
    n_test_defect: int = 3,
    size: int = 256,
    seed: int = 0,
) -> Path:
    """Write ``root/<category>/{train/good, test/<type>, ground_truth/<type>/<name>_mask.png}``."""
    categories = categories or CATEGORIES
    for category, defects in categories.items():
        base = root / category
        for i in range(n_train):
            img, _ = sample(category, None, hash_str(f"{seed}/{category}/train/{i}"), size)
            _save(img, base / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            img, _ = sample(category, None, hash_str(f"{seed}/{category}/test/good/{i}"), size)
            _save(img, base / "test" / "good" / f"{i:03d}.png")
        for defect in defects:
            for i in range(n_test_defect):
                img, mask = sample(category, defect, hash_str(f"{seed}/{category}/test/{defect}/{i}"), size)
                _save(img, base / "test" / defect / f"{i:03d}.png")
                _save(
                    Image.fromarray((mask * 255).astype(np.uint8)), base / "ground_truth" / defect / f"{i:03d}_mask.png"
                )
    return root


def card_for(category: str, defect: str) -> dict[str, str]:
    text = NORMAL_KNOWLEDGE if defect == "good" else KNOWLEDGE[defect]
    title = f"{category.title()}: {'normal reference' if defect == 'good' else defect.replace('_', ' ')}"
    return {"category": category, "defect_type": defect, "title": title, **text}


def write_documents(
    root: Path,
    categories: dict[str, tuple[str, ...]] | None = None,
    n_refs: int = 2,
    size: int = 256,
    seed: int = 1,
) -> Path:
    """Write ``root/<category>/<defect_type>/{card.yaml, ref_*.png}`` (``good`` = normal references)."""
    categories = categories or CATEGORIES
    for category, defects in categories.items():
        for defect in ("good", *defects):
            folder = root / category / defect
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "card.yaml").write_text(yaml.safe_dump(card_for(category, defect), sort_keys=False), "utf-8")
            for i in range(n_refs):
                img, _ = sample(
                    category, None if defect == "good" else defect, hash_str(f"{seed}/{category}/{defect}/{i}"), size
                )
                _save(img, folder / f"ref_{i}.png")
    return root


def write_pdf_catalogue(
    path: Path,
    categories: dict[str, tuple[str, ...]] | None = None,
    size: int = 256,
    seed: int = 2,
    pages: int | None = None,
) -> Path:
    """A defect catalogue PDF: one page per (category, defect type) with headings, knowledge text
    and a reference photo; ``pages`` repeats entries to reach a page count (benchmarks)."""
    import pymupdf

    categories = categories or CATEGORIES
    entries = [(c, d) for c, ds in categories.items() for d in ds]
    count = pages or len(entries)
    document = pymupdf.open()
    for index in range(count):
        category, defect = entries[index % len(entries)]
        card = card_for(category, defect)
        page = document.new_page(width=595, height=842)
        y = 60.0
        page.insert_text(
            (50, y),
            card["title"] + (f" (variant {index // len(entries)})" if index >= len(entries) else ""),
            fontsize=18,
        )
        y += 26
        page.insert_text((50, y), f"Category: {category}", fontsize=11)
        page.insert_text((250, y), f"Defect type: {defect}", fontsize=11)
        img, _ = sample(category, defect, hash_str(f"{seed}/{category}/{defect}/{index}"), size)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        page.insert_image(pymupdf.Rect(50, y + 15, 50 + 220, y + 15 + 220), stream=buffer.getvalue())
        y += 260
        for key in SECTION_NAMES:
            heading = section_heading(key)
            box = pymupdf.Rect(50, y, 545, y + 60)
            page.insert_textbox(box, f"{heading}: {card[key]}", fontsize=10)
            y += 62
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(path)
    document.close()
    return path


def write_scan(source: Path, path: Path, dpi: int = 150) -> Path:
    """``source`` as the scan a plant keeps: each page rasterised at ``dpi`` and put back as the
    page's only content (no text layer: OCR has to read it)."""
    import pymupdf

    scan = pymupdf.open()
    with pymupdf.open(source) as document:
        for page in document:
            image = page.get_pixmap(dpi=dpi).tobytes("png")
            new = scan.new_page(width=page.rect.width, height=page.rect.height)
            new.insert_image(new.rect, stream=image)
    path.parent.mkdir(parents=True, exist_ok=True)
    scan.save(path)
    scan.close()
    return path


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write_demo_material(root: Path, seed: int = 0) -> dict[str, Path]:
    """Everything the demo ingests: a PDF catalogue, document folders and an MVTec-layout dataset."""
    return {
        "catalogue": write_pdf_catalogue(root / "manuals" / "defect_catalogue.pdf", seed=seed + 2),
        "documents": write_documents(root / "documents", seed=seed + 1),
        "dataset": write_mvtec(root / "dataset", seed=seed),
    }
