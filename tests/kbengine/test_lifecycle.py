"""The knowledge base's lifecycle: payload updates and raw export/import in both stores, snapshot ->
restore answering seek exactly as the original (and refusing damaged snapshots and overwrites),
migrate embedded -> ``:memory:`` server -> embedded with identical seek results, a kill -9 in the
middle of a migrate then the same command again, and gc keeping a blob two documents share."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.cache import save_arrays
from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import EncoderMismatchError, InvalidInputError, StoreInUseError
from kbengine.core.parts import Parts
from kbengine.core.schemas import SOURCE_KIND, BlobRef, KBInfo, LockLabel
from kbengine.core.settings import Settings
from kbengine.core.store import Store, StorePoint, Where, get_store
from kbengine.core.store.base import META_ID
from kbengine.facade import KnowledgeBase
from kbengine.lifecycle import create_snapshot, migrate, migrate_to, read_snapshot, restore_snapshot
from kbengine.verify import verify
from tests.conftest import open_kb

runner = CliRunner()
QUERIES = [("tile", "crack", 5000), ("disc", "scratch", 5001), ("tile", "stain", 5002)]
IDENTITY = EncoderIdentity(backend="test", model="enc", weights="", image_dim=8, text_dim=4, joint_space=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, material: dict[str, Path], packaged) -> Path:
    """An embedded knowledge base of the generated document folders and PDF catalogue, closed."""
    path = tmp_path_factory.mktemp("lifecycle") / "kb"
    with open_kb(path, packaged) as kb:
        assert kb.ingest([material["documents"], material["catalogue"]]).ok
    return path


@pytest.fixture
def kb_copy(tmp_path: Path, built: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "kb"))


def _queries() -> list:
    return [synth.sample(c, t, seed, 128)[0] for c, t, seed in QUERIES]


def _answers(kb: KnowledgeBase) -> list[list[tuple[str, float]]]:
    """Each query's hits (document, score) with ``kde`` and ``topk``, and its defect-type prediction."""
    found: list[list[tuple[str, float]]] = []
    for image in _queries():
        for result in (kb.seek(image, k=5), kb.seek(image, k=5, strategy="topk", include_normal=True)):
            found.append([(h.doc_id, h.score) for h in result.hits])
            predicted = result.predicted_defect_type
            found.append([(predicted.defect_type, predicted.similarity)] if predicted else [])
    return found


def _same_answers(a: list[list[tuple[str, float]]], b: list[list[tuple[str, float]]]) -> None:
    assert [[doc for doc, _ in hits] for hits in a] == [[doc for doc, _ in hits] for hits in b]
    np.testing.assert_allclose([s for hits in a for _, s in hits], [s for hits in b for _, s in hits], atol=1e-6)


def _info(kb: KnowledgeBase) -> KBInfo:
    return kb.info().model_copy(update={"location": "", "store": ""})


def _same_points(a: Store, b: Store) -> None:
    """The same points, payloads equal and vectors equal up to float32 rounding (qdrant-client's
    local mode normalises cosine vectors again, which may move the last bit)."""
    ours = {p.id: p for batch in a.export() for p in batch}
    theirs = {p.id: p for batch in b.export() for p in batch}
    assert ours.keys() == theirs.keys()
    for pid, point in ours.items():
        assert point.payload == theirs[pid].payload
        assert point.vectors.keys() == theirs[pid].vectors.keys()
        for name, vector in point.vectors.items():
            np.testing.assert_allclose(theirs[pid].vectors[name], vector, atol=1e-6)


def _points(store: Store) -> dict[str, tuple[dict, dict[str, bytes]]]:
    return {
        p.id: (p.payload, {name: np.asarray(v, np.float32).tobytes() for name, v in p.vectors.items()})
        for batch in store.export(batch=50)
        for p in batch
    }


# -- store additions ---------------------------------------------------------------------------


