"""Ingest end to end: layouts, idempotence, replacement, bad input, strictness, kill -9 and rerun."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pymupdf
import pytest
import yaml
from PIL import Image

from kbengine import synth
from kbengine.core.errors import EncoderMismatchError, InvalidInputError
from kbengine.core.settings import Settings
from kbengine.facade import KnowledgeBase


def _ids(kb: KnowledgeBase) -> set[str]:
    return {h.id for h in kb.store.scroll()}


def test_mvtec_and_document_folders(make_kb, material):
    kb = make_kb()
    report = kb.ingest([material["dataset"], material["documents"]])
    assert report.ok
    entries = {(e.category, e.defect_type): e for e in kb.info().entries}
    # dataset: 3 train + 1 test good, 2 per defect type; documents: 1 reference image + card text
    assert entries[("tile", "good")].locks["image"] == 3 + 1 + 1
    assert entries[("tile", "crack")].locks["image"] == 2 + 1
    assert entries[("tile", "crack")].locks["text"] == 6
    assert entries[("tile", "crack")].documents == 2  # the dataset's and the card's
    assert not any(e.defect_type == "ground_truth" for e in entries.values())


def test_reingest_adds_nothing_and_edit_replaces(make_kb, material, tmp_path):
    folder = tmp_path / "docs"
    shutil.copytree(material["documents"], folder)
    kb = make_kb()
    first = kb.ingest(folder)
    ids = _ids(kb)
    again = kb.ingest(folder)
    assert again.locks_added == 0 and {s.status for s in again.sources} == {"unchanged"}
    assert _ids(kb) == ids
    card = folder / "tile" / "crack" / "card.yaml"
    data = yaml.safe_load(card.read_text())
    data["causes"] = "Rapid cooling after the kiln."
    card.write_text(yaml.safe_dump(data))
    edited = kb.ingest(folder)
    assert edited.locks_removed > 0 and any(s.status == "replaced" for s in edited.sources)
    assert len(_ids(kb)) == len(ids)
    texts = [h.payload for h in kb.store.scroll() if h.payload["defect_type"] == "crack"]
    assert all(p["sections"]["causes"] == "Rapid cooling after the kiln." for p in texts)
    assert first.locks_added + first.regions_added == len(ids)  # the photos' locks and their region locks


def _bad_folder(root: Path, good_pdf: Path) -> dict[str, str]:
    """Good files mixed with every kind of bad input; returns name -> expected reason fragment."""
    root.mkdir()
    shutil.copy(good_pdf, root / "good catalogue ünï.pdf")
    refs = root / "tile" / "crack"
    refs.mkdir(parents=True)
    synth.sample("tile", "crack", 1, 64)[0].save(refs / "ok 1.png")
    (root / "corrupt.pdf").write_bytes(good_pdf.read_bytes()[:800])
    enc = pymupdf.open()
    enc.new_page().insert_text((50, 50), "secret")
    enc.save(root / "encrypted.pdf", encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="u", owner_pw="o")
    (root / "empty.pdf").write_bytes(b"")
    (refs / "liar.png").write_text("this is text, not an image")
    png = (refs / "ok 1.png").read_bytes()
    (refs / "truncated.png").write_bytes(png[: len(png) // 2])
    Image.new("L", (9000, 9000)).save(refs / "bomb.png")
    big = pymupdf.open()
    for _ in range(30):
        big.new_page()
    big.save(root / "huge.pdf")
    bad_card = root / "fabric" / "hole"
    bad_card.mkdir(parents=True)
    (bad_card / "card.yaml").write_text("category: [1, 2]\ndefect_typo: hole\n")
    synth.sample("fabric", "hole", 2, 64)[0].save(bad_card / "ref.png")
    latin = root / "disc" / "stain"
    latin.mkdir(parents=True)
    (latin / "card.md").write_bytes("# Fleck\n## Description\nÖlfleck auf der Oberfläche".encode("latin-1"))
    os.symlink(root, root / "tile" / "loop")
    return {
        "corrupt.pdf": "not a readable PDF",
        "encrypted.pdf": "encrypted",
        "empty.pdf": "empty file",
        "liar.png": "not an image file",
        "truncated.png": "truncated",
        "bomb.png": "over the limit",
        "huge.pdf": "over the limit of 20",
        "hole": "unknown field 'defect_typo'",
        "ref.png": "card is invalid",
        "stain": "not UTF-8",
        "loop": "symlink loop",
    }


def test_bad_input_is_reported_per_file_and_loses_nothing(make_kb, material, tmp_path):
    expected = _bad_folder(tmp_path / "mixed", material["catalogue"])
    kb = make_kb(max_image_pixels=50_000_000 // 1000, max_pdf_pages=20)
    kb.ingest(material["dataset"])
    before = _ids(kb)
    report = kb.ingest(tmp_path / "mixed")
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == set(expected), failed
    for name, fragment in expected.items():
        assert fragment in failed[name], (name, failed[name])
    assert before <= _ids(kb)
    good = {Path(s.path).name for s in report.sources if s.status == "added"}
    assert {"good catalogue ünï.pdf", "ok 1.png"} <= good
    assert "score.pdf" not in good


def test_strict_stops_at_the_first_failure(make_kb, material, tmp_path):
    _bad_folder(tmp_path / "mixed", material["catalogue"])
    kb = make_kb()
    with pytest.raises(InvalidInputError, match="--strict"):
        kb.ingest(tmp_path / "mixed", strict=True)


def test_cli_exit_codes(tmp_path, material):
    _bad_folder(tmp_path / "mixed", material["catalogue"])
    env = {**os.environ, "KBENGINE_KB": str(tmp_path / "kb"), "KBENGINE_MAX_PDF_PAGES": "20"}
    ok = subprocess.run(
        [sys.executable, "-m", "kbengine.cli", "ingest", str(material["catalogue"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "kbengine.cli", "ingest", str(tmp_path / "mixed")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "encrypted" in bad.stderr and "Traceback" not in bad.stderr


def test_kill_9_then_rerun_equals_one_clean_run(tmp_path, make_kb):
    source = tmp_path / "src"
    synth.write_pdf_catalogue(source / "big.pdf", pages=40, size=96)
    synth.write_mvtec(source / "data", {"tile": ("crack",)}, n_train=30, n_test_good=2, n_test_defect=4, size=96)
    env = {**os.environ, "KBENGINE_KB": str(tmp_path / "killed"), "KBENGINE_BATCH_SIZE": "4"}
    cmd = [sys.executable, "-m", "kbengine.cli", "ingest", str(source / "data"), str(source / "big.pdf")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blobs = tmp_path / "killed" / "blobs"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if blobs.exists() and sum(1 for _ in blobs.rglob("*.png")) >= 40:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    clean = make_kb(tmp_path / "clean")
    clean.ingest([source / "data", source / "big.pdf"])
    killed = make_kb(tmp_path / "killed")
    assert killed.store.count() == clean.store.count()
    assert _ids(killed) == _ids(clean)


def test_encoder_mismatch_is_refused(make_kb, tmp_path, material, tiny_clip_name):
    kb = make_kb()
    kb.ingest(material["documents"] / "tile" / "crack")
    kb.close()
    settings = Settings(kb=tmp_path / "kb", encoder="open_clip", clip_model=tiny_clip_name, clip_pretrained="random")
    with pytest.raises(EncoderMismatchError):
        KnowledgeBase.open(settings=settings)
    with KnowledgeBase.open(tmp_path / "kb") as reopened:  # auto adopts the stored encoder
        assert reopened.encoder.identity.name.startswith("packaged:")


def test_open_clip_knowledge_base_has_joint_space(make_kb, tiny_clip, material):
    kb = make_kb(encoder=tiny_clip)
    report = kb.ingest(material["documents"] / "disc")
    assert report.ok
    info = kb.info()
    assert info.joint_space and info.image_dim == info.text_dim == 32
    query = tiny_clip.embed_images([synth.sample("disc", "scratch", 5, 64)[0]])[0]
    assert kb.store.search("text", query, 3)  # image -> text locks in one space
    assert np.isfinite([h.score for h in kb.store.search("image", query, 3)]).all()


def test_card_md_and_unicode_names(make_kb, tmp_path):
    folder = tmp_path / "Flaschen Prüfung" / "bottle" / "broken rim"
    folder.mkdir(parents=True)
    (folder / "card.md").write_text(
        "# Bottle: broken rim\nCategory: bottle\nDefect type: broken_large\n\n## Description\nChipped rim.\n"
        "## Causes\nImpact.\n## Notes\nSeen on line 3.\n",
        "utf-8",
    )
    synth.sample("disc", "missing", 3, 64)[0].save(folder / "Foto 1 ü.png")
    kb = make_kb()
    report = kb.ingest(tmp_path / "Flaschen Prüfung")
    assert report.ok and report.images == 1
    payload = next(h.payload for h in kb.store.scroll() if h.payload["kind"] == "image")
    assert payload["category"] == "bottle" and payload["defect_type"] == "broken_large"
    assert payload["sections"]["causes"] == "Impact." and "Seen on line 3." in payload["sections"]["description"]
