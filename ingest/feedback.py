"""An inspector's verdict on a photo as knowledge: the source unit ``kb.feedback`` stores.

The photo becomes a labelled example document of (domain, category, defect type), or a normal
reference when the type is ``good``, with provenance ``feedback`` (when, and the inspector's
note). It is one source unit keyed ``feedback/<sha256 of the photo's bytes>``, so:

- the same photo fed back again is the same unit: with the same labels it is unchanged, with
  others its locks are rewritten under the new labels (same lock ids: content and unit are the
  same) and the old labels' marker goes; it is never stored twice;
- it goes through ingest's crash-safe path (locks first, the unit's marker last): a feedback
  killed at any point and given again ends as one clean run;
- ``kbengine docs --source feedback`` lists every fed-back document and ``kbengine remove
  --source feedback/<sha256>`` (or by document id) undoes one.

The time is not in the unit's fingerprint: feeding back the same verdict (labels and note) twice
changes nothing (the first time stays), while a new label, domain or note is a new fingerprint.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image

from ingest.units import LockItem, SourceUnit, doc_id
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import IMAGE_SUFFIXES, ImageInput, array_to_image, decode_image, to_rgb
from kbengine.core.schemas import Feedback, KnowledgeDocument, Labels, LabelSource
from kbengine.core.vocabulary import DEFAULT_DOMAIN, FEEDBACK_SOURCE, NORMAL_TYPE, normalise_name

MAX_NOTE_CHARS = 2000


def photo_bytes(image: ImageInput | bytes, max_pixels: int) -> tuple[bytes, str, Image.Image]:
    """The photo's file bytes (as given for a path or bytes; PNG for an image or array), its
    suffix and the decoded image, refusing what ``decode_image`` refuses."""
    if isinstance(image, bytes):
        return image, _suffix_of(image), decode_image(image, Path("<upload>"), max_pixels)
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.is_file():
            raise InvalidInputError(f"{path}: no such image file")
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            raise InvalidInputError(f"{path}: not an image file ({suffix or 'no extension'})")
        data = path.read_bytes()
        return data, suffix, decode_image(data, path, max_pixels)
    picture = to_rgb(image) if isinstance(image, Image.Image) else array_to_image(image)
    if picture.width * picture.height > max_pixels:
        raise InvalidInputError(f"the image is {picture.width}x{picture.height}, over KBENGINE_MAX_IMAGE_PIXELS")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue(), ".png", picture


def _suffix_of(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind = (image.format or "png").lower()
    except Exception:  # decode_image says what is wrong with it
        return ".png"
    return {"jpeg": ".jpg", "tiff": ".tif"}.get(kind, f".{kind}")


def source_of(data: bytes) -> str:
    """The unit key of a fed-back photo: ``feedback/<sha256 of its bytes>``."""
    return f"{FEEDBACK_SOURCE}/{hashlib.sha256(data).hexdigest()}"


def feedback_unit(
    data: bytes,
    suffix: str,
    picture: Image.Image,
    *,
    category: str,
    defect_type: str,
    domain: str | None = None,
    note: str | None = None,
    at: datetime | None = None,
) -> SourceUnit:
    """The source unit of one verdict: one image lock of a document labelled by the inspector."""
    category, defect_type = normalise_name(category), normalise_name(defect_type)
    if not category or not defect_type:
        raise InvalidInputError("feedback needs a category and a defect type (good for a normal part)")
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise InvalidInputError(f"the note is {len(note)} characters; at most {MAX_NOTE_CHARS}")
    key = source_of(data)
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    inspector = LabelSource(source="feedback", confidence=1.0)
    kind = "normal reference" if defect_type == NORMAL_TYPE else defect_type.replace("_", " ")
    doc = KnowledgeDocument(
        doc_id=doc_id(key),
        domain=domain or DEFAULT_DOMAIN,
        category=category,
        defect_type=defect_type,
        title=f"{category}: {kind} (inspection {when[:10]})",
        source=key,
        labels=Labels(category=inspector, defect_type=inspector),
        feedback=Feedback(at=when, note=note.strip() if note and note.strip() else None),
    )

    def parts() -> Iterator[LockItem]:
        yield LockItem(doc=doc, kind="image", locator="image", image=picture, image_bytes=data, image_suffix=suffix)

    labels = f"{doc.domain}\0{category}\0{defect_type}\0{doc.feedback.note if doc.feedback else ''}"
    return SourceUnit(key=key, kind="feedback", files=[], parts=parts, extra=f"{key}\0{labels}")
