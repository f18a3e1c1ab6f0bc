"""One photo, one request: the global key and the patch features come from one encoder pass."""

from __future__ import annotations

import numpy as np

from kbengine import synth
from kbengine.core.banks.memory_bank import build_bank, score_images
from kbengine.core.banks.references import ReferenceBank
from kbengine.core.query import Query


def test_global_key_patch_scores_and_region_key_take_one_forward_pass(packaged, monkeypatch):
    normals = [synth.sample("tile", None, 50_000 + i, 128)[0] for i in range(3)]
    bank = ReferenceBank("tile", "test", build_bank(packaged, normals))
    picture = synth.sample("tile", "crack", 50_100, 128)[0]
    expected = score_images(packaged, bank.bank, [picture])[0]
    plain_key = packaged.embed_images([picture])[0]

    passes = []
    forward = packaged.net.forward_features
    monkeypatch.setattr(packaged.net, "forward_features", lambda *a, **k: passes.append(1) or forward(*a, **k))
    query = Query(picture, packaged, "crack")
    scores = query.patch_scores(bank)
    query.region_key(bank)
    assert np.allclose(query.global_key, plain_key, atol=1e-5)
    assert len(passes) == 1
    assert np.allclose(scores.distances, expected.distances, atol=1e-4)
