"""Turn the paths a user gives into source units.

- ``*.pdf``: one unit per file (see ``ingest.pdf``).
- An MVTec-layout category folder (``train/good``, ``test/<type>``): one unit per image; train
  and test ``good`` images become normal references, ``test/<type>`` images defect examples of
  ``(category, type)``; ``ground_truth`` masks are not knowledge and are left out.
- Any other folder holding images and/or a ``card.yaml``/``card.md``: one document,
  ``<category>/<defect_type>/`` by its path unless the card or the options say otherwise, with one
  unit per image and one for the card's text.
- A single image file: a document of its own.
Folders are walked following symlinks, each real folder once (a symlink loop is reported); a
symlink that leads outside the folder the user gave is refused (``ingest.containment``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.cards import load_card
from ingest.containment import OUTSIDE, leaves, real_root
from ingest.labels import Labeler
from ingest.pdf import pdf_unit
from ingest.units import LockItem, Overrides, SourceUnit, doc_id, make_title, text_items
from kbengine.core.datasets import image_files, is_mvtec_category, source_key
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import IMAGE_SUFFIXES, decode_image
from kbengine.core.schemas import KnowledgeDocument
from kbengine.core.settings import Settings
from kbengine.core.vocabulary import DEFAULT_DOMAIN, UNSPECIFIED_TYPE, is_utf8, normalise_name, printable

CARD_NAMES = ("card.yaml", "card.yml", "card.md")
EMPTY = "nothing to ingest: no PDFs, images, cards or MVTec categories in this folder"
NOT_UTF8 = "the file name is not UTF-8 (shown with \\x escapes); rename it to ingest it"
SIDECAR_SUFFIXES = (".yaml", ".yml")


@dataclass
class Skipped:
    path: str
    reason: str
    failure: bool


def folder_units(
    folder: Path, images: list[Path], overrides: Overrides, settings: Settings
) -> Iterator[SourceUnit | Skipped]:
    """A document folder: one unit per image (so one bad image fails alone) and one for the card's text.

    A card that cannot be read fails the folder: its images are not stored under guessed metadata."""
    key = source_key(folder)
    try:
        card, card_path = load_card(folder, settings.follow_symlinks)
    except InvalidInputError as e:
        yield Skipped(str(folder), str(e), failure=True)
        for image_path in images:
            yield Skipped(str(image_path), "not ingested: its folder's card is invalid", failure=True)
        return
    category = normalise_name(overrides.category or card.category or (folder.parent.name or folder.name))
    defect_type = normalise_name(overrides.defect_type or card.defect_type or folder.name)
    doc = KnowledgeDocument(
        doc_id=doc_id(key),
        domain=overrides.domain or card.domain or DEFAULT_DOMAIN,
        category=category,
        defect_type=defect_type,
        title=card.title or make_title(category, defect_type),
        sections=card.sections(),
        source=key,
    )
    for image_path in images:
        yield image_unit(image_path, doc, settings)
    if card_path is not None:

        def parts() -> Iterator[LockItem]:
            yield from text_items(doc, settings.text_chunk_chars)

        yield SourceUnit(
            key=source_key(card_path), kind="card", files=[card_path], parts=parts, extra=doc.model_dump_json()
        )


def image_unit(image_path: Path, doc: KnowledgeDocument, settings: Settings) -> SourceUnit:
    def parts() -> Iterator[LockItem]:
        data = image_path.read_bytes()
        yield LockItem(
            doc=doc,
            kind="image",
            locator="image",
            image=decode_image(data, image_path, settings.max_image_pixels),
            image_bytes=data,
            image_suffix=image_path.suffix.lower(),
        )

    return SourceUnit(
        key=source_key(image_path), kind="image", files=[image_path], parts=parts, extra=doc.model_dump_json()
    )


def mvtec_units(
    folder: Path, overrides: Overrides, settings: Settings, limit: str | None = None
) -> Iterator[SourceUnit | Skipped]:
    category = normalise_name(overrides.category or folder.name)
    domain = overrides.domain or DEFAULT_DOMAIN
    groups: list[tuple[str, Path]] = []
    for split in ("train", "test"):
        root = folder / split
        try:
            if root.is_dir():
                groups += [(normalise_name(d.name), d) for d in sorted(root.iterdir()) if d.is_dir()]
        except OSError as e:
            yield Skipped(printable(str(root)), f"cannot list folder ({e.strerror})", failure=True)
    for defect_type, directory in groups:
        defect_type = (overrides.defect_type and normalise_name(overrides.defect_type)) or defect_type
        if leaves(directory, limit):
            yield Skipped(str(directory), OUTSIDE, failure=True)
            continue
        try:
            card, _ = load_card(directory, settings.follow_symlinks)
        except InvalidInputError as e:
            yield Skipped(str(directory), str(e), failure=True)
            continue
        doc = KnowledgeDocument(
            doc_id=doc_id(source_key(folder), defect_type),
            domain=domain,
            category=category,
            defect_type=defect_type,
            title=card.title or make_title(category, defect_type),
            sections=card.sections(),
            source=source_key(folder),
        )
        try:
            files = image_files(directory)
        except OSError as e:
            yield Skipped(printable(str(directory)), f"cannot list folder ({e.strerror})", failure=True)
            continue
        for image_path in files:
            if not is_utf8(str(image_path)):
                yield Skipped(printable(str(image_path)), NOT_UTF8, failure=True)
            elif leaves(image_path, limit):
                yield Skipped(str(image_path), OUTSIDE, failure=True)
            else:
                yield image_unit(image_path, doc, settings)


def discover(
    paths: list[Path], overrides: Overrides, settings: Settings, labeler: Labeler | None = None
) -> Iterator[SourceUnit | Skipped]:
    """Yield units for ``paths`` and what was skipped or refused on the way."""
    for path in paths:
        if not is_utf8(str(path)):
            yield Skipped(printable(str(path)), NOT_UTF8, failure=True)
        elif not path.exists() and not path.is_symlink():
            yield Skipped(str(path), "no such file or folder", failure=True)
        elif path.is_file():
            yield from _file(path, overrides, settings, explicit=True, labeler=labeler)
        elif path.is_dir():
            found = False
            for entry in _walk(path, overrides, settings, labeler):
                found = True
                yield entry
            if not found:
                yield Skipped(str(path), EMPTY, failure=True)
        else:
            yield Skipped(str(path), "broken symlink or not a regular file", failure=True)


def _file(
    path: Path, overrides: Overrides, settings: Settings, explicit: bool, labeler: Labeler | None = None
) -> Iterator[SourceUnit | Skipped]:
    suffix = path.suffix.lower()
    if suffix == ".pdf":
        yield pdf_unit(path, source_key(path), overrides, settings, labeler)
    elif suffix in IMAGE_SUFFIXES and explicit:
        yield folder_unit_for_file(path, overrides, settings)
    elif explicit:
        yield Skipped(
            str(path), f"unsupported file type {suffix or '(none)'}; give PDFs, images or folders", failure=True
        )


def folder_unit_for_file(path: Path, overrides: Overrides, settings: Settings) -> SourceUnit:
    category = normalise_name(overrides.category or path.parent.name)
    doc = KnowledgeDocument(
        doc_id=doc_id(source_key(path)),
        domain=overrides.domain or DEFAULT_DOMAIN,
        category=category,
        defect_type=normalise_name(overrides.defect_type or UNSPECIFIED_TYPE),
        title=path.stem,
        source=source_key(path),
    )
    return image_unit(path, doc, settings)


def _walk(
    root: Path, overrides: Overrides, settings: Settings, labeler: Labeler | None = None
) -> Iterator[SourceUnit | Skipped]:
    seen: set[str] = set()
    stack = [root]
    limit = None if settings.follow_symlinks else real_root(root)
    while stack:
        folder = stack.pop()
        real = os.path.realpath(folder)
        if real in seen:
            yield Skipped(str(folder), f"symlink loop or repeated folder (already walked as {real})", failure=True)
            continue
        seen.add(real)
        try:  # an unreadable folder (permissions) fails alone, and the walk goes on
            mvtec = is_mvtec_category(folder)
            entries = [] if mvtec else sorted(folder.iterdir())
            has_card = not mvtec and any((folder / n).is_file() for n in CARD_NAMES)
        except OSError as e:
            yield Skipped(str(folder), f"cannot read folder ({e.strerror or e})", failure=True)
            continue
        if mvtec:
            yield from mvtec_units(folder, overrides, settings, limit)
            continue
        images: list[Path] = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if not is_utf8(entry.name):
                yield Skipped(printable(str(entry)), NOT_UTF8, failure=True)
                continue
            if entry.is_symlink() and leaves(entry, limit):
                yield Skipped(str(entry), OUTSIDE, failure=True)
                continue
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError as e:
                yield Skipped(str(entry), f"cannot read ({e.strerror or e})", failure=True)
                continue
            if is_dir:
                stack.append(entry)
            elif is_file:
                suffix = entry.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    images.append(entry)
                elif suffix == ".pdf":
                    yield from _file(entry, overrides, settings, explicit=False, labeler=labeler)
                elif entry.name in CARD_NAMES or suffix in SIDECAR_SUFFIXES:
                    continue
                else:
                    yield Skipped(
                        str(entry), f"not a knowledge file ({suffix or 'no extension'}); left out", failure=False
                    )
            elif entry.is_symlink():
                yield Skipped(str(entry), "broken symlink", failure=True)
        if images or has_card:
            yield from folder_units(folder, images, overrides, settings)
        stack.sort(reverse=True)
