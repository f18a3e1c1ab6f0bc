"""MMAD benchmark: load ``mmad.json``, parse a model's multiple-choice replies, score them, and resume runs.

``mmad.json`` maps an image path (relative to the image root) to ``{"conversation": [{"Question", "Options",
"Answer", "type"}, ...], "mask_path", "similar_templates", "random_templates"}``. Every question of every image
becomes one :class:`MMADQuestion`; every answered question becomes one :class:`MMADRecord`, appended to a JSONL
:class:`RecordLog` so that an interrupted run resumes where it stopped. :func:`score` reproduces MMAD's table:
accuracy per question type ("Object Structure" and "Object Details" merged into "Object Analysis"), balanced
accuracy for "Anomaly Detection", and the mean of the per-type values as the average.

Pure: no model, no images are opened here.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kbengine.errors import InvalidInputError

log = logging.getLogger(__name__)

ANOMALY_DETECTION = "Anomaly Detection"
OBJECT_ANALYSIS = "Object Analysis"
MERGED_TYPES: dict[str, str] = {"Object Structure": OBJECT_ANALYSIS, "Object Details": OBJECT_ANALYSIS}
"""Question types that MMAD's table reports together."""

FUZZY_THRESHOLD = 0.6
"""Least difflib ratio between a reply and an option's text for the fuzzy fallback of :func:`parse_answer`."""


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


class MMADRecord(BaseModel):
    """One answered question: the truth, the parsed letter (None when unparseable) and the raw reply."""

    key: str
    image: str
    index: int
    type: str
    answer: str
    predicted: str | None
    correct: bool
    raw: str
    is_normal_image: bool | None = None
    seconds: float = 0.0

    @model_validator(mode="after")
    def _check_correct(self) -> MMADRecord:
        if self.correct != (self.predicted is not None and self.predicted == self.answer):
            raise ValueError(f"correct={self.correct} contradicts predicted={self.predicted!r}, answer={self.answer!r}")
        return self

    @classmethod
    def from_reply(
        cls, question: MMADQuestion, raw: str, seconds: float = 0.0, choice: str | bool | None = False
    ) -> MMADRecord:
        """Parse ``raw`` (the model's reply to ``question``) and record it; a backend that chose an
        option itself (the grounded report) passes ``choice`` (a letter or None) instead."""
        predicted = parse_answer(raw, question.options) if choice is False else choice
        return cls(
            key=question.key,
            image=question.image,
            index=question.index,
            type=question.type,
            answer=question.answer,
            predicted=predicted,
            correct=predicted == question.answer,
            raw=raw,
            is_normal_image=is_normal_question(question),
            seconds=seconds,
        )


class MMADScore(BaseModel):
    """Scores in [0, 1] per (merged) question type, their mean, and how many records went in.

    ``answered`` counts every record scored (unparseable ones included); ``unparseable`` those whose reply
    gave no option (scored as wrong)."""

    per_type: dict[str, float]
    counts: dict[str, int]
    average: float
    answered: int
    unparseable: int


# --------------------------------------------------------------------------------------------------- loading


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


def _validation_message(error: ValidationError) -> str:
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
            raise InvalidInputError(f"{where}: {_validation_message(exc)}") from exc
        questions = []
        for index, item in enumerate(entry.conversation):
            try:
                raw = _RawQuestion.model_validate(item)
            except ValidationError as exc:
                raise InvalidInputError(f"{where}, conversation[{index}]: {_validation_message(exc)}") from exc
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


# --------------------------------------------------------------------------------------------------- parsing

