"""kbengine: a knowledge-infused engine for visual inspection (ADSeeker, arXiv 2508.03088).

The names below are imported on first use (PEP 562), so ``import kbengine`` and ``kbengine
--help`` stay fast; the layers (torch, the encoders, the store) load when a knowledge base does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kbengine.core import __version__ as __version__

if TYPE_CHECKING:
    from kbengine.core.errors import KBEngineError
    from kbengine.core.schemas import Answer, Detection, IngestReport, KBInfo, KnowledgeDocument, SeekResult
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

_EXPORTS = {
    "Answer": "kbengine.core.schemas",
    "Detection": "kbengine.core.schemas",
    "IngestReport": "kbengine.core.schemas",
    "KBEngineError": "kbengine.core.errors",
    "KBInfo": "kbengine.core.schemas",
    "KnowledgeBase": "kbengine.facade",
    "KnowledgeDocument": "kbengine.core.schemas",
    "SeekResult": "kbengine.core.schemas",
    "Settings": "kbengine.core.settings",
}

__all__ = [
    "Answer",
    "Detection",
    "IngestReport",
    "KBEngineError",
    "KBInfo",
    "KnowledgeBase",
    "KnowledgeDocument",
    "SeekResult",
    "Settings",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kbengine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
