"""One photo in one request. Seek, detect and ask share it, so the photo is decoded once, its
global embedding computed once, and its patches scored against a category's bank once (the
anomaly map, the region key and the focus key read the same scores)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from kbengine.core.banks.memory_bank import PatchScores, reference_layers, score_images
from kbengine.core.banks.references import ReferenceBank
from kbengine.core.banks.region import region_descriptor
from kbengine.core.encoders.base import Encoder, OnePass
from kbengine.core.errors import InvalidInputError
from kbengine.core.images import ImageInput, describe, load_image
from kbengine.core.schemas import FileFailure


def query_batches(
    images: Iterable[ImageInput | Query], load: Callable[[ImageInput | Query], Query], batch_size: int
) -> Iterator[Query | FileFailure]:
    """Each image as ``load`` makes it a query, in order, every ``batch_size`` of them encoded in
    one pass (``Query.encode_all``); one that cannot be read is a ``FileFailure`` (the rest go on).
    ``detect_many`` and ``seek_many`` share it."""
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be 1 or more, got {batch_size}")
    batch: list[Query | FileFailure] = []

    def flush() -> list[Query | FileFailure]:
        Query.encode_all([q for q in batch if isinstance(q, Query)])
        return batch

    for image in images:
        try:
            batch.append(load(image))
        except InvalidInputError as e:
            name = describe(image.picture if isinstance(image, Query) else image)
            batch.append(FileFailure(path=name, reason=str(e).removeprefix(f"{name}: ")))
        if len(batch) == batch_size:
            yield from flush()
            batch = []
    yield from flush()


class Query:
    """A photo and what has been computed from it with one encoder."""

    def __init__(self, picture: Image.Image, encoder: Encoder, name: str, path: str | None = None) -> None:
        self.picture = picture
        self.encoder = encoder
        self.name = name
        self.path = path
        self._global_key: np.ndarray | None = None
        self._scores: dict[str, PatchScores] = {}
        self._regions: dict[str, np.ndarray] = {}
        self._raw: dict[int, np.ndarray] | None = None

    @classmethod
    def of(cls, image: ImageInput | Query, encoder: Encoder, max_pixels: int) -> Query:
        """``image`` as a query for ``encoder`` (a query made for another encoder is re-made from its photo)."""
        if isinstance(image, Query):
            if image.encoder is encoder:
                return image
            return cls(image.picture, encoder, image.name, image.path)
        path = str(image) if isinstance(image, str | Path) else None
        return cls(load_image(image, max_pixels), encoder, describe(image), path)

    @staticmethod
    def encode_all(queries: Sequence[Query]) -> None:
        """Give every query its global key and patch features in one batched forward pass (an
        encoder that cannot do both in one pass embeds the batch's global keys)."""
        todo = [q for q in queries if q._global_key is None]
        if not todo:
            return
        encoder = todo[0].encoder
        pictures = [q.picture for q in todo]
        if isinstance(encoder, OnePass):
            keys, raw = encoder.encode(pictures, reference_layers(encoder))
            for i, query in enumerate(todo):
                query._global_key = keys[i]
                query._raw = {layer: features[i : i + 1] for layer, features in raw.items()}
        else:
            for query, key in zip(todo, encoder.embed_images(pictures), strict=True):
                query._global_key = key

    @property
    def size(self) -> tuple[int, int]:
        return self.picture.size

    @property
    def global_key(self) -> np.ndarray:
        """The photo's global embedding (computed on first use; with an encoder that can, in the
        same forward pass as the patch features every bank reads)."""
        if self._global_key is None:
            if isinstance(self.encoder, OnePass):
                keys, self._raw = self.encoder.encode([self.picture], reference_layers(self.encoder))
                self._global_key = keys[0]
            else:
                self._global_key = self.encoder.embed_images([self.picture])[0]
        return self._global_key

    def patch_scores(self, bank: ReferenceBank) -> PatchScores:
        """The photo's patches against ``bank`` (computed once per bank)."""
        if bank.fingerprint not in self._scores:
            if isinstance(self.encoder, OnePass) and self._global_key is None:
                self.global_key  # noqa: B018 - one pass gives the global key and the patch features
            raw = self._raw if self._raw is not None and tuple(bank.bank.layers) == tuple(self._raw) else None
            self._scores[bank.fingerprint] = score_images(self.encoder, bank.bank, [self.picture], raw)[0]
        return self._scores[bank.fingerprint]

    def region_key(self, bank: ReferenceBank) -> np.ndarray:
        """The descriptor of the photo's anomalous region against ``bank``."""
        if bank.fingerprint not in self._regions:
            self._regions[bank.fingerprint] = region_descriptor(self.patch_scores(bank), bank.bank)
        return self._regions[bank.fingerprint]

    def focus_key(self, bank: ReferenceBank, threshold: float) -> np.ndarray:
        """Seek's ``focus`` key: the global embedding of the square crop around the photo's
        strongest anomalous region against ``bank`` (``regions.focus_crop``), on the map detect
        draws from the references alone (``maps.reference_map``), binarised at ``threshold``."""
        from kbengine.core.maps import reference_map, resize_map  # scipy.ndimage: only when focus is asked for
        from kbengine.core.regions import find_regions, focus_crop, grow, scale_regions

        anomaly_map = np.clip(reference_map(self.patch_scores(bank).distance_grid, bank.bank, self.size), 0.0, 1.0)
        working = anomaly_map.shape[1], anomaly_map.shape[0]
        regions = scale_regions(find_regions(anomaly_map, grow(anomaly_map, threshold)), working, self.size)
        crop = focus_crop(self.picture, resize_map(anomaly_map, *self.size), regions)
        return self.encoder.embed_images([crop])[0]
