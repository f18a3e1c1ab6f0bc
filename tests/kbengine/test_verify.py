"""Damaged state heals: damaged caches rebuild themselves with a warning, ingest restores the
missing or damaged blobs of an unchanged source, ``verify`` names what is damaged and ``--repair``
fixes what the source files allow; temp files and folders of killed runs go."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.cache import damage, load_arrays, save_arrays
from kbengine.core.schemas import SOURCE_KIND, BlobRef, LockPayload, LockSource
from kbengine.core.store import Where
from kbengine.evaluation import zsad
from tests.conftest import open_kb

runner = CliRunner()
HOURS = 3600.0


@pytest.fixture
def documents(tmp_path: Path, material: dict[str, Path]) -> Path:
    """A copy of the generated document folders (cards and photos), with two normal references
    per category (so their banks are calibrated)."""
    folder = Path(shutil.copytree(material["documents"], tmp_path / "documents"))
    for seed, category in enumerate(("tile", "disc")):
        synth.sample(category, None, 41_000 + seed, 128)[0].save(folder / category / "good" / "ref_1.png")
    return folder


@pytest.fixture
def kb_path(tmp_path: Path, documents: Path, packaged) -> Path:
    """An embedded knowledge base of ``documents``, closed (so the CLI can open it)."""
    with open_kb(tmp_path / "kb", packaged) as kb:
        assert kb.ingest(documents).ok
    return tmp_path / "kb"


def _blob_of(kb_path: Path, packaged, photo: Path) -> Path:
    with open_kb(kb_path, packaged) as kb:
        [hit] = kb.store.scroll(Where.of(source=str(photo.absolute()), kind="image"))
        return kb.blobs.path(str(LockPayload.read(hit.payload).blob))


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- caches ------------------------------------------------------------------------------------


def _zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edited(path: Path, name: str = "calibration") -> None:
    """A hand edit: the file stays a valid npz, one array changes (a bank's calibration: scores go wrong)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[name] = arrays[name] * 1000 + 1
    with open(path, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


@pytest.mark.parametrize("spoil", [_zero_bytes, _cut_short, _flip_a_byte, _edited])
def test_a_damaged_bank_cache_is_rebuilt_with_a_warning(kb_path, packaged, spoil, caplog):
    image = synth.sample("tile", "crack", 41_010, 128)[0]
    with open_kb(kb_path, packaged) as kb:
        first = kb.detect(image, "tile")
    banks = sorted((kb_path / "cache" / "banks").glob("*.npz"))
    assert banks
    for path in banks:
        spoil(path)
    with caplog.at_level(logging.WARNING, logger="kbengine"), open_kb(kb_path, packaged) as kb:
        again = kb.detect(image, "tile")
        kb.detect(image, "disc")  # each category's bank is rebuilt when it is next needed
    assert again.score == pytest.approx(first.score) and again.is_anomalous == first.is_anomalous
    assert any("is damaged" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    rebuilt = sorted((kb_path / "cache" / "banks").glob("*.npz"))
    assert rebuilt and all(damage(path) is None for path in rebuilt)


def test_load_arrays_checks_the_checksum_and_deletes_damaged_files(tmp_path, caplog):
    path = tmp_path / "c.npz"
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "names": np.array(["x", "yz"])}
    save_arrays(path, "fp", arrays)
    loaded = load_arrays(path, "fp")
    assert loaded is not None and set(loaded) == {"a", "names"} and np.array_equal(loaded["a"], arrays["a"])
    assert load_arrays(path, "other") is None and path.exists()  # stale, not damaged: kept to be overwritten
    _edited(path, "a")
    with caplog.at_level(logging.WARNING, logger="kbengine"):
        assert load_arrays(path, "fp") is None
    assert not path.exists() and "checksum" in caplog.text


def test_stale_temp_files_go_when_the_cache_folder_is_next_written(tmp_path):
    folder = tmp_path / "banks"
    folder.mkdir()
    old, fresh = folder / ".tmp-abc.npz", folder / ".tmp-def.npz"
    old.write_bytes(b"half a bank")
    fresh.write_bytes(b"being written now")
    _age(old, 2 * HOURS)
    save_arrays(folder / "bank.npz", "fp", {"a": np.zeros(3)})
    assert not old.exists() and fresh.exists()
    assert load_arrays(folder / "bank.npz", "fp") is not None


def test_stale_zsad_folders_of_killed_runs_go(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    killed, running, other = tmp_path / "kbengine-zsad-old", tmp_path / "kbengine-zsad-new", tmp_path / "mine-old"
    for folder in (killed, running, other):
        (folder / "kb").mkdir(parents=True)
        _age(folder, 2 * 24 * HOURS)
    os.utime(running)
    assert zsad.remove_stale_runs() == [killed]
    assert not killed.exists() and running.exists() and other.exists()


# -- ingest ------------------------------------------------------------------------------------


def test_ingest_restores_missing_and_damaged_blobs_of_unchanged_sources(kb_path, documents, packaged):
    photos = [documents / "tile" / "crack" / "ref_0.png", documents / "disc" / "good" / "ref_0.png"]
    missing, damaged = (_blob_of(kb_path, packaged, photo) for photo in photos)
    missing.unlink()
    _flip_a_byte(damaged)
    with open_kb(kb_path, packaged) as kb:
        ids = {h.id for h in kb.store.scroll()}
        report = kb.ingest(documents)
        again = kb.ingest(documents)
        assert {h.id for h in kb.store.scroll()} == ids  # the same locks, rewritten in place
    assert report.ok and report.locks_removed == 0
    for photo in photos:
        assert f"re-ingested {photo.absolute()}: 1 blob(s) missing or damaged" in report.notes
    assert missing.read_bytes() == photos[0].read_bytes() and damaged.read_bytes() == photos[1].read_bytes()
    assert {s.status for s in again.sources} == {"unchanged"} and not again.notes


# -- verify ------------------------------------------------------------------------------------


def test_verify_says_ok_on_an_intact_knowledge_base(kb_path, packaged):
    with open_kb(kb_path, packaged) as kb:
        report = kb.verify()
    assert report.ok and report.problems == [] and report.sources == 14 and report.blobs == 8
    assert report.caches >= 1 and report.locks > report.blobs
    result = runner.invoke(app, ["verify", "--kb", str(kb_path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"ok ({report.locks} locks, 8 blobs, 14 sources)"


def test_verify_names_the_damage_and_repair_fixes_it(kb_path, documents, packaged):
    crack, good = documents / "tile" / "crack", documents / "disc" / "good"
    missing = _blob_of(kb_path, packaged, crack / "ref_0.png")
    damaged = _blob_of(kb_path, packaged, good / "ref_0.png")
    missing.unlink()
    _flip_a_byte(damaged)
    card = str((documents / "tile" / "stain" / "card.yaml").absolute())
    unmarked = str((documents / "disc" / "scratch" / "card.yaml").absolute())
    with open_kb(kb_path, packaged) as kb:
        kb.store.delete(Where.of(source=card, kind="text", locator=_first_locator(kb, card)))  # one lock lost
        kb.store.delete(Where.of(kind=SOURCE_KIND, source=unmarked))  # as if its ingest had been killed
    cache = next((kb_path / "cache" / "banks").glob("*.npz"))
    _flip_a_byte(cache)

    result = runner.invoke(app, ["verify", "--kb", str(kb_path)])
    assert result.exit_code == 1, result.output
    output = result.output
    assert "blob missing" in output and missing.name in output and f"ingests {crack}" in output
    assert "blob damaged" in output and damaged.name in output
    assert "locks missing" in output and card in output
    assert "locks without marker" in output and "was interrupted" in output and unmarked in output
    assert "cache damaged" in output and cache.name in output
    data = json.loads(runner.invoke(app, ["verify", "--kb", str(kb_path), "--json"]).output)
    assert data["ok"] is False
    kinds = {p["kind"] for p in data["problems"]}
    assert kinds == {"blob missing", "blob damaged", "locks missing", "locks without marker", "cache damaged"}

    repaired = runner.invoke(app, ["verify", "--kb", str(kb_path), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: deleted the damaged cache" in repaired.output and f"ingested {crack} again" in repaired.output
    assert "\nok (" in repaired.output
    assert missing.read_bytes() == (crack / "ref_0.png").read_bytes()
    assert damaged.read_bytes() == (good / "ref_0.png").read_bytes()
    second = runner.invoke(app, ["verify", "--kb", str(kb_path)])
    assert second.exit_code == 0 and second.output.startswith("ok ("), second.output


def _first_locator(kb, source: str) -> str:
    hits = kb.store.scroll(Where.of(source=source, kind="text"))
    return sorted(LockPayload.read(h.payload).locator for h in hits)[0]


def test_a_moved_source_is_no_damage_but_its_lost_blob_needs_a_snapshot(kb_path, documents, packaged):
    photo = documents / "tile" / "crack" / "ref_0.png"
    blob = _blob_of(kb_path, packaged, photo)
    photo.rename(documents / "moved.png")
    with open_kb(kb_path, packaged) as kb:
        moved = kb.verify()
    assert moved.ok and [p.kind for p in moved.problems] == ["source moved or deleted"]
    assert moved.problems[0].source == str(photo.absolute()) and not moved.problems[0].damage
    blob.unlink()
    with open_kb(kb_path, packaged) as kb:
        report = kb.verify(repair=True)
    assert not report.ok
    [lost] = [p for p in report.problems if p.damage]
    assert lost.kind == "blob missing" and lost.files == [str(blob)] and "snapshot" in lost.repair
    assert "ingest the original files again" in lost.repair


def test_payload_views_name_lock_payload_fields():
    """The narrow views verify and ingest scroll with read fields the one lock payload has."""
    assert set(LockSource.fields()) <= set(LockPayload.model_fields)
    assert set(BlobRef.fields()) <= set(LockPayload.model_fields)


def test_verify_has_help():
    result = runner.invoke(app, ["verify", "--help"])
    assert result.exit_code == 0 and "--repair" in result.output
