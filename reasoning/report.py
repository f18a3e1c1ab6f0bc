"""The ``none`` backend: a deterministic, knowledge-grounded report written from the AD Expert's
``Detection`` and the retrieved documents, with citations. No model, same input -> same text.

On a multiple-choice question it answers what the evidence can decide and abstains on the rest:
- defect or not (options like "Yes"/"No"): the detection's verdict;
- which defect type: the option naming the predicted type (or the first retrieved document's),
  matched on words ("broken_large" ~ "large breakage" share "broken"/"break");
- where: the option naming the strongest region's location ("top left", "center", ...);
anything else (object class, structure, details, analysis) -> no letter, which MMAD scores wrong.
"""

from __future__ import annotations

import re

from kbengine.core.schemas import Detection, SeekHit

SYNONYMS = {"centre": "center", "middle": "center", "central": "center", "upper": "top", "lower": "bottom"}


def _words(text: str) -> set[str]:
    words = re.findall(r"[a-z]+", text.lower().replace("_", " "))
    return {SYNONYMS.get(w, w)[:5] for w in words if len(w) > 2}


def _verdict(det: Detection | None) -> bool | None:
    return det.is_anomalous if det is not None else None


def _defect_type(det: Detection | None, hits: list[SeekHit]) -> str | None:
    if det is not None and det.predicted_defect_type is not None:
        return det.predicted_defect_type.defect_type
    defects = [h for h in hits if not h.is_normal]
    return defects[0].defect_type if defects else None


def choose(question: str, options: dict[str, str], det: Detection | None, hits: list[SeekHit]) -> str | None:
    """The option letter the evidence supports, or None (abstain)."""
    texts = {k: v.strip().lower() for k, v in options.items()}
    q = question.lower()
    verdict = _verdict(det)
    yes_no = [k for k, v in texts.items() if v.startswith(("yes", "no"))]
    if yes_no and len(yes_no) == len(texts) and any(w in q for w in ("defect", "anomal", "flaw", "damage")):
        if verdict is None:
            return None
        wanted = "yes" if verdict else "no"
        return next((k for k in yes_no if texts[k].startswith(wanted)), None)
    if any(w in q for w in ("where", "location", "located", "position")) and det is not None:
        if not det.regions:
            return None
        phrase = _words(det.regions[0].location)

        def jaccard(option: str) -> float:
            words = _words(option)
            return len(phrase & words) / len(phrase | words) if words else 0.0

        scores = {k: jaccard(v) for k, v in texts.items()}
        top = max(scores.values())
        best = [k for k, v in scores.items() if v == top]
        return best[0] if top > 0 and len(best) == 1 else None
    if any(w in q for w in ("type", "kind", "category of the defect", "what defect", "which defect")):
        defect = _defect_type(det, hits)
        if defect is None or verdict is False:
            return None
        target = _words(defect)
        overlap = {k: len(target & _words(v)) for k, v in texts.items()}
        winner = max(overlap, key=lambda k: overlap[k])
        return winner if overlap[winner] > 0 else None
    return None


def cite(hits: list[SeekHit]) -> str:
    lines = []
    for h in hits:
        page = f", page {h.page}" if h.page else ""
        lines.append(f"[{h.rank}] {h.title} — {h.source}{page}")
    return "\n".join(lines)


def write_report(
    question: str,
    det: Detection | None,
    hits: list[SeekHit],
    options: dict[str, str] | None = None,
) -> tuple[str, str | None]:
    """(the report text, the chosen option letter or None)."""
    verdict = _verdict(det)
    defect = _defect_type(det, hits)
    lines: list[str] = []
    if det is None:
        lines.append("No AD Expert findings (no normal references or zero-shot encoder for this category).")
    elif verdict is None:
        lines.append(f"Anomaly score {det.score:.2f}; no calibrated threshold, so no verdict.")
    elif verdict:
        lines.append(f"Defect: yes (anomaly score {det.score:.2f} >= threshold {det.threshold or 0.5:.2f}).")
    else:
        lines.append(f"Defect: no (anomaly score {det.score:.2f} < threshold {det.threshold or 0.5:.2f}).")
    if verdict and defect:
        t = det.predicted_defect_type if det else None
        margin = f", margin {t.margin:.3f}" if t is not None and t.margin is not None else ""
        lines.append(f"Type: {defect.replace('_', ' ')}{margin}.")
    if verdict and det is not None and det.regions:
        where = ", ".join(r.location for r in det.regions[:3])
        lines.append(f"Where: {where} (strongest region {det.regions[0].area_fraction:.1%} of the image).")
    matching = [h for h in hits if h.defect_type == defect] if verdict and defect else []
    source = next((h for h in matching if h.sections.description or h.sections.causes), None)
    if source is not None:
        s = source.sections
        for name, value in (("What it is", s.description), ("Appearance", s.appearance), ("Causes", s.causes),
                            ("Consequences", s.consequences)):  # fmt: skip
            if value:
                lines.append(f"{name}: {value} [{source.rank}]")
    elif verdict and hits:
        lines.append("The knowledge base holds no document for this defect type; closest documents are cited.")
    if hits:
        lines.append("Sources:\n" + cite(hits))
    choice = choose(question, options, det, hits) if options else None
    if options:
        lines.append(
            f"Answer: {choice}" if choice else "Answer: cannot be decided from the knowledge and the findings."
        )
    return "\n".join(lines), choice
