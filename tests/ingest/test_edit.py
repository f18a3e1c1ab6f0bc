"""remove and relabel on a real knowledge base: generated photos, cards and a real PDF catalogue in
the embedded store, the packaged encoder; a kill -9 in the middle of either, then the same call
again, ends in the state of one clean run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ingest import regions
from kbengine import synth
from kbengine.cli import app as cli_app
from kbengine.core.encoders.base import Encoder
from kbengine.core.store import Where
from tests.conftest import open_kb

PARTS = {"disc": ("scratch", "missing"), "tile": ("hole", "stain")}
SIZE = 160


@pytest.fixture(scope="module")
def base_kb(tmp_path_factory: pytest.TempPathFactory, packaged: Encoder) -> Path:
    root = tmp_path_factory.mktemp("edit")
    dataset = synth.write_mvtec(root / "dataset", PARTS, n_train=6, n_test_good=0, n_test_defect=2, size=SIZE)
    documents = synth.write_documents(root / "documents", PARTS, n_refs=1, size=SIZE)
    pdf = synth.write_pdf_catalogue(root / "manuals" / "catalogue.pdf", {"disc": ("scratch",)}, size=SIZE)
    with open_kb(root / "kb", packaged) as kb:
        assert kb.ingest([dataset, documents, pdf]).ok
    return root


@pytest.fixture
def kb_copy(base_kb: Path, tmp_path: Path) -> Path:
    """A copy of the knowledge base (``<copy>/kb``); its sources stay the base's files."""
    shutil.copytree(base_kb / "kb", tmp_path / "root" / "kb")
    return tmp_path / "root"


def state(root: Path, packaged: Encoder) -> dict[str, Any]:
    """Every point's id and payload (markers' edit revisions aside: each run draws its own)."""
    with open_kb(root / "kb", packaged) as kb:
        points = {}
        for batch in kb.store.export():
            for point in batch:
                payload = {k: v for k, v in point.payload.items() if k != "revision"}
                points[point.id] = json.dumps(payload, sort_keys=True, default=str)
        return points


def doc_of(kb: Any, category: str, defect_type: str, source_part: str) -> str:
    listing = kb.documents(category=category, defect_type=defect_type)
    return next(d.doc_id for d in listing.documents if source_part in d.source)


def test_remove_a_document_then_seek_never_returns_it(kb_copy, packaged):
    with open_kb(kb_copy / "kb", packaged) as kb:
        before = kb.info()
        query = synth.sample("disc", "scratch", 3, SIZE)[0]
        doc = kb.seek(query, k=3).hits[0].doc_id
        preview = kb.remove(doc, dry_run=True)
        assert preview.dry_run and preview.locks > 0 and kb.info() == before
        report = kb.remove(doc)
        assert [d.doc_id for d in report.documents] == [doc] and report.locks == preview.locks
        assert kb.info().documents == before.documents - 1
        assert kb.store.count(Where.of(doc_id=doc)) == 0
        for strategy in ("kde", "topk", "mmr"):
            assert doc not in {h.doc_id for h in kb.seek(query, k=20, strategy=strategy).hits}
        assert kb.verify().ok


def test_an_edit_checks_the_region_locks_of_the_categories_it_touches_only(kb_copy, packaged, monkeypatch):
    looked: list[str] = []
    real = regions._up_to_date

    def up_to_date(store, category, fingerprint):
        looked.append(category)
        return real(store, category, fingerprint)

    monkeypatch.setattr(regions, "_up_to_date", up_to_date)
    with open_kb(kb_copy / "kb", packaged) as kb:
        kb.remove(doc_of(kb, "disc", "scratch", "documents"))
        assert looked == ["disc"]
        looked.clear()
        kb.relabel(doc_of(kb, "disc", "missing", "documents"), category="tile")
        assert sorted(looked) == ["disc", "tile"]
        assert kb.verify().ok


def test_remove_a_source_lets_ingest_add_it_back(kb_copy, base_kb, packaged):
    pdf = base_kb / "manuals" / "catalogue.pdf"
    with open_kb(kb_copy / "kb", packaged) as kb:
        locks = kb.store.count()
        report = kb.remove(source=pdf)
        assert report.documents and report.sources_removed == [str(pdf)]
        assert all(str(pdf) in d.sources for d in report.documents)
        assert kb.store.count(Where.of(source=str(pdf))) == 0
        assert kb.verify().ok
        again = kb.ingest([pdf])
        assert again.locks_added + again.regions_added == report.locks and kb.store.count() == locks


def test_remove_a_category_and_by_folder(kb_copy, base_kb, packaged):
    runner = CliRunner()
    dry = runner.invoke(cli_app, ["remove", "--category", "tile", "--dry-run", "--kb", str(kb_copy / "kb"), "--json"])
    assert dry.exit_code == 0, dry.output
    preview = json.loads(dry.output)
    assert preview["dry_run"] and {d["category"] for d in preview["documents"]} == {"tile"}
    done = runner.invoke(cli_app, ["remove", "--category", "tile", "--kb", str(kb_copy / "kb")])
    assert done.exit_code == 0 and "removed" in done.output
    listed = runner.invoke(cli_app, ["docs", "--kb", str(kb_copy / "kb"), "--json"])
    assert {d["category"] for d in json.loads(listed.output)["documents"]} == {"disc"}
    folder = base_kb / "documents" / "disc"
    gone = runner.invoke(cli_app, ["remove", "--source", str(folder), "--kb", str(kb_copy / "kb"), "--json"])
    assert all(d["sources"][0].startswith(str(folder)) for d in json.loads(gone.output)["documents"])
    nothing = runner.invoke(cli_app, ["remove", "--kb", str(kb_copy / "kb")])
    assert nothing.exit_code != 0 and "say what to change" in str(nothing.exception)


