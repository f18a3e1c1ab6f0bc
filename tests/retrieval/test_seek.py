"""Seek end to end on a generated knowledge base: the right defect knowledge for generated
queries, normal references, filters, hybrid text queries, the type centroids and their cache,
the server code path, errors that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError
from kbengine.core.schemas import SeekResult
from kbengine.facade import KnowledgeBase
from retrieval import centroids
from tests.conftest import SMALL, open_kb

QUERIES = [(c, t, 5000 + i) for c, types in SMALL.items() for t in types for i in range(3)]


@pytest.fixture(scope="module")
def kb_path(tmp_path_factory: pytest.TempPathFactory, material: dict[str, Path], packaged: Encoder) -> Path:
    path = tmp_path_factory.mktemp("seek") / "kb"
    with open_kb(path, packaged) as kb:
        report = kb.ingest(list(material.values()))
        assert report.ok
    return path


@pytest.fixture
def kb(kb_path: Path, packaged: Encoder) -> Iterator[KnowledgeBase]:
    with open_kb(kb_path, packaged) as base:
        yield base


def query(category: str, defect: str, seed: int):
    return synth.sample(category, defect, seed, 128)[0]


@pytest.mark.parametrize("strategy", ["kde", "topk", "mmr"])
def test_right_defect_type_in_top3_for_generated_queries(kb, strategy):
    for category, defect, seed in QUERIES:
        result = kb.seek(query(category, defect, seed), k=3, strategy=strategy)
        found = [(h.category, h.defect_type) for h in result.hits]
        assert (category, defect) in found, (category, defect, seed, found)
        assert len({h.doc_id for h in result.hits}) == len(result.hits) == 3
        assert [h.rank for h in result.hits] == [1, 2, 3]


def test_hits_carry_the_document_and_why(kb):
    result = kb.seek(query("tile", "crack", 5000), k=5)
    assert isinstance(result, SeekResult) and result.strategy == "kde" and result.encoder == kb.encoder.identity.name
    top = result.hits[0]
    assert top.score == pytest.approx(top.best_lock.score) and top.best_lock.pipeline == "image>image"
    assert top.image_path and Path(top.image_path).is_file()
    documented = [h for h in result.hits if h.sections.description]
    assert documented, "cards and catalogue pages carry their text sections"
    d = result.diagnostics
    assert d.k_clusters is not None and d.k_clusters >= 1 and len(d.labels or []) == len(d.scores) == len(d.doc_ids)
    assert sum(c.taken for c in d.clusters) == len(result.hits) == 5
    assert d.scores == sorted(d.scores, reverse=True) and len(d.kde_log_density or []) == len(d.scores)
    for hit in result.hits:
        assert hit.cluster is not None and hit.cluster_weight == pytest.approx(d.clusters[hit.cluster].kde_weight)
    assert {"embed", "search", "sample"} <= set(d.timings_ms)
    assert SeekResult.model_validate_json(result.model_dump_json()) == result  # the --json form loses nothing


def test_predicted_defect_type_is_the_nearest_centroid(kb):
    right = 0
    for category, defect, seed in QUERIES:
        prediction = kb.seek(query(category, defect, seed), k=1).predicted_defect_type
        assert prediction is not None and prediction.margin is not None and prediction.margin >= 0
        assert prediction.category == category  # the object itself is never confused here
        right += prediction.defect_type == defect
    assert right >= 0.75 * len(QUERIES)
    within = kb.seek(query("disc", "scratch", 5000), k=1, category="disc").predicted_defect_type
    assert within is not None and {r.category for r in within.ranking} == {"disc"}


def test_normal_references_are_left_out_unless_asked(kb):
    image = query("tile", "crack", 5001)
    assert all(not h.is_normal for h in kb.seek(image, k=20, strategy="topk").hits)
    with_normal = kb.seek(image, k=20, strategy="topk", include_normal=True)
    assert any(h.is_normal for h in with_normal.hits)
    only = kb.seek(image, k=3, defect_type="good")
    assert only.hits and all(h.is_normal for h in only.hits)


def test_filters(kb):
    image = query("tile", "stain", 5002)
    result = kb.seek(image, k=10, category="disc")
    assert result.hits and {h.category for h in result.hits} == {"disc"}
    assert result.filters == {"category": "disc"}
    missing = kb.seek(image, k=3, category="bottle")
    assert missing.hits == [] and missing.note and "category='bottle'" in missing.note
    few = kb.seek(image, k=50, category="tile")
    assert 0 < len(few.hits) < 50 and few.note and "fewer than k=50" in few.note


def test_text_query_is_a_second_pipeline_and_moves_the_ranking(kb):
    image = query("tile", "crack", 5000)
    plain = kb.seek(image, k=4, strategy="topk", key="global")
    assert [p.name for p in plain.diagnostics.pipelines] == ["image>image"]
    stained = kb.seek(image, k=4, strategy="topk", text="a soft-edged blotch of different colour", key="global")
    assert [p.name for p in stained.diagnostics.pipelines] == ["image>image", "text>text"]
    assert plain.hits[0].defect_type == "crack" and stained.hits[0].defect_type == "stain"
    assert "text>text" in stained.hits[0].pipeline_scores
    cracked = kb.seek(image, k=2, strategy="topk", text="a dark thin branching zig-zag line", key="global")
    assert cracked.hits[0].defect_type == "crack"


def test_joint_space_runs_the_cross_modal_pipelines(tmp_path, material, tiny_clip):
    with open_kb(tmp_path / "clip", tiny_clip) as kb:
        kb.ingest([material["documents"]])
        result = kb.seek(query("disc", "missing", 5000), k=3, text="a notch in the outline")
    names = [p.name for p in result.diagnostics.pipelines]
    assert names == ["region>region", "image>image", "image>text", "text>text", "text>image"]
    assert all(p.locks > 0 for p in result.diagnostics.pipelines)
    assert len(result.hits) == 3 and all(np.isfinite(h.fused_score) for h in result.hits)


def test_server_store_gives_the_same_ranking(tmp_path, material, packaged, kb):
    image = query("disc", "scratch", 5001)
    with open_kb(tmp_path / "srv", packaged, qdrant_url=":memory:", exact_search=True) as server:
        server.ingest(list(material.values()))
        theirs = server.seek(image, k=5, strategy="topk")
        kde = server.seek(image, k=5)
    ours = kb.seek(image, k=5, strategy="topk")
    assert [h.doc_id for h in theirs.hits] == [h.doc_id for h in ours.hits]
    np.testing.assert_allclose([h.score for h in theirs.hits], [h.score for h in ours.hits], atol=1e-5)
    assert [h.doc_id for h in kde.hits] == [h.doc_id for h in kb.seek(image, k=5).hits]


def test_centroids_are_cached_on_disk_by_the_writer_and_renewed_by_ingest(tmp_path, material, packaged, monkeypatch):
    path = tmp_path / "kb"
    cache = path / "cache" / "type-centroids.npz"
    with open_kb(path, packaged) as kb:
        kb.ingest([material["documents"]])
        assert cache.is_file()  # the ingest left them: readers never scroll every vector
        first = kb.seek(query("tile", "crack", 5000), k=1).predicted_defect_type
        assert first is not None and all(r.examples == 1 for r in first.ranking)
    with open_kb(path, packaged) as kb:

        def no_scroll(store):
            raise AssertionError("a reader computed the type centroids")

        with monkeypatch.context() as patch:
            patch.setattr(centroids, "compute_centroids", no_scroll)
            again = kb.seek(query("tile", "crack", 5000), k=1).predicted_defect_type
        assert again == first
        kb.ingest([material["dataset"]])  # two more examples of every defect type
        renewed = kb.seek(query("tile", "crack", 5000), k=1).predicted_defect_type
    assert renewed is not None and all(r.examples == 3 for r in renewed.ranking)


def test_leave_one_out_excludes_the_query_everywhere(kb, material):
    image = material["dataset"] / "tile" / "test" / "crack" / "000.png"
    key = str(image.absolute())
    normal = kb.seek(image, k=3, strategy="topk")
    assert normal.hits[0].score == pytest.approx(1.0, abs=1e-4)  # it is in the knowledge base
    left_out = kb.seek(image, k=3, strategy="topk", exclude_sources=[key])
    assert left_out.hits[0].score < 0.999
    full = normal.predicted_defect_type
    loo = left_out.predicted_defect_type
    assert full and loo and full.ranking[0].examples == loo.ranking[0].examples + 1


def test_bad_input_gets_a_clear_error(kb, tmp_path, packaged):
    image = query("tile", "crack", 5000)
    with pytest.raises(InvalidInputError, match="k must be at least 1"):
        kb.seek(image, k=0)
    with pytest.raises(InvalidInputError, match="unknown strategy"):
        kb.seek(image, strategy="random")
    with pytest.raises(InvalidInputError, match="text query is empty"):
        kb.seek(image, text="  ")
    with pytest.raises(InvalidInputError, match="no such image file"):
        kb.seek(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(InvalidInputError, match=r"notes\.png"):
        kb.seek(tmp_path / "notes.png")
    with open_kb(tmp_path / "empty", packaged) as empty, pytest.raises(EmptyKnowledgeBaseError, match="ingest"):
        empty.seek(image)


def test_cli_seek_json_and_plot(kb_path, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    image = tmp_path / "part.png"
    query("disc", "missing", 5002).save(image)
    plot = tmp_path / "scores.png"
    result = CliRunner().invoke(
        app, ["seek", str(image), "--kb", str(kb_path), "-k", "3", "--json", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    data = SeekResult.model_validate_json(result.stdout)
    assert len(data.hits) == 3 and data.hits[0].defect_type == "missing"
    assert plot.stat().st_size > 10_000
    table = CliRunner().invoke(app, ["seek", str(image), "--kb", str(kb_path), "-s", "topk", "--category", "disc"])
    assert table.exit_code == 0 and "predicted defect type: disc/missing" in table.output


def test_seek_many_gives_what_seek_gives_in_order(kb, tmp_path):
    photos = [query("disc", "scratch", 7_001), query("tile", "crack", 7_002), query("disc", "missing", 7_003)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    many = list(kb.seek_many([*photos, broken], batch_size=2, k=3, category=None))
    assert [type(r).__name__ for r in many] == ["SeekResult"] * 3 + ["FileFailure"]
    for photo, result in zip(photos, many, strict=False):
        alone = kb.seek(photo, k=3)
        assert [h.doc_id for h in result.hits] == [h.doc_id for h in alone.hits]
