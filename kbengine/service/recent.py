"""The photos the service inspected lately, so feedback on one need not upload it again.

``POST /v1/seek``, ``/v1/detect`` and ``/v1/ask`` answer with an ``X-Inspection-Id`` header (the
sha256 of the photo's bytes); ``POST /v1/feedback`` takes that id instead of the image while the
photo is still held. Bounded: at most ``MAX_PHOTOS`` photos and ``MAX_BYTES`` in all, the oldest
dropped first (an id no longer held is a clear 422: upload the photo)."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

INSPECTION_HEADER = "X-Inspection-Id"
MAX_PHOTOS = 64
MAX_BYTES = 256 * 1024 * 1024


class RecentPhotos:
    """A bounded, thread-safe map from inspection id to the photo's bytes and file name."""

    def __init__(self, max_photos: int = MAX_PHOTOS, max_bytes: int = MAX_BYTES) -> None:
        self.max_photos = max_photos
        self.max_bytes = max_bytes
        self._photos: OrderedDict[str, tuple[bytes, str | None]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, upload: tuple[bytes, str | None]) -> str:
        """Hold ``upload`` (bytes, file name); its inspection id."""
        data = upload[0]
        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            if key in self._photos:
                self._photos.move_to_end(key)
                return key
            if len(data) > self.max_bytes:
                return key  # too large to hold: feedback on it uploads it
            self._photos[key] = upload
            self._bytes += len(data)
            while len(self._photos) > self.max_photos or self._bytes > self.max_bytes:
                _, (old, _) = self._photos.popitem(last=False)
                self._bytes -= len(old)
        return key

    def get(self, key: str) -> tuple[bytes, str | None] | None:
        with self._lock:
            return self._photos.get(key)