_WORD_CHAR = r"A-Za-z0-9"
_MARKER = r"(?:answer|option|choice)(?:\s*(?:is|:|=|-))*\s*(?:option\s*)?[(\[]?\s*"


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _letter(text: str, keys: list[str]) -> str | None:
    """The option letter of ``text``: the last one after an answer marker, else one that opens the
    reply ("B. A scratch ..."), else the last standalone one. The article "A" ("A normal bottle",
    a capital A followed by a lower-case word) is not read as option A."""
    alternatives = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    # Not next to a letter or digit, nor joined to one by a hyphen or apostrophe ("A-shaped", "B's").
    standalone = rf"(?<![{_WORD_CHAR}])(?<![{_WORD_CHAR}][-'’])({alternatives})(?![{_WORD_CHAR}]|[-'’][{_WORD_CHAR}])"
    marked = re.findall(rf"(?i:{_MARKER}){standalone}", text)
    if marked:
        return str(marked[-1])
    opening = re.match(rf"\s*[(\[]?\s*{standalone}(?!\s+[a-z])", text)
    if opening:
        return str(opening.group(1))
    found = [m.group(1) for m in re.finditer(standalone, text) if not _article(text, m)]
    return str(found[-1]) if found else None


def _article(text: str, match: re.Match[str]) -> bool:
    """An "A" followed by a space and a lower-case letter is the English article."""
    following = re.match(r"\s+([a-z]+)", text[match.end() :])
    return match.group(1) == "A" and following is not None and following.group(1) not in _AFTER_LETTER


_AFTER_LETTER = {"is", "was", "seems", "looks", "would", "should", "and", "or", "best", "correct", "fits"}


def _fuzzy(text: str, options: dict[str, str]) -> str | None:
    """The option whose text the reply contains (the longest such), else the most similar above the threshold."""
    reply = _normalise(text)
    if not reply:
        return None
    padded = f" {reply} "
    texts = {key: _normalise(value) for key, value in options.items()}
    contained = [key for key, value in texts.items() if value and f" {value} " in padded]
    if contained:
        longest = max(len(texts[k]) for k in contained)
        best = [k for k in contained if len(texts[k]) == longest]
        if len(best) == 1:
            return best[0]
    ratios = {key: SequenceMatcher(None, reply, value).ratio() for key, value in texts.items() if value}
    if not ratios:
        return None
    top = max(ratios.values())
    winners = [k for k, r in ratios.items() if r == top]
    return winners[0] if top >= FUZZY_THRESHOLD and len(winners) == 1 else None


def parse_answer(text: str, options: dict[str, str]) -> str | None:
    """The option key a reply chooses, or None when it cannot be told (scored as wrong).

    1. A letter: an option key standing alone (not inside a word or number, case-sensitive), e.g. "B",
       "Answer: B.", "(C)", "the answer is D"; not "Because", "B2", "A-shaped". One right after an answer marker
       ("answer", "option", "choice") wins, then one that opens the reply, else the last standalone one in the
       text; the article "A" ("A normal bottle") is not a letter.
    2. Otherwise the option text: the option whose (normalised) text appears as whole words in the reply
       (the longest one if several do), else the option with the highest difflib ratio to the whole reply if it
       reaches :data:`FUZZY_THRESHOLD` (0.6) and is unique.
    """
    if not text or not options:
        return None
    return _letter(text, list(options)) or _fuzzy(text, options)


_NORMAL_PHRASES = re.compile(
    r"\b(no|not any|without|free of|zero)\s+(visible\s+|obvious\s+|apparent\s+)?(defects?|anomal\w*|flaws?)\b"
    r"|\bnon[- ]?defective\b|\bdefect[- ]free\b|\bnot defective\b"
)


def is_normal_question(question: MMADQuestion) -> bool | None:
    """For an "Anomaly Detection" question, whether its true answer says there is no defect (a normal image);
    None for other question types.

    Normal when the answer's option text starts with "No"/"None" or contains a phrase like "no defect"."""
    if question.type.strip().lower() != ANOMALY_DETECTION.lower():
        return None
    answer = question.options.get(question.answer, "").strip().lower()
    words = re.findall(r"[a-z]+", answer)
    if not words:
        return False
    if words[0] in ("no", "none"):
        return True
    if words[0] == "yes":
        return False
    return bool(_NORMAL_PHRASES.search(answer))


# --------------------------------------------------------------------------------------------------- scoring


def score_type(question_type: str) -> str:
    """The column of MMAD's table a question type is reported in."""
    return MERGED_TYPES.get(question_type, question_type)


