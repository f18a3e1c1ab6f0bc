"""Store benchmark: upsert rate and p50/p95 search latency (plain and filtered) per backend.

    python benchmarks/store.py                 # 10k and 100k random 768-d locks
    python benchmarks/store.py --sizes 10000 --dim 1280 --client-local

Backends: the embedded qdrant-edge store (exact, and with its HNSW index after ``optimize``), and
qdrant-client's in-process ``:memory:`` mode; ``--client-local`` adds qdrant-client's on-disk
local mode (slow: one SQLite commit per point; only sizes up to 10k are run).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.settings import Settings
from kbengine.core.store import Store, StorePoint, Where, get_store


def points(n: int, dim: int, rng: np.random.Generator) -> list[StorePoint]:
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    return [
        StorePoint(
            id=str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | i)),
            vectors={"image": vectors[i]},
            payload={"category": f"c{i % 10}", "defect_type": f"d{i % 7}", "kind": "image", "source": f"s{i}"},
        )
        for i in range(n)
    ]


def measure(store: Store, data: list[StorePoint], dim: int, rng: np.random.Generator, queries: int) -> dict[str, float]:
    store.ensure_collection(
        EncoderIdentity(backend="bench", model="random", weights="", image_dim=dim, text_dim=None, joint_space=False)
    )
    start = time.perf_counter()
    for i in range(0, len(data), 1000):
        store.upsert(data[i : i + 1000])
    upsert_s = time.perf_counter() - start
    start = time.perf_counter()
    store.finish_writes()
    finish_s = time.perf_counter() - start
    result = {"upsert_per_s": len(data) / upsert_s, "finish_s": finish_s}
    for label, where in (("plain", None), ("filtered", Where.of(category="c3"))):
        times = []
        for _ in range(queries):
            q = rng.normal(size=dim).astype(np.float32)
            t = time.perf_counter()
            store.search("image", q, 256, where)
            times.append((time.perf_counter() - t) * 1000)
        result[f"{label}_p50_ms"] = float(np.percentile(times, 50))
        result[f"{label}_p95_ms"] = float(np.percentile(times, 95))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--client-local", action="store_true", help="also qdrant-client's on-disk local mode")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{'backend':34s} {'N':>7s} {'upsert/s':>9s} {'finish s':>8s} {'p50 ms':>7s} {'p95 ms':>7s} "
        f"{'filt p50':>8s} {'filt p95':>8s}"
    )
    for n in args.sizes:
        data = points(n, args.dim, rng)
        configs: list[tuple[str, dict[str, object]]] = [
            ("edge exact (no index)", {"hnsw_threshold": 10**12}),
            ("edge HNSW (optimize after ingest)", {"hnsw_threshold": 0}),
            ("qdrant-client :memory:", {"qdrant_url": ":memory:"}),
        ]
        if args.client_local and n <= 10_000:
            configs.append(("qdrant-client local (disk)", {"local_path": True}))
        for label, extra in configs:
            with tempfile.TemporaryDirectory() as tmp:
                if extra.pop("local_path", False):
                    extra["qdrant_url"] = f"path:{tmp}/q"
                store = get_store(Settings(kb=Path(tmp) / "kb", **extra))  # type: ignore[arg-type]
                try:
                    r = measure(store, data, args.dim, rng, args.queries)
                finally:
                    store.close()
            print(
                f"{label:34s} {n:7d} {r['upsert_per_s']:9.0f} {r['finish_s']:8.1f} {r['plain_p50_ms']:7.1f} "
                f"{r['plain_p95_ms']:7.1f} {r['filtered_p50_ms']:8.1f} {r['filtered_p95_ms']:8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
