"""Seek benchmark: latency of each Q2K stage at N locks in the embedded store, and peak RSS.

    python benchmarks/seek.py                       # N = 1k, 10k, 100k, each in a fresh process
    python benchmarks/seek.py --sizes 10000 --queries 50

The locks are random unit vectors of the packaged encoder's dimension (1280), each its own
document (so M = 256 candidate locks are 256 candidate documents: the sampler's worst case),
with category/defect-type payloads. The queries are generated part photos embedded by the real
packaged encoder. Printed per N, p50/p95 in ms over the queries:

- key: the encoder's per-image key embedding;
- search: the store's top-M search alone;
- topk, kde, mmr: ``kb.seek`` end to end (key + search + selection + result) per strategy;
- sample:<strategy>: the selection stage alone (from the result's diagnostics);
- kde-topk: what KDE sampling adds over top-k, paired per query (the selection stages);
- global:tile, auto:tile: ``kb.seek`` of a generated tile photo (256 px) with the category given,
  the global key alone and the default (the region key fused: the photo's patches scored against
  the tile's 16 normal references, its region descriptor, the region search); auto-global: what the
  region key adds, paired per query; auto:inferred: the default without a category (inferred from
  the nearest knowledge);
- the first seek (the type centroids come from the cache the ingesting writer left; the region
  centroids are built then);
- the writer's type centroids: computed from every lock once (as after the first ingest), then
  extended by the references' ingest with its new locks only;
- peak RSS of a process that opens the filled store and runs default seeks (child processes fill
  it and ingest the tile's references, as writers do), and of the process that measured the
  above, every strategy included: MMR reads its candidates' vectors, and qdrant-edge maps the
  vector files a second time for that (about 100 MiB more at 100k).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np


def fill(kb_path: Path, n: int, dim: int, text_dim: int | None, name: str, region_dim: int, seed: int = 0) -> float:
    """Write ``n`` random locks (and one source marker per 1000) straight into the store; every
    tenth also gets a random region lock (so a region search has n/10 candidates to rank)."""
    from kbengine.core.encoders.base import EncoderIdentity
    from kbengine.core.schemas import KnowledgeDocument, LockPayload, SourceMarker
    from kbengine.core.settings import Settings
    from kbengine.core.store import StorePoint, get_store

    rng = np.random.default_rng(seed)
    store = get_store(Settings(kb=kb_path))
    backend, _, model = name.partition(":")
    identity = EncoderIdentity(
        backend=backend, model=model, weights="", image_dim=dim, text_dim=text_dim, joint_space=False
    )
    store.ensure_collection(identity, region_dim)

    def payload(i: int) -> dict[str, object]:
        source = f"/bench/{i // 1000}"
        document = KnowledgeDocument(
            doc_id=f"doc{i}",
            domain="industrial",
            category=f"cat{i % 10}",
            defect_type=f"defect{i % 5}",
            title=f"document {i}",
            source=source,
        )
        lock = LockPayload.of(
            document, kind="image", source=source, source_sha="0", sha256=str(i), encoder=name, locator="image"
        )
        return lock.model_dump()

    start = time.perf_counter()
    for lo in range(0, n, 5000):
        count = min(5000, n - lo)
        vectors = rng.normal(size=(count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        batch = [
            StorePoint(
                id=str(uuid.UUID(int=(lo + i) + 1)),
                vectors={"image": vectors[i]},
                payload=payload(lo + i),
            )
            for i in range(count)
        ]
        regions = rng.normal(size=(count, region_dim)).astype(np.float32)
        regions /= np.linalg.norm(regions, axis=1, keepdims=True)
        batch += [
            StorePoint(
                id=str(uuid.UUID(int=10**9 + lo + i)),
                vectors={"region": regions[i]},
                payload={**payload(lo + i), "kind": "region", "category": "tile", "region_of": "-", "bank": "-"},
            )
            for i in range(0, count, 10)
        ]
        store.upsert(batch)
    markers = [
        StorePoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-source-{s}")),
            vectors={},
            payload=SourceMarker(source=f"/bench/{s}", source_sha="0").model_dump(),
        )
        for s in range((n + 999) // 1000)
    ]
    store.upsert(markers)
    store.finish_writes()
    store.close()
    return time.perf_counter() - start


def ingest(kb_path: Path, references: Path, seconds: Any) -> None:
    """Ingest ``references`` as a writer process does (banks, region locks, the type centroids).
    The filled locks stand for earlier ingests, so their type centroids are computed and cached
    first (timed: what every ingest paid before it extended them with its new locks only)."""
    from kbengine.facade import KnowledgeBase

    with KnowledgeBase.open(kb_path, encoder="packaged") as kb:
        start = time.perf_counter()
        kb.types.get()
        seconds.put(time.perf_counter() - start)
        start = time.perf_counter()
        kb.ingest([references])
        seconds.put(time.perf_counter() - start)


def query_photo(i: int) -> Any:
    """The ``i``-th query photo: a generated tile, fabric or disc with a crack, stain or scratch."""
    from kbengine import synth

    return synth.sample(("tile", "fabric", "disc")[i % 3], ("crack", "stain", "scratch")[i % 3], 70_000 + i)[0]


def default_seeks(kb_path: Path, queries: int, peak: Any) -> None:
    """Peak RSS of a process that opens the store and runs default seeks (KDE, the region key
    fused, with and without a category), as ``kbengine seek`` and ``serve`` do."""
    from kbengine import synth
    from kbengine.facade import KnowledgeBase

    with KnowledgeBase.open(kb_path, encoder="packaged") as kb:
        for i in range(queries):
            kb.seek(query_photo(i))
            tile = synth.sample("tile", "crack", 71_000 + i, 256)[0]
            kb.seek(tile, category="tile")
            kb.seek(tile)
    peak.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def one(n: int, queries: int) -> dict[str, object]:
    from kbengine import synth
    from kbengine.core.banks.region import region_dim
    from kbengine.core.store import Where
    from kbengine.facade import KnowledgeBase

    with tempfile.TemporaryDirectory() as tmp:
        kb_path = Path(tmp) / "kb"
        with KnowledgeBase.open(Path(tmp) / "probe", encoder="packaged") as probe:
            identity = probe.encoder.identity
            dim = region_dim(probe.encoder)
        # filled by a child process: the peak RSS below is what a process that opens a knowledge
        # base of n locks and seeks in it needs, not what generating n random vectors took
        start = time.perf_counter()
        child = multiprocessing.get_context("spawn").Process(
            target=fill, args=(kb_path, n, identity.image_dim, identity.text_dim, identity.name, dim)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"filling the store failed (exit code {child.exitcode})")
        fill_s = time.perf_counter() - start
        references = synth.write_mvtec(Path(tmp) / "tile", {"tile": ("crack",)}, n_train=16, n_test_good=0,
                                       n_test_defect=2, size=256)  # fmt: skip
        # the tile's normal references (a bank and real region locks) are ingested by a writer
        # process too, which also caches the type centroids, as any ingest does
        seconds = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=ingest, args=(kb_path, references, seconds))
        child.start()
        centroids_s, bank_s = seconds.get(), seconds.get()
        child.join()
        images = [query_photo(i) for i in range(queries)]
        peak = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(target=default_seeks, args=(kb_path, queries, peak))
        child.start()
        default_rss = peak.get()
        child.join()
        with KnowledgeBase.open(kb_path, encoder="packaged") as kb:
            encoder = kb.encoder
            encoder.embed_images(images[:1])  # load the weights outside the timings
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            kb.seek(images[0], k=5)  # the type centroids come from the writer's cache
            first = (time.perf_counter() - start) * 1000
            kb.seek(images[0], k=5, category="tile")  # builds the region centroids once
            names = ("key", "search", "topk", "kde", "mmr", "sample:topk", "sample:kde", "sample:mmr", "kde-topk")
            names += ("global:tile", "auto:tile", "auto-global", "auto:inferred")
            timings: dict[str, list[float]] = {name: [] for name in names}
            stages: dict[str, list[float]] = {}
            for image in images:
                start = time.perf_counter()
                key = encoder.embed_images([image])[0]
                timings["key"].append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                kb.store.search("image", key, 256, Where.of().excluding(defect_type="good"))
                timings["search"].append((time.perf_counter() - start) * 1000)
                for strategy in ("topk", "kde", "mmr"):
                    start = time.perf_counter()
                    result = kb.seek(image, k=5, strategy=strategy)
                    timings[strategy].append((time.perf_counter() - start) * 1000)
                    timings[f"sample:{strategy}"].append(result.diagnostics.timings_ms["sample"])
                    if strategy == "kde":
                        for stage, ms in result.diagnostics.timings_ms.items():
                            stages.setdefault(stage, []).append(ms)
                timings["kde-topk"].append(timings["sample:kde"][-1] - timings["sample:topk"][-1])
                tile = synth.sample("tile", "crack", 71_000 + len(timings["auto:tile"]), 256)[0]
                for key in ("global", "auto"):
                    start = time.perf_counter()
                    result = kb.seek(tile, k=5, strategy="kde", category="tile", key=key)
                    timings[f"{key}:tile"].append((time.perf_counter() - start) * 1000)
                assert result.diagnostics.region.used
                timings["auto-global"].append(timings["auto:tile"][-1] - timings["global:tile"][-1])
                start = time.perf_counter()
                kb.seek(tile, k=5, strategy="kde")
                timings["auto:inferred"].append((time.perf_counter() - start) * 1000)
        return {
            "locks": n,
            "fill_s": fill_s,
            "references_ingest_s": bank_s,
            "all_centroids_s": centroids_s,
            "first_seek_ms": first,
            **{name: percentiles(values) for name, values in timings.items()},
            "kde_stages_p50": {stage: float(np.median(v)) for stage, v in stages.items()},
            "peak_rss_before_seek_mib": rss_before,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "default_peak_rss_mib": default_rss,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.queries)))
        return
    header = f"{'locks':>8} {'stage':>12} {'p50 ms':>8} {'p95 ms':>8}"
    print(f"seek benchmark: packaged encoder, M=256, k=5, {args.queries} queries per size")
    for n in args.sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--queries", str(args.queries)],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"size {n} failed")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        print(header)
        stages_shown = ("key", "search", "topk", "kde", "mmr", "sample:topk", "sample:kde", "sample:mmr", "kde-topk")
        for stage in (*stages_shown, "global:tile", "auto:tile", "auto-global", "auto:inferred"):
            p = result[stage]
            print(f"{n:>8} {stage:>12} {p['p50']:>8.1f} {p['p95']:>8.1f}")
        stages = ", ".join(f"{k} {v:.1f}" for k, v in result["kde_stages_p50"].items())
        print(
            f"{n:>8} kde stages p50 ms: {stages}; first seek {result['first_seek_ms']:.0f} ms; "
            f"fill {result['fill_s']:.0f} s; every type centroid computed in {result['all_centroids_s']:.1f} s; "
            f"16 references ingested (bank + region locks, type centroids extended) in "
            f"{result['references_ingest_s']:.1f} s"
        )
        print(
            f"{n:>8} peak RSS: {result['default_peak_rss_mib']:.0f} MiB in a process running default seeks; "
            f"{result['peak_rss_mib']:.0f} MiB in the one that also runs top-k and MMR "
            f"({result['peak_rss_before_seek_mib']:.0f} MiB before its first seek: the encoder)"
        )


if __name__ == "__main__":
    main()
