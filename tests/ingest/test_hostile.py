"""Hostile but realistic input: knowledge that points outside what was ingested, names that are
not UTF-8. Each case failed on the engine before the fix (issue 13, items 3 and 4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from kbengine.cli import app
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import LockPayload
from kbengine.core.store import Where
from reasoning.expert.domains import INDUSTRIAL, load_domain

SECRET = "root:x:0:0:secret-marker:/root:/bin/bash\n"


def photo(path: Path, shade: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (shade, shade, shade)).save(path)
    return path


def stored_text(kb) -> str:
    return json.dumps([h.payload for h in kb.store.scroll(Where.of())])


def test_a_card_symlinked_outside_the_folder_is_refused(make_kb, tmp_path):
    outside = tmp_path / "private" / "passwd"
    outside.parent.mkdir()
    outside.write_text(SECRET)
    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "a.png")
    (root / "widget" / "scratch" / "card.md").symlink_to(outside)
    photo(root / "widget" / "dent" / "b.png", 90)
    kb = make_kb()
    report = kb.ingest(root)
    refused = {Path(f.path).name: f.reason for f in report.failed}
    assert "leaves the ingested folder" in refused["card.md"]
    assert "secret-marker" not in stored_text(kb)
    assert {s.status for s in report.sources if "dent" in s.path} == {"added"}  # the rest went in
    allowed = make_kb(tmp_path / "kb2", follow_symlinks=True).ingest(root)
    assert not allowed.failed


def test_images_pdfs_and_folders_symlinked_outside_are_refused(make_kb, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    photo(elsewhere / "x.png")
    photo(elsewhere / "sub" / "y.png")
    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "a.png")
    (root / "widget" / "scratch" / "linked.png").symlink_to(elsewhere / "x.png")
    (root / "widget" / "linked_folder").symlink_to(elsewhere / "sub")
    inside = root / "widget" / "scratch" / "a.png"
    (root / "widget" / "scratch" / "alias.png").symlink_to(inside)  # stays inside: fine
    report = make_kb().ingest(root)
    refused = sorted(Path(f.path).name for f in report.failed)
    assert refused == ["linked.png", "linked_folder"]
    assert all("leaves the ingested folder" in f.reason for f in report.failed)


def test_domains_are_names_never_paths(make_kb, tmp_path):
    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "a.png")
    (root / "widget" / "scratch" / "card.yaml").write_text("domain: /etc/passwd\ncategory: widget\n")
    kb = make_kb()
    report = kb.ingest(root)
    assert report.failed and "a domain is a name" in report.failed[0].reason
    with pytest.raises(InvalidInputError, match="a domain is a name"):
        kb.ingest(root, domain="../../etc")
    # a domain stored by an older engine as a path reads no file
    secret = tmp_path / "secret.yaml"
    secret.write_text("normal_states: ['secret-marker']\n")
    domain, note = load_domain(str(secret.with_suffix("")), [tmp_path / "domains"])
    assert domain is INDUSTRIAL and note and "not a domain name" in note


def test_a_domain_file_must_lie_in_its_folder_and_errors_show_no_values(tmp_path):
    folder = tmp_path / "domains"
    folder.mkdir()
    secret = tmp_path / "secret.yaml"
    secret.write_text("templates: 'secret-marker'\n")
    (folder / "medical.yaml").symlink_to(secret)
    with pytest.raises(InvalidInputError, match="symlink out of"):
        load_domain("medical", [folder])
    (folder / "medical.yaml").unlink()
    (folder / "medical.yaml").write_text("templates: 42\nnormal_states: ['secret-marker']\n")
    with pytest.raises(InvalidInputError) as raised:
        load_domain("medical", [folder])
    assert "secret-marker" not in str(raised.value) and "templates" in str(raised.value)


def test_a_name_that_is_not_utf8_fails_alone_and_json_survives(tmp_path):
    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "good.png")
    photo(Path(os.fsdecode(bytes(root / "widget" / "scratch") + b"/bad\xff.png")), 90)
    runner = CliRunner()
    env = {"KBENGINE_ENCODER": "packaged"}
    result = runner.invoke(app, ["ingest", str(root), "--kb", str(tmp_path / "kb"), "--json"], env=env)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [f["path"].endswith("bad\\xff.png") for f in report["failed"]] == [True]
    assert "not UTF-8" in report["failed"][0]["reason"]
    assert any(s["status"] == "added" for s in report["sources"])


def test_a_huge_card_is_refused_at_once_and_locks_carry_their_own_chunk(make_kb, tmp_path):
    root = tmp_path / "docs"
    huge = root / "widget" / "flood" / "card.md"
    huge.parent.mkdir(parents=True)
    with huge.open("w") as file:  # 50 MB, sparse on disk
        file.write("# Flood\n## Causes\n")
        file.seek(50 << 20)
        file.write("end\n")
    long = root / "widget" / "scratch" / "card.md"
    long.parent.mkdir(parents=True)
    words = " ".join(f"word{i}" for i in range(12_000))  # ~100 KB, one section
    long.write_text(f"# Scratch\nCategory: widget\n## Causes\n{words}\n")
    kb = make_kb()
    report = kb.ingest(root)
    assert [Path(f.path).name for f in report.failed] == ["flood"] and "1 MiB limit" in report.failed[0].reason
    payloads = [h.payload for h in kb.store.scroll(Where.of(kind="text"))]
    assert len(payloads) > 100  # the long card's chunks (~130)
    biggest = max(len(json.dumps(p)) for p in payloads)
    assert biggest < 5_000  # each lock: its chunk and a summary, not the whole card


def test_huge_pdf_pages_render_under_the_pixel_budget(make_kb, tmp_path):
    import pymupdf

    from ingest.pdf import RENDER_MAX_PIXELS

    path = tmp_path / "huge.pdf"
    document = pymupdf.open()
    for i in range(6):  # a 3 KB file whose pages would be 200 megapixels each at 72 dpi
        page = document.new_page(width=14400, height=14400)
        page.insert_text((100, 200), f"Scratch {i}. Causes: a worn roller.", fontsize=40)
    document.save(path)
    kb = make_kb()
    report = kb.ingest(path)
    assert not report.failed and any("rendered at 10 dpi instead of 72" in n for n in report.notes)
    pages = [LockPayload.read(h.payload) for h in kb.store.scroll(Where.of(kind="page"))]
    assert pages
    for lock in pages:
        with Image.open(kb.blobs.path(str(lock.blob))) as image:
            assert image.width * image.height <= RENDER_MAX_PIXELS


def test_small_things_are_said_not_swallowed(make_kb, tmp_path):
    import pymupdf

    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "a.png")
    frames = [Image.new("RGB", (32, 32), (c, c, c)) for c in (10, 200)]
    frames[0].save(root / "widget" / "scratch" / "anim.gif", save_all=True, append_images=frames[1:])
    (root / "widget" / "dent").mkdir(parents=True)
    photo(root / "widget" / "dent" / "b.png")
    (root / "widget" / "dent" / "card.yaml").write_text("category: widget\ncategory: gadget\n")
    manual = root / "manual.pdf"
    document = pymupdf.open()
    document.new_page().insert_text((72, 72), "Category: widget\nDefect type: scratch\nCauses: a worn roller.")
    document.save(manual)
    (root / "manual.pdf.yaml").write_text("pages:\n  7:\n    defect_type: dent\n")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\n")
    report = make_kb().ingest([root, tmp_path / "empty", broken])
    reasons = {Path(f.path).name: f.reason for f in report.failed}
    assert "2 frames" in reasons["anim.gif"]
    assert "given twice" in reasons["dent"]
    assert "nothing to ingest" in reasons["empty"]
    assert reasons["broken.pdf"].startswith("not a readable PDF")  # the path is the failure's, not repeated
    assert any("page(s) 7 not in manual.pdf" in note for note in report.notes)


def test_an_unreadable_folder_fails_alone(make_kb, tmp_path, monkeypatch):
    """As root (CI) permissions do not stop reads, so the folder's PermissionError is raised by
    hand where the operating system would raise it: when the walk looks inside the folder."""
    root = tmp_path / "docs"
    photo(root / "widget" / "scratch" / "a.png")
    locked = root / "widget" / "locked"
    photo(locked / "inner" / "b.png")
    real_is_dir = Path.is_dir

    def is_dir(self: Path) -> bool:
        if self.parent == locked or self.parent.parent == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    report = make_kb().ingest(root)
    assert [Path(f.path).name for f in report.failed] == ["locked"]
    assert "Permission denied" in report.failed[0].reason
    assert any(s.status == "added" for s in report.sources)
