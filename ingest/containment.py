"""What ingest may read: files under the folder the user gave, not wherever a symlink points.

A symlink inside an ingested folder that resolves outside it (``card.md -> /etc/passwd``, a
folder linked to ``/``) is refused with a reason, for every file kind, unless the user asks to
follow symlinks (``--follow-symlinks``, ``KBENGINE_FOLLOW_SYMLINKS``). Paths the user names
explicitly are theirs to choose and are read wherever they point.
"""

from __future__ import annotations

import os
from pathlib import Path

OUTSIDE = "a symlink that leaves the ingested folder; refused (--follow-symlinks allows it)"


def real_root(path: Path) -> str:
    return os.path.realpath(path)


def leaves(path: Path, root: str | None) -> bool:
    """Whether ``path``, symlinks resolved, lies outside the real folder ``root`` (None: no limit)."""
    if root is None:
        return False
    real = os.path.realpath(path)
    return real != root and not real.startswith(root.rstrip(os.sep) + os.sep)
