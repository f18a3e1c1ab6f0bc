"""A small knowledge base served by the real app: generated parts (normal references and defect
examples with cards) on the packaged encoder, in the real embedded store."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kbengine import synth
from kbengine.core.encoders.base import Encoder
from kbengine.service import ServiceSettings, create_app
from tests.conftest import open_kb

PARTS = {"disc": ("scratch", "missing"), "tile": ("hole", "stain")}
SIZE = 160


@pytest.fixture(scope="session")
def served_kb(tmp_path_factory: pytest.TempPathFactory, packaged: Encoder) -> Path:
    """A knowledge base folder, built once; tests copy it before they write."""
    root = tmp_path_factory.mktemp("served")
    dataset = synth.write_mvtec(root / "dataset", PARTS, n_train=6, n_test_good=0, n_test_defect=2, size=SIZE)
    documents = synth.write_documents(root / "documents", PARTS, n_refs=1, size=SIZE)
    with open_kb(root / "kb", packaged) as kb:
        assert kb.ingest([dataset, documents]).ok
    return root / "kb"


@pytest.fixture
def serve(served_kb: Path, packaged: Encoder, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    """``serve(copy=False, **service_settings)``: a started TestClient on the knowledge base (a
    copy of it with ``copy=True``, for tests that write)."""
    opened: list[TestClient] = []
    kbs = []

    def make(copy: bool = False, kb_settings: dict[str, object] | None = None, **settings: object) -> TestClient:
        path = served_kb
        if copy:
            path = tmp_path / "kb"
            shutil.copytree(served_kb, path)
        kb = open_kb(path, packaged, **(kb_settings or {}))
        kbs.append(kb)
        client = TestClient(create_app(kb, ServiceSettings(**settings)))  # type: ignore[arg-type]
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)
    for kb in kbs:
        kb.close()


def photo_bytes(category: str = "disc", defect: str | None = "scratch", seed: int = 5) -> bytes:
    import io

    image, _ = synth.sample(category, defect, seed, SIZE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
