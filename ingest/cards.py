"""Knowledge cards (``card.yaml`` / ``card.md``) and PDF sidecars (``<file>.yaml``): strict schemas,
so a misspelt field or a wrong type is reported instead of silently dropped."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ingest.containment import OUTSIDE, leaves
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import TextSections
from kbengine.core.vocabulary import SECTION_NAMES, check_domain


class Card(TextSections):
    """A document folder's card: metadata plus the text sections (inherited), all optional."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = None
    category: str | None = None
    defect_type: str | None = None
    title: str | None = None

    _domain_is_a_name = field_validator("domain")(lambda v: v if v is None else check_domain(v))

    def sections(self) -> TextSections:
        return TextSections(**self.model_dump(include=set(SECTION_NAMES)))


class PageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = None
    defect_type: str | None = None
    title: str | None = None
    sections: TextSections | None = None


class Sidecar(BaseModel):
    """``bottle.pdf.yaml`` (or ``bottle.yaml``) beside a PDF: defaults for every page, and per-page entries."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = None
    category: str | None = None
    defect_type: str | None = None
    title: str | None = None
    pages: dict[int, PageSpec] = {}

    _domain_is_a_name = field_validator("domain")(lambda v: v if v is None else check_domain(v))


MAX_CARD_BYTES = 1 << 20
"""Cards and sidecars larger than 1 MiB are refused (a card is a page of words, not a book: put
long text in a PDF, which is read page by page)."""


def read_text(path: Path) -> str:
    with path.open("rb") as file:
        data = file.read(MAX_CARD_BYTES + 1)  # never more, whatever the file's size
    if len(data) > MAX_CARD_BYTES:
        raise InvalidInputError(
            f"{path}: over the 1 MiB limit of a card or sidecar; put long text in a PDF or split it into several cards"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInputError(
            f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from e


def _validation_message(path: Path, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown field '{where}' (allowed: {', '.join(Card.model_fields)})")
        else:
            problems.append(f"field '{where}': {item['msg']}")
    return f"{path}: " + "; ".join(problems)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(read_text(path), Loader=_UniqueKeyLoader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{path}: not valid YAML ({e})") from e


def load_card_yaml(path: Path) -> Card:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a card must be a mapping of fields, not {type(data).__name__}")
    try:
        return Card.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError(_validation_message(path, e)) from e


_META_LINE = re.compile(r"^\s*(domain|category|defect[ _]type)\s*:\s*(.+?)\s*$", re.IGNORECASE)


def _section_key(heading: str) -> str:
    return re.sub(r"[^a-z]+", "_", heading.strip().lower()).strip("_")


def load_card_md(path: Path) -> Card:
    """``# Title``, optional ``Category: x`` / ``Defect type: y`` / ``Domain: z`` lines, then
    ``## Description`` ... sections. Unknown ``##`` sections are kept in the description."""
    fields: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in read_text(path).splitlines():
        if line.startswith("# ") and "title" not in fields:
            fields["title"] = line[2:].strip()
            continue
        if line.startswith("## "):
            key = _section_key(line[3:])
            if key not in SECTION_NAMES:
                sections.setdefault("description", []).append(f"{line[3:].strip()}:")
                key = "description"
            current = key
            continue
        meta = _META_LINE.match(line)
        if current is None and meta:
            fields[_section_key(meta.group(1))] = meta.group(2)
            continue
        sections.setdefault(current or "description", []).append(line)
    data: dict[str, Any] = dict(fields)
    for key, lines in sections.items():
        text = "\n".join(lines).strip()
        if text:
            data[key] = text
    try:
        return Card.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError(_validation_message(path, e)) from e


def load_card(folder: Path, follow_symlinks: bool = False) -> tuple[Card, Path | None]:
    """The folder's card; a card that is a symlink to a file outside the folder is refused."""
    for name, loader in (("card.yaml", load_card_yaml), ("card.yml", load_card_yaml), ("card.md", load_card_md)):
        path = folder / name
        if path.is_file():
            if not follow_symlinks and leaves(path, os.path.realpath(folder)):
                raise InvalidInputError(f"{path}: {OUTSIDE}")
            return loader(path), path
    return Card(), None


def sidecar_path(pdf: Path, follow_symlinks: bool = False) -> Path | None:
    """The PDF's sidecar; one that is a symlink to a file outside the PDF's folder is refused."""
    for candidate in (pdf.with_name(pdf.name + ".yaml"), pdf.with_suffix(".yaml"), pdf.with_suffix(".yml")):
        if candidate.is_file():
            if not follow_symlinks and leaves(candidate, os.path.realpath(pdf.parent)):
                raise InvalidInputError(f"{candidate}: {OUTSIDE}")
            return candidate
    return None


def load_sidecar(path: Path) -> Sidecar:
    data = _load_yaml(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: a sidecar must be a mapping of fields")
    try:
        return Sidecar.model_validate(data)
    except ValidationError as e:
        raise InvalidInputError(_validation_message(path, e)) from e
