"""Content-addressed blob folder for rendered pages and figures (``ab/abcdef....png``): a blob's
name is the sha256 of its bytes and its suffix, so :meth:`BlobStore.check` can tell a missing or
damaged blob from an intact one without any other record."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from PIL import Image

from kbengine.core.cache import TEMP_PREFIX, remove_stale_temps

BLOB_NAME = re.compile(r"[0-9a-f]{64}(\.[A-Za-z0-9]{1,16})?")
BlobDamage = Literal["missing", "damaged"]


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._swept: set[Path] = set()

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def put_bytes(self, data: bytes, suffix: str = ".png") -> str:
        """Store ``data`` under its sha256 (written atomically); return the blob name."""
        name = hashlib.sha256(data).hexdigest() + suffix
        target = self.path(name)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.parent not in self._swept:  # once per folder: what a killed ingest left
                self._swept.add(target.parent)
                remove_stale_temps(target.parent)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return name

    def put_image(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return self.put_bytes(buffer.getvalue())

    def has(self, name: str) -> bool:
        return self.path(name).exists()

    def check(self, name: str) -> BlobDamage | None:
        """None when the blob exists and its bytes have the sha256 its name says; ``missing``, or
        ``damaged`` (other bytes, unreadable, or a name that is not a blob name)."""
        if not BLOB_NAME.fullmatch(name):
            return "damaged"
        try:
            with open(self.path(name), "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "damaged"
        return None if digest == name[:64] else "damaged"

    def discard(self, name: str) -> None:
        """Delete a (damaged) blob so that the next ``put_bytes`` of its content writes it again."""
        if BLOB_NAME.fullmatch(name):
            with contextlib.suppress(OSError):
                self.path(name).unlink(missing_ok=True)
