"""Cold start: wall time of a whole ``kbengine seek`` process against ``python -c "import torch"``
and a warm in-process seek, on a small generated knowledge base (the issue's bar: cold seek at
most import torch + warm seek + 0.7 s). Medians of ``--runs`` runs, each a fresh process.

    python benchmarks/cold_start.py [--runs 5]

For where the time goes: ``python -X importtime -m kbengine.cli seek PHOTO --kb DIR``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from kbengine import synth
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        documents = synth.write_documents(root / "documents", n_refs=2)
        photo = root / "query.png"
        synth.sample("tile", "crack", 7, 256)[0].save(photo)
        with KnowledgeBase.open(settings=Settings(encoder="packaged", kb=root / "kb")) as kb:
            kb.ingest([documents])
            kb.seek(photo)
            warm = []
            for _ in range(args.runs):
                start = time.perf_counter()
                kb.seek(kb.query(photo))
                warm.append(time.perf_counter() - start)
        cli = [str(Path(sys.executable).with_name("kbengine")), "seek", str(photo), "--kb", str(root / "kb")]
        torch, cold = [], []
        for _ in range(args.runs):  # interleaved, so a busy moment hits both alike
            torch.append(wall([sys.executable, "-c", "import torch"]))
            cold.append(wall(cli))
    t, w, c = statistics.median(torch), statistics.median(warm), statistics.median(cold)
    print(f"import torch {t:.2f} s, warm seek {1000 * w:.0f} ms, cold kbengine seek {c:.2f} s (medians of {args.runs})")
    print(f"cold - (import torch + warm seek) = {c - t - w:.2f} s (bar 0.7 s)")


if __name__ == "__main__":
    main()
