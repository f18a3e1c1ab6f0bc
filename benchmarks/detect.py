"""Detect benchmark: per-image ``detect`` latency (p50/p95) and peak RSS, per encoder and number
of normal references, on generated 256x256 parts.

    python benchmarks/detect.py                        # packaged, and a random-init ViT-B-16 CLIP
    python benchmarks/detect.py --encoders packaged --refs 1 16 64 --images 30

Each encoder runs in a fresh process (peak RSS is per process). The packaged encoder uses normal
references only; the CLIP model (random weights: speed only) runs both zero-shot and references
("auto"). The memory bank is built once per reference count (its time is printed) and detect is
timed on defective and normal images alike.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def one(encoder_name: str, refs: list[int], images: int) -> dict[str, object]:
    from PIL import Image

    from kbengine import synth
    from kbengine.core.banks.memory_bank import build_bank
    from kbengine.core.banks.references import ReferenceBank
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase
    from reasoning.expert.detector import DetectionPlan

    settings = Settings(encoder="packaged")
    if encoder_name != "packaged":
        settings = Settings(encoder="open_clip", clip_model=encoder_name, clip_pretrained="random")
    queries = [synth.sample("tile", ("crack", "stain", None)[i % 3], 60_000 + i, 256)[0] for i in range(images)]
    normals = [synth.sample("tile", None, 61_000 + i, 256)[0] for i in range(max(refs))]
    results: dict[str, object] = {"encoder": encoder_name}
    with tempfile.TemporaryDirectory() as tmp:
        local = settings.model_copy(update={"kb": Path(tmp) / "kb"})
        with KnowledgeBase.open(settings=local) as kb:
            detector = kb.detector
            kb.encoder.embed_images(queries[:1])  # load weights outside the timings
            for n in refs:
                start = time.perf_counter()
                bank = build_bank(kb.encoder, normals[:n])
                build = time.perf_counter() - start
                plan = detector.plan("tile", "references", bank=ReferenceBank("tile", f"bench:{n}", bank))

                def once(image: Image.Image, plan: DetectionPlan = plan) -> None:
                    detector.run(detector.load(image), plan)

                once(queries[0])  # warm up
                times = []
                for image in queries:
                    start = time.perf_counter()
                    once(image)
                    times.append((time.perf_counter() - start) * 1000)
                results[str(n)] = {
                    "p50": float(np.percentile(times, 50)),
                    "p95": float(np.percentile(times, 95)),
                    "bank_s": build,
                    "bank_patches": len(bank.patches),
                }
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", nargs="+", default=["packaged", "ViT-B-16"])
    parser.add_argument("--refs", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.refs, args.images)))
        return
    print(f"detect benchmark: 256x256 generated tiles, {args.images} images per setting")
    print(f"{'encoder':>10} {'refs':>5} {'p50 ms':>8} {'p95 ms':>8} {'bank s':>7} {'patches':>8}")
    for encoder in args.encoders:
        command = [sys.executable, __file__, "--child", encoder, "--images", str(args.images), "--refs"]
        child = subprocess.run([*command, *map(str, args.refs)], capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{encoder} failed")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        for n in args.refs:
            r = result[str(n)]
            print(f"{encoder:>10} {n:>5} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['bank_s']:>7.1f} {r['bank_patches']:>8}")
        print(f"{encoder:>10} peak RSS {result['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
