"""Shared fixtures: real things built small (generated material, the packaged encoder, a tiny
random-init open_clip model, temporary embedded stores)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbengine import synth
from kbengine.core.encoders.base import Encoder
from kbengine.core.settings import Settings
from kbengine.core.store import get_store
from kbengine.facade import KnowledgeBase

SMALL = {"tile": ("crack", "stain"), "disc": ("scratch", "missing")}

TINY_CLIP = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def open_kb(path: Path, encoder: Encoder, **settings: object) -> KnowledgeBase:
    """A knowledge base at ``path`` on an already loaded encoder (close it, or use ``with``)."""
    config = Settings(kb=path, **settings)  # type: ignore[arg-type]
    return KnowledgeBase(config, get_store(config), encoder)


@pytest.fixture(scope="session")
def packaged() -> Encoder:
    from kbengine.core.encoders.packaged import PackagedEncoder

    return PackagedEncoder()


@pytest.fixture(scope="session")
def tiny_clip_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    import open_clip

    folder = tmp_path_factory.mktemp("clipcfg")
    (folder / "kbtest-tiny-vit.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder)
    return "kbtest-tiny-vit"


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_name: str) -> Encoder:
    import torch

    from kbengine.core.encoders.openclip import OpenClipEncoder

    torch.manual_seed(0)
    return OpenClipEncoder(tiny_clip_name, "random")


@pytest.fixture(scope="session")
def material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("material")
    return {
        "catalogue": synth.write_pdf_catalogue(root / "manuals" / "catalogue.pdf", SMALL, size=128),
        "documents": synth.write_documents(root / "documents", SMALL, n_refs=1, size=128),
        "dataset": synth.write_mvtec(root / "dataset", SMALL, n_train=3, n_test_good=1, n_test_defect=2, size=128),
    }


@pytest.fixture
def make_kb(tmp_path: Path, packaged: Encoder) -> Iterator[Callable[..., KnowledgeBase]]:
    """Open knowledge bases on the shared packaged encoder; all are closed at the end."""
    opened: list[KnowledgeBase] = []

    def make(path: Path | None = None, encoder: Encoder | None = None, **settings: object) -> KnowledgeBase:
        config = Settings(kb=path or tmp_path / "kb", **settings)  # type: ignore[arg-type]
        store = get_store(config)
        kb = KnowledgeBase(config, store, encoder or packaged)
        opened.append(kb)
        return kb

    yield make
    for kb in opened:
        kb.close()
