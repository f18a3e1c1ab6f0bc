"""``kbengine demo``: generate material, ingest it into a fresh knowledge base, report what it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kbengine import synth
from kbengine.core.encoders import resolve_backend
from kbengine.core.schemas import Answer, Detection, IngestReport, KBInfo, SeekResult
from kbengine.core.settings import Settings
from kbengine.facade import KnowledgeBase
from reasoning.expert.overlay import write_overlay

DEMO_QUESTION = "Is there a defect? What type, where, and what are its causes and consequences?"
DEMO_QUERY_SEED = 90_001
"""A part the generated material does not hold."""


class DemoResult(BaseModel):
    root: str
    kb: str
    report: IngestReport
    info: KBInfo
    query: str
    seek: SeekResult
    detection: Detection
    overlay: str
    answer: Answer


def run_demo(root: Path, settings: Settings, say: Callable[[str], Any] = print) -> DemoResult:
    """The demo under ``root`` (material, query, knowledge base ``root/kb``, embedded)."""
    settings = settings.model_copy(update={"kb": root / "kb", "qdrant_url": None})
    if resolve_backend(settings) == "packaged":
        say(
            f"No CLIP weights for {settings.clip_model} ({settings.clip_pretrained}) on this machine: "
            "using the offline packaged encoder (EfficientNet-Lite0 + all-MiniLM-L6-v2)."
        )
    say(f"Writing generated material to {root / 'material'} ...")
    material = synth.write_demo_material(root / "material")
    query = root / "query" / "disc_scratch.png"
    query.parent.mkdir(parents=True, exist_ok=True)
    synth.sample("disc", "scratch", seed=DEMO_QUERY_SEED)[0].save(query)
    overlay = root / "query" / "disc_scratch_heatmap.png"
    with KnowledgeBase.open(settings=settings) as kb:
        report = kb.ingest([material["catalogue"], material["documents"], material["dataset"]])
        info = kb.info()
        say(f"Seeking the disc knowledge for a new photo of a scratched disc ({query}) ...")
        found = kb.seek(query, k=3, category="disc")
        say("Detecting with the disc's normal references ...")
        detection = kb.detect(query, "disc")
        write_overlay(query, detection, overlay)
        say("Asking (default backend: the grounded report) ...")
        answer = kb.ask(query, DEMO_QUESTION, category="disc")
    return DemoResult(
        root=str(root),
        kb=str(settings.kb),
        report=report,
        info=info,
        query=str(query),
        seek=found,
        detection=detection,
        overlay=str(overlay),
        answer=answer,
    )
