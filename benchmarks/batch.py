"""Batch detect: photos/s of ``kb.detect_many`` (one encoder pass per batch) against ``kb.detect``
one photo at a time, on the same 32 generated 256x256 parts with 16 normal references.

    python benchmarks/batch.py [--photos 32] [--batch-size 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from kbengine import synth
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dataset = synth.write_mvtec(root / "data", {"tile": ("crack",)}, n_train=16, n_test_good=0, n_test_defect=1)
        photos = []
        for i in range(args.photos):
            path = root / "photos" / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            synth.sample("tile", ("crack", "stain", None)[i % 3], 90_000 + i, 256)[0].save(path)
            photos.append(path)
        with KnowledgeBase.open(settings=Settings(encoder="packaged", kb=root / "kb")) as kb:
            kb.ingest([dataset])
            kb.detect(photos[0], "tile")  # bank built and weights warm
            single, batched = [], []
            for _ in range(args.runs):
                start = time.perf_counter()
                for photo in photos:
                    kb.detect(photo, "tile")
                single.append(len(photos) / (time.perf_counter() - start))
                start = time.perf_counter()
                for _ in kb.detect_many(photos, "tile", batch_size=args.batch_size):
                    pass
                batched.append(len(photos) / (time.perf_counter() - start))
    one, many = float(np.median(single)), float(np.median(batched))
    print(f"one by one: {one:.1f} photos/s; detect_many (batch {args.batch_size}): {many:.1f} photos/s")
    print(f"ratio: {many / one:.2f}x")


if __name__ == "__main__":
    main()
