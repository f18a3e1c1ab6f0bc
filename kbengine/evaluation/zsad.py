"""``kbengine eval zsad``: detection metrics per category of an MVTec-layout dataset.

Every test image of each category is scored by the AD Expert; the normal references are the
first ``shots`` images of the category's ``train/good`` (0 = pure zero-shot), so the dataset's own
test images never enter a memory bank. Metrics come from ``reasoning.expert.metrics`` (image
AUROC/AP/F1-max; pixel AUROC/AUPRO at FPR 0.3/F1-max on images that have masks; region recall and
box precision of the region boxes a user sees). Each row names the image score rule and the way
of reading photos that the category's references chose (``BankProfile``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from kbengine.core.banks.memory_bank import build_bank
from kbengine.core.banks.references import ReferenceBank
from kbengine.core.banks.selection import cluster_medoids
from kbengine.core.datasets import DatasetImage, mvtec_images
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import load_image
from kbengine.core.query import Query
from kbengine.core.settings import Settings
from kbengine.evaluation.progress import Progress
from kbengine.evaluation.reports import ZSAD_METRICS as METRICS
from kbengine.evaluation.reports import ZsadReport, ZsadRow
from kbengine.facade import KnowledgeBase
from reasoning.expert.evidence import score_rule
from reasoning.expert.metrics import box_precision, image_metrics, pixel_metrics, region_coverage
from reasoning.expert.training import load_learned_texts


def eval_zsad(
    dataset: Path,
    settings: Settings,
    *,
    mode: str = "auto",
    shots: int = 16,
    pick: str = "first",
    prompts: Path | None = None,
    categories: list[str] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ZsadReport:
    """Detection metrics per category of an MVTec-layout dataset, and their mean."""
    if shots < 0:
        raise InvalidInputError(f"shots must be 0 or more, got {shots}")
    if pick not in PICKS:
        raise InvalidInputError(f"unknown pick {pick!r}; choose one of {', '.join(PICKS)}")
    if shots == 0 and mode in ("references", "both"):
        raise InvalidInputError(f"--mode {mode} needs normal references: give --shots N (N >= 1)")
    if shots == 0 and mode == "auto":
        mode = "zero-shot"
    by_category: dict[str, list[DatasetImage]] = defaultdict(list)
    for item in mvtec_images(dataset, categories=categories):
        by_category[item.category].append(item)
    tests = {c: [i for i in group if i.split == "test"][: limit or None] for c, group in by_category.items()}
    total = sum(len(t) for t in tests.values())
    remove_stale_runs()
    folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    started = time.perf_counter()
    rows: list[ZsadRow] = []
    done = 0
    try:
        local = settings.model_copy(update={"kb": folder / "kb", "qdrant_url": None, "cache_dir": folder / "cache"})
        with KnowledgeBase.open(settings=local) as kb:
            learned = load_learned_texts(kb.encoder, prompts) if prompts is not None else None
            detector = kb.detector
            for category in sorted(by_category):
                if not tests[category]:
                    continue
                train = [i for i in by_category[category] if i.split == "train" and i.is_normal]
                normals = pick_shots(train, shots, pick, kb.encoder)
                if mode == "zero-shot":
                    normals = []
                elif shots and not normals:
                    raise InvalidInputError(f"{category} has no train/good images to take {shots} reference(s) from")
                bank = None
                if normals:
                    shots_bank = build_bank(
                        kb.encoder, shots_of(normals), augment=settings.detect_augment, tiles=settings.detect_tiles
                    )
                    bank = ReferenceBank(category, f"shots:{category}:{len(normals)}", shots_bank)
                plan = detector.plan(
                    category, mode, bank=bank, learned=learned, learned_name=str(prompts) if prompts else None
                )
                scores: list[float] = []
                labels: list[int] = []
                maps: list[np.ndarray] = []
                masks: list[np.ndarray] = []
                regions = np.zeros(4, np.int64)  # covered, total, touching boxes, boxes
                for item, query in batched(tests[category], detector.load):
                    os.utime(folder)  # alive: remove_stale_runs leaves this folder alone
                    if progress:
                        progress(done, total, str(item.path))
                    det = detector.run(query, plan)
                    scores.append(det.score)
                    labels.append(0 if item.is_normal else 1)
                    if item.is_normal or item.mask is not None:
                        maps.append(det.anomaly_map)
                        masks.append(_mask(item, det.width, det.height))
                        boxes = [r.bbox for r in det.regions]
                        regions += [*region_coverage(masks[-1], boxes), *box_precision(masks[-1], boxes)]
                    done += 1
                row = zsad_row(category, scores, labels, *same_size(maps, masks))
                rows.append(
                    row.model_copy(
                        update={
                            "region_recall": regions[0] / regions[1] if regions[1] else None,
                            "box_precision": regions[2] / regions[3] if regions[3] and regions[1] else None,
                            "score_rule": score_rule(bank) if bank is not None else None,
                            "views": bank.bank.profile.describe() if bank is not None else None,
                        }
                    )
                )
            encoder_name = kb.encoder.identity.name
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not rows:
        raise InvalidInputError(f"{dataset} has no test images to evaluate")
    seconds = time.perf_counter() - started
    return ZsadReport(
        dataset=str(dataset),
        mode=mode,
        shots=shots,
        pick=pick,
        encoder=encoder_name,
        prompts=str(prompts) if prompts else None,
        rows=rows,
        mean=mean_row(rows),
        seconds=round(seconds, 2),
        ms_per_image=round(1000 * seconds / max(done, 1), 1),
    )


TEMP_PREFIX = "kbengine-zsad-"
STALE_RUN_SECONDS = 86_400.0
"""A run's temp folder where nothing changed for a day was left by a killed run."""