def test_relabel_changes_the_predicted_type(kb_copy, packaged):
    query = synth.sample("disc", "scratch", 11, SIZE)[0]
    with open_kb(kb_copy / "kb", packaged) as kb:
        assert kb.detect(query).predicted_defect_type.defect_type == "scratch"
        scratches = kb.documents(category="disc", defect_type="scratch").documents
        report = kb.relabel([d.doc_id for d in scratches], defect_type="gouge")
        assert report.labels == {"defect_type": "gouge"} and len(report.documents) == len(scratches)
        assert kb.documents(category="disc", defect_type="scratch").total == 0
        assert kb.seek(query).predicted_defect_type.defect_type == "gouge"
        assert kb.detect(query).predicted_defect_type.defect_type == "gouge"
        assert kb.verify().ok
    with open_kb(kb_copy / "kb", packaged) as kb:  # a new process: the cached centroids notice too
        assert kb.seek(query).predicted_defect_type.defect_type == "gouge"


def test_relabel_a_reference_changes_the_bank_and_region_locks(kb_copy, packaged):
    with open_kb(kb_copy / "kb", packaged) as kb:
        regions = {h.id for h in kb.store.scroll(Where.of(kind="region", category="disc"))}
        folder_doc = doc_of(kb, "disc", "good", "documents")
        report = kb.relabel(folder_doc, defect_type="stain")  # a normal reference was really stained
        assert report.regions_added > 0 and report.regions_removed > 0
        after = {h.id for h in kb.store.scroll(Where.of(kind="region", category="disc"))}
        assert after and not after & regions  # computed against the new bank
        with pytest.raises(Exception, match="a category, a defect type"):
            kb.relabel(folder_doc)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from kbengine.core.encoders.packaged import PackagedEncoder
    from kbengine.core.store.edge import EdgeStore
    from tests.conftest import open_kb

    method, calls = sys.argv[1], int(sys.argv[2])
    original = getattr(EdgeStore, method)
    seen = [0]

    def dying(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] > calls:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, *args, **kwargs)

    setattr(EdgeStore, method, dying)
    kb = open_kb(Path(sys.argv[3]), PackagedEncoder())
    action = sys.argv[4]
    if action == "remove":
        kb.remove(source=sys.argv[5])
    else:
        kb.relabel(sys.argv[5:], defect_type="gouge")
    """
)


@pytest.mark.parametrize(
    ("action", "method", "calls"),
    [("remove", "delete_ids", 0), ("remove", "delete", 0), ("relabel", "upsert", 0), ("relabel", "set_payload", 1)],
)
def test_kill_9_then_again_equals_one_clean_run(kb_copy, base_kb, packaged, tmp_path, action, method, calls):
    clean = tmp_path / "clean"
    shutil.copytree(kb_copy, clean)
    with open_kb(kb_copy / "kb", packaged) as kb:
        if action == "remove":
            target = [str(base_kb / "manuals" / "catalogue.pdf")]
        else:
            target = [d.doc_id for d in kb.documents(category="disc", defect_type="scratch").documents]
    script = tmp_path / "killer.py"
    script.write_text(KILLER.format(repo=str(Path(__file__).parents[2])))
    died = subprocess.run(
        [sys.executable, str(script), method, str(calls), str(kb_copy / "kb"), action, *target],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert died.returncode == -9, died.stderr[-2000:]
    with open_kb(kb_copy / "kb", packaged) as kb:
        if action == "remove":
            kb.remove(source=target[0])
        else:
            kb.relabel(target, defect_type="gouge")
    with open_kb(clean / "kb", packaged) as kb:
        if action == "remove":
            kb.remove(source=target[0])
        else:
            kb.relabel(target, defect_type="gouge")
    assert state(kb_copy, packaged) == state(clean, packaged)


def test_relabel_command_moves_a_document_to_another_category(kb_copy, packaged):
    runner = CliRunner()
    kb_dir = str(kb_copy / "kb")
    with open_kb(kb_copy / "kb", packaged) as kb:
        doc = doc_of(kb, "tile", "hole", "documents")
    moved = runner.invoke(
        cli_app, ["relabel", "--doc", doc, "--category", "Plate", "--defect-type", "pit", "--kb", kb_dir, "--json"]
    )
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["labels"] == {"category": "plate", "defect_type": "pit"}
    listed = json.loads(runner.invoke(cli_app, ["docs", "--category", "plate", "--kb", kb_dir, "--json"]).output)
    assert [(d["doc_id"], d["defect_type"]) for d in listed["documents"]] == [(doc, "pit")]
    everything = runner.invoke(cli_app, ["relabel", "--in-category", "plate", "--domain", "medical", "--kb", kb_dir])
    assert everything.exit_code == 0 and "1 document(s)" in everything.output
