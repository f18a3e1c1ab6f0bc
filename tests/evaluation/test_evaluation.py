"""``eval seek``: hand-checked scoring, leave-one-out on a generated dataset, a given knowledge
base through the CLI, and datasets that cannot be evaluated."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbengine.cli import app
from kbengine.core.errors import InvalidInputError
from kbengine.core.settings import Settings
from kbengine.evaluation.reports import SeekEvalQuery, SeekEvalReport
from kbengine.evaluation.seek import eval_seek, seek_queries, summarise


def record(truth: str, retrieved: list[str], predicted: str | None = None) -> SeekEvalQuery:
    category, defect = truth.split("/")
    return SeekEvalQuery(
        path="x.png", category=category, defect_type=defect, retrieved=retrieved, predicted_type=predicted
    )


def test_scoring_by_hand():
    records = [
        record("tile/crack", ["tile/crack", "tile/stain", "disc/scratch"], "tile/crack"),  # top-1
        record("tile/stain", ["tile/crack", "tile/stain", "tile/hole"], "tile/crack"),  # top-3 only
        record("tile/hole", ["disc/missing", "disc/scratch", "tile/crack", "tile/hole"], None),  # neither
        record("disc/missing", ["tile/crack", "disc/scratch", "disc/missing"], "disc/missing"),  # top-3 only
    ]
    report = summarise("data", "leave-one-out", "kde", 5, records, 1.0)
    tile = next(r for r in report.rows if r.category == "tile")
    assert (tile.queries, tile.top1, tile.top3) == (3, pytest.approx(1 / 3), pytest.approx(2 / 3))
    assert (tile.category_top1, tile.category_top3) == (pytest.approx(2 / 3), 1.0)
    assert tile.type_accuracy == pytest.approx(1 / 2)  # the query without a prediction does not count
    disc = next(r for r in report.rows if r.category == "disc")
    assert (disc.top1, disc.top3, disc.category_top1, disc.category_top3) == (0.0, 1.0, 0.0, 1.0)
    overall = report.overall
    assert (overall.queries, overall.top1, overall.top3) == (4, 0.25, 0.75)
    assert overall.type_accuracy == pytest.approx(2 / 3)


def test_leave_one_out_on_a_generated_dataset(material):
    dataset = material["dataset"]
    report = eval_seek(dataset, Settings(encoder="packaged"), strategy="topk", k=3)
    assert report.knowledge == "leave-one-out" and [r.category for r in report.rows] == ["disc", "tile"]
    assert report.overall.queries == len(seek_queries(dataset)) == 8
    for row in [*report.rows, report.overall]:
        assert 0 <= row.top1 <= row.top3 <= 1 and row.category_top1 <= row.category_top3
    # each query's own image is left out, yet its type's other examples find it
    assert report.overall.top3 == 1.0 and report.overall.category_top1 == 1.0
    assert report.overall.type_accuracy is not None and report.overall.type_accuracy >= 0.5


def test_cli_against_a_given_knowledge_base(material, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    runner = CliRunner()
    kb = tmp_path / "kb"
    assert runner.invoke(app, ["ingest", str(material["documents"]), "--kb", str(kb)]).exit_code == 0
    result = runner.invoke(
        app, ["eval", "seek", str(material["dataset"]), "--kb", str(kb), "--limit", "1", "--category", "tile", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = SeekEvalReport.model_validate_json(result.stdout)
    assert report.knowledge.startswith(str(kb)) and report.overall.queries == 1 and report.rows[0].category == "tile"
    assert report.queries[0].retrieved and all("/" in r for r in report.queries[0].retrieved)
    table = runner.invoke(app, ["eval", "seek", str(material["dataset"]), "--kb", str(kb), "--limit", "1"])
    assert table.exit_code == 0 and "overall" in table.output


def test_datasets_that_cannot_be_evaluated(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="not a folder"):
        seek_queries(tmp_path / "nothing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(InvalidInputError, match="no MVTec-layout category"):
        seek_queries(tmp_path / "flat")
    (tmp_path / "normal" / "train" / "good").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="no defective test images"):
        seek_queries(tmp_path / "normal")
    result = CliRunner().invoke(app, ["eval", "seek", str(tmp_path / "flat")])
    assert result.exit_code != 0


def test_examples_protocol_reports_every_key(material):
    """--examples builds the knowledge from N images per type (+ references) and queries with the rest."""
    report = eval_seek(
        material["dataset"], Settings(encoder="packaged"), strategy="topk", k=3, examples=1, references=3
    )
    assert report.knowledge.startswith("1 example(s) per defect type, 3 normal reference(s)")
    assert report.overall.queries == 4  # two images per type: one is knowledge, one queries
    keys = report.overall.keys
    assert set(keys) == {"auto", "global", "region"} and all(s.queries == 4 for s in keys.values())
    assert keys["auto"].top1 == report.overall.top1 and keys["auto"].top3 == 1.0
    assert all(set(q.by_key) == {"auto", "global", "region"} for q in report.queries)
    no_references = eval_seek(material["dataset"], Settings(encoder="packaged"), k=3, examples=1, references=0)
    assert set(no_references.overall.keys) == {"auto", "global"}  # no references, no region key
    assert no_references.overall.keys["auto"] == no_references.overall.keys["global"]
    with pytest.raises(InvalidInputError, match="none left to query with"):
        eval_seek(material["dataset"], Settings(encoder="packaged"), examples=2)


def test_pixel_metrics_count_images_of_every_size():
    """Photos of different sizes are all compared (at one size), none left out of the pixel metrics."""
    import numpy as np

    from kbengine.evaluation.zsad import EVAL_SIZE, same_size, zsad_row

    maps, masks = [], []
    for height, width in ((64, 96), (80, 80), (50, 120)):
        mask = np.zeros((height, width), bool)
        mask[height // 4 : height // 2, width // 4 : width // 2] = True
        maps.append(mask.astype(np.float32) * 0.9 + 0.05)
        masks.append(mask)
    kept_maps, kept_masks = same_size(maps, masks)
    assert len(kept_maps) == len(kept_masks) == 3 and {m.shape for m in kept_maps} == {(EVAL_SIZE, EVAL_SIZE)}
    row = zsad_row("parts", [0.9, 0.9, 0.9], [1, 1, 1], kept_maps, kept_masks)
    assert row.pixel_auroc is not None and row.pixel_auroc > 0.99
    same = [np.zeros((8, 8), np.float32)] * 2
    assert same_size(same, [np.zeros((8, 8), bool)] * 2)[0] is same  # one size: unchanged
