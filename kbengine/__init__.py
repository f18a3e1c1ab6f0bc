"""kbengine: a knowledge-infused engine for visual inspection (ADSeeker, arXiv 2508.03088)."""

from kbengine.errors import KBEngineError
from kbengine.facade import KnowledgeBase
from kbengine.schemas import IngestReport, KBInfo, KnowledgeDocument
from kbengine.settings import Settings

__all__ = ["IngestReport", "KBEngineError", "KBInfo", "KnowledgeBase", "KnowledgeDocument", "Settings"]
__version__ = "0.1.0"
