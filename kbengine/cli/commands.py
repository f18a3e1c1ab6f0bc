"""The commands on one knowledge base: ingest, info, seek, detect, ask, train-prompts, demo."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import app
from kbengine.cli.rendering import (
    out,
    print_answer_footer,
    print_demo,
    print_detection,
    print_info,
    print_report,
    print_seek,
    progress_bar,
    show,
)
from kbengine.core.errors import InvalidInputError


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="PDFs, document folders, image folders, MVTec datasets.")],
    domain: Annotated[str | None, typer.Option(help="Domain of everything ingested (default: industrial).")] = None,
    category: Annotated[str | None, typer.Option(help="Category for all documents (overrides cards/headings).")] = None,
    defect_type: Annotated[str | None, typer.Option(help="Defect type for all documents.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first file that fails.")] = False,
    taxonomy: Annotated[
        Path | None,
        typer.Option(
            help="YAML of categories and defect types with synonyms (categories: {name: [synonyms]}, "
            "defect_types: {name: [synonyms]}) to label PDF sections; default <kb>/taxonomy.yaml."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show the documents, their labels and where each came from; write nothing."),
    ] = False,
    follow_symlinks: Annotated[
        bool,
        typer.Option(
            "--follow-symlinks",
            help="Also ingest what symlinks inside the given folders point to outside them (refused by default).",
        ),
    ] = False,
    ocr: Annotated[
        str | None,
        typer.Option(
            "--ocr",
            help="Read PDF pages by OCR (Tesseract): auto (the pages without a text layer: scans), always, never "
            "(KBENGINE_OCR; language KBENGINE_OCR_LANG, default eng).",
        ),
    ] = None,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    encoder: options.Encoder = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """Ingest knowledge documents. Exit code 0 when everything went in, 1 when some files failed.

    Through a running service (--server, or the serve that owns the knowledge base) the files are
    uploaded: PDFs, images and cards, labelled by --category/--defect-type/--domain or their own
    content; a folder tree labels by its layout only in-process (stop the service for that)."""
    if ocr is not None and ocr not in ("auto", "always", "never"):
        raise InvalidInputError(f"--ocr {ocr!r}: use auto, always or never")
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli import through

        unsupported = {
            "--dry-run": dry_run,
            "--strict": strict,
            "--taxonomy": taxonomy,
            "--ocr": ocr,
            "--follow-symlinks": follow_symlinks,
            "--encoder": encoder,
        }
        through.refuse(remote, unsupported)
        bar, update = progress_bar("ingesting")
        with bar:
            report = through.ingest(remote, paths, domain, category, defect_type, update)
        show(report, as_json, print_report)
        raise typer.Exit(1 if report.failed else 0)
    settings = options.settings_for(
        kb_dir=kb_dir, url=url, collection=collection, encoder=encoder, follow_symlinks=follow_symlinks or None, ocr=ocr
    )
    with options.open_kb(settings) as kb:
        bar, update = progress_bar("ingesting")
        with bar:
            report = kb.ingest(
                paths,
                domain=domain,
                category=category,
                defect_type=defect_type,
                strict=strict,
                progress=update,
                taxonomy=taxonomy,
                dry_run=dry_run,
            )
    show(report, as_json, print_report)
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def info(
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """What the knowledge base holds: documents and locks per category and defect type."""
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli import through
        from kbengine.core.schemas import KBInfo

        result = through.call(remote, "GET", "/v1/info", KBInfo)
    else:
        with options.existing_kb(kb_dir, url, collection) as kb:
            result = kb.info()
    show(result, as_json, print_info)


@app.command()
def seek(
    image: Annotated[Path, typer.Argument(help="The query image (a photo of the part).")],
    k: options.K = 5,
    strategy: options.Strategy = "kde",
    category: Annotated[str | None, typer.Option(help="Only knowledge of this category.")] = None,
    domain: Annotated[str | None, typer.Option(help="Only knowledge of this domain.")] = None,
    defect_type: Annotated[str | None, typer.Option(help="Only knowledge of this defect type.")] = None,
    text: Annotated[str | None, typer.Option(help="A text query to combine with the image (hybrid).")] = None,
    include_normal: Annotated[
        bool, typer.Option(help="Also return normal ('good') references (left out by default).")
    ] = False,
    candidates: Annotated[
        int | None, typer.Option(min=1, help="Candidate locks per pipeline, M (default 256).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Draw scores, mixture, KDE and the taken candidates to this file.")
    ] = None,
    key: Annotated[
        str,
        typer.Option(
            "--key",
            help="auto (the global embedding fused with the defect's region key when the category has normal "
            "references) | global | region.",
        ),
    ] = "auto",
    focus: Annotated[
        bool | None,
        typer.Option(
            "--focus/--no-focus", help="Add the AD Expert's defect-region crop key (needs normal references)."
        ),
    ] = None,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """Q2K RAG: the knowledge documents that explain this image, and why they were chosen."""
    if plot is not None:
        from retrieval.plot import check_plot_path

        check_plot_path(plot)
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli import through

        fields = {
            "k": k,
            "strategy": strategy,
            "category": category,
            "domain": domain,
            "defect_type": defect_type,
            "text": text,
            "include_normal": include_normal,
            "candidates": candidates,
            "focus": focus,
            "key": key,
        }
        result = through.seek(remote, image, fields)
    else:
        with options.open_kb(options.settings_for(kb_dir=kb_dir, url=url, collection=collection)) as kb:
            result = kb.seek(
                image,
                k=k,
                strategy=strategy,
                category=category,
                text=text,
                domain=domain,
                defect_type=defect_type,
                include_normal=include_normal,
                candidates=candidates,
                focus=focus,
                key=key,
            )
    if plot is not None:
        from retrieval.plot import plot_seek

        plot_seek(result, plot)
    show(result, as_json, print_seek)
    if plot is not None and not as_json:
        out.print(f"plot written to {plot}")


@app.command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="The image(s) to inspect, or folders of them.")],
    category: Annotated[
        str | None, typer.Option(help="The part's category (default: the nearest knowledge's).")
    ] = None,
    mode: options.Mode = "auto",
    prompts: options.Prompts = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write a heatmap overlay with region boxes here (one image).")
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="Many images: also write a summary, one row per image, here.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Many images: photos per encoder pass.")] = 8,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """AD Expert: anomaly score, map, regions and defect type of an image; given several images or
    folders, one line per image as it finishes (one JSON object per line with --json)."""
    from kbengine.cli.batch import detect_folder

    many = len(images) > 1 or images[0].is_dir() or csv_path is not None
    if many and out_path is not None:
        raise InvalidInputError("--out draws one image's overlay; give one image, or leave --out out")
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli import through

        through.refuse(remote, {"--prompts": prompts, "--out": out_path})
        fields = {"category": category, "mode": mode}
        if many:
            failed = detect_folder(
                lambda photos: through.detect_many(remote, photos, fields), images, csv_path, as_json
            )
            raise typer.Exit(1 if failed else 0)
        result = through.detect(remote, images[0], fields)
        show(result, as_json, print_detection)
        return
    if many:
        settings = options.settings_for(kb_dir=kb_dir, url=url, collection=collection)
        with options.open_kb(settings) as kb:
            failed = detect_folder(
                lambda photos: kb.detect_many(photos, category, mode=mode, prompts=prompts, batch_size=batch_size),
                images,
                csv_path,
                as_json,
            )
        raise typer.Exit(1 if failed else 0)
    image = images[0]
    with options.open_kb(options.settings_for(kb_dir=kb_dir, url=url, collection=collection)) as kb:
        result = kb.detect(image, category, mode=mode, prompts=prompts)
    if out_path is not None:
        from reasoning.expert.overlay import write_overlay

        write_overlay(image, result, out_path)
    show(result, as_json, print_detection)
    if out_path is not None and not as_json:
        out.print(f"overlay written to {out_path}")


@app.command()
def ask(
    image: Annotated[Path, typer.Argument(help="The image to ask about.")],
    question: Annotated[str, typer.Argument(help="The question, e.g. 'Is there a defect? What type, where?'")],
    llm: options.Llm = None,
    llm_url: options.LlmUrl = None,
    model: options.Model = None,
    setting: options.Setting = "seek",
    knowledge: Annotated[bool, typer.Option("--knowledge/--no-knowledge", help="Send retrieved knowledge.")] = True,
    expert: Annotated[bool, typer.Option("--expert/--no-expert", help="Send the AD Expert's findings.")] = True,
    category: Annotated[str | None, typer.Option(help="The part's category (default: inferred).")] = None,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """Answer a question about an image from the plant's knowledge and the AD Expert (streamed).
    Through a running service the service's LLM answers (--llm none for the grounded report)."""
    stream = None if as_json else (lambda piece: out.print(piece, end="", highlight=False, markup=False))
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli import through

        through.refuse(
            remote,
            {"--llm-url": llm_url, "--model": model, "--no-knowledge": not knowledge, "--no-expert": not expert},
        )
        fields = {"question": question, "category": category, "llm": llm, "setting": setting}
        answer = through.ask(remote, image, fields, stream)
        show(answer, as_json, print_answer_footer)
        return
    settings = options.settings_for(
        kb_dir=kb_dir, url=url, collection=collection, llm=llm, llm_url=llm_url, model=model
    )
    with options.open_kb(settings) as kb:
        answer = kb.ask(
            image, question, setting=setting, knowledge=knowledge, expert=expert, category=category, stream=stream
        )
    show(answer, as_json, print_answer_footer)


