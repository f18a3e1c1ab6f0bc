"""``kb.ask``: retrieval + the AD Expert + an MLLM (or the grounded report) -> ``Answer``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbengine.cache import elapsed_ms
from kbengine.errors import InvalidInputError
from kbengine.images import ImageInput, describe, load_image
from kbengine.schemas import Answer, Detection, PromptPart, SeekHit
from kbengine.settings import Settings
from reasoning.expert.detector import Detector
from reasoning.llm.base import LLM
from reasoning.prompt import audit, seek_messages, vanilla_messages
from reasoning.report import write_report
from retrieval import Seeker

SETTINGS = ("seek", "vanilla")


class Asker:
    """Answers questions about images from one knowledge base (the facade holds one)."""

    def __init__(self, seeker: Seeker, detector: Detector, settings: Settings) -> None:
        self.seeker = seeker
        self.detector = detector
        self.settings = settings

    def ask(
        self,
        image: ImageInput,
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
        stream: Callable[[str], Any] | None = None,
    ) -> Answer:
        if setting not in SETTINGS:
            raise InvalidInputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
        if not question.strip():
            raise InvalidInputError("the question is empty")
        timings: dict[str, float] = {}
        notes: list[str] = []
        query = load_image(image, self.settings.max_image_pixels)
        query_path = str(image) if isinstance(image, str | Path) else None
        detection: Detection | None = None
        hits: list[SeekHit] = []
        if setting == "seek" and expert:
            clock = time.perf_counter()
            try:
                detection = self.detector.detect(query, category)
            except InvalidInputError as e:
                notes.append(f"no AD Expert findings: {e}")
            timings["expert"] = elapsed_ms(clock)
        if setting == "seek" and knowledge:
            clock = time.perf_counter()
            where = category or (detection.category if detection else None)
            hits = self.seeker.seek(query, k=k, category=where).hits
            hits += self._documented(query, hits, detection, where)
            timings["knowledge"] = elapsed_ms(clock)
        clock = time.perf_counter()
        if llm is None:
            text, choice = write_report(question, detection, hits, options)
            if stream is not None:
                stream(text)
            prompt = [PromptPart(role="user", kind="text", text=question)]
            name = "none"
        else:
            if setting == "seek":
                messages = seek_messages(query, question, hits=hits, detection=detection, options=options,
                                         query_path=query_path)  # fmt: skip
            else:
                picture, path = self._template(template, category, query)
                if picture is None:
                    notes.append("no normal reference of this category to use as the template")
                messages = vanilla_messages(query, question, template=picture, template_path=path, options=options,
                                            query_path=query_path)  # fmt: skip
            text = llm.generate(messages, max_new_tokens=self.settings.llm_max_new_tokens, stream=stream)
            prompt = audit(messages)
            choice = None
            if options:
                from reasoning.mmad import parse_answer

                choice = parse_answer(text, options)
            name = llm.name
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
        self, query: Any, hits: list[SeekHit], detection: Detection | None, category: str | None
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
        self, template: ImageInput | None, category: str | None, query_image: Any = None
    ) -> tuple[Any, str | None]:
        """The vanilla template: the one given, else a normal reference of the category (inferred
        from the query when not given)."""
        if template is not None:
            return load_image(template), describe(template)
        if category is None and query_image is not None:
            category = self.detector.infer_category(query_image)
        if category:
            locks = self.detector.reference_locks(category)
            if locks:
                path = self.detector.blobs.path(str(locks[0]["blob"]))
                return load_image(path), str(path)
        return None, None
