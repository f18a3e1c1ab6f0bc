"""Content-addressed blob folder for rendered pages and figures (``ab/abcdef....png``)."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name[:2] / name

    def put_bytes(self, data: bytes, suffix: str = ".png") -> str:
        """Store ``data`` under its sha256 (written atomically); return the blob name."""
        name = hashlib.sha256(data).hexdigest() + suffix
        target = self.path(name)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
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
