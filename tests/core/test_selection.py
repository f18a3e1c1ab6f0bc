"""Choosing a capped bank's normal references: the medoids of clusters of their global embeddings."""

from __future__ import annotations

import numpy as np
from PIL import Image

from kbengine.core.banks import references
from kbengine.core.banks.selection import cluster_medoids
from kbengine.core.encoders.base import l2_normalise
from tests.conftest import open_kb


def test_one_reference_from_each_kind_of_photo_in_the_same_order_every_time():
    rng = np.random.default_rng(0)
    centres = l2_normalise(rng.normal(size=(3, 32)))
    kinds = np.repeat(np.arange(3), (60, 30, 10))  # one kind is rare
    keys = l2_normalise(centres[kinds] + 0.05 * rng.normal(size=(100, 32)))
    chosen = cluster_medoids(keys, 3)
    assert sorted(kinds[chosen].tolist()) == [0, 1, 2]
    assert chosen == cluster_medoids(keys, 3) == sorted(chosen)
    assert cluster_medoids(keys[:2], 5) == [0, 1]  # fewer than asked for: all of them


def test_a_knowledge_base_past_its_cap_keeps_references_of_every_kind(tmp_path, packaged, monkeypatch):
    good = tmp_path / "data" / "plate" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(9)  # by content hash, the first two photos are both dark
    for i in range(8):  # six dark photos and two bright ones
        level = 200 if i >= 6 else 40
        Image.fromarray(np.clip(rng.normal(level, 12, (96, 96, 3)), 0, 255).astype(np.uint8)).save(good / f"{i}.png")
    with open_kb(tmp_path / "kb", packaged, detect_max_references=2) as kb:
        kb.ingest([tmp_path / "data"])
        chosen = kb.banks.references("plate")
        assert len(chosen) == 2
        brightness = sorted(float(np.asarray(Image.open(kb.banks.path_of(lock))).mean()) for lock in chosen)
        assert brightness[0] < 100 < brightness[1]  # one of each kind, not two of the common one
        calls = []
        monkeypatch.setattr(references, "cluster_medoids", lambda *a, **k: calls.append(a) or [0, 1])
        assert kb.banks.references("plate") == chosen and not calls  # chosen once per set of references
