"""``kbengine demo``: generate material, ingest it into a fresh knowledge base, report what it holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from kbengine import synth
from kbengine.encoders import resolve_backend
from kbengine.facade import KnowledgeBase
from kbengine.schemas import IngestReport, KBInfo
from kbengine.settings import Settings


class DemoResult(BaseModel):
    root: str
    kb: str
    report: IngestReport
    info: KBInfo


def run_demo(
    root: Path, settings: Settings, encoder: str | None = None, say: Callable[[str], Any] = print
) -> DemoResult:
    changes: dict[str, Any] = {"kb": root / "kb", "qdrant_url": None}
    if encoder:
        changes["encoder"] = encoder
    settings = settings.model_copy(update=changes)
    if resolve_backend(settings) == "packaged":
        say(
            f"No CLIP weights for {settings.clip_model} ({settings.clip_pretrained}) on this machine: "
            "using the offline packaged encoder (EfficientNet-Lite0 + all-MiniLM-L6-v2)."
        )
    say(f"Writing generated material to {root / 'material'} ...")
    material = synth.write_demo_material(root / "material")
    with KnowledgeBase.open(settings=settings) as kb:
        report = kb.ingest([material["catalogue"], material["documents"], material["dataset"]])
        info = kb.info()
    return DemoResult(root=str(root), kb=str(settings.kb), report=report, info=info)
