"""Ingest benchmark: N generated catalogue pages (render + figures + text, embedded with the
packaged encoder, upserted into the embedded store); prints pages/s, peak RSS and store size.

    python benchmarks/ingest_rate.py                # N = 100 and 1000, each in a fresh process
    python benchmarks/ingest_rate.py --pages 100 --repeat 3
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

# This file is named like the top-level ``ingest`` package; keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def dir_size(path: Path) -> int:
    """Bytes on disk (allocated blocks: the store's WAL files are sparse)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def one(pages: int) -> dict[str, float]:
    from kbengine import synth
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        pdf = synth.write_pdf_catalogue(Path(tmp) / "catalogue.pdf", pages=pages)
        with KnowledgeBase.open(Path(tmp) / "kb", encoder="packaged", max_pdf_pages=max(pages, 500)) as kb:
            kb.encoder.embed_texts(["warm up"])  # model loading is not ingest time
            start = time.perf_counter()
            report = kb.ingest(pdf)
            seconds = time.perf_counter() - start
        assert report.ok and report.pages == pages, report.failed
        return {
            "pages": pages,
            "seconds": seconds,
            "pages_per_s": pages / seconds,
            "locks": report.locks_added,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "store_mib": dir_size(Path(tmp) / "kb" / "qdrant") / 2**20,
            "blobs_mib": dir_size(Path(tmp) / "kb" / "blobs") / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child)))
        return
    print(
        f"{'pages':>6s} {'seconds':>8s} {'pages/s':>8s} {'locks':>6s} "
        f"{'peak RSS MiB':>13s} {'store MiB':>10s} {'blobs MiB':>10s}"
    )
    for pages in args.pages:
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(pages)], capture_output=True, text=True, check=True
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r['pages']:6d} {r['seconds']:8.1f} {r['pages_per_s']:8.1f} {r['locks']:6d} "
                f"{r['peak_rss_mib']:13.0f} {r['store_mib']:10.1f} {r['blobs_mib']:10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
