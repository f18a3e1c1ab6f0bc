"""Detect under load: per-call p50 of ``detect`` with 1, 2 and 4 concurrent processes on this
machine's cores, each started as a user starts it: the default environment, no ``KBENGINE_*``
thread variables (the fair default of ``kbengine/core/threads.py``: a share of the cores per live
process, passive OpenMP waits), beside the single-process p50.

    python benchmarks/load.py [--streams 1 2 4] [--calls 20] [--policies default naive workers]

Policies: ``default`` (no variables), ``naive`` (the old default: every process takes every core,
``KBENGINE_SHARE_CORES=0``, libgomp's default spin ``GOMP_SPINCOUNT=300000``), ``workers``
(``KBENGINE_WORKERS`` = the number of processes, cores shared out by hand), ``active`` (the
default with ``OMP_WAIT_POLICY=ACTIVE``). Each process builds its own memory bank from 16
generated 256x256 parts (packaged encoder), warms up, waits for the others, then times
``--calls`` detections. The issue's bars, in the default environment: at most 2.0x the single
process with 2 processes on 2 cores, 4.5x with 4.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def worker(calls: int, ready: Path, go: Path) -> None:
    from kbengine import synth
    from kbengine.core.banks.memory_bank import build_bank
    from kbengine.core.banks.references import ReferenceBank
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(encoder="packaged", kb=Path(tmp) / "kb")  # the environment's KBENGINE_* apply
        with KnowledgeBase.open(settings=settings) as kb:
            detector = kb.detector
            normals = [synth.sample("tile", None, 61_000 + i, 256)[0] for i in range(16)]
            queries = [synth.sample("tile", ("crack", "stain", None)[i % 3], 60_000 + i, 256)[0] for i in range(8)]
            bank = ReferenceBank("tile", "load", build_bank(kb.encoder, normals))
            plan = detector.plan("tile", "references", bank=bank)
            for image in queries[:3]:
                detector.run(detector.load(image), plan)
            ready.touch()
            while not go.exists():
                time.sleep(0.01)
            times = []
            for i in range(calls):
                start = time.perf_counter()
                detector.run(detector.load(queries[i % len(queries)]), plan)
                times.append((time.perf_counter() - start) * 1000)
    import torch

    print(json.dumps({"times": times, "threads": torch.get_num_threads()}))


POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "naive": {"KBENGINE_SHARE_CORES": "0", "GOMP_SPINCOUNT": "300000"},
    "workers": {"KBENGINE_SHARE_CORES": "0", "KBENGINE_WORKERS": "{streams}"},
    "active": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def run(streams: int, calls: int, policy: str) -> tuple[float, int]:
    """The p50 over every call of ``streams`` concurrent processes, and their torch threads."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KBENGINE_", "OMP_", "GOMP_", "MKL_"))}
        env.update({k: v.format(streams=streams) for k, v in POLICIES[policy].items()})
        go = folder / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(calls), str(folder / f"ready{i}"), str(go)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(streams)
        ]
        while not all((folder / f"ready{i}").exists() for i in range(streams)):
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("a worker failed")
            time.sleep(0.05)
        go.touch()
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    times = [t for r in results for t in r["times"]]
    return float(np.percentile(times, 50)), int(results[0]["threads"])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--calls", type=int, default=20, help="Timed detections per process.")
    parser.add_argument("--policies", nargs="+", default=["default"], choices=list(POLICIES))
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"detect p50 per call, {cores} cores, 256x256 parts, 16 references")
    print(f"{'streams':>7} {'policy':>8} {'threads':>7} {'p50 ms':>8} {'x single':>8}")
    single: dict[str, float] = {}
    for streams in args.streams:
        for policy in args.policies:
            p50, threads = run(streams, args.calls, policy)
            single.setdefault(policy, p50)
            print(f"{streams:>7} {policy:>8} {threads:>7} {p50:>8.1f} {p50 / single[policy]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
