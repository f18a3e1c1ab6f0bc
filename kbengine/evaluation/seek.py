"""``kbengine eval seek``: seek accuracy (the paper's 83%).

Every defective test image of an MVTec-layout dataset is a query; a hit is right when its
(category, defect type) is the query's. Without ``--kb`` the knowledge base is the dataset
itself, ingested once into a temporary folder, and each query leaves its own image out
(``exclude_sources``), which is leave-one-out without re-ingesting; the type-centroid prediction
leaves the query's vector out of its centroid the same way.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from kbengine.core.datasets import DatasetImage, mvtec_images, source_key
from kbengine.core.errors import InvalidInputError
from kbengine.core.settings import Settings
from kbengine.evaluation.progress import Progress
from kbengine.evaluation.reports import SeekEvalQuery, SeekEvalReport, SeekEvalRow
from kbengine.facade import KnowledgeBase


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


def eval_seek(
    dataset: Path,
    settings: Settings,
    *,
    kb: KnowledgeBase | None = None,
    strategy: str = "kde",
    k: int = 5,
    categories: list[str] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    ingest_progress: Progress | None = None,
    focus: bool | None = None,
) -> SeekEvalReport:
    """Seek accuracy on ``dataset`` against ``kb``, or leave-one-out on the dataset itself."""
    queries = seek_queries(dataset, categories, limit)
    started = time.perf_counter()
    if kb is not None:
        records = _run(kb, queries, strategy, k, progress, focus)
        knowledge = kb.store.location
    else:
        folder = Path(tempfile.mkdtemp(prefix="kbengine-eval-"))
        try:
            local = settings.model_copy(update={"kb": folder / "kb", "qdrant_url": None, "cache_dir": None})
            with KnowledgeBase.open(settings=local) as temporary:
                temporary.ingest([dataset], progress=ingest_progress)
                records = _run(temporary, queries, strategy, k, progress, focus)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        knowledge = "leave-one-out"
    return summarise(str(dataset), knowledge, strategy, k, records, time.perf_counter() - started)


def _run(
    kb: KnowledgeBase,
    queries: list[DatasetImage],
    strategy: str,
    k: int,
    progress: Progress | None,
    focus: bool | None = None,
) -> list[SeekEvalQuery]:
    records = []
    for done, query in enumerate(queries):
        if progress:
            progress(done, len(queries), str(query.path))
        result = kb.seek(query.path, k=k, strategy=strategy, exclude_sources=[source_key(query.path)], focus=focus)
        prediction = result.predicted_defect_type
        records.append(
            SeekEvalQuery(
                path=str(query.path),
                category=query.category,
                defect_type=query.defect_type,
                retrieved=[f"{h.category}/{h.defect_type}" for h in result.hits],
                predicted_type=f"{prediction.category}/{prediction.defect_type}" if prediction else None,
            )
        )
    if progress:
        progress(len(queries), len(queries), "")
    return records


def _row(category: str, records: list[SeekEvalQuery]) -> SeekEvalRow:
    n = len(records)

    def rate(hit: Callable[[SeekEvalQuery], bool]) -> float:
        return sum(1 for r in records if hit(r)) / n if n else 0.0

    def truth(r: SeekEvalQuery) -> str:
        return f"{r.category}/{r.defect_type}"

    def category_of(entry: str) -> str:
        return entry.split("/", 1)[0]

    typed = [r for r in records if r.predicted_type is not None]
    return SeekEvalRow(
        category=category,
        queries=n,
        top1=rate(lambda r: truth(r) in r.retrieved[:1]),
        top3=rate(lambda r: truth(r) in r.retrieved[:3]),
        category_top1=rate(lambda r: r.category in [category_of(e) for e in r.retrieved[:1]]),
        category_top3=rate(lambda r: r.category in [category_of(e) for e in r.retrieved[:3]]),
        type_accuracy=sum(1 for r in typed if r.predicted_type == truth(r)) / len(typed) if typed else None,
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
