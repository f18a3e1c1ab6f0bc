"""The ``kbengine`` command line. Commands print results; the facade computes them."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kbengine.errors import EmptyKnowledgeBaseError, KBEngineError
from kbengine.schemas import IngestReport, KBInfo
from kbengine.settings import Settings

app = typer.Typer(
    help="kbengine: knowledge-grounded visual inspection (ADSeeker). Store options: --kb DIR or --url URL.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True)
STATE: dict[str, Any] = {"debug": False}

KbOpt = Annotated[Path | None, typer.Option("--kb", help="Knowledge base folder (default ./kb or KBENGINE_KB).")]
UrlOpt = Annotated[str | None, typer.Option("--url", help="Qdrant server URL (KBENGINE_QDRANT_URL).")]
CollOpt = Annotated[str | None, typer.Option("--collection", help="Collection name in server mode.")]
EncOpt = Annotated[str | None, typer.Option("--encoder", help="auto | packaged | open_clip (KBENGINE_ENCODER).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    STATE["debug"] = debug


def _open(kb: Path | None, url: str | None, collection: str | None, encoder: str | None) -> Any:
    from kbengine.facade import KnowledgeBase

    return KnowledgeBase.open(kb, url=url, collection=collection, encoder=encoder)


def _progress(label: str) -> tuple[Progress, Any]:
    bar = Progress(
        TextColumn(f"{label} [progress.description]{{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )
    task = bar.add_task("", total=None)

    def update(done: int, total: int, current: str) -> None:
        bar.update(task, completed=done, total=total, description=Path(current).name if current else "")

    return bar, update


def print_report(report: IngestReport) -> None:
    changed = sum(1 for s in report.sources if s.status in ("added", "replaced"))
    unchanged = sum(1 for s in report.sources if s.status == "unchanged")
    out.print(
        f"ingested {changed} source(s) ({unchanged} unchanged) -> {report.documents} document(s): "
        f"{report.pages} pages, {report.figures} figures, {report.images} images, {report.texts} text chunks; "
        f"{report.locks_added} locks added, {report.locks_removed} removed in {report.seconds:.1f}s "
        f"[{report.encoder}]"
    )
    for failure in report.failed:
        err.print(
            f"[red]failed[/red] {escape(failure.path)}: {escape(failure.reason)}", highlight=False, soft_wrap=True
        )


def print_info(info: KBInfo) -> None:
    out.print(f"knowledge base: {info.location} ({info.store})")
    text = f"{info.text_dim}-d text" if info.text_dim else "no text"
    joint = "joint space" if info.joint_space else "separate spaces: no image->text scoring"
    out.print(f"encoder: {info.encoder} ({info.image_dim}-d image, {text}; {joint})")
    out.print(
        f"{info.documents} documents, {info.locks} locks from {info.sources} sources; "
        f"domains: {', '.join(info.domains) or '-'}"
    )
    if not info.entries:
        return
    kinds = sorted({k for e in info.entries for k in e.locks})
    table = Table("category", "defect type", "documents", *kinds)
    for e in info.entries:
        table.add_row(e.category, e.defect_type, str(e.documents), *(str(e.locks.get(k, 0)) for k in kinds))
    out.print(table)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDFs, document folders, image folders, MVTec datasets.")],
    domain: Annotated[str | None, typer.Option(help="Domain of everything ingested (default: industrial).")] = None,
    category: Annotated[str | None, typer.Option(help="Category for all documents (overrides cards/headings).")] = None,
    defect_type: Annotated[str | None, typer.Option(help="Defect type for all documents.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first file that fails.")] = False,
    kb: KbOpt = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    encoder: EncOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest knowledge documents. Exit code 0 when everything went in, 1 when some files failed."""
    with _open(kb, url, collection, encoder) as base:
        bar, update = _progress("ingesting")
        with bar:
            report = base.ingest(
                paths, domain=domain, category=category, defect_type=defect_type, strict=strict, progress=update
            )
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        print_report(report)
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def info(kb: KbOpt = None, url: UrlOpt = None, collection: CollOpt = None, as_json: JsonOpt = False) -> None:
    """What the knowledge base holds: documents and locks per category and defect type."""
    settings = Settings()
    folder = kb or settings.kb
    if url is None and not settings.qdrant_url and not (folder / "qdrant").exists():
        raise EmptyKnowledgeBaseError(
            f"no knowledge base at {folder}; create one with: kbengine ingest PATH --kb {folder}"
        )
    with _open(kb, url, collection, None) as base:
        result = base.info()
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        print_info(result)


@app.command()
def demo(
    folder: Annotated[
        Path | None, typer.Argument(help="Where to write the demo (default: a temporary folder).")
    ] = None,
    encoder: EncOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a demo knowledge base from generated material, ingest it and show what it holds."""
    from kbengine.demo import run_demo

    root = folder or Path(tempfile.mkdtemp(prefix="kbengine-demo-"))
    result = run_demo(root, Settings(), encoder=encoder, say=(lambda s: None) if as_json else out.print)
    if as_json:
        out.print_json(result.model_dump_json())
        return
    print_report(result.report)
    print_info(result.info)
    out.print(f"Knowledge base ready at {result.kb}. Try: kbengine info --kb {result.kb}")


def run() -> None:
    """Console entry point: our errors become one line on stderr and exit code 2."""
    try:
        app()
    except KBEngineError as e:
        if STATE["debug"]:
            raise
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
