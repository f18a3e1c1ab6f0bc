"""Derived data cached beside a knowledge base (type centroids, memory banks): npz files keyed
by a fingerprint of what they were computed from, written atomically, best effort (a read-only
knowledge base still works; it only recomputes).

Each file carries a sha256 of its arrays (``__checksum__``): a file that cannot be read, was cut
short, had a bit flipped or was edited by hand is never used; it is deleted with a warning on the
``kbengine`` logger and its caller rebuilds it. Temp files left by a killed writer are removed the
next time their folder is written."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kbengine.core.settings import Settings

log = logging.getLogger("kbengine")

CHECKSUM = "__checksum__"
FINGERPRINT = "fingerprint"
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600.0
"""A temp file this old in a folder being written was left by a killed writer."""


def cache_folder(settings: Settings) -> Path | None:
    """``KBENGINE_CACHE_DIR``, else ``<kb>/cache`` for an embedded store; none in server mode."""
    if settings.cache_dir is not None:
        return settings.cache_dir
    return settings.kb / "cache" if settings.qdrant_url is None else None


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        h.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


class _Mismatch(ValueError):
    """A readable file whose checksum is missing or wrong."""


def _read(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz at ``path``; :class:`_Mismatch` when it lacks a valid checksum."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    stored = arrays.pop(CHECKSUM, None)
    if stored is None:
        raise _Mismatch("it has no checksum (an older kbengine wrote it, or it was edited)")
    if str(stored) != checksum(arrays):
        raise _Mismatch("its content does not match its checksum (a flipped bit or an edit)")
    return arrays


def damage(path: Path) -> str | None:
    """Why the cache file at ``path`` cannot be trusted (unreadable, cut short, no or a wrong
    checksum), or None when it is intact."""
    try:
        _read(path)
    except Exception as e:  # zipfile, numpy's header parser, struct, EOF: any failure means damage
        return _reason(e)
    return None


def load_arrays(path: Path | None, fingerprint: str) -> dict[str, np.ndarray] | None:
    """The arrays stored at ``path`` when it was written for ``fingerprint``; else None. A
    damaged file is deleted with a warning, so the caller rebuilds it."""
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data[FINGERPRINT]) != fingerprint:
                return None
        arrays = _read(path)
    except Exception as e:  # as in ``damage``: whatever a damaged file raises, it is rebuilt
        _discard(path, _reason(e))
        return None
    arrays.pop(FINGERPRINT, None)
    return arrays


def save_arrays(path: Path | None, fingerprint: str, arrays: dict[str, np.ndarray]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent)
        content = {FINGERPRINT: np.array(fingerprint), **arrays}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **content, **{CHECKSUM: np.array(checksum(content))})  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return


def remove_stale_temps(folder: Path, max_age: float = STALE_TEMP_SECONDS) -> int:
    """Delete the ``.tmp-*`` files in ``folder`` older than ``max_age`` seconds (what a killed
    atomic write leaves); the number removed. Best effort: a file that cannot go stays."""
    removed = 0
    cutoff = time.time() - max_age
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


def _reason(e: Exception) -> str:
    if isinstance(e, _Mismatch):
        return str(e)
    return f"it cannot be read ({type(e).__name__}: {e})" if str(e) else f"it cannot be read ({type(e).__name__})"


def _discard(path: Path, reason: str) -> None:
    log.warning("cache file %s is damaged: %s; rebuilding it", path, reason)
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` value), for result timings."""
    return round((time.perf_counter() - start) * 1000, 3)
