"""Evaluations that wire several layers through the facade: ``kbengine eval seek`` and
``kbengine eval zsad``.

Detection (``eval zsad``): every test image of each category is scored by the AD Expert; the
normal references are the first ``shots`` images of the category's ``train/good`` (0 = pure
zero-shot), so the dataset's own test images never enter a memory bank. Metrics come from
``reasoning.expert.metrics`` (image AUROC/AP/F1-max; pixel AUROC/AUPRO at FPR 0.3/F1-max on
images that have masks).

Seek accuracy (the paper's 83%): every defective test image of an MVTec-layout dataset is a
query; a hit is right when its (category, defect type) is the query's. Without ``--kb`` the
knowledge base is the dataset itself, ingested once into a temporary folder, and each query
leaves its own image out (``exclude_sources``), which is leave-one-out without re-ingesting; the
type-centroid prediction leaves the query's vector out of its centroid the same way.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbengine.datasets import DatasetImage, mvtec_images, source_key
from kbengine.errors import InvalidInputError
from kbengine.facade import KnowledgeBase
from kbengine.schemas import SeekEvalQuery, SeekEvalReport, SeekEvalRow, ZsadReport, ZsadRow
from kbengine.settings import Settings

Progress = Callable[[int, int, str], Any]


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


def eval_zsad(
    dataset: Path,
    settings: Settings,
    *,
    mode: str = "auto",
    shots: int = 16,
    prompts: Path | None = None,
    categories: list[str] | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> ZsadReport:
    """Detection metrics per category of an MVTec-layout dataset, and their mean."""
    import numpy as np
    from PIL import Image

    from kbengine.images import load_image
    from reasoning.expert.memory_bank import build_bank
    from reasoning.expert.metrics import image_metrics, pixel_metrics

    if shots < 0:
        raise InvalidInputError(f"shots must be 0 or more, got {shots}")
    if shots == 0 and mode in ("references", "both"):
        raise InvalidInputError(f"--mode {mode} needs normal references: give --shots N (N >= 1)")
    if shots == 0 and mode == "auto":
        mode = "zero-shot"
    items = mvtec_images(dataset, categories=categories)
    by_category: dict[str, list[DatasetImage]] = defaultdict(list)
    for item in items:
        by_category[item.category].append(item)
    folder = Path(tempfile.mkdtemp(prefix="kbengine-zsad-"))
    started = time.perf_counter()
    rows: list[ZsadRow] = []
    images_done = 0
    try:
        local = settings.model_copy(update={"kb": folder / "kb", "qdrant_url": None, "cache_dir": folder / "cache"})
        with KnowledgeBase.open(settings=local) as kb:
            learned = None
            if prompts is not None:
                from reasoning.expert.training import load_learned_texts

                learned = load_learned_texts(kb.encoder, prompts)
            detector = kb.detector
            total = sum(
                min(len([i for i in group if i.split == "test"]), limit or 10**9) for group in by_category.values()
            )
            for category in sorted(by_category):
                group = by_category[category]
                tests = [i for i in group if i.split == "test"][: limit or None]
                normals = (
                    [i for i in group if i.split == "train" and i.is_normal][:shots] if mode != "zero-shot" else []
                )
                if not tests:
                    continue
                if shots and not normals:
                    raise InvalidInputError(f"{category} has no train/good images to take {shots} reference(s) from")
                bank = build_bank(kb.encoder, [load_image(n.path) for n in normals]) if normals else None
                scores: list[float] = []
                labels: list[int] = []
                maps: list[Any] = []
                masks: list[Any] = []
                for item in tests:
                    if progress:
                        progress(images_done, total, str(item.path))
                    det = detector.detect(item.path, category, mode=mode, bank=bank, learned=learned, with_type=False)
                    scores.append(det.score)
                    labels.append(0 if item.is_normal else 1)
                    if (item.is_normal or item.mask is not None) and (
                        not maps or maps[0].shape == det.anomaly_map.shape
                    ):
                        mask = np.zeros((det.height, det.width), bool)
                        if item.mask is not None:
                            picture = Image.open(item.mask).convert("L").resize((det.width, det.height))
                            mask = np.asarray(picture) > 127
                        maps.append(det.anomaly_map)
                        masks.append(mask)
                    images_done += 1
                rows.append(_zsad_row(category, scores, labels, maps, masks, image_metrics, pixel_metrics))
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
        encoder=encoder_name,
        prompts=str(prompts) if prompts else None,
        rows=rows,
        mean=_mean_row(rows),
        seconds=round(seconds, 2),
        ms_per_image=round(1000 * seconds / max(images_done, 1), 1),
    )


def _zsad_row(
    category: str,
    scores: list[float],
    labels: list[int],
    maps: list[Any],
    masks: list[Any],
    image_metrics: Callable[..., dict[str, float]],
    pixel_metrics: Callable[..., dict[str, float]],
) -> ZsadRow:
    import numpy as np

    row = ZsadRow(category=category, images=len(scores), defective=sum(labels))
    if 0 < sum(labels) < len(labels):
        values = image_metrics(np.array(labels), np.array(scores))
        row.image_auroc, row.image_ap, row.image_f1_max = (
            values["image_auroc"],
            values["image_ap"],
            values["image_f1_max"],
        )
    if masks and any(m.any() for m in masks) and any((~m).any() for m in masks):
        values = pixel_metrics(np.stack(masks), np.stack(maps))
        row.pixel_auroc, row.pixel_aupro, row.pixel_f1_max = (
            values["pixel_auroc"],
            values["pixel_aupro"],
            values["pixel_f1_max"],
        )
    return row


def _mean_row(rows: list[ZsadRow]) -> ZsadRow:
    mean = ZsadRow(category="mean", images=sum(r.images for r in rows), defective=sum(r.defective for r in rows))
    for name in ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro", "pixel_f1_max"):
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        setattr(mean, name, sum(values) / len(values) if values else None)
    return mean


def eval_mmad(
    mmad_json: Path,
    images: Path,
    settings: Settings,
    *,
    kb: KnowledgeBase | None = None,
    setting: str = "vanilla",
    llm: str | None = None,
    types: list[str] | None = None,
    limit: int | None = None,
    records: Path | None = None,
    progress: Progress | None = None,
) -> Any:
    """MMAD multiple-choice accuracy (``reasoning.mmad``): each question asked on its own, answers
    parsed as MMAD does (an unparseable answer is wrong), records appended to ``records`` (JSONL) so
    an interrupted run resumes where it stopped. ``vanilla`` uses the record's own template
    (``random_templates[0]``, MMAD's 1-shot protocol); ``seek`` replaces it with the retrieved
    knowledge and adds the AD Expert's findings (needs ``kb``)."""
    from kbengine.images import load_image
    from reasoning.llm import get_llm
    from reasoning.mmad import MMADEvalReport, MMADRecord, RecordLog, load_mmad, parse_answer
    from reasoning.prompt import vanilla_messages
    from reasoning.report import write_report

    if setting not in ("vanilla", "seek"):
        raise InvalidInputError(f"unknown setting {setting!r}; choose vanilla or seek")
    if setting == "seek" and kb is None:
        raise InvalidInputError("--setting seek needs a knowledge base: give --kb DIR (or --url)")
    if not images.is_dir():
        raise InvalidInputError(f"the image root {images} is not a folder")
    questions = load_mmad(mmad_json, types=types, limit=limit)
    model = get_llm(settings, llm)
    name = model.name if model is not None else "none"
    tag = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80]
    log = RecordLog(records or mmad_json.with_suffix(f".{setting}.{tag}.jsonl"))
    done = log.done_keys()
    resumed = sum(1 for q in questions if q.key in done)
    started = time.perf_counter()
    for i, question in enumerate(questions):
        if question.key in done:
            continue
        if progress:
            progress(i, len(questions), question.image)
        clock = time.perf_counter()
        path = images / question.image
        if not path.is_file():
            raise InvalidInputError(f"{question.image}: no such image under {images}")
        if setting == "seek":
            assert kb is not None
            answer = kb.ask(path, question.question, model or "none", setting="seek", options=question.options)
            raw, choice = answer.text, answer.choice
        elif model is None:
            raw, choice = write_report(question.question, None, [], question.options)
        else:
            template_path = images / question.random_templates[0] if question.random_templates else None
            template = load_image(template_path) if template_path and template_path.is_file() else None
            messages = vanilla_messages(
                load_image(path),
                question.question,
                template=template,
                template_path=str(template_path) if template is not None else None,
                options=question.options,
                query_path=str(path),
            )
            raw = model.generate(messages, max_new_tokens=settings.llm_max_new_tokens)
            choice = parse_answer(raw, question.options)
        seconds = round(time.perf_counter() - clock, 3)
        log.append(MMADRecord.from_reply(question, raw, seconds, choice=choice))
    if progress:
        progress(len(questions), len(questions), "")
    from reasoning.mmad import score

    wanted = {q.key for q in questions}
    kept = [r for r in log.records() if r.key in wanted]
    return MMADEvalReport(
        file=str(mmad_json),
        images=str(images),
        setting=setting,
        llm=name,
        questions=len(questions),
        resumed=resumed,
        records=str(log.path),
        score=score(kept),
        seconds=round(time.perf_counter() - started, 2),
    )
