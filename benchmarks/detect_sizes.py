"""Detect on real-size photos: p50 of ``detect`` (references mode, packaged encoder) on 256x256
tiles, 1024x1024 photos and a non-square 1280x720 one, each with 16 normal references of its own
size, beside the p50 of one encoder forward pass measured in the same run (the ratio is the
figure to read: it holds across machines).

    python benchmarks/detect_sizes.py [--images 12]
    KBENGINE_PACKAGED_MODEL=lite2 python benchmarks/detect_sizes.py     # another backbone

Large photos are read as tiles (the category's ``BankProfile``); the bank build time and the
tiles are printed per size. Generated parts (``kbengine.synth``) stand in for photos: the
timings do not depend on what the photo shows.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = ((256, 256), (1024, 1024), (1280, 720))


def p50(times: list[float]) -> float:
    return float(np.percentile(times, 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12, help="Timed detections per size.")
    parser.add_argument("--refs", type=int, default=16, help="Normal references per size.")
    parser.add_argument("--tiles", choices=("off", "auto"), default="auto", help="KBENGINE_DETECT_TILES for the banks.")
    args = parser.parse_args()

    from PIL import Image

    from kbengine import synth
    from kbengine.core.banks.memory_bank import build_bank
    from kbengine.core.banks.references import ReferenceBank
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    def photo(seed: int, size: tuple[int, int], defect: str | None) -> Image.Image:
        side = max(size)
        image = synth.sample("tile", defect, seed, side)[0]
        return image.crop((0, 0, *size))

    with tempfile.TemporaryDirectory() as tmp:
        backend = {} if os.environ.get("KBENGINE_ENCODER") else {"encoder": "packaged"}
        settings = Settings(kb=Path(tmp) / "kb", **backend)  # type: ignore[arg-type]
        with KnowledgeBase.open(settings=settings) as kb:
            encoder, detector = kb.encoder, kb.detector
            probe = photo(1, (256, 256), None)
            encoder.embed_images([probe])
            forward = []
            for _ in range(20):
                start = time.perf_counter()
                encoder.embed_images([probe])
                forward.append((time.perf_counter() - start) * 1000)
            one_pass = p50(forward)
            print(f"encoder {encoder.identity.name}")
            print(f"one encoder forward pass (a 256x256 photo): p50 {one_pass:.1f} ms")
            print(f"{'photo':>10} {'tiles':>6} {'bank s':>7} {'patches':>8} {'p50 ms':>8} {'passes':>7}")
            for size in SIZES:
                normals = [photo(70_000 + i, size, None) for i in range(args.refs)]
                start = time.perf_counter()
                bank = build_bank(encoder, normals, tiles=args.tiles)
                build = time.perf_counter() - start
                plan = detector.plan("tile", "references", bank=ReferenceBank("tile", f"bench:{size}", bank))
                queries = [photo(80_000 + i, size, ("crack", "stain", None)[i % 3]) for i in range(args.images)]
                detector.run(detector.load(queries[0]), plan)  # warm up
                times = []
                for image in queries:
                    start = time.perf_counter()
                    detector.run(detector.load(image), plan)
                    times.append((time.perf_counter() - start) * 1000)
                tiles = "x".join(str(t) for t in bank.profile.tiles)
                median = p50(times)
                print(
                    f"{size[0]:>5}x{size[1]:<4} {tiles:>6} {build:>7.1f} {len(bank.patches):>8} "
                    f"{median:>8.1f} {median / one_pass:>7.1f}"
                )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
