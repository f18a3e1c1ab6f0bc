"""Lifecycle benchmark: snapshot create/restore seconds, migrate rate (locks/s) both ways, and the
time to remove one document (``kb.remove``), on knowledge bases of random locks.

    python benchmarks/lifecycle.py                    # 10k and 100k locks
    python benchmarks/lifecycle.py --sizes 10000      # a quick run
    KBENGINE_QDRANT_URL=http://localhost:6333 python benchmarks/lifecycle.py --sizes 10000 --server

Each knowledge base is embedded (qdrant-edge), written straight to the store: locks of the
packaged encoder's dimensions (image locks with an image vector and a blob of ``--blob-kb`` KiB
for one lock in ``--blob-every``, text locks with a text vector), ten locks per document, a source
marker per document, lock payloads of the real shape (``LockPayload``). Migrate goes to
qdrant-client's in-process ``:memory:`` mode (``--server``: to the server at KBENGINE_QDRANT_URL,
into a throwaway collection) and back to a new embedded knowledge base. Remove is ``kb.remove``
of one document on the embedded store (selection, its source marker, its locks, region locks).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from kbengine.core.blobs import BlobStore
from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.schemas import KnowledgeDocument, LockPayload, SourceMarker
from kbengine.core.settings import Settings
from kbengine.core.store import StorePoint, get_store
from kbengine.facade import KnowledgeBase
from kbengine.lifecycle import create_snapshot, migrate, restore_snapshot

LOCKS_PER_DOC = 10
NAMESPACE = uuid.UUID("6f1c1b7e-3a43-4c55-9d43-0d1f6b8f2a10")


def identity() -> EncoderIdentity:
    from kbengine.core.encoders.packaged import PackagedEncoder

    return PackagedEncoder().identity


def build(root: Path, n: int, ident: EncoderIdentity, blob_every: int, blob_kb: int) -> list[str]:
    """An embedded knowledge base of ``n`` random locks under ``root``; the document ids."""
    rng = np.random.default_rng(0)
    settings = Settings(kb=root)
    store = get_store(settings)
    blobs = BlobStore(root / "blobs")
    store.ensure_collection(ident)
    doc_ids = []
    batch: list[StorePoint] = []
    for d in range(0, n, LOCKS_PER_DOC):
        category, defect = f"part{d % 7}", f"defect{d % 5}"
        source = f"/plant/manuals/doc{d // LOCKS_PER_DOC}.pdf"
        doc = KnowledgeDocument(
            doc_id=str(uuid.uuid5(NAMESPACE, source)),
            domain="industrial",
            category=category,
            defect_type=defect,
            title=f"{category} {defect}",
            source=source,
        )
        doc_ids.append(doc.doc_id)
        for i in range(d, min(d + LOCKS_PER_DOC, n)):
            is_image = i % 2 == 0
            blob = None
            if is_image and i % blob_every == 0:
                blob = blobs.put_bytes(rng.bytes(blob_kb * 1024), ".png")
            payload = LockPayload.of(
                doc,
                kind="image" if is_image else "text",
                source=source,
                source_sha="0" * 64,
                sha256=f"{i:064x}",
                encoder=ident.name,
                locator=f"lock:{i}",
                blob=blob,
                text=None if is_image else f"chunk {i} " * 40,
            )
            name, dim = ("image", ident.image_dim) if is_image else ("text", ident.text_dim or ident.image_dim)
            batch.append(
                StorePoint(
                    id=str(uuid.uuid5(NAMESPACE, str(i))),
                    vectors={name: rng.normal(size=dim).astype(np.float32)},
                    payload=payload.model_dump(),
                )
            )
        marker = SourceMarker(source=source, source_sha="0" * 64, unit="pdf", locks=LOCKS_PER_DOC, documents=1)
        batch.append(StorePoint(id=str(uuid.uuid5(NAMESPACE, source)), vectors={}, payload=marker.model_dump()))
        if len(batch) >= 2048:
            store.upsert(batch)
            batch = []
    store.upsert(batch)
    store.finish_writes()
    store.close()
    return doc_ids


def run(n: int, work: Path, ident: EncoderIdentity, args: argparse.Namespace) -> dict[str, float]:
    source_dir = work / f"kb-{n}"
    start = time.perf_counter()
    doc_ids = build(source_dir, n, ident, args.blob_every, args.blob_kb)
    result: dict[str, float] = {"build_s": time.perf_counter() - start}
    with KnowledgeBase(Settings(kb=source_dir), get_store(Settings(kb=source_dir))) as kb:
        snap = create_snapshot(kb, work / f"kb-{n}.tar.zst")
        result["snapshot_s"] = snap.seconds
        result["snapshot_mib"] = snap.bytes / 2**20
        restored = restore_snapshot(work / f"kb-{n}.tar.zst", Settings(kb=work / f"restored-{n}"))
        result["restore_s"] = restored.seconds
        url = os.environ.get("KBENGINE_QDRANT_URL") if args.server else None
        collection = f"bench{uuid.uuid4().hex[:8]}"
        server_settings = Settings(qdrant_url=url or ":memory:", collection=collection, blob_dir=work / "shared")
        with KnowledgeBase(server_settings, get_store(server_settings)) as server:
            up = migrate(kb, server, batch=args.batch)
            result["migrate_up_per_s"] = up.copied / up.seconds
            laptop = Settings(kb=work / f"laptop-{n}")
            with KnowledgeBase(laptop, get_store(laptop)) as copy:
                down = migrate(server, copy, batch=args.batch)
                result["migrate_down_per_s"] = down.copied / down.seconds
            if url:
                from qdrant_client import QdrantClient

                QdrantClient(url=url, api_key=server_settings.qdrant_api_key).delete_collection(collection)
        victim = doc_ids[len(doc_ids) // 2]
        before = kb.store.count()
        _ = kb.banks  # the encoder loads and ingest (pymupdf) is imported before the clock starts
        import ingest.edit  # noqa: F401

        start = time.perf_counter()
        removed = kb.remove(victim)  # the whole path: selection, markers, locks, region locks
        result["remove_doc_s"] = time.perf_counter() - start
        assert kb.store.count() == before - LOCKS_PER_DOC and removed.sources_removed
    for folder in (source_dir, work / f"restored-{n}", work / f"laptop-{n}", work / "shared"):
        shutil.rmtree(folder, ignore_errors=True)
    (work / f"kb-{n}.tar.zst").unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch", type=int, default=256, help="migrate batch size")
    parser.add_argument("--blob-every", type=int, default=20, help="one image lock in this many has a blob")
    parser.add_argument("--blob-kb", type=int, default=16, help="blob size in KiB")
    parser.add_argument("--server", action="store_true", help="migrate to KBENGINE_QDRANT_URL instead of :memory:")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = parser.parse_args()
    ident = identity()
    print(f"encoder {ident.name}: image {ident.image_dim}-d, text {ident.text_dim}-d; {LOCKS_PER_DOC} locks/document")
    target = "server" if args.server else ":memory:"
    print(
        f"{'locks':>7s} {'build s':>8s} {'snap s':>7s} {'snap MiB':>8s} {'restore s':>9s} "
        f"{'->' + target + ' /s':>14s} {'->embedded /s':>14s} {'remove doc s':>12s}"
    )
    with tempfile.TemporaryDirectory(prefix="kbengine-lifecycle-", dir=args.work) as tmp:
        for n in args.sizes:
            r = run(n, Path(tmp), ident, args)
            print(
                f"{n:7d} {r['build_s']:8.1f} {r['snapshot_s']:7.2f} {r['snapshot_mib']:8.1f} {r['restore_s']:9.2f} "
                f"{r['migrate_up_per_s']:14.0f} {r['migrate_down_per_s']:14.0f} {r['remove_doc_s']:12.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