@app.command("train-prompts")
def train_prompts_command(
    dataset: Annotated[Path, typer.Argument(help="An MVTec-layout dataset with masks to train on.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the prompts (safetensors).")] = Path(
        "prompts.safetensors"
    ),
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(min=1)] = 4,
    limit: Annotated[int | None, typer.Option(min=1, help="Train on at most this many images.")] = None,
    kb_dir: options.KbDir = None,
    encoder: options.Encoder = None,
) -> None:
    """Learn object-agnostic prompts with hierarchical sparse prompts (HSP) for zero-shot detection."""
    from reasoning.expert.training import train_prompts
    from reasoning.expert.zero_shot import require_joint

    with options.open_kb(options.settings_for(kb_dir=kb_dir, encoder=encoder)) as kb:
        require_joint(kb.encoder)
        result = train_prompts(
            kb.encoder,
            dataset,
            out_path,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            limit=limit,
            log=lambda line: out.print(line, highlight=False),
        )
    out.print(f"prompts written to {result['out']} (load them with --prompts)")


@app.command()
def demo(
    folder: Annotated[
        Path | None, typer.Argument(help="Where to write the demo (default: a temporary folder).")
    ] = None,
    encoder: options.Encoder = None,
    as_json: options.Json = False,
) -> None:
    """Build a demo knowledge base from generated material, ingest it and show what it holds."""
    from kbengine.demo import run_demo

    root = folder or Path(tempfile.mkdtemp(prefix="kbengine-demo-"))
    result = run_demo(root, options.settings_for(encoder=encoder), say=(lambda s: None) if as_json else out.print)
    show(result, as_json, print_demo)


@app.command()
def verify(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Ingest again the sources whose locks or blobs are damaged (from their files), delete damaged "
            "caches, and check again.",
        ),
    ] = False,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """Check the knowledge base: locks against source markers, blobs against their sha256, caches against
    their checksums. Exit code 0 when nothing is damaged, 1 when something is."""
    from kbengine.cli.rendering import print_verify

    with options.existing_kb(kb_dir, url, collection) as kb:
        report = kb.verify(repair=repair)
    show(report, as_json, print_verify)
    raise typer.Exit(0 if report.ok else 1)
