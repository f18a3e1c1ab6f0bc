"""What each fed-back photo buys: seek type top-1 and detect image AUROC as inspections teach the
knowledge base (``kb.feedback``, the path ``kbengine feedback`` and ``POST /v1/feedback`` take).

    python benchmarks/learning_curve.py ../shared/data/magnetic_tile/magnetic_tile
    python benchmarks/learning_curve.py DATASET --steps 1 2 4 8 --queries 20 --json out.json

DATASET is one MVTec-layout category (``train/good``, ``test/<type>``). The knowledge base
starts from 16 normal references (the first of ``train/good`` by name) and 1 example per defect
type (the first of ``test/<type>`` by name), ingested as a plant would. Then the truth of the
next photos of each type is fed back in that fixed order until each type has had 1, 2, 4, 8
(``--steps``) fed back. At each step the same held-back queries are measured: the last
``--queries`` photos of each defect type (never fed back) for seek type top-1 (the first hit's
defect type, with the category given), and those plus as many ``test/good`` photos for detect
image AUROC. ``--good-feedback N``: also feed back N ``test/good`` photos (not queried) per step,
to see what normal references bought for detection.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REFERENCES = 16


def auroc(normal: list[float], anomalous: list[float]) -> float:
    """Mann-Whitney: the probability that an anomalous score exceeds a normal one (ties count half)."""
    if not normal or not anomalous:
        return float("nan")
    wins = sum((a > n) + 0.5 * (a == n) for a in anomalous for n in normal)
    return wins / (len(normal) * len(anomalous))


def images(folder: Path) -> list[Path]:
    suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="One MVTec-layout category folder.")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="Fed back per type, cumulative.")
    parser.add_argument("--queries", type=int, default=20, help="Held-back queries per defect type (and good).")
    parser.add_argument("--good-feedback", type=int, default=0, help="Normal photos fed back per step.")
    parser.add_argument("--json", type=Path, help="Write the curve here.")
    args = parser.parse_args()

    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    root: Path = args.dataset
    category = root.name.lower()
    goods = images(root / "train" / "good")
    types = {d.name: images(d) for d in sorted((root / "test").iterdir()) if d.is_dir() and d.name != "good"}
    test_good = images(root / "test" / "good")
    most = max(args.steps)
    for name, photos in types.items():
        if len(photos) < 1 + most + 1:
            sys.exit(f"{name}: {len(photos)} photos, need at least {most + 2} (1 example, {most} fed back, 1 query)")
    queries = {name: photos[max(1 + most, len(photos) - args.queries) :] for name, photos in types.items()}
    feed = {name: photos[1 : 1 + most] for name, photos in types.items()}
    good_queries = test_good[-args.queries :]
    good_feed = test_good[: max(0, len(test_good) - args.queries)]

    with tempfile.TemporaryDirectory() as tmp:
        start = Path(tmp) / "start" / category
        (start / "train" / "good").mkdir(parents=True)
        for path in goods[:REFERENCES]:
            shutil.copy(path, start / "train" / "good" / path.name)
        for name, photos in types.items():
            (start / "test" / name).mkdir(parents=True)
            shutil.copy(photos[0], start / "test" / name / photos[0].name)
        settings = Settings(kb=Path(tmp) / "kb", encoder="packaged")
        curve = []
        with KnowledgeBase.open(settings=settings) as kb:
            kb.ingest([start])
            given, good_given = 0, 0
            for step in [0, *args.steps]:
                began = time.perf_counter()
                for name, photos in feed.items():
                    for path in photos[given:step]:
                        kb.feedback(path, category=category, defect_type=name)
                for path in good_feed[good_given : good_given + args.good_feedback * (step > 0)]:
                    kb.feedback(path, category=category, defect_type="good")
                good_given += args.good_feedback * (step > 0)
                fed_seconds = time.perf_counter() - began
                given = step
                hits, total, anomalous = 0, 0, []
                for name, photos in queries.items():
                    for path in photos:
                        result = kb.seek(path, k=3, category=category)
                        hits += bool(result.hits) and result.hits[0].defect_type == name
                        total += 1
                        anomalous.append(kb.detect(path, category).score)
                normal = [kb.detect(path, category).score for path in good_queries]
                row = {
                    "fed_back_per_type": step,
                    "good_fed_back": good_given,
                    "seek_type_top1": round(hits / total, 3),
                    "detect_image_auroc": round(auroc(normal, anomalous), 3),
                    "queries": total,
                    "feedback_seconds": round(fed_seconds, 1),
                }
                curve.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{category}: fed back per type | seek type top-1 | detect image AUROC")
    for row in curve:
        print(f"  {row['fed_back_per_type']:>2} | {row['seek_type_top1']:.3f} | {row['detect_image_auroc']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(root), "curve": curve}, indent=2))


if __name__ == "__main__":
    main()
