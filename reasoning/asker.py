"""``kb.ask``: retrieval + the AD Expert + an MLLM (or the grounded report) -> ``Answer``.

:func:`respond` is the one place a question meets a model: the grounded report when there is no
LLM, else the messages sent, the reply parsed for an option letter and the audit trail kept.
``vanilla`` (MMAD's 1-shot protocol) and ``seek`` (the Seek-Setting) differ only in the messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from kbengine.core.cache import elapsed_ms
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import ImageInput, describe, load_image
from kbengine.core.query import Query
from kbengine.core.schemas import Answer, Detection, PromptPart, SeekHit
from kbengine.core.settings import Settings
from reasoning.answers import parse_answer
from reasoning.expert.detector import Detector
from reasoning.llm.base import LLM, Message
from reasoning.prompt import audit, seek_messages, vanilla_messages
from reasoning.report import write_report
from retrieval import Seeker

SETTINGS = ("seek", "vanilla")
Stream = Callable[[str], Any]


def respond(
    llm: LLM | None,
    question: str,
    messages: Callable[[], list[Message]],
    *,
    detection: Detection | None = None,
    hits: list[SeekHit] | None = None,
    options: dict[str, str] | None = None,
    max_new_tokens: int = 512,
    stream: Stream | None = None,
) -> tuple[str, str | None, list[PromptPart], str]:
    """(text, chosen option, prompt parts, backend name). Without an LLM the grounded report
    answers from ``detection`` and ``hits``; ``messages`` is built only when an LLM is asked."""
    if llm is None:
        text, choice = write_report(question, detection, hits or [], options)
        if stream is not None:
            stream(text)
        return text, choice, [PromptPart(role="user", kind="text", text=question)], "none"
    sent = messages()
    text = llm.generate(sent, max_new_tokens=max_new_tokens, stream=stream)
    return text, parse_answer(text, options) if options else None, audit(sent), llm.name


def ask_vanilla(
    llm: LLM | None,
    query: Image.Image,
    question: str,
    *,
    template: Image.Image | None,
    template_path: str | None = None,
    options: dict[str, str] | None = None,
    query_path: str | None = None,
    max_new_tokens: int = 512,
    stream: Stream | None = None,
) -> tuple[str, str | None, list[PromptPart], str]:
    """MMAD's 1-shot protocol: one normal template image, the query, the question."""
    return respond(
        llm,
        question,
        lambda: vanilla_messages(
            query, question, template=template, template_path=template_path, options=options, query_path=query_path
        ),
        options=options,
        max_new_tokens=max_new_tokens,
        stream=stream,
    )


class Asker:
    """Answers questions about images from one knowledge base (the facade holds one)."""

    def __init__(self, seeker: Seeker, detector: Detector, settings: Settings) -> None:
        self.seeker = seeker
        self.detector = detector
        self.settings = settings

    def ask(
        self,
        image: ImageInput | Query,
        question: str,
        *,
        llm: LLM | None = None,
        setting: str = "seek",
        knowledge: bool = True,
        expert: bool = True,
        category: str | None = None,
        options: dict[str, str] | None = None,
        template: ImageInput | None = None,
        k: int = 3,
        stream: Stream | None = None,
    ) -> Answer:
        if setting not in SETTINGS:
            raise InvalidInputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
        if not question.strip():
            raise InvalidInputError("the question is empty")
        timings: dict[str, float] = {}
        notes: list[str] = []
        photo = Query.of(image, self.detector.encoder, self.settings.max_image_pixels)
        query, query_path = photo.picture, photo.path
        detection: Detection | None = None
        hits: list[SeekHit] = []
        if setting == "seek" and expert:
            clock = time.perf_counter()
            try:
                detection = self.detector.detect(photo, category)
            except InvalidInputError as e:
                notes.append(f"no AD Expert findings: {e}")
            timings["expert"] = elapsed_ms(clock)
        if setting == "seek" and knowledge:
            clock = time.perf_counter()
            where = category or (detection.category if detection else None)
            hits = self.seeker.seek(photo, k=k, category=where).hits
            hits += self._documented(photo, hits, detection, where)
            timings["knowledge"] = elapsed_ms(clock)
        clock = time.perf_counter()
        tokens = self.settings.llm_max_new_tokens
        if setting == "seek":
            text, choice, prompt, name = respond(
                llm,
                question,
                lambda: seek_messages(
                    query, question, hits=hits, detection=detection, options=options, query_path=query_path
                ),
                detection=detection,
                hits=hits,
                options=options,
                max_new_tokens=tokens,
                stream=stream,
            )
        else:
            picture, path = self._template(template, category, photo) if llm is not None else (None, None)
            if llm is not None and picture is None:
                notes.append("no normal reference of this category to use as the template")
            text, choice, prompt, name = ask_vanilla(
                llm, query, question, template=picture, template_path=path, options=options,
                query_path=query_path, max_new_tokens=tokens, stream=stream,
            )  # fmt: skip
        timings["answer"] = elapsed_ms(clock)
        return Answer(
            question=question,
            text=text,
            llm=name,
            setting=setting,
            choice=choice,
            hits=hits,
            detection=detection,
            prompt=prompt,
            notes=notes,
            timings_ms=timings,
        )

    def _documented(
        self, query: Query, hits: list[SeekHit], detection: Detection | None, category: str | None
    ) -> list[SeekHit]:
        """When the expert names a defect type and no retrieved document of that type carries text,
        the best-matching documented one of that type (so the answer can cite its causes)."""
        t = detection.predicted_defect_type if detection is not None and detection.is_anomalous else None
        if t is None:
            return []
        if any(h.defect_type == t.defect_type and (h.sections.description or h.sections.causes) for h in hits):
            return []
        extra = self.seeker.seek(query, k=5, category=category or t.category, defect_type=t.defect_type).hits
        known = {h.doc_id for h in hits}
        found = [h for h in extra if h.doc_id not in known and (h.sections.description or h.sections.causes)]
        return [h.model_copy(update={"rank": len(hits) + 1}) for h in found[:1]]

    def _template(
        self, template: ImageInput | None, category: str | None, query: Query
    ) -> tuple[Image.Image | None, str | None]:
        """The vanilla template: the one given, else a normal reference of the category (inferred
        from the query when not given)."""
        if template is not None:
            return load_image(template), describe(template)
        banks = self.detector.knowledge.banks
        category = category or banks.category_of(query.global_key)
        references = banks.references(category) if category else []
        if references:
            path = banks.path_of(references[0])
            return load_image(path), str(path)
        return None, None