def _small_points(n: int) -> list[StorePoint]:
    rng = np.random.default_rng(0)
    return [
        StorePoint(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"p{i}")),
            vectors={"image": rng.normal(size=8).astype(np.float32)},
            payload={"doc_id": f"d{i % 4}", "category": "a", "defect_type": "x", "kind": "image", "title": "t"},
        )
        for i in range(n)
    ] + [StorePoint(id=str(uuid.uuid5(uuid.NAMESPACE_URL, "m")), vectors={}, payload={"kind": SOURCE_KIND})]


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_set_payload_changes_fields_not_vectors(tmp_path, backend):
    settings = Settings(kb=tmp_path / "kb") if backend == "edge" else Settings(qdrant_url=":memory:", collection="t")
    store = get_store(settings)
    try:
        store.ensure_collection(IDENTITY)
        store.upsert(_small_points(20))
        before = _points(store)
        store.set_payload(Where.of(doc_id="d1"), {"defect_type": "y", "category": "b"})
        assert store.count(Where.of(defect_type="y", category="b")) == 5
        assert store.count(Where.of(defect_type="x")) == 15
        after = _points(store)
        for pid, (payload, vectors) in after.items():
            assert vectors == before[pid][1]  # vectors untouched, bit for bit
            if payload.get("doc_id") == "d1":
                assert payload == {**before[pid][0], "defect_type": "y", "category": "b"}
            else:
                assert payload == before[pid][0]  # other locks, markers and the metadata point untouched
        with pytest.raises(InvalidInputError, match="not a lock payload field"):
            store.set_payload(Where.of(doc_id="d1"), {"colour": "red"})
        with pytest.raises(InvalidInputError, match="kind"):
            store.set_payload(Where.of(doc_id="d1"), {"kind": "text"})
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_export_then_import_gives_the_same_points(tmp_path, backend):
    source_settings = (
        Settings(kb=tmp_path / "a") if backend == "edge" else Settings(qdrant_url=":memory:", collection="a")
    )
    source, target = get_store(source_settings), get_store(Settings(kb=tmp_path / "b"))
    try:
        source.ensure_collection(IDENTITY)
        source.upsert(_small_points(30))
        batches = list(source.export(batch=7))
        assert [len(b) for b in batches] == [7, 7, 7, 7, 4]  # 30 locks, a marker, the metadata
        assert sum(p.id == META_ID for b in batches for p in b) == 1
        with pytest.raises(InvalidInputError, match="batch"):
            next(source.export(batch=0))
        with pytest.raises(Exception, match="metadata point first"):
            target.import_points([p for b in batches for p in b if p.id != META_ID][:3])
        for batch in sorted(batches, key=lambda b: all(p.id != META_ID for p in b)):  # the metadata first
            target.import_points(batch)
        assert target.read_identity() == IDENTITY
        assert _points(target) == _points(source)
        assert list(target.ids()) == sorted(_points(source))
        other = get_store(Settings(kb=tmp_path / "c"))
        try:
            other.ensure_collection(IDENTITY.model_copy(update={"model": "other"}))
            with pytest.raises(EncoderMismatchError):
                other.import_points(next(b for b in batches if any(p.id == META_ID for p in b)))
        finally:
            other.close()
    finally:
        source.close()
        target.close()


# -- snapshot ------------------------------------------------------------------------------------


def test_snapshot_restore_answers_seek_exactly_as_the_original(kb_copy, tmp_path, make_kb):
    original = make_kb(kb_copy)
    (kb_copy / "taxonomy.yaml").write_text("categories: {tile: [tiles]}\n")
    report = create_snapshot(original, tmp_path / "snap.tar.zst")
    assert report.compression == "zstd" and report.locks == original.store.count() and report.blobs > 0
    assert not report.missing_blobs and not report.damaged_blobs
    manifest = read_snapshot(tmp_path / "snap.tar.zst")
    assert manifest.encoder == original.identity and manifest.locks == report.locks
    assert sum(manifest.kinds.values()) == manifest.locks
    assert sum(name.startswith("blobs/") for name in manifest.members) == manifest.blobs == report.blobs
    restored = restore_snapshot(tmp_path / "snap.tar.zst", Settings(kb=tmp_path / "restored"))
    assert restored.points == manifest.points and not restored.replaced
    again = make_kb(tmp_path / "restored")
    assert _info(again) == _info(original)
    assert _points(again.store) == _points(original.store)
    _same_answers(_answers(again), _answers(original))
    assert (tmp_path / "restored" / "taxonomy.yaml").read_text() == (kb_copy / "taxonomy.yaml").read_text()
    assert sorted(p.name for p in (tmp_path / "restored" / "blobs").rglob("*.png")) == sorted(
        p.name for p in (kb_copy / "blobs").rglob("*.png")
    )
    with pytest.raises(InvalidInputError, match="exists"):
        create_snapshot(original, tmp_path / "snap.tar.zst")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def _rewrite(source: Path, target: Path, change: Callable[[str, bytes], bytes]) -> None:
    """A copy of the (plain tar) snapshot ``source`` with each member's bytes passed through ``change``."""
    with tarfile.open(source) as old, tarfile.open(target, "w") as new:
        for member in old.getmembers():
            data = change(member.name, old.extractfile(member).read())  # type: ignore[union-attr]
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))


