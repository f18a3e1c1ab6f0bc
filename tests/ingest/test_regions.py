"""Region locks: written for defect examples against their category's normal references, kept up to
date when the references change, crash-safe, and absent (with a clear fallback) without references."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kbengine import synth
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import LockPayload
from kbengine.core.store import Where
from kbengine.facade import KnowledgeBase
from tests.conftest import open_kb

SIZE = 64


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/`` (tile crack and stain photos, disc scratch photos) and ``references/`` (good
    photos of the tile only): the disc has no normal references."""
    root = tmp_path_factory.mktemp("regions")
    for defect in ("crack", "stain"):
        folder = root / "examples" / "tile" / defect
        folder.mkdir(parents=True)
        for i in range(5):
            synth.sample("tile", defect, 77_000 + 10 * i + len(defect), SIZE)[0].save(folder / f"{i}.png")
    scratch = root / "examples" / "disc" / "scratch"
    scratch.mkdir(parents=True)
    for i in range(3):
        synth.sample("disc", "scratch", 78_000 + i, SIZE)[0].save(scratch / f"{i}.png")
    good = root / "references" / "tile" / "good"
    good.mkdir(parents=True)
    for i in range(6):
        synth.sample("tile", None, 79_000 + i, SIZE)[0].save(good / f"{i}.png")
    return root


def regions(kb: KnowledgeBase) -> dict[str, tuple[LockPayload, np.ndarray]]:
    """Region locks by id: payload and vector."""
    found = kb.store.scroll(Where.of(kind="region"), vector="region")
    return {h.id: (LockPayload.read(h.payload), h.vector) for h in found if h.vector is not None}


def examples(kb: KnowledgeBase, category: str) -> set[str]:
    where = Where.of(category=category, kind=("image", "figure")).excluding(defect_type="good")
    return {h.id for h in kb.store.scroll(where)}


def test_region_locks_for_examples_ingested_before_and_after_their_references(tmp_path, folders, packaged: Encoder):
    with open_kb(tmp_path / "before", packaged) as kb:
        first = kb.ingest([folders / "examples"])
        assert first.regions_added == 0 and first.without_references == ["disc", "tile"]
        later = kb.ingest([folders / "references"])
        assert later.regions_added == 10 and later.without_references == ["disc"]
        found = regions(kb)
        assert {p.region_of for p, _ in found.values()} == examples(kb, "tile")
        assert {p.category for p, _ in found.values()} == {"tile"}
        assert all(np.isclose(np.linalg.norm(v), 1.0) for _, v in found.values())
        info = kb.info()
        assert info.region_locks and info.without_references == ["disc"]
        crack = next(e for e in info.entries if (e.category, e.defect_type) == ("tile", "crack"))
        assert crack.locks["region"] == 5 == crack.locks["image"]
        again = kb.ingest([folders / "examples", folders / "references"])
        assert again.regions_added == again.regions_removed == 0  # idempotent
    with open_kb(tmp_path / "after", packaged) as kb:
        kb.ingest([folders / "references"])
        kb.ingest([folders / "examples"])
        other_order = regions(kb)
    assert set(other_order) == set(found)
    for key, (payload, vector) in found.items():
        assert other_order[key][0] == payload and np.allclose(other_order[key][1], vector, atol=1e-5)


def test_changed_references_renew_the_region_locks(tmp_path, folders, packaged: Encoder):
    shutil.copytree(folders, tmp_path / "src")
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([tmp_path / "src" / "examples", tmp_path / "src" / "references"])
        before = regions(kb)
        synth.sample("tile", None, 79_100, SIZE)[0].save(tmp_path / "src" / "references" / "tile" / "good" / "new.png")
        renewed = kb.ingest([tmp_path / "src" / "references"])
        after = regions(kb)
    assert renewed.regions_added == 10 and renewed.regions_removed == 10
    assert len(after) == 10 and not set(after) & set(before)
    assert len({p.bank for p, _ in after.values()}) == 1 and {p.bank for p, _ in before.values()}.isdisjoint(
        {p.bank for p, _ in after.values()}
    )


