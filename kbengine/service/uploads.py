"""Uploaded files: a request's bytes are checked and decoded in memory; ingest uploads are written
under the service's upload folder with names the server makes. No path a request names is opened."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image

from kbengine.core.errors import InvalidInputError
from kbengine.core.images import IMAGE_SUFFIXES, decode_image

DOCUMENT_SUFFIXES = frozenset({".pdf", ".yaml", ".yml", ".md"})
INGEST_SUFFIXES = IMAGE_SUFFIXES | DOCUMENT_SUFFIXES
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(filename: str | None, fallback: str = "upload") -> str:
    """A file name to write under: the client's base name (either slash), unsafe characters as
    ``_``, no leading dots, at most 100 characters with the suffix kept."""
    raw = PureWindowsPath(PurePosixPath(filename or "").name).name
    name = _UNSAFE.sub("_", raw).lstrip("._") or fallback
    if len(name) > 100:
        suffix = Path(name).suffix[:16]
        name = name[: 100 - len(suffix)] + suffix
    return name


def decode_upload(data: bytes, filename: str | None, max_pixels: int) -> Image.Image:
    """An uploaded photo as RGB, with the engine's checks (empty, broken, animated, too many pixels);
    errors name the upload by its base name."""
    return decode_image(data, Path(safe_name(filename, "image")), max_pixels)


def check_ingest_upload(name: str, data: bytes, max_pixels: int) -> None:
    """Refuse what ingest would refuse before anything is written: an unknown kind of file, an
    empty one, a PDF that is not one, an image that does not decode or is too large."""
    suffix = Path(name).suffix.lower()
    if suffix not in INGEST_SUFFIXES:
        kinds = ", ".join(sorted(INGEST_SUFFIXES))
        raise InvalidInputError(f"{name}: not a file ingest takes (one of {kinds})")
    if not data:
        raise InvalidInputError(f"{name}: empty file (0 bytes)")
    if suffix == ".pdf" and not data.startswith(b"%PDF-"):
        raise InvalidInputError(f"{name}: not a PDF (it does not start with %PDF-)")
    if suffix in IMAGE_SUFFIXES:
        decode_image(data, Path(name), max_pixels)
    if suffix in {".yaml", ".yml", ".md"}:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{name}: a card must be UTF-8 text") from None
