"""Ask benchmark: end-to-end ``kb.ask`` latency with the ``none`` backend (AD Expert + retrieval +
the grounded report) on the demo knowledge base, the overhead the knowledge and expert steps put in
front of an MLLM call, and peak RSS.

    python benchmarks/ask.py --queries 30
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# benchmarks/ingest.py is named like the top-level ``ingest`` package; keep this folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()

    from kbengine import synth
    from kbengine.facade import KnowledgeBase

    question = "Is there a defect? What type, where, and what are its causes and consequences?"
    parts = [("disc", "scratch"), ("tile", "crack"), ("fabric", "hole"), ("disc", None), ("tile", "stain")]
    with tempfile.TemporaryDirectory() as tmp:
        material = synth.write_demo_material(Path(tmp) / "material")
        with KnowledgeBase.open(Path(tmp) / "kb", encoder="packaged") as kb:
            kb.ingest(list(material.values()))
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            for category, _ in parts[:3]:  # build the memory banks and centroids once (cached afterwards)
                kb.ask(synth.sample(category, None, 1)[0], question, category=category)
            total, overhead, separate = [], [], []
            for i in range(args.queries):
                category, defect = parts[i % len(parts)]
                image = synth.sample(category, defect, 50_000 + i)[0]
                start = time.perf_counter()
                answer = kb.ask(image, question, category=category)
                total.append((time.perf_counter() - start) * 1000)
                overhead.append(answer.timings_ms.get("expert", 0.0) + answer.timings_ms.get("knowledge", 0.0))
                start = time.perf_counter()  # the same work as two calls, each with its own encoder pass
                kb.seek(image.copy(), k=3, category=category)
                kb.detect(image.copy(), category)
                separate.append((time.perf_counter() - start) * 1000)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ask (none backend), {args.queries} queries on the demo knowledge base, packaged encoder")
    print(f"end to end:            p50 {np.percentile(total, 50):7.1f} ms   p95 {np.percentile(total, 95):7.1f} ms")
    p50, p95 = np.percentile(overhead, 50), np.percentile(overhead, 95)
    print(f"knowledge + expert:    p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    ratio = np.median(np.array(total) / np.array(separate))
    print(f"seek + detect:         p50 {np.percentile(separate, 50):7.1f} ms   ask / (seek + detect) {ratio:.2f}")
    print(f"peak RSS {rss:.0f} MiB ({rss_before:.0f} MiB after ingest, before the first ask)")


if __name__ == "__main__":
    main()
