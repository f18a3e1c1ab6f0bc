"""The real-world PDF layouts (``pdf_layouts``), written once per test module, with the taxonomy
that names their categories and defect types, and how a test reads a PDF back without writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbengine.core.encoders.base import Encoder
from kbengine.core.schemas import DocumentPreview, IngestReport
from tests.conftest import open_kb
from tests.ingest.pdf_layouts import LAYOUTS, TAXONOMY, Expected


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Expected]]]:
    root = tmp_path_factory.mktemp("layouts")
    (root / "taxonomy.yaml").write_text(TAXONOMY)
    return {name: write(root / f"{name}.pdf") for name, write in LAYOUTS.items()}


def preview(
    kb_path: Path, packaged: Encoder, pdf: Path, settings: dict | None = None, **options: object
) -> IngestReport:
    """A dry run of ``pdf`` into a knowledge base at ``kb_path`` (``settings``: the KBENGINE_* ones)."""
    with open_kb(kb_path, packaged, **(settings or {})) as kb:
        return kb.ingest(pdf, dry_run=True, **options)  # type: ignore[arg-type]


def found(report: IngestReport) -> list[DocumentPreview]:
    """The documents of a dry run, less the pages nothing could be read from (scans left unread)."""
    return [d for d in report.preview if d.labels is None or d.labels.defect_type.source != "scan"]
