"""MMAD's score table: per answered question one :class:`MMADRecord`; :func:`score` gives the
accuracy per question type ("Object Structure" and "Object Details" merged into "Object
Analysis"), balanced accuracy for "Anomaly Detection", and the mean of the per-type values."""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, model_validator

from kbengine.core.errors import InvalidInputError
from kbengine.evaluation.mmad.questions import ANOMALY_DETECTION, MERGED_TYPES, MMADQuestion
from reasoning.answers import parse_answer


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
