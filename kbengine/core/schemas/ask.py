"""Ask (reasoning) results: the answer, what grounded it, and the audit trail of the prompt."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from kbengine.core.schemas.detect import Detection
from kbengine.core.schemas.seek import SeekHit


class PromptPart(BaseModel):
    """One part of what the MLLM was sent, in order (the audit trail)."""

    role: str
    kind: Literal["text", "image"]
    text: str | None = None
    image: str | None = Field(None, description="The image's file (blob, query) when it has one.")
    label: str | None = Field(None, description="What the image is: 'template: knowledge page', 'query', ...")


class Answer(BaseModel):
    """The answer to a question about an image, with what grounded it."""

    question: str
    text: str
    llm: str = Field(description="The backend that wrote the text ('none' = the grounded report).")
    setting: Literal["seek", "vanilla"] = "seek"
    choice: str | None = Field(None, description="The option letter chosen, for a multiple-choice question.")
    hits: list[SeekHit] = Field(default_factory=list, description="The knowledge documents cited.")
    detection: Detection | None = None
    prompt: list[PromptPart] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
