"""Pydantic models at the boundaries: knowledge documents and lock payloads, ingest reports and
store info, and the results of seek, detect and ask."""

from kbengine.core.schemas.ask import Answer, PromptPart
from kbengine.core.schemas.detect import Detection, Evidence, Region
from kbengine.core.schemas.documents import (
    META_KIND,
    PAYLOAD_FIELDS,
    SOURCE_KIND,
    CollectionMeta,
    KnowledgeDocument,
    LockKind,
    LockLabel,
    LockPayload,
    RegionLabel,
    SourceMarker,
    TextSections,
)
from kbengine.core.schemas.ingest import CategoryInfo, FileFailure, IngestReport, KBInfo, SourceReport
from kbengine.core.schemas.seek import (
    ClusterStat,
    LockMatch,
    PipelineStat,
    RegionKeyStat,
    SeekDiagnostics,
    SeekHit,
    SeekResult,
    TypePrediction,
    TypeScore,
)

__all__ = [
    "META_KIND",
    "PAYLOAD_FIELDS",
    "SOURCE_KIND",
    "Answer",
    "CategoryInfo",
    "ClusterStat",
    "CollectionMeta",
    "Detection",
    "Evidence",
    "FileFailure",
    "IngestReport",
    "KBInfo",
    "KnowledgeDocument",
    "LockKind",
    "LockLabel",
    "LockMatch",
    "LockPayload",
    "PipelineStat",
    "PromptPart",
    "Region",
    "RegionKeyStat",
    "RegionLabel",
    "SeekDiagnostics",
    "SeekHit",
    "SeekResult",
    "SourceMarker",
    "SourceReport",
    "TextSections",
    "TypePrediction",
    "TypeScore",
]
