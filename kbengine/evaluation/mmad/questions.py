"""MMAD's question file: ``mmad.json`` maps an image path (relative to the image root) to
``{"conversation": [{"Question", "Options", "Answer", "type"}, ...], "mask_path",
"similar_templates", "random_templates"}``; every question of every image becomes one
:class:`MMADQuestion`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kbengine.core.errors import InvalidInputError

ANOMALY_DETECTION = "Anomaly Detection"
OBJECT_ANALYSIS = "Object Analysis"
MERGED_TYPES: dict[str, str] = {"Object Structure": OBJECT_ANALYSIS, "Object Details": OBJECT_ANALYSIS}
"""Question types that MMAD's table reports together."""


class MMADQuestion(BaseModel):
    """One question of one image; ``index`` is its position in the image's conversation."""

    model_config = ConfigDict(frozen=True)

    image: str
    index: int
    question: str
    options: dict[str, str]
    answer: str
    type: str
    mask_path: str | None = None
    similar_templates: list[str] = Field(default_factory=list)
    random_templates: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """Unique id of the question: ``"{image}#{index}"``."""
        return f"{self.image}#{self.index}"


class _RawQuestion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    Question: str
    Options: dict[str, str]
    Answer: str
    type: str

    @model_validator(mode="after")
    def _answer_is_an_option(self) -> _RawQuestion:
        if not self.Options:
            raise ValueError("Options is empty")
        if self.Answer not in self.Options:
            raise ValueError(f"Answer {self.Answer!r} is not one of the options {sorted(self.Options)}")
        return self


class _RawEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation: list[dict[str, Any]]
    mask_path: str | None = None
    similar_templates: list[str] = Field(default_factory=list)
    random_templates: list[str] = Field(default_factory=list)


def validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    return "; ".join(parts)


def _wanted_types(types: list[str] | None, available: set[str], path: Path) -> set[str] | None:
    """Lower-cased type names to keep; "Object Analysis" stands for both of its merged types."""
    if types is None:
        return None
    wanted: set[str] = set()
    for name in types:
        low = name.strip().lower()
        if low == OBJECT_ANALYSIS.lower():
            wanted.update(t.lower() for t in MERGED_TYPES)
        wanted.add(low)
    if not wanted & {t.lower() for t in available}:
        asked = ", ".join(repr(t) for t in types)
        raise InvalidInputError(f"{path}: no question of type {asked}; the file has: {', '.join(sorted(available))}")
    return wanted


def load_mmad(path: str | Path, types: list[str] | None = None, limit: int | None = None) -> list[MMADQuestion]:
    """The questions of an MMAD-format JSON file, in file order (images) and conversation order (questions).

    ``types`` keeps only those question types (case-insensitive; "Object Analysis" means "Object Structure"
    plus "Object Details"); a list that matches no type in the file is an error. ``limit`` counts images, not
    questions: all (kept) questions of the first ``limit`` images that have any kept question.

    Raises :class:`InvalidInputError` for a missing or unreadable file, invalid JSON, or a wrong structure; the
    message names the offending entry.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise InvalidInputError(f"limit must be a positive number of images, got {limit}")
    if not path.is_file():
        raise InvalidInputError(f"MMAD file not found: {path} (expected mmad.json from the MMAD benchmark)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object keyed by image path, got {type(data).__name__}")

    parsed: list[list[MMADQuestion]] = []
    for image, value in data.items():
        where = f"{path}: entry {image!r}"
        if not isinstance(value, dict):
            raise InvalidInputError(f"{where}: expected an object, got {type(value).__name__}")
        try:
            entry = _RawEntry.model_validate(value)
        except ValidationError as exc:
            raise InvalidInputError(f"{where}: {validation_message(exc)}") from exc
        questions = []
        for index, item in enumerate(entry.conversation):
            try:
                raw = _RawQuestion.model_validate(item)
            except ValidationError as exc:
                raise InvalidInputError(f"{where}, conversation[{index}]: {validation_message(exc)}") from exc
            questions.append(
                MMADQuestion(
                    image=image,
                    index=index,
                    question=raw.Question,
                    options=raw.Options,
                    answer=raw.Answer,
                    type=raw.type,
                    mask_path=entry.mask_path or None,
                    similar_templates=entry.similar_templates,
                    random_templates=entry.random_templates,
                )
            )
        parsed.append(questions)

    wanted = _wanted_types(types, {q.type for qs in parsed for q in qs}, path)
    out: list[MMADQuestion] = []
    images = 0
    for questions in parsed:
        kept = [q for q in questions if wanted is None or q.type.lower() in wanted]
        if not kept:
            continue
        if limit is not None and images >= limit:
            break
        out.extend(kept)
        images += 1
    return out
