"""The command line: help everywhere, the demo, info as JSON, the server code path end to end."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kbengine.cli import app, run
from kbengine.core.errors import EmptyKnowledgeBaseError
from kbengine.core.schemas import KBInfo

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["ingest"],
        ["info"],
        ["demo"],
        ["seek"],
        ["detect"],
        ["ask"],
        ["train-prompts"],
        ["verify"],
        ["serve"],
        ["docs"],
        ["feedback"],
        ["remove"],
        ["relabel"],
        ["snapshot"],
        ["snapshot", "create"],
        ["snapshot", "restore"],
        ["migrate"],
        ["gc"],
        ["eval"],
        ["eval", "seek"],
        ["eval", "zsad"],
        ["eval", "mmad"],
    ],
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_every_registered_command_is_in_the_help_test():
    """A new command cannot slip past the help test above."""
    import typer.main

    group = typer.main.get_command(app)
    names = {name for name in group.commands if name not in ("eval", "snapshot")}  # type: ignore[attr-defined]
    evals = set(group.commands["eval"].commands)  # type: ignore[attr-defined]
    snapshots = set(group.commands["snapshot"].commands)  # type: ignore[attr-defined]
    assert names == {
        "ingest",
        "info",
        "demo",
        "seek",
        "detect",
        "ask",
        "train-prompts",
        "verify",
        "serve",
        "docs",
        "feedback",
        "remove",
        "relabel",
        "migrate",
        "gc",
    }
    assert evals == {"seek", "zsad", "mmad"}
    assert snapshots == {"create", "restore"}


def test_run_turns_our_errors_into_one_line_and_exit_2(tmp_path, capsys):
    """The console entry point: a KBEngineError is one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as stopped:
        run(["info", "--kb", str(tmp_path / "nothing")])
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no knowledge base at") and "kbengine ingest" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    with pytest.raises(EmptyKnowledgeBaseError):  # --debug shows the exception itself
        run(["--debug", "info", "--kb", str(tmp_path / "nothing")])


def test_demo_builds_a_knowledge_base(tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    result = runner.invoke(app, ["demo", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["report"]["failed"] == [] and data["report"]["pages"] == 9
    assert {e["category"] for e in data["info"]["entries"]} == {"tile", "fabric", "disc"}
    seek = data["seek"]
    assert seek["hits"][0]["category"] == "disc" and seek["predicted_defect_type"]["defect_type"] == "scratch"
    detection = data["detection"]
    assert (
        detection["is_anomalous"] and detection["regions"] and detection["predicted_defect_type"]["category"] == "disc"
    )
    assert (tmp_path / "query" / "disc_scratch_heatmap.png").is_file()
    answer = data["answer"]
    assert answer["llm"] == "none" and "Defect: yes" in answer["text"] and "scratch" in answer["text"]
    info = runner.invoke(app, ["info", "--kb", str(tmp_path / "kb"), "--json"])
    assert info.exit_code == 0
    assert KBInfo.model_validate_json(info.stdout).locks == data["info"]["locks"]


def test_server_code_path_ingests_idempotently(make_kb, material, tmp_path):
    kb = make_kb(qdrant_url=":memory:", collection="seek", blob_dir=tmp_path / "shared-blobs")
    first = kb.ingest([material["catalogue"], material["documents"]])
    assert first.ok and first.locks_added > 0
    again = kb.ingest([material["catalogue"], material["documents"]])
    assert again.locks_added == 0
    info = kb.info()
    assert info.store.startswith("server") and info.locks == first.locks_added + first.regions_added
    assert first.regions_added > 0 and again.regions_added == 0 and info.region_locks
    assert any((tmp_path / "shared-blobs").rglob("*.png"))


def test_info_on_a_missing_knowledge_base_says_how_to_make_one(tmp_path):
    result = runner.invoke(app, ["info", "--kb", str(tmp_path / "nothing")])
    assert isinstance(result.exception, Exception) and "kbengine ingest" in str(result.exception)
    assert not (tmp_path / "nothing").exists()
