"""Prompt assembly for the MLLM: the Seek-Setting (paper) and the vanilla 1-shot setting (MMAD).

Seek-Setting, in this order:
1. system: the inspector instruction;
2. the retrieved knowledge: each document's page/figure image as the template (in place of a
   random normal sample) followed by its text sections;
3. the AD Expert's findings as text (score and verdict, defect-type guess with margin, regions
   with location phrases) and an annotated copy of the query with the regions' boxes drawn
   (MMAD's authors found raw heatmaps gave no gain; boxes carry the location);
4. the query image;
5. the question (and its options).
Vanilla: one normal reference image as the template, then the query and the question; no
knowledge text, no expert. ``knowledge=False`` / ``expert=False`` switch parts off (ablations).
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from kbengine.core.images import load_image
from kbengine.core.schemas import Detection, PromptPart, SeekHit
from kbengine.core.vocabulary import SECTION_NAMES, section_heading
from reasoning.llm.base import Message, Part

SYSTEM = (
    "You are an expert industrial quality inspector. You compare a query image of a product with "
    "reference material and answer questions about defects precisely and briefly."
)


def options_text(options: dict[str, str] | None) -> str:
    if not options:
        return ""
    lines = "\n".join(f"{k}: {v}" for k, v in options.items())
    return f"\n{lines}\nAnswer with the option's letter."


def findings_text(det: Detection) -> str:
    verdict = {True: "anomalous", False: "normal", None: "not calibrated"}[det.is_anomalous]
    lines = [
        f"Anomaly score {det.score:.2f} ({verdict}" + (f", threshold {det.threshold:.2f})" if det.threshold else ")")
    ]
    t = det.predicted_defect_type
    if t is not None:
        margin = f", margin {t.margin:.3f} over the next type" if t.margin is not None else ""
        lines.append(f"Most similar documented defect type: {t.defect_type} (similarity {t.similarity:.2f}{margin}).")
    if det.regions:
        where = "; ".join(f"{r.location} (box {r.bbox}, {r.area_fraction:.1%} of the image)" for r in det.regions[:3])
        lines.append(f"Suspicious regions: {where}.")
    else:
        lines.append("No suspicious region above the threshold.")
    return "AD Expert findings: " + " ".join(lines)


def annotate(query: Image.Image, det: Detection) -> Image.Image:
    """A copy of the query with the regions' boxes drawn in red."""
    copy = query.convert("RGB").copy()
    draw = ImageDraw.Draw(copy)
    width = max(2, round(max(copy.size) / 200))
    for region in det.regions[:5]:
        draw.rectangle(region.bbox, outline=(255, 0, 0), width=width)
    return copy


def knowledge_parts(hits: list[SeekHit], max_pages: int) -> list[Part]:
    parts: list[Part] = []
    shown = 0
    for hit in hits:
        if hit.image_path and shown < max_pages:
            parts.append(Part.of_image(load_image(hit.image_path), f"template: knowledge {hit.title}", hit.image_path))
            shown += 1
        sections = hit.sections.model_dump()
        body = " ".join(f"{section_heading(name)}: {sections[name]}" for name in SECTION_NAMES if sections[name])
        parts.append(
            Part.of_text(f"Knowledge [{hit.rank}] {hit.title} ({hit.category}, {hit.defect_type}). {body}".strip())
        )
    return parts


def seek_messages(
    query: Image.Image,
    question: str,
    *,
    hits: list[SeekHit],
    detection: Detection | None,
    options: dict[str, str] | None = None,
    query_path: str | None = None,
    max_pages: int = 1,
) -> list[Message]:
    parts: list[Part] = []
    if hits:
        parts.append(Part.of_text("Reference knowledge from the plant's documents (template images first):"))
        parts += knowledge_parts(hits, max_pages)
    if detection is not None:
        parts.append(Part.of_text(findings_text(detection)))
        if detection.regions:
            parts.append(Part.of_image(annotate(query, detection), "expert: query with suspicious regions boxed"))
    parts.append(Part.of_text("The query image:"))
    parts.append(Part.of_image(query, "query", query_path))
    parts.append(Part.of_text(question + options_text(options)))
    return [Message(role="system", parts=[Part.of_text(SYSTEM)]), Message(role="user", parts=parts)]


def vanilla_messages(
    query: Image.Image,
    question: str,
    *,
    template: Image.Image | None,
    template_path: str | None = None,
    options: dict[str, str] | None = None,
    query_path: str | None = None,
) -> list[Message]:
    parts: list[Part] = []
    if template is not None:
        parts.append(Part.of_text("The first image is a normal sample for reference:"))
        parts.append(Part.of_image(template, "template: normal sample", template_path))
    parts.append(Part.of_text("The query image:"))
    parts.append(Part.of_image(query, "query", query_path))
    parts.append(Part.of_text(question + options_text(options)))
    return [Message(role="system", parts=[Part.of_text(SYSTEM)]), Message(role="user", parts=parts)]


def audit(messages: list[Message]) -> list[PromptPart]:
    """The exact parts that were sent, in order."""
    return [
        PromptPart(role=m.role, kind=p.kind, text=p.text, image=p.image_path, label=p.label)
        for m in messages
        for p in m.parts
    ]
