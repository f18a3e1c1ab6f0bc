"""``kbengine eval seek | zsad | mmad``: each prints a report the evaluation harness computed."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import eval_app
from kbengine.cli.rendering import print_mmad, print_seek_eval, print_zsad, progress_bar, show


@eval_app.command("seek")
def eval_seek_command(
    dataset: Annotated[Path, typer.Argument(help="An MVTec-layout dataset (root or one category).")],
    k: options.K = 5,
    strategy: options.Strategy = "kde",
    category: options.Categories = None,
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many queries per category (per defect type with --examples)."),
    ] = None,
    examples: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Build the knowledge from N defect images per type (and --references normal images per "
            "category) and query with the rest, instead of leave-one-out.",
        ),
    ] = None,
    references: Annotated[int, typer.Option(min=0, help="Normal references per category with --examples.")] = 16,
    kb_dir: Annotated[
        Path | None,
        typer.Option("--kb", help="Query this knowledge base instead of leave-one-out on the dataset itself."),
    ] = None,
    url: options.Url = None,
    collection: options.Collection = None,
    encoder: options.Encoder = None,
    focus: Annotated[
        bool | None, typer.Option("--focus/--no-focus", help="Add the defect-region key to every query.")
    ] = None,
    as_json: options.Json = False,
) -> None:
    """Seek accuracy: each defective test image queries the knowledge; is the right (category,
    defect type) document first, in the top 3? Per key (global, region, fused). Leave-one-out on the
    dataset unless --kb/--url or --examples."""
    from kbengine.evaluation.seek import eval_seek

    settings = options.settings_for(kb_dir=kb_dir, url=url, collection=collection, encoder=encoder)
    bar, update = progress_bar("seeking")
    opened = options.open_kb(settings) if kb_dir is not None or url is not None else nullcontext()
    with bar, opened as kb:
        report = eval_seek(
            dataset,
            settings,
            kb=kb,
            strategy=strategy,
            k=k,
            categories=category,
            limit=limit,
            examples=examples,
            references=references,
            progress=update,
            ingest_progress=update,
            focus=focus,
        )
    show(report, as_json, print_seek_eval)


@eval_app.command("zsad")
def eval_zsad_command(
    dataset: Annotated[Path, typer.Argument(help="An MVTec-layout dataset with ground-truth masks.")],
    mode: options.Mode = "auto",
    shots: Annotated[
        int, typer.Option(min=0, help="Normal references per category from train/good (0 = zero-shot).")
    ] = 16,
    pick: Annotated[
        str,
        typer.Option(
            help="first: the first N train/good images (the usual protocol); diverse: the medoids of N clusters "
            "of all of them (by global embedding), as a knowledge base picks past its reference cap."
        ),
    ] = "first",
    prompts: options.Prompts = None,
    category: options.Categories = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many test images per category.")] = None,
    encoder: options.Encoder = None,
    as_json: options.Json = False,
) -> None:
    """Anomaly detection metrics per category: image AUROC/AP/F1-max, pixel AUROC/AUPRO/F1-max."""
    from kbengine.evaluation.zsad import eval_zsad

    bar, update = progress_bar("detecting")
    with bar:
        report = eval_zsad(
            dataset,
            options.settings_for(encoder=encoder),
            mode=mode,
            shots=shots,
            pick=pick,
            prompts=prompts,
            categories=category,
            limit=limit,
            progress=update,
        )
    show(report, as_json, print_zsad)


@eval_app.command("mmad")
def eval_mmad_command(
    mmad_json: Annotated[Path, typer.Argument(help="MMAD's mmad.json (or a file in its format).")],
    images: Annotated[Path, typer.Option("--images", help="The image root the JSON's paths are relative to.")],
    setting: options.Setting = "vanilla",
    llm: options.Llm = None,
    llm_url: options.LlmUrl = None,
    model: options.Model = None,
    types: Annotated[list[str] | None, typer.Option("--types", help="Only these question types (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images.")] = None,
    records: Annotated[
        Path | None, typer.Option("--records", help="JSONL of per-question records (resumed when it exists).")
    ] = None,
    kb_dir: Annotated[Path | None, typer.Option("--kb", help="The knowledge base (--setting seek).")] = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """MMAD accuracy per question type (Anomaly Detection as balanced accuracy) and the average."""
    from kbengine.evaluation.mmad.run import eval_mmad

    settings = options.settings_for(
        kb_dir=kb_dir, url=url, collection=collection, llm=llm, llm_url=llm_url, model=model
    )
    bar, update = progress_bar("asking")
    use_kb = setting == "seek" or kb_dir is not None or url is not None
    opened = options.open_kb(settings) if use_kb else nullcontext()
    with bar, opened as kb:
        report = eval_mmad(mmad_json, images, settings, kb=kb, setting=setting, types=types, limit=limit,
                           records=records, progress=update)  # fmt: skip
    show(report, as_json, print_mmad)