def remove_stale_runs(max_age: float = STALE_RUN_SECONDS) -> list[Path]:
    """Delete the ``kbengine-zsad-*`` folders in the system temp folder that killed runs left:
    those not touched for ``max_age`` seconds (a live run touches its folder at every image).
    The folders removed."""
    cutoff = time.time() - max_age
    removed = []
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            if folder.is_symlink() or not folder.is_dir() or folder.stat().st_mtime >= cutoff:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


BATCH = 8


def batched(items: list[DatasetImage], load: Callable[[Path], Query]) -> Iterator[tuple[DatasetImage, Query]]:
    """Each item with its query; every ``BATCH`` queries share one encoder pass."""
    for start in range(0, len(items), BATCH):
        chunk = items[start : start + BATCH]
        queries = [load(item.path) for item in chunk]
        Query.encode_all(queries)
        yield from zip(chunk, queries, strict=True)


PICKS = ("first", "diverse")


def pick_shots(train: list[DatasetImage], shots: int, pick: str, encoder: Encoder) -> list[DatasetImage]:
    """The references of a category: the first ``shots`` of its train/good (the usual few-shot
    protocol), or with ``pick="diverse"`` the medoids of ``shots`` clusters of all of them (by
    global embedding), as a knowledge base chooses its references past ``detect_max_references``
    (``kbengine.core.banks.selection``)."""
    if pick == "first" or shots >= len(train):
        return train[:shots]
    keys = np.concatenate([encoder.embed_images(shots_of(train[i : i + 8])) for i in range(0, len(train), 8)])
    return [train[i] for i in cluster_medoids(keys, shots)]


def shots_of(normals: list[DatasetImage]) -> list[Image.Image]:
    return [load_image(n.path) for n in normals]


EVAL_SIZE = 256
"""Pixel metrics pool every image's pixels; images of different sizes are compared at this size."""


def same_size(maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The maps and masks as they are when all share one size, else each resized to EVAL_SIZE
    square (maps bilinear, masks nearest), so every image counts in the pixel metrics."""
    if len({m.shape for m in maps}) <= 1:
        return maps, masks
    size = (EVAL_SIZE, EVAL_SIZE)
    resized_maps = [
        np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize(size, Image.Resampling.BILINEAR))
        for m in maps
    ]
    resized_masks = [
        np.asarray(Image.fromarray(k.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
        for k in masks
    ]
    return resized_maps, resized_masks


def _mask(item: DatasetImage, width: int, height: int) -> np.ndarray:
    """The item's ground-truth mask at (height, width); all False for a normal image."""
    if item.mask is None:
        return np.zeros((height, width), bool)
    return np.asarray(Image.open(item.mask).convert("L").resize((width, height))) > 127


def zsad_row(
    category: str, scores: list[float], labels: list[int], maps: list[np.ndarray], masks: list[np.ndarray]
) -> ZsadRow:
    """One category's metrics (image ones when both labels occur, pixel ones when masks do)."""
    row = ZsadRow(category=category, images=len(scores), defective=sum(labels))
    if 0 < sum(labels) < len(labels):
        row = row.model_copy(update=image_metrics(np.array(labels), np.array(scores)))
    if masks and any(m.any() for m in masks) and any((~m).any() for m in masks):
        row = row.model_copy(update=pixel_metrics(np.stack(masks), np.stack(maps)))
    return row


def mean_row(rows: list[ZsadRow]) -> ZsadRow:
    mean = ZsadRow(category="mean", images=sum(r.images for r in rows), defective=sum(r.defective for r in rows))
    for name in METRICS:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        setattr(mean, name, sum(values) / len(values) if values else None)
    return mean