def test_restore_refuses_a_snapshot_that_does_not_verify(kb_copy, tmp_path, make_kb):
    kb = make_kb(kb_copy)
    create_snapshot(kb, tmp_path / "snap.tar")
    flipped = {"done": False}

    def flip(name: str, data: bytes) -> bytes:
        if name.startswith("blobs/") and not flipped["done"]:
            flipped["done"] = True
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data

    _rewrite(tmp_path / "snap.tar", tmp_path / "flipped.tar", flip)
    _rewrite(tmp_path / "snap.tar", tmp_path / "cut.tar", lambda n, d: d[:-1] if n.endswith(".jsonl") else d)
    for bad in ("flipped.tar", "cut.tar"):
        with pytest.raises(InvalidInputError, match="does not verify against its manifest"):
            restore_snapshot(tmp_path / bad, Settings(kb=tmp_path / "restored"))
    damaged = bytearray((tmp_path / "snap.tar").read_bytes())
    damaged[len(damaged) // 3] ^= 0x10
    (tmp_path / "byte.tar").write_bytes(bytes(damaged))
    create_snapshot(kb, tmp_path / "snap.tar.zst")
    zst = bytearray((tmp_path / "snap.tar.zst").read_bytes())
    zst[len(zst) // 2] ^= 0x10
    (tmp_path / "byte.tar.zst").write_bytes(bytes(zst))
    for bad in ("byte.tar", "byte.tar.zst"):
        with pytest.raises(InvalidInputError, match=r"verify|damaged|cannot be read"):
            restore_snapshot(tmp_path / bad, Settings(kb=tmp_path / "restored"))
    assert not (tmp_path / "restored").exists()  # nothing written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(InvalidInputError, match=r"\.tar\.zst"):
        restore_snapshot(tmp_path / "snap.zip", Settings(kb=tmp_path / "restored"))


def test_restore_replaces_a_knowledge_base_only_with_force(kb_copy, tmp_path, make_kb, material, packaged):
    create_snapshot(make_kb(kb_copy), tmp_path / "snap.tar.gz")
    other = tmp_path / "other"
    with open_kb(other, packaged) as kb:
        kb.ingest(material["catalogue"])
        catalogue_only = kb.store.count()
    with pytest.raises(InvalidInputError, match="--force"):
        restore_snapshot(tmp_path / "snap.tar.gz", Settings(kb=other))
    with open_kb(other, packaged) as kb:
        assert kb.store.count() == catalogue_only
        with pytest.raises(StoreInUseError):  # never pulled from under a process that has it open
            restore_snapshot(tmp_path / "snap.tar.gz", Settings(kb=other), force=True)
    (tmp_path / "notakb").mkdir()
    (tmp_path / "notakb" / "thesis.txt").write_text("precious")
    with pytest.raises(InvalidInputError, match="not a knowledge base"):
        restore_snapshot(tmp_path / "snap.tar.gz", Settings(kb=tmp_path / "notakb"), force=True)
    report = restore_snapshot(tmp_path / "snap.tar.gz", Settings(kb=other), force=True)
    assert report.replaced
    with open_kb(other, packaged) as kb:
        assert kb.store.count() == report.locks != catalogue_only


def test_snapshot_commands(kb_copy, tmp_path):
    snap = tmp_path / "kb.tar.zst"
    made = runner.invoke(app, ["snapshot", "create", str(snap), "--kb", str(kb_copy), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["locks"] > 0
    back = runner.invoke(app, ["snapshot", "restore", str(snap), "--kb", str(tmp_path / "back")])
    assert back.exit_code == 0 and "restored" in back.output, back.output
    again = runner.invoke(app, ["snapshot", "restore", str(snap), "--kb", str(tmp_path / "back")])
    assert again.exit_code != 0 and "--force" in str(again.exception)


# -- migrate -------------------------------------------------------------------------------------


def test_migrate_embedded_to_server_and_back_answers_the_same(kb_copy, tmp_path, make_kb):
    laptop = make_kb(kb_copy)
    server = make_kb(qdrant_url=":memory:", collection="plant1", blob_dir=tmp_path / "shared-blobs", exact_search=True)
    up = migrate(laptop, server, batch=16, verify=True, encoder=laptop.encoder)
    assert up.verification is not None and up.verification.ok, up.verification
    assert up.verification.seeks_checked > 0 and up.verification.vectors_checked > 0
    assert up.copied == up.points == len(_points(laptop.store)) and up.skipped == 0
    assert up.blobs_copied == len(list((kb_copy / "blobs").rglob("*.png")))
    assert server.store.count(Where.of(kind=SOURCE_KIND)) == laptop.store.count(Where.of(kind=SOURCE_KIND))
    back = make_kb(tmp_path / "copy")
    down = migrate(server, back, batch=16, verify=True, encoder=server.encoder)
    assert down.verification is not None and down.verification.ok, down.verification
    _same_points(back.store, laptop.store)
    assert _info(back).model_dump() == _info(laptop).model_dump()  # back, opened empty, learnt its encoder
    server_view = KnowledgeBase(server.settings, server.store, laptop.encoder)
    expected = _answers(laptop)
    _same_answers(_answers(server_view), expected)
    _same_answers(_answers(back), expected)
    rerun = migrate(laptop, server, batch=16)
    assert rerun.copied == 0 and rerun.skipped == rerun.points


def test_migrate_resumes_and_refuses_a_foreign_target(kb_copy, tmp_path, make_kb, monkeypatch, material):
    source = make_kb(kb_copy)
    target = make_kb(tmp_path / "target")
    calls = {"n": 0}
    real = type(target.store).upsert

    def failing(self, points):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(self, points)

    monkeypatch.setattr(type(target.store), "upsert", failing)
    with pytest.raises(OSError, match="disk full"):
        migrate(source, target, batch=8)
    monkeypatch.setattr(type(target.store), "upsert", real)
    resumed = migrate(source, target, batch=8, verify=True, encoder=source.encoder)
    assert resumed.skipped == 1 + 8  # the metadata point and the one batch stored before the failure
    assert resumed.copied == resumed.points - resumed.skipped
    assert resumed.verification is not None and resumed.verification.ok
    foreign = make_kb(tmp_path / "foreign")
    foreign.ingest(material["catalogue"])
    source.store.delete(Where.of(source=str(material["catalogue"].absolute())))
    with pytest.raises(InvalidInputError, match="--replace"):
        migrate(source, foreign)
    replaced = migrate(source, foreign, replace=True, verify=True, encoder=source.encoder)
    assert replaced.removed > 0 and replaced.verification is not None and replaced.verification.ok


def test_migrate_commands_both_ways(kb_copy, tmp_path):
    server = f"path:{tmp_path / 'server'}"
    side = ["--collection", "plant1", "--blob-dir", str(tmp_path / "shared")]
    up = runner.invoke(app, ["migrate", "--kb", str(kb_copy), "--to-url", server, *side, "--verify", "--json"])
    assert up.exit_code == 0, up.output
    report = json.loads(up.output)
    assert (
        report["verification"]["ok"] and report["blobs_copied"] > 0 and report["blob_dir"] == str(tmp_path / "shared")
    )
    down = runner.invoke(app, ["migrate", "--from-url", server, *side, "--to-kb", str(tmp_path / "laptop")])
    assert down.exit_code == 0 and f"{report['points']} points" in down.output, down.output
    assert len(list((tmp_path / "laptop" / "blobs").rglob("*.png"))) == report["blobs_copied"]
    both = runner.invoke(app, ["migrate", "--kb", str(kb_copy), "--to-url", server, "--from-url", server])
    assert both.exit_code != 0 and "one direction" in str(both.exception)


def _migrate_cmd(source: str, target: Path, slow: float) -> list[str]:
    """``kbengine migrate --from-url SOURCE --to-kb TARGET`` in a new interpreter, each batch's upsert
    slowed down by ``slow`` seconds (so that a kill lands in the middle)."""
    script = (
        "import sys, time\n"
        "from kbengine.core.store.edge import EdgeStore\n"
        "real = EdgeStore.upsert\n"
        f"EdgeStore.upsert = lambda self, points: (real(self, points), time.sleep({slow}))[0]\n"
        "import kbengine.cli.lifecycle\n"
        "from kbengine.cli import run\n"
        "run(sys.argv[1:])\n"
    )
    return [sys.executable, "-c", script, "migrate", "--from-url", source, "--collection", "c", "--to-kb", str(target)]


def test_kill_9_in_a_migrate_then_the_same_command_again(kb_copy, tmp_path, make_kb):
    shared = f"path:{tmp_path / 'server'}"
    server_settings = Settings(qdrant_url=shared, collection="c", blob_dir=tmp_path / "server-blobs")
    laptop = make_kb(kb_copy)
    with KnowledgeBase(server_settings, get_store(server_settings), laptop.encoder) as server:
        migrate(laptop, server)
    killed = tmp_path / "killed"
    env = {**os.environ, "KBENGINE_BLOB_DIR": str(tmp_path / "server-blobs")}
    cmd = [*_migrate_cmd(shared, killed, 0.3), "--batch", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if (killed / "blobs").exists() and sum(1 for _ in (killed / "blobs").rglob("*.png")) >= 4:
            time.sleep(0.4)  # the batch whose blobs those are is stored, later ones are not yet
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"migrate finished before it could be killed: {proc.stderr.read()!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = get_store(Settings(kb=killed))
    try:
        assert 0 < partial.count() < laptop.store.count()  # killed in the middle
        assert partial.count(Where.of(kind=SOURCE_KIND)) == 0  # markers go last: it looks interrupted
    finally:
        partial.close()
    rerun = subprocess.run([*_migrate_cmd(shared, killed, 0.0), "--json"], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    resumed = json.loads(rerun.stdout)
    assert resumed["skipped"] > 1 and resumed["copied"] > 0
    clean = tmp_path / "clean"
    with KnowledgeBase(server_settings, get_store(server_settings)) as server:
        migrate_to(server, Settings(kb=clean))
    a, b = make_kb(killed), make_kb(clean)
    assert _points(a.store) == _points(b.store)
    assert sorted(p.name for p in (killed / "blobs").rglob("*")) == sorted(p.name for p in (clean / "blobs").rglob("*"))
    _same_answers(_answers(a), _answers(b))


# -- gc ------------------------------------------------------------------------------------------


def test_gc_keeps_a_blob_two_documents_share(tmp_path, make_kb, material):
    for copy in ("a", "b"):
        for folder in ("crack", "good"):
            shutil.copytree(material["documents"] / "tile" / folder, tmp_path / copy / "tile" / folder)
    kb = make_kb()
    assert kb.ingest([tmp_path / "a", tmp_path / "b"]).ok
    cracks = {
        LockLabel.read(h.payload).doc_id: BlobRef.read(h.payload).blob
        for h in kb.store.scroll(Where.of(defect_type="crack", kind="image"), fields=[*LockLabel.fields(), "blob"])
    }
    assert len(cracks) == 2 and len(set(cracks.values())) == 1  # two documents, one blob
    [shared] = set(cracks.values())
    orphan = kb.blobs.put_bytes(b"no lock names me", ".png")
    kb.banks.get("tile")  # a current memory bank in the cache
    stale = kb.settings.kb / "cache" / "banks" / "0000000000000000.npz"
    save_arrays(stale, "an old fingerprint", {"x": np.zeros(3)})
    first, second = sorted(cracks)
    kb.store.delete(Where.of(doc_id=first))

    dry = kb.gc(dry_run=True)
    assert dry.removed_blobs == [orphan] and dry.removed_caches == [str(stale)]
    assert kb.blobs.has(orphan) and stale.exists()
    done = kb.gc()
    assert done.removed_blobs == [orphan] and not kb.blobs.has(orphan) and not stale.exists()
    assert kb.blobs.check(shared) is None  # still referenced by the other document
    assert len(list((kb.settings.kb / "cache" / "banks").glob("*.npz"))) == 1  # the current bank stays
    assert kb.seek(synth.sample("tile", "crack", 5000, 128)[0], k=1).hits  # nothing it needs was removed

    kb.store.delete(Where.of(doc_id=second))
    assert kb.gc().removed_blobs == [shared] and not kb.blobs.has(shared)
    kb.blobs.put_bytes(b"written by an ingest still running", ".png")
    assert kb.gc(min_age=3600).blobs_recent == 1


def test_gc_command(kb_copy):
    result = runner.invoke(app, ["gc", "--dry-run", "--kb", str(kb_copy), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] and report["removed_blobs"] == [] and report["blobs_kept"] > 0


def test_the_facade_methods(kb_copy, tmp_path, make_kb):
    """kb.snapshot, KnowledgeBase.restore, kb.migrate and kb.gc: the Python API over the same functions."""
    kb = make_kb(kb_copy)
    assert kb.snapshot(tmp_path / "snap.tar.gz").compression == "gzip"
    restored = KnowledgeBase.restore(tmp_path / "snap.tar.gz", tmp_path / "restored")
    assert restored.points == kb.store.count() + kb.store.count(Where.of(kind="source")) + 1
    copy = kb.migrate(to_kb=tmp_path / "copy", verify=True)
    assert copy.verification is not None and copy.verification.ok
    with pytest.raises(InvalidInputError, match="one target"):
        kb.migrate()
    assert kb.gc(dry_run=True).dry_run
    _same_answers(_answers(make_kb(tmp_path / "copy")), _answers(kb))


def test_lifecycle_and_verify_take_the_parts_not_the_facade(kb_copy, tmp_path, packaged):
    """Snapshot, migrate and verify run on a store, its blobs and its settings (``Parts``) with no
    facade; what else they use is passed in: migrate --verify the encoder, verify --repair a way to
    ingest."""
    settings = Settings(kb=kb_copy)
    store = get_store(settings)
    try:
        parts = Parts.of(settings, store)
        assert create_snapshot(parts, tmp_path / "snap.tar").locks == store.count()
        with pytest.raises(InvalidInputError, match="encoder"):
            migrate_to(parts, Settings(kb=tmp_path / "copy"), verify=True)
        copied = migrate_to(parts, Settings(kb=tmp_path / "copy"), batch=16, verify=True, encoder=packaged)
        assert copied.verification is not None and copied.verification.ok and copied.verification.seeks_checked > 0
        assert copied.blobs_copied == len(list((kb_copy / "blobs").rglob("*.png")))
        assert verify(parts).ok
        with pytest.raises(InvalidInputError, match="ingest"):
            verify(parts, repair=True)
    finally:
        store.close()


def test_migrate_to_a_real_server_and_back(kb_copy, tmp_path, make_kb):
    """The same round trip against a running Qdrant server (``KBENGINE_QDRANT_URL``)."""
    url = os.environ.get("KBENGINE_QDRANT_URL")
    if not url:
        pytest.skip("set KBENGINE_QDRANT_URL to a running Qdrant server to migrate to a real one")
    laptop = make_kb(kb_copy)
    collection = f"kbtest-{uuid.uuid4().hex[:12]}"
    server = make_kb(qdrant_url=url, collection=collection, blob_dir=tmp_path / "shared-blobs", exact_search=True)
    try:
        up = migrate(laptop, server, batch=16, verify=True, encoder=laptop.encoder)
        assert up.verification is not None and up.verification.ok, up.verification
        back = make_kb(tmp_path / "copy")
        down = migrate(server, back, batch=16, verify=True, encoder=server.encoder)
        assert down.verification is not None and down.verification.ok, down.verification
        _same_answers(_answers(back), _answers(laptop))
    finally:
        from qdrant_client import QdrantClient

        QdrantClient(url=url, api_key=os.environ.get("KBENGINE_QDRANT_API_KEY")).delete_collection(collection)
