"""kb.ask: the grounded report names the right defect type and region, multiple-choice answers
decide what the evidence can and abstain on the rest, the Seek-Setting prompt carries its parts
in the documented order, eval mmad scores and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import Answer
from kbengine.core.settings import Settings
from kbengine.evaluation.mmad.run import eval_mmad
from kbengine.evaluation.reports import MMADEvalReport
from reasoning.llm.base import Message
from tests.conftest import open_kb

SIZE = 224
QUESTION = "Is there a defect? What type, where, and what are its causes and consequences?"


@pytest.fixture(scope="module")
def ask_kb(tmp_path_factory: pytest.TempPathFactory, packaged: Encoder) -> Path:
    root = tmp_path_factory.mktemp("ask")
    parts = {"disc": ("scratch", "missing"), "tile": ("hole", "stain")}
    dataset = synth.write_mvtec(root / "dataset", parts, n_train=8, n_test_good=0, n_test_defect=2, size=SIZE)
    documents = synth.write_documents(root / "documents", parts, n_refs=1, size=SIZE)
    with open_kb(root / "kb", packaged) as kb:
        assert kb.ingest([dataset, documents]).ok
    return root / "kb"


class Recorder:
    """An LLM that records what it is sent and answers with a fixed text."""

    name = "recorder"

    def __init__(self, reply: str = "Answer: A") -> None:
        self.reply = reply
        self.sent: list[list[Message]] = []

    def generate(self, messages, *, max_new_tokens=512, stream=None):  # type: ignore[no-untyped-def]
        self.sent.append(messages)
        if stream:
            stream(self.reply)
        return self.reply


@pytest.mark.parametrize(("category", "defect"), [("disc", "scratch"), ("disc", "missing"), ("tile", "hole")])
def test_grounded_report_names_type_region_and_sources(ask_kb, packaged, category, defect):
    image, mask = synth.sample(category, defect, 30_001, SIZE)
    with open_kb(ask_kb, packaged) as kb:
        answer = kb.ask(image, QUESTION, category=category)
    assert answer.llm == "none" and answer.detection is not None and answer.detection.is_anomalous
    assert "Defect: yes" in answer.text and f"Type: {defect}" in answer.text
    region = answer.detection.regions[0]
    x0, y0, x1, y1 = region.bbox
    assert mask[y0:y1, x0:x1].any() and f"Where: {region.location}" in answer.text
    assert "Causes:" in answer.text and synth.KNOWLEDGE[defect]["causes"] in answer.text
    assert "Sources:" in answer.text and answer.hits


def test_normal_part_gets_no_defect(ask_kb, packaged):
    with open_kb(ask_kb, packaged) as kb:
        answer = kb.ask(synth.sample("disc", None, 30_002, SIZE)[0], QUESTION, category="disc")
    assert "Defect: no" in answer.text and "Type:" not in answer.text


def test_multiple_choice_decides_or_abstains(ask_kb, packaged):
    image = synth.sample("disc", "scratch", 30_003, SIZE)[0]
    with open_kb(ask_kb, packaged) as kb:
        yes_no = kb.ask(image, "Is there any defect in the object?", options={"A": "Yes.", "B": "No."}, category="disc")
        kind = kb.ask(
            image,
            "What is the type of the defect?",
            options={"A": "A missing piece", "B": "A long scratch", "C": "Contamination", "D": "No defect"},
            category="disc",
        )
        other = kb.ask(image, "What is the object?", options={"A": "A disc", "B": "A bottle"}, category="disc")
    assert yes_no.choice == "A" and kind.choice == "B"
    assert other.choice is None and "cannot be decided" in other.text


def test_seek_setting_prompt_order_and_switches(ask_kb, packaged, tmp_path):
    path = tmp_path / "part.png"
    synth.sample("tile", "hole", 30_004, SIZE)[0].save(path)
    llm = Recorder("The answer is B.")
    with open_kb(ask_kb, packaged) as kb:
        answer = kb.ask(path, "What is the defect?", llm, options={"A": "stain", "B": "hole"}, category="tile")
        labels = [p.label for p in answer.prompt if p.kind == "image"]
        assert labels[0].startswith("template: knowledge") and labels[-1] == "query"
        assert "expert: query with suspicious regions boxed" in labels
        texts = " ".join(p.text or "" for p in answer.prompt if p.kind == "text")
        assert "AD Expert findings" in texts and "Knowledge [1]" in texts and "B: hole" in texts
        assert answer.prompt[-2].image == str(path) and answer.choice == "B" and answer.llm == "recorder"
        sent = llm.sent[-1]
        assert [m.role for m in sent] == ["system", "user"]
        assert sum(p.kind == "image" for p in sent[1].parts) == len(labels)
        bare = kb.ask(path, "What is the defect?", llm, knowledge=False, expert=False, category="tile")
        assert [p.label for p in bare.prompt if p.kind == "image"] == ["query"] and bare.detection is None
        vanilla = kb.ask(path, "What is the defect?", llm, setting="vanilla", category="tile")
        assert [p.label for p in vanilla.prompt if p.kind == "image"] == ["template: normal sample", "query"]
        with pytest.raises(InvalidInputError, match="unknown setting"):
            kb.ask(path, "?", setting="other")


def write_mmad(root: Path) -> Path:
    """Two images: a scratched disc (defective) and a normal disc."""
    images = root / "images"
    (images / "disc").mkdir(parents=True)
    synth.sample("disc", "scratch", 30_005, SIZE)[0].save(images / "disc" / "bad.png")
    synth.sample("disc", None, 30_006, SIZE)[0].save(images / "disc" / "good.png")
    synth.sample("disc", None, 30_007, SIZE)[0].save(images / "disc" / "template.png")
    ad = {
        "Question": "Is there any defect in the object?",
        "Options": {"A": "Yes.", "B": "No."},
        "type": "Anomaly Detection",
    }
    kind = {
        "Question": "What is the type of the defect?",
        "Options": {"A": "Scratch", "B": "Missing piece", "C": "Stain"},
        "type": "Defect Classification",
    }
    obj = {
        "Question": "What is the object?",
        "Options": {"A": "A disc", "B": "A tile"},
        "type": "Object Classification",
    }
    data = {
        "disc/bad.png": {
            "conversation": [{**ad, "Answer": "A"}, {**kind, "Answer": "A"}, {**obj, "Answer": "A"}],
            "mask_path": "",
            "similar_templates": ["disc/template.png"],
            "random_templates": ["disc/template.png"],
        },
        "disc/good.png": {
            "conversation": [{**ad, "Answer": "B"}, {**obj, "Answer": "A"}],
            "mask_path": "",
            "similar_templates": ["disc/template.png"],
            "random_templates": ["disc/template.png"],
        },
    }
    path = root / "mmad.json"
    path.write_text(json.dumps(data))
    return path


def test_eval_mmad_seek_with_the_grounded_report_and_resume(ask_kb, packaged, tmp_path):
    mmad = write_mmad(tmp_path)
    records = tmp_path / "records.jsonl"
    with open_kb(ask_kb, packaged) as kb:
        report = eval_mmad(mmad, tmp_path / "images", kb.settings, kb=kb, setting="seek", records=records)
    # hand-checked: AD right on both images (balanced 1.0), the type right, the object abstained (wrong)
    assert report.score.per_type == {
        "Anomaly Detection": 1.0,
        "Defect Classification": 1.0,
        "Object Classification": 0.0,
    }
    assert report.score.average == pytest.approx(2 / 3) and report.score.unparseable == 2 and report.resumed == 0
    lines = records.read_text().splitlines()
    assert len(lines) == 5
    records.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # an interrupted run
    with open_kb(ask_kb, packaged) as kb:
        again = eval_mmad(mmad, tmp_path / "images", kb.settings, kb=kb, setting="seek", records=records)
    assert again.resumed == 3 and again.score == report.score and len(records.read_text().splitlines()) == 5


def test_eval_mmad_vanilla_needs_no_knowledge_base(tmp_path, monkeypatch):
    mmad = write_mmad(tmp_path)
    report = eval_mmad(mmad, tmp_path / "images", Settings(), setting="vanilla", records=tmp_path / "v.jsonl")
    assert report.llm == "none" and report.score.average == 0.0 and report.score.unparseable == 5
    with pytest.raises(InvalidInputError, match="needs a knowledge base"):
        eval_mmad(mmad, tmp_path / "images", Settings(), setting="seek")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "mmad",
            str(mmad),
            "--images",
            str(tmp_path / "images"),
            "--records",
            str(tmp_path / "c.jsonl"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert MMADEvalReport.model_validate_json(result.stdout).questions == 5


def test_cli_ask_streams_the_report(ask_kb, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    image = tmp_path / "part.png"
    synth.sample("disc", "missing", 30_008, SIZE)[0].save(image)
    result = CliRunner().invoke(app, ["ask", str(image), QUESTION, "--kb", str(ask_kb), "--category", "disc"])
    assert result.exit_code == 0, result.output
    assert "Defect: yes" in result.output and "Type: missing" in result.output
    data = CliRunner().invoke(app, ["ask", str(image), "What is it?", "--kb", str(ask_kb), "--json", "--no-expert"])
    assert data.exit_code == 0, data.output
    answer = Answer.model_validate_json(data.stdout)
    assert answer.detection is None and answer.question == "What is it?" and answer.hits
    assert answer.hits[0].category == "disc"  # the knowledge of the part shown, cited
