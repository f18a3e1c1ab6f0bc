"""Payload filters: one :class:`Where` for every backend, and its translation to Qdrant's filter
models written once (qdrant-edge and qdrant-client name the same models with different
constructor signatures, so each backend passes its own small constructors)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas.documents import META_KIND, PAYLOAD_FIELDS, SOURCE_KIND

Value = str | int | bool
Values = Value | tuple[Value, ...]


def _clean(fields: dict[str, Value | Sequence[Value] | None]) -> dict[str, Values]:
    unknown = sorted(set(fields) - PAYLOAD_FIELDS)
    if unknown:
        raise InvalidInputError(f"cannot filter on {', '.join(unknown)}: not a payload field")
    return {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in fields.items() if v is not None}  # type: ignore[misc]


class Where(BaseModel):
    """A payload filter: every ``must`` field equals its value (or one of its values), no
    ``must_not`` field does. Metadata points are always excluded from search and count.

    Build it from keyword arguments named after :class:`~kbengine.core.schemas.LockPayload`
    fields: ``Where.of(category="bottle").excluding(defect_type="good")``."""

    model_config = ConfigDict(frozen=True)

    must: dict[str, Values] = Field(default_factory=dict)
    must_not: dict[str, Values] = Field(default_factory=dict)

    @classmethod
    def of(cls, **must: Value | Sequence[Value] | None) -> Where:
        """Fields that must match, dropping ``None`` values (``Where.of(category=None)`` = all)."""
        return cls(must=_clean(must))

    def excluding(self, **must_not: Value | Sequence[Value] | None) -> Where:
        """This filter, and these fields must not match either (``None`` values are dropped; values
        for a field already excluded are added to its list)."""
        merged = dict(self.must_not)
        for name, value in _clean(must_not).items():
            if name in merged:
                old = merged[name]
                merged[name] = (
                    *(old if isinstance(old, tuple) else (old,)),
                    *(value if isinstance(value, tuple) else (value,)),
                )
            else:
                merged[name] = value
        return Where(must=self.must, must_not=merged)

    def narrowed(self, **must: Value | Sequence[Value] | None) -> Where:
        """This filter, and these fields must match too (``None`` values are dropped)."""
        return Where(must={**self.must, **_clean(must)}, must_not=self.must_not)

    def restricts(self, field: str) -> bool:
        return field in self.must


def locks_only(where: Where | None) -> Where:
    """Restrict to locks (no marker points) unless the filter names a kind itself."""
    where = where or Where()
    if where.restricts("kind"):
        return where
    return where.excluding(kind=(META_KIND, SOURCE_KIND))


@dataclass(frozen=True)
class FilterModels:
    """A backend's filter constructors: (key, values) -> match-any condition, (key, value) ->
    match-value condition, and (must, must_not) -> filter."""

    any_of: Callable[[str, list[Value]], Any]
    equals: Callable[[str, Value], Any]
    combine: Callable[[list[Any] | None, list[Any] | None], Any]

    def build(self, where: Where | None) -> Any:
        """The backend's filter for ``where`` (None when it filters nothing)."""
        if where is None or (not where.must and not where.must_not):
            return None

        def conditions(fields: dict[str, Values]) -> list[Any] | None:
            found = [self.any_of(k, list(v)) if isinstance(v, tuple) else self.equals(k, v) for k, v in fields.items()]
            return found or None

        return self.combine(conditions(where.must), conditions(where.must_not))
