"""Feedback: an inspector's verdict becomes knowledge (real packaged encoder, real embedded store)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kbengine import synth
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import SOURCE_KIND
from kbengine.core.store import Where
from kbengine.facade import KnowledgeBase

CATEGORIES = {"tile": ("crack", "stain")}


@pytest.fixture
def kb(tmp_path: Path, make_kb: Callable[..., KnowledgeBase]) -> KnowledgeBase:
    dataset = synth.write_mvtec(tmp_path / "data", CATEGORIES, n_train=3, n_test_good=0, n_test_defect=1, size=128)
    base = make_kb()
    base.ingest([dataset])
    return base


def photo(tmp_path: Path, defect: str | None, seed: int) -> Path:
    path = tmp_path / f"photo_{defect}_{seed}.png"
    synth.sample("tile", defect, seed, 128)[0].save(path)
    return path


def test_a_verdict_becomes_a_labelled_example_with_its_provenance(kb: KnowledgeBase, tmp_path: Path) -> None:
    before = kb.info()
    report = kb.feedback(photo(tmp_path, "crack", 5), category="tile", defect_type="crack", note="near the rim")
    assert report.status == "added" and report.source.startswith("feedback/") and not report.normal_reference
    assert report.feedback.note == "near the rim" and report.feedback.at.endswith("+00:00")
    assert report.regions_added == 1  # the category has normal references: a region lock too
    entry = next(e for e in kb.info().entries if (e.category, e.defect_type) == ("tile", "crack"))
    assert entry.feedback == 1 and kb.info().locks == before.locks + 2
    listed = kb.documents(source="feedback")
    assert listed.total == 1 and listed.documents[0].feedback is not None
    assert listed.documents[0].feedback.note == "near the rim" and listed.documents[0].doc_id == report.doc_id


def test_the_same_photo_again_relabels_it_and_never_duplicates(kb: KnowledgeBase, tmp_path: Path) -> None:
    image = photo(tmp_path, "stain", 6)
    first = kb.feedback(image, category="tile", defect_type="crack")
    again = kb.feedback(image, category="tile", defect_type="crack")
    assert again.status == "unchanged" and again.feedback.at == first.feedback.at
    fixed = kb.feedback(image, category="tile", defect_type="stain")
    assert fixed.status == "relabelled" and fixed.previous == "tile/crack" and fixed.doc_id == first.doc_id
    points = [p.payload for p in kb.store.scroll(Where.of(source=first.source))]
    assert sorted(p["kind"] for p in points) == ["image", "region"]  # one photo lock and its region lock
    assert kb.store.count(Where.of(kind=SOURCE_KIND, source=first.source)) == 1  # one marker, the new labels'
    assert next(p for p in points if p["kind"] == "image")["defect_type"] == "stain"
    regions = [p.payload for p in kb.store.scroll(Where.of(kind="region", doc_id=first.doc_id))]
    assert [p["defect_type"] for p in regions] == ["stain"]
    assert kb.documents(source="feedback").total == 1
    assert ("industrial", "tile", "crack") in kb.types.get().keys  # the catalogue's crack example stays


def test_good_feedback_adds_a_normal_reference_and_remove_undoes_it(kb: KnowledgeBase, tmp_path: Path) -> None:
    references = len(kb.banks.references("tile"))
    report = kb.feedback(photo(tmp_path, None, 7), category="tile", defect_type="good")
    assert report.normal_reference and len(kb.banks.references("tile")) == references + 1
    bank = kb.banks.get("tile")
    assert bank is not None and bank.bank.references == references + 1
    removed = kb.remove(source=report.source)
    assert removed.documents and len(kb.banks.references("tile")) == references
    assert kb.documents(source="feedback").total == 0


def test_a_fed_back_example_is_found_by_the_next_seek(kb: KnowledgeBase, tmp_path: Path) -> None:
    image = photo(tmp_path, "crack", 8)
    report = kb.feedback(image, category="tile", defect_type="crack")
    hits = kb.seek(image, k=3).hits
    assert any(hit.doc_id == report.doc_id for hit in hits)


def test_bad_feedback_is_refused_and_stores_nothing(kb: KnowledgeBase, tmp_path: Path) -> None:
    locks = kb.info().locks
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InvalidInputError):
        kb.feedback(broken, category="tile", defect_type="crack")
    with pytest.raises(InvalidInputError):
        kb.feedback(photo(tmp_path, "crack", 9), category=" ", defect_type="crack")
    with pytest.raises(InvalidInputError):
        kb.feedback(tmp_path / "missing.png", category="tile", defect_type="crack")
    assert kb.info().locks == locks


def test_the_cli_feeds_back_lists_and_undoes(kb: KnowledgeBase, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from kbengine.cli import app

    folder = str(kb.settings.kb)
    kb.close()  # the CLI opens the embedded store itself
    image = photo(tmp_path, "crack", 10)
    runner = CliRunner()
    given = ["feedback", str(image), "--kb", folder, "--category", "tile", "--defect-type", "crack", "--json"]
    done = runner.invoke(app, [*given, "--note", "seen at line 3"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["status"] == "added" and report["feedback"]["note"] == "seen at line 3"
    listed = runner.invoke(app, ["docs", "--kb", folder, "--source", "feedback", "--json"])
    assert [d["doc_id"] for d in json.loads(listed.output)["documents"]] == [report["doc_id"]]
    info = json.loads(runner.invoke(app, ["info", "--kb", folder, "--json"]).output)
    assert any(e["defect_type"] == "crack" and e["feedback"] == 1 for e in info["entries"])
    undone = runner.invoke(app, ["remove", "--kb", folder, "--source", report["source"]])
    assert undone.exit_code == 0, undone.output
    after = runner.invoke(app, ["docs", "--kb", folder, "--source", "feedback", "--json"])
    assert json.loads(after.output)["total"] == 0