def score(records: Iterable[MMADRecord]) -> MMADScore:
    """MMAD's scores over ``records`` (fractions in [0, 1], not percentages).

    Each (merged) type gets its accuracy; "Anomaly Detection" gets the balanced accuracy: the mean of the
    accuracy on normal images and on defective images (over the classes present). Unparseable replies count as
    wrong. ``average`` is the unweighted mean of the per-type values, as in MMAD's table (MMAD's own script
    also averages per source dataset first; this pools all images).

    Raises :class:`InvalidInputError` for an "Anomaly Detection" record without ``is_normal_image``.
    """
    totals: dict[str, int] = {}
    correct: dict[str, int] = {}
    ad_total = {True: 0, False: 0}
    ad_correct = {True: 0, False: 0}
    answered = unparseable = 0
    for record in records:
        answered += 1
        unparseable += record.predicted is None
        column = score_type(record.type)
        totals[column] = totals.get(column, 0) + 1
        correct[column] = correct.get(column, 0) + record.correct
        if column == ANOMALY_DETECTION:
            if record.is_normal_image is None:
                raise InvalidInputError(f"record {record.key!r} is an Anomaly Detection answer without is_normal_image")
            ad_total[record.is_normal_image] += 1
            ad_correct[record.is_normal_image] += record.correct

    per_type = {column: correct[column] / totals[column] for column in totals}
    if ANOMALY_DETECTION in per_type:
        accuracies = [ad_correct[normal] / ad_total[normal] for normal in (True, False) if ad_total[normal]]
        per_type[ANOMALY_DETECTION] = sum(accuracies) / len(accuracies)
    average = sum(per_type.values()) / len(per_type) if per_type else 0.0
    return MMADScore(per_type=per_type, counts=totals, average=average, answered=answered, unparseable=unparseable)


# --------------------------------------------------------------------------------------------------- resume


class RecordLog:
    """Answered questions in a JSONL file, one :class:`MMADRecord` a line, appended as they come.

    An interrupted run may leave a partial last line: reading ignores it, and the first :meth:`append` cuts it
    off. Any other unreadable line is an error (:class:`InvalidInputError` naming the line)."""

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._repaired = False

    def _read(self) -> list[MMADRecord]:
        if not self.path.exists():
            return []
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {self.path}: {exc}") from exc
        lines = data.split(b"\n")
        out = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(MMADRecord.model_validate_json(line))
            except ValidationError as exc:
                if number == len(lines):  # no newline after it: a write cut short by an interruption
                    log.warning("%s: ignoring a partial last line (an interrupted write)", self.path)
                    continue
                raise InvalidInputError(
                    f"{self.path}, line {number}: not a record: {_validation_message(exc)}"
                ) from exc
        return out

    def records(self) -> list[MMADRecord]:
        """The records in the file, one per key (the last one written wins), in order of first appearance."""
        by_key: dict[str, MMADRecord] = {}
        for record in self._read():
            by_key[record.key] = record
        return list(by_key.values())

    def done_keys(self) -> set[str]:
        """Keys of the questions already answered."""
        return {record.key for record in self._read()}

    def _repair(self) -> None:
        """Make the file end at a line boundary: drop a partial last line, or terminate a complete one."""
        self._repaired = True
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        try:
            MMADRecord.model_validate_json(data[cut:])
        except ValidationError:
            log.warning("%s: removing a partial last line (an interrupted write)", self.path)
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
            return
        with self.path.open("ab") as handle:
            handle.write(b"\n")

    def append(self, record: MMADRecord) -> None:
        """Write ``record`` as one line and flush it (and fsync it when asked)."""
        if not self._repaired:
            self._repair()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(record.model_dump_json() + "\n")
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())


class MMADEvalReport(BaseModel):
    """``kbengine eval mmad``: the score table and where the per-question records are."""

    file: str
    images: str
    setting: str
    llm: str
    questions: int
    resumed: int = Field(description="Questions already answered in the records file (not asked again).")
    records: str
    score: MMADScore
    seconds: float = 0.0
