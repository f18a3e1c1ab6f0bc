"""Seek accuracy per key (global, region, fused) on a real MVTec-layout dataset, over several
random splits: per split, N defect images per type are the knowledge (document folders) with M
normal references per category, and up to L other defect images per type are the queries.

    python benchmarks/seek_keys.py DATASET --examples 3 --references 16 --limit 20 --splits 3

Prints type top-1 / top-3 and the type prediction's accuracy per key and split, and their mean.
Real data only: a choice that wins on generated data alone is suspect."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("--strategy", default="topk")
    parser.add_argument("--json", type=Path, help="Also write the per-split figures here.")
    args = parser.parse_args()

    from kbengine.core.settings import Settings
    from kbengine.evaluation.seek import eval_seek

    figures: dict[str, list[tuple[float, float, float | None]]] = {}
    for split in range(args.splits):
        report = eval_seek(
            args.dataset,
            Settings(encoder="packaged"),
            strategy=args.strategy,
            k=args.k,
            limit=args.limit,
            examples=args.examples,
            references=args.references,
            split_seed=split,
        )
        for key, score in report.overall.keys.items():
            figures.setdefault(key, []).append((score.top1, score.top3, score.type_accuracy))
            print(
                f"split {split} {key:7s} top-1 {score.top1:.3f} top-3 {score.top3:.3f} "
                f"type {score.type_accuracy if score.type_accuracy is None else round(score.type_accuracy, 3)} "
                f"({score.queries} queries)",
                flush=True,
            )
    print(f"mean over {args.splits} split(s), {args.examples} example(s)/type, {args.references} references:")
    for key, rows in figures.items():
        values = np.array([[np.nan if v is None else v for v in row] for row in rows], float)
        top1, top3, typed = np.nanmean(values, axis=0)
        print(f"  {key:7s} top-1 {top1:.3f}  top-3 {top3:.3f}  type {typed:.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