def test_an_ingest_reads_the_examples_only_of_categories_whose_region_locks_are_incomplete(
    tmp_path, folders, packaged: Encoder, monkeypatch
):
    from ingest import regions as region_module

    shutil.copytree(folders, tmp_path / "src")
    looked: list[str] = []
    real = region_module._examples

    def reading(store, category):
        looked.append(category)
        return real(store, category)

    monkeypatch.setattr(region_module, "_examples", reading)
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([tmp_path / "src" / "examples", tmp_path / "src" / "references"])
        assert looked == ["tile"]
        looked.clear()
        again = kb.ingest([tmp_path / "src" / "examples", tmp_path / "src" / "references"])
        assert looked == [] and again.regions_added == again.regions_removed == 0  # three counts, no payload read
        synth.sample("tile", "crack", 77_900, SIZE)[0].save(
            tmp_path / "src" / "examples" / "tile" / "crack" / "new.png"
        )
        added = kb.ingest([tmp_path / "src" / "examples"])
        assert looked == ["tile"] and added.regions_added == 1
        looked.clear()
        kb.store.delete(Where.of(kind="region", category="tile", defect_type="stain"))  # as if cut short
        healed = kb.ingest([tmp_path / "src" / "references"])
        assert looked == ["tile"] and healed.regions_added == 5
        assert {p.region_of for p, _ in regions(kb).values()} == examples(kb, "tile")


KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase
    from ingest.regions import update_regions

    kb = KnowledgeBase.open(settings=Settings(kb=sys.argv[1], encoder="packaged"))

    def progress(done, total, current):
        print(f"{done} {total}", flush=True)

    update_regions(kb.store, kb.banks, progress)
    print("finished", flush=True)
    """
)


def test_kill_9_during_a_region_update_then_rerun_equals_a_clean_run(tmp_path, folders, packaged: Encoder):
    killed = tmp_path / "killed"
    with open_kb(killed, packaged, detect_max_references=2) as kb:
        kb.ingest([folders / "examples"])  # no references yet: no region locks
        kb.ingest([folders / "references"])  # region locks for the tile's 10 examples
        kb.store.delete(Where.of(kind="region"))  # as if the update had not run yet
    script = tmp_path / "update.py"
    script.write_text(KILL_SCRIPT)
    env = {"KBENGINE_DETECT_MAX_REFERENCES": "2", "KBENGINE_BATCH_SIZE": "4"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(killed)],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, **env},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # the first batch is written when the second one starts
        lines.append(line.strip())
        if line.startswith("finished") or (line.split()[0].isdigit() and int(line.split()[0]) > 0):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "finished" not in lines, "the update ended before it could be killed"
    with open_kb(killed, packaged, detect_max_references=2) as kb:
        partial = regions(kb)
        assert 0 < len(partial) < 10, lines  # killed half way: some region locks, not all
        kb.ingest([folders / "examples", folders / "references"])  # the next run finishes it
        rerun = regions(kb)
    with open_kb(tmp_path / "clean", packaged, detect_max_references=2) as kb:
        kb.ingest([folders / "examples", folders / "references"])
        clean = regions(kb)
    assert set(rerun) == set(clean) and len(clean) == 10
    for key, (payload, vector) in clean.items():
        assert rerun[key][0] == payload and np.allclose(rerun[key][1], vector, atol=1e-5)


def test_seek_uses_the_region_key_where_there_are_references_and_falls_back_elsewhere(
    tmp_path, folders, packaged: Encoder
):
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([folders / "examples", folders / "references"])
        tile = kb.seek(synth.sample("tile", "crack", 77_500, SIZE)[0], k=2, category="tile")
        region = tile.diagnostics.region
        assert region.used and region.category == "tile" and not region.category_inferred and region.references == 6
        assert [p.name for p in tile.diagnostics.pipelines] == ["region>region", "image>image"]
        assert [p.weight for p in tile.diagnostics.pipelines] == [1.0, 1.0]
        assert "region>region" in tile.hits[0].pipeline_scores
        prediction = tile.predicted_defect_type
        assert prediction is not None and prediction.key == "region"  # two types: the region key decides alone
        assert prediction.defect_type == "crack" and -1 <= prediction.similarity <= 1
        inferred = kb.seek(synth.sample("tile", "stain", 77_501, SIZE)[0], k=2)
        assert inferred.diagnostics.region.used and inferred.diagnostics.region.category_inferred
        alone = kb.seek(synth.sample("tile", "crack", 77_500, SIZE)[0], k=2, category="tile", key="region")
        assert [p.name for p in alone.diagnostics.pipelines] == ["region>region"]
        assert {h.category for h in alone.hits} == {"tile"}
        disc = kb.seek(synth.sample("disc", "scratch", 78_500, SIZE)[0], k=1, category="disc")
        assert not disc.diagnostics.region.used and "no normal references" in (disc.diagnostics.region.note or "")
        assert [p.name for p in disc.diagnostics.pipelines] == ["image>image"]
        assert disc.hits[0].defect_type == "scratch" and disc.predicted_defect_type.key == "global"  # type: ignore[union-attr]
        with pytest.raises(InvalidInputError, match="no region key"):
            kb.seek(synth.sample("disc", "scratch", 78_500, SIZE)[0], k=1, category="disc", key="region")
        with pytest.raises(InvalidInputError, match="unknown key"):
            kb.seek(synth.sample("disc", "scratch", 78_500, SIZE)[0], key="crop")


def test_region_locks_of_other_references_are_never_compared(tmp_path, folders, packaged: Encoder):
    """References changed since the last ingest (here: fewer of them per bank) give another bank:
    its region key is not comparable with the stored region locks, so seek says so and uses the
    global key until the next ingest renews them."""
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([folders / "examples", folders / "references"])
    with open_kb(tmp_path / "kb", packaged, detect_max_references=2) as kb:
        result = kb.seek(synth.sample("tile", "crack", 77_500, SIZE)[0], k=2, category="tile")
        assert not result.diagnostics.region.used and "predate" in (result.diagnostics.region.note or "")
        assert [p.name for p in result.diagnostics.pipelines] == ["image>image"]
        renewed = kb.ingest([folders / "references"])
        assert renewed.regions_added == 10 and renewed.regions_removed == 10
        assert kb.seek(synth.sample("tile", "crack", 77_500, SIZE)[0], k=2, category="tile").diagnostics.region.used


class CountingEncoder:
    """The packaged encoder, counting its passes (a real model underneath)."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.has_text = inner.has_text
        self.joint_space = inner.joint_space
        self.patch_layers = inner.patch_layers
        self.calls: list[str] = []

    def embed_images(self, images):  # type: ignore[no-untyped-def]
        self.calls.append("global")
        return self.inner.embed_images(images)

    def embed_texts(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.embed_texts(texts)

    def patch_features(self, images, layers=None, local=False):  # type: ignore[no-untyped-def]
        self.calls.append("patches")
        return self.inner.patch_features(images, layers, local)


def test_ask_scores_the_photo_once_for_detect_and_seek(tmp_path, folders, packaged: Encoder):
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([folders / "examples", folders / "references"])
        kb.banks.get("tile")  # the bank is built (and cached) before we count
    counting = CountingEncoder(packaged)
    with open_kb(tmp_path / "kb", counting) as kb:  # type: ignore[arg-type]
        kb.banks.get("tile")
        counting.calls.clear()
        answer = kb.ask(synth.sample("tile", "crack", 77_600, SIZE)[0], "Is there a defect?", category="tile", k=2)
    assert answer.detection is not None and answer.hits
    assert counting.calls.count("patches") == 1  # the anomaly map and the region key read one scoring
    assert counting.calls.count("global") == 1  # one global embedding for detect, seek and the type


def test_a_damaged_example_photo_does_not_fail_the_ingest(tmp_path, folders, packaged: Encoder):
    with open_kb(tmp_path / "kb", packaged) as kb:
        kb.ingest([folders / "examples"])
        lock = next(LockPayload.read(h.payload) for h in kb.store.scroll(Where.of(category="tile", kind="image")))
        kb.blobs.path(str(lock.blob)).write_bytes(b"not a png any more")
        report = kb.ingest([folders / "references"])
        assert report.ok and report.regions_added == 0
        assert any("region locks not updated for tile" in note for note in report.notes), report.notes
        result = kb.seek(synth.sample("tile", "crack", 77_500, SIZE)[0], k=1, category="tile")
        assert result.hits and not result.diagnostics.region.used  # seek still answers, by the global key
