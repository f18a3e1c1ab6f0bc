"""A source unit is what ingest adds, skips or replaces as a whole: one PDF, one document
folder, or one dataset image. Its fingerprint covers every byte and option that shapes its locks."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from kbengine.core.schemas import KnowledgeDocument, LockKind, OcrPage, TableFound
from kbengine.core.vocabulary import NORMAL_TYPE

NAMESPACE = uuid.UUID("6f1c1a52-3c1e-5b8a-9a57-2f7e0d3c4b11")


class Overrides(BaseModel):
    """Metadata given on the command line; wins over sidecars, cards and headings."""

    model_config = ConfigDict(frozen=True)

    domain: str | None = None
    category: str | None = None
    defect_type: str | None = None


@dataclass
class LockItem:
    """One piece of a document that becomes one lock."""

    doc: KnowledgeDocument
    kind: LockKind
    locator: str
    image: Image.Image | None = None
    image_bytes: bytes | None = None
    image_suffix: str = ".png"
    text: str | None = None
    page: int | None = None
    ocr: bool = False
    """Its content was read by OCR (a scanned page, a picture cut out of one, their text)."""


@dataclass
class SourceUnit:
    key: str
    kind: str
    files: list[Path]
    parts: Callable[[], Iterator[LockItem]]
    extra: str = ""
    fingerprint: str = field(default="", init=False)
    notes: list[str] = field(default_factory=list, init=False)
    """What reading the unit changed from the settings (a huge page rendered at a lower DPI, ...)."""
    tables: list[TableFound] = field(default_factory=list, init=False)
    ocr: list[OcrPage] = field(default_factory=list, init=False)
    """A PDF's defect tables and the pages OCR read (or could not), for the report."""

    def compute_fingerprint(self, options: str) -> str:
        h = hashlib.sha256(f"{self.kind}\0{options}\0{self.extra}\0".encode())
        for f in self.files:
            h.update(f.name.encode("utf-8", "surrogateescape") + b"\0")
            with open(f, "rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    h.update(chunk)
        self.fingerprint = h.hexdigest()
        return self.fingerprint


def doc_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "\0".join(parts)))


def lock_sha(source: str, locator: str, content: bytes) -> str:
    h = hashlib.sha256(source.encode("utf-8", "surrogateescape") + b"\0" + locator.encode() + b"\0")
    h.update(content)
    return h.hexdigest()


def lock_id(sha: str, encoder: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{sha}:{encoder}"))


def chunk_text(text: str, limit: int) -> list[str]:
    """Split on blank lines, then lines, into chunks of at most ``limit`` characters."""
    paragraphs = [p.strip() for p in text.replace("\r", "").split("\n\n") if p.strip()]
    chunks: list[str] = []
    current = ""
    for paragraph in paragraphs:
        pieces = [paragraph] if len(paragraph) <= limit else _split_long(paragraph, limit)
        for piece in pieces:
            if current and len(current) + 2 + len(piece) > limit:
                chunks.append(current)
                current = piece
            else:
                current = f"{current}\n\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(text: str, limit: int) -> list[str]:
    words, out, current = text.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > limit:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    return [w[i : i + limit] for w in out for i in range(0, len(w), limit)]


def text_items(doc: KnowledgeDocument, limit: int, page: int | None = None, raw: str = "") -> Iterator[LockItem]:
    """Text locks: one per section chunk (prefixed by title and section), else chunks of ``raw``."""
    sections = doc.sections.items_nonempty()
    pieces: list[str] = []
    for name, body in sections:
        pieces += [f"{doc.title}. {name.replace('_', ' ')}: {c}" for c in chunk_text(body, limit)]
    if not sections and raw.strip():
        pieces = [f"{doc.title}. {c}" for c in chunk_text(raw, limit)]
    for i, piece in enumerate(pieces):
        yield LockItem(doc=doc, kind="text", locator=f"{doc.doc_id}:text:{i}", text=piece, page=page)


def make_title(category: str, defect_type: str) -> str:
    pretty = defect_type.replace("_", " ")
    return f"{category}: normal reference" if defect_type == NORMAL_TYPE else f"{category}: {pretty}"
