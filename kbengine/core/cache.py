"""Derived data cached beside a knowledge base (type centroids, memory banks): npz files keyed
by a fingerprint of what they were computed from, written atomically, best effort (a read-only
knowledge base still works; it only recomputes)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from kbengine.core.settings import Settings


def cache_folder(settings: Settings) -> Path | None:
    """``KBENGINE_CACHE_DIR``, else ``<kb>/cache`` for an embedded store; none in server mode."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    return settings.kb / "cache" if settings.qdrant_url is None else None


def load_arrays(path: Path | None, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` when it was written for ``fingerprint``; else None."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            return {k: data[k] for k in data.files if k != "fingerprint"}
    except (OSError, KeyError, ValueError):
        return None


def save_arrays(path: Path | None, fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, fingerprint=np.array(fingerprint), **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except OSError:
        return


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` value), for result timings."""
    return round((time.perf_counter() - start) * 1000, 3)
