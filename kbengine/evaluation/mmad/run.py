"""``kbengine eval mmad``: MMAD multiple-choice accuracy, resumable.

Each question is asked on its own; answers are parsed as MMAD does (an unparseable answer is
wrong); records are appended to a JSONL file so an interrupted run resumes where it stopped.
``vanilla`` uses the record's own template (``random_templates[0]``, MMAD's 1-shot protocol);
``seek`` replaces it with the retrieved knowledge and adds the AD Expert's findings (needs a
knowledge base).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from kbengine.core.errors import InvalidInputError
from kbengine.core.images import load_image
from kbengine.core.settings import Settings
from kbengine.evaluation.mmad.questions import MMADQuestion, load_mmad
from kbengine.evaluation.mmad.records import RecordLog
from kbengine.evaluation.mmad.scoring import MMADRecord, score
from kbengine.evaluation.progress import Progress
from kbengine.evaluation.reports import MMADEvalReport
from kbengine.facade import KnowledgeBase
from reasoning.asker import ask_vanilla
from reasoning.llm import get_llm
from reasoning.llm.base import LLM

SETTINGS = ("vanilla", "seek")


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
) -> MMADEvalReport:
    """MMAD's score table for ``mmad_json`` (images under ``images``), per question type."""
    if setting not in SETTINGS:
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
        else:
            raw, choice = _vanilla(model, question, path, images, settings)
        seconds = round(time.perf_counter() - clock, 3)
        log.append(MMADRecord.from_reply(question, raw, seconds, choice=choice))
    if progress:
        progress(len(questions), len(questions), "")
    wanted = {q.key for q in questions}
    return MMADEvalReport(
        file=str(mmad_json),
        images=str(images),
        setting=setting,
        llm=name,
        questions=len(questions),
        resumed=resumed,
        records=str(log.path),
        score=score(r for r in log.records() if r.key in wanted),
        seconds=round(time.perf_counter() - started, 2),
    )


def _vanilla(
    model: LLM | None, question: MMADQuestion, path: Path, images: Path, settings: Settings
) -> tuple[str, str | None]:
    """The reply and chosen option with the record's own template (MMAD's 1-shot protocol)."""
    template_path = images / question.random_templates[0] if question.random_templates else None
    template = load_image(template_path) if model is not None and template_path and template_path.is_file() else None
    raw, choice, _, _ = ask_vanilla(
        model,
        load_image(path),
        question.question,
        template=template,
        template_path=str(template_path) if template is not None else None,
        options=question.options,
        query_path=str(path),
        max_new_tokens=settings.llm_max_new_tokens,
    )
    return raw, choice
