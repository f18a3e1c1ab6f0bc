"""``kbengine eval seek``: seek accuracy (the paper's 83%), per key.

Every defective test image of an MVTec-layout dataset is a query; a hit is right when its
(category, defect type) is the query's. The knowledge is, in this order of precedence:

- a given knowledge base (``--kb``/``--url``);
- ``examples=N``: a knowledge base built from the dataset, holding the first N defect images of
  each (category, defect type) as that type's document folder and the first ``references`` normal
  images of each category (``train/good``); the other defect images are the queries (at most
  ``limit`` per defect type). This is the protocol users run on their own data;
- else the dataset itself, ingested once into a temporary folder, each query leaving its own image
  out (``exclude_sources``), which is leave-one-out without re-ingesting; the type-centroid
  prediction leaves the query's vector out of its centroid the same way.

Each query is sought with every key (``global``, ``region``, ``auto`` = fused); the report's main
figures are the default key's (``auto``), and ``keys`` has top-1/top-3/type accuracy per key.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kbengine.core.datasets import DatasetImage, mvtec_images, source_key
from kbengine.core.errors import InvalidInputError
from kbengine.core.query import query_batches
from kbengine.core.schemas import FileFailure
from kbengine.core.settings import Settings
from kbengine.evaluation.progress import Progress
from kbengine.evaluation.reports import KeyScore, SeekEvalQuery, SeekEvalReport, SeekEvalRow
from kbengine.facade import KnowledgeBase

KEYS = ("auto", "global", "region")
BATCH = 8
"""Query photos encoded in one pass (as ``kb.seek_many`` does)."""


def seek_queries(dataset: Path, categories: list[str] | None = None, limit: int | None = None) -> list[DatasetImage]:
    """The defective test images, at most ``limit`` per category (the first in name order)."""
    queries = [i for i in mvtec_images(dataset, split="test", categories=categories) if not i.is_normal]
    if limit is not None:
        kept: dict[str, int] = defaultdict(int)
        chosen = []
        for q in queries:
            if kept[q.category] < limit:
                kept[q.category] += 1
                chosen.append(q)
        queries = chosen
    if not queries:
        raise InvalidInputError(f"{dataset} has no defective test images (test/<defect_type>/...) to query with")
    return queries


def split_examples(
    dataset: Path, examples: int, references: int, categories: list[str] | None, limit: int | None, seed: int = 0
) -> tuple[list[DatasetImage], list[DatasetImage], list[DatasetImage]]:
    """(knowledge examples, normal references, queries): per (category, defect type) ``examples``
    defect images drawn with ``seed`` become knowledge and the rest (at most ``limit``) queries; the
    first ``references`` ``train/good`` images of each category are its references."""
    if examples < 1 or references < 0:
        raise InvalidInputError(f"examples must be at least 1 and references 0 or more, got {examples}, {references}")
    images = mvtec_images(dataset, categories=categories)
    groups: dict[tuple[str, str], list[DatasetImage]] = defaultdict(list)
    normals: dict[str, list[DatasetImage]] = defaultdict(list)
    for image in images:
        if image.split == "test" and not image.is_normal:
            groups[(image.category, image.defect_type)].append(image)
        elif image.split == "train" and image.is_normal:
            normals[image.category].append(image)
    rng = np.random.default_rng(seed)
    knowledge, queries = [], []
    for key in sorted(groups):
        group = groups[key]
        order = rng.permutation(len(group))
        if len(group) <= examples:
            raise InvalidInputError(f"{key[0]}/{key[1]} has {len(group)} image(s): none left to query with")
        knowledge += [group[i] for i in order[:examples]]
        rest = [group[i] for i in order[examples:]]
        queries += rest[:limit] if limit is not None else rest
    chosen_normals = [n for c in sorted(normals) for n in normals[c][:references]]
    if not queries:
        raise InvalidInputError(f"{dataset} has no defective test images (test/<defect_type>/...) to query with")
    return knowledge, chosen_normals, queries


def write_knowledge(folder: Path, knowledge: list[DatasetImage], normals: list[DatasetImage]) -> Path:
    """``<folder>/<category>/<defect_type>/`` document folders (``good`` for the references)."""
    for image in [*knowledge, *normals]:
        target = folder / image.category / image.defect_type / f"{image.path.parent.name}-{image.path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image.path, target)
    return folder


def eval_seek(
    dataset: Path,
    settings: Settings,
    *,
    kb: KnowledgeBase | None = None,
    strategy: str = "kde",
    k: int = 5,
    categories: list[str] | None = None,
    limit: int | None = None,
    examples: int | None = None,
    references: int = 16,
    split_seed: int = 0,
    progress: Progress | None = None,
    ingest_progress: Progress | None = None,
    focus: bool | None = None,
) -> SeekEvalReport:
    """Seek accuracy on ``dataset`` against ``kb``, against ``examples`` per type, or leave-one-out."""
    started = time.perf_counter()
    if kb is not None:
        queries = seek_queries(dataset, categories, limit)
        records = run_queries(kb, queries, strategy, k, progress, focus)
        return summarise(str(dataset), kb.store.location, strategy, k, records, time.perf_counter() - started)
    folder = Path(tempfile.mkdtemp(prefix="kbengine-eval-"))
    try:
        local = settings.model_copy(update={"kb": folder / "kb", "qdrant_url": None, "cache_dir": None})
        if examples is not None:
            knowledge, normals, queries = split_examples(dataset, examples, references, categories, limit, split_seed)
            sources = [write_knowledge(folder / "knowledge", knowledge, normals)]
            name = f"{examples} example(s) per defect type, {references} normal reference(s) per category"
        else:
            queries, sources, name = seek_queries(dataset, categories, limit), [dataset], "leave-one-out"
        with KnowledgeBase.open(settings=local) as temporary:
            temporary.ingest(sources, progress=ingest_progress)
            records = run_queries(temporary, queries, strategy, k, progress, focus)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return summarise(str(dataset), name, strategy, k, records, time.perf_counter() - started)


def run_queries(
    kb: KnowledgeBase,
    queries: list[DatasetImage],
    strategy: str,
    k: int,
    progress: Progress | None,
    focus: bool | None = None,
) -> list[SeekEvalQuery]:
    """Each query sought with every key against ``kb``, leaving its own image out; the photos are
    encoded ``BATCH`` at a time (``query_batches``), each pass shared by the keys."""
    records = []
    encoded = query_batches((image.path for image in queries), kb.query, BATCH)
    for done, (image, query) in enumerate(zip(queries, encoded, strict=True)):
        if progress:
            progress(done, len(queries), str(image.path))
        if isinstance(query, FileFailure):
            raise InvalidInputError(f"{query.path}: {query.reason}")
        retrieved: dict[str, list[str]] = {}
        predicted: dict[str, str | None] = {}
        for key in KEYS:
            try:
                result = kb.seek(
                    query, k=k, strategy=strategy, exclude_sources=[source_key(image.path)], focus=focus, key=key
                )
            except InvalidInputError:
                if key != "region":
                    raise
                continue  # no region key for this query
            if key == "region" and not result.diagnostics.region.used:
                continue
            t = result.predicted_defect_type
            retrieved[key] = [f"{h.category}/{h.defect_type}" for h in result.hits]
            predicted[key] = f"{t.category}/{t.defect_type}" if t else None
        records.append(
            SeekEvalQuery(
                path=str(image.path),
                category=image.category,
                defect_type=image.defect_type,
                retrieved=retrieved["auto"],
                predicted_type=predicted["auto"],
                by_key=retrieved,
                predicted_by_key=predicted,
            )
        )
    if progress:
        progress(len(queries), len(queries), "")
    return records


def _truth(r: SeekEvalQuery) -> str:
    return f"{r.category}/{r.defect_type}"


def _rate(records: list[SeekEvalQuery], hit: Callable[[SeekEvalQuery], bool]) -> float:
    return sum(1 for r in records if hit(r)) / len(records) if records else 0.0


def _keys(records: list[SeekEvalQuery]) -> dict[str, KeyScore]:
    scores = {}
    for key in KEYS:
        having = [r for r in records if key in r.by_key]
        if not having:
            continue
        typed = [r for r in having if r.predicted_by_key.get(key) is not None]
        scores[key] = KeyScore(
            queries=len(having),
            top1=_rate(having, lambda r, key=key: _truth(r) in r.by_key[key][:1]),  # type: ignore[misc]
            top3=_rate(having, lambda r, key=key: _truth(r) in r.by_key[key][:3]),  # type: ignore[misc]
            type_accuracy=_rate(typed, lambda r, key=key: r.predicted_by_key[key] == _truth(r)) if typed else None,  # type: ignore[misc]
        )
    return scores


def _row(category: str, records: list[SeekEvalQuery]) -> SeekEvalRow:
    def category_of(entry: str) -> str:
        return entry.split("/", 1)[0]

    typed = [r for r in records if r.predicted_type is not None]
    return SeekEvalRow(
        category=category,
        queries=len(records),
        top1=_rate(records, lambda r: _truth(r) in r.retrieved[:1]),
        top3=_rate(records, lambda r: _truth(r) in r.retrieved[:3]),
        category_top1=_rate(records, lambda r: r.category in [category_of(e) for e in r.retrieved[:1]]),
        category_top3=_rate(records, lambda r: r.category in [category_of(e) for e in r.retrieved[:3]]),
        type_accuracy=_rate(typed, lambda r: r.predicted_type == _truth(r)) if typed else None,
        keys=_keys(records),
    )


def summarise(
    dataset: str, knowledge: str, strategy: str, k: int, records: list[SeekEvalQuery], seconds: float
) -> SeekEvalReport:
    """Per-category rows and the overall row (over all queries, as the paper's seek accuracy)."""
    by_category: dict[str, list[SeekEvalQuery]] = defaultdict(list)
    for r in records:
        by_category[r.category].append(r)
    return SeekEvalReport(
        dataset=dataset,
        knowledge=knowledge,
        strategy=strategy,
        k=k,
        rows=[_row(c, by_category[c]) for c in sorted(by_category)],
        overall=_row("overall", records),
        queries=records,
        seconds=round(seconds, 2),
    )
