"""The ``kbengine`` command line. Commands print results; the facade computes them."""

from __future__ import annotations

import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kbengine.errors import EmptyKnowledgeBaseError, KBEngineError
from kbengine.schemas import Detection, IngestReport, KBInfo, SeekEvalReport, SeekResult, ZsadReport
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
StrategyOpt = Annotated[
    str, typer.Option("--strategy", "-s", help="kde (Q2K: Bayesian mixture + KDE-weighted clusters) | topk | mmr.")
]
KOpt = Annotated[int, typer.Option("-k", "--k", min=1, help="How many knowledge documents to return.")]

eval_app = typer.Typer(help="Evaluate kbengine on a dataset: seek accuracy, ...", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


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


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_seek(result: SeekResult) -> None:
    text = f' + text "{result.text}"' if result.text else ""
    filters = ", ".join(f"{k}={v}" for k, v in result.filters.items())
    out.print(
        f"seek {escape(result.query)}{escape(text)} {escape(f'[{result.encoder}]')} "
        f"strategy {result.strategy}, k={result.k}" + (f", {escape(filters)}" if filters else ""),
        highlight=False,
    )
    t = result.predicted_defect_type
    if t is not None:
        runner = t.ranking[1] if len(t.ranking) > 1 else None
        versus = f" over {runner.category}/{runner.defect_type}" if runner else ""
        out.print(
            f"predicted defect type: [bold]{t.category}/{t.defect_type}[/bold] "
            f"(similarity {t.similarity:.3f}, margin {_fmt(t.margin)}{versus})",
            highlight=False,
        )
    if result.hits:
        table = Table("#", "score", "fused", "category", "defect type", "best lock", "cluster (W)")
        for h in result.hits:
            lock = h.best_lock
            where = f"{lock.kind}" + (f" p.{lock.page}" if lock.page else "") + f" [{lock.pipeline}]"
            cluster = "-" if h.cluster is None else f"{h.cluster} ({_fmt(h.cluster_weight, 2)})"
            table.add_row(
                str(h.rank),
                _fmt(h.score),
                _fmt(h.fused_score),
                h.category,
                h.defect_type,
                where,
                cluster,
            )
        out.print(table)
        for h in result.hits:
            detail = h.sections.description or h.sections.appearance
            lines = [f"{h.rank}. {escape(h.title)} — {escape(h.source)}" + (f" (page {h.page})" if h.page else "")]
            if detail:
                lines.append(f"   {escape(detail)}")
            if h.image_path:
                lines.append(f"   image: {escape(h.image_path)}")
            out.print("\n".join(lines), highlight=False)
    d = result.diagnostics
    if d.clusters:
        parts = [f"#{c.index} mean {c.mean:.3f} n={c.size} W={c.kde_weight:.3g} took {c.taken}" for c in d.clusters]
        out.print(f"clusters: K={d.k_clusters}: " + "; ".join(parts), highlight=False)
    out.print(
        f"{len(d.scores)} documents from {d.candidate_locks} candidate locks "
        f"({', '.join(p.name for p in d.pipelines)}); "
        + ", ".join(f"{name} {ms:.0f} ms" for name, ms in d.timings_ms.items()),
        highlight=False,
    )
    if result.note:
        err.print(f"note: {result.note}", highlight=False, markup=False)


@app.command()
def seek(
    image: Annotated[Path, typer.Argument(help="The query image (a photo of the part).")],
    k: KOpt = 5,
    strategy: StrategyOpt = "kde",
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
    focus: Annotated[
        bool | None,
        typer.Option("--focus/--no-focus", help="Add the AD Expert's defect-region key (needs normal references)."),
    ] = None,
    kb: KbOpt = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Q2K RAG: the knowledge documents that explain this image, and why they were chosen."""
    if plot is not None:
        from retrieval.plot import check_plot_path

        check_plot_path(plot)
    with _open(kb, url, collection, None) as base:
        result = base.seek(
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
        )
    if plot is not None:
        from retrieval.plot import plot_seek

        plot_seek(result, plot)
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        print_seek(result)
        if plot is not None:
            out.print(f"plot written to {plot}")


ModeOpt = Annotated[
    str, typer.Option("--mode", help="auto | zero-shot (CLIP prompts) | references (normal images) | both.")
]
PromptsOpt = Annotated[Path | None, typer.Option("--prompts", help="Learned prompts from train-prompts (CLIP).")]


def print_detection(det: Detection) -> None:
    verdict = {True: "[red]ANOMALOUS[/red]", False: "[green]normal[/green]", None: "uncalibrated"}[det.is_anomalous]
    threshold = f" (threshold {det.threshold:.2f})" if det.threshold is not None else ""
    category = escape(f"[{det.category or '?'}]")
    out.print(f"{escape(det.image)} {category}: {verdict} score {det.score:.3f}{threshold}")
    t = det.predicted_defect_type
    if t is not None:
        out.print(
            f"defect type: [bold]{t.defect_type}[/bold] (similarity {t.similarity:.3f}, margin {_fmt(t.margin)})",
            highlight=False,
        )
    for r in det.regions:
        out.print(
            f"  region {r.location}: box {r.bbox}, {r.area_fraction:.1%} of the image, peak {r.peak:.2f}",
            highlight=False,
        )
    e = det.evidence
    used = [
        w for w, on in (("zero-shot prompts", e.zero_shot), (f"{e.references} normal references", e.references)) if on
    ]
    if e.learned_prompts:
        used.append(f"learned prompts {e.learned_prompts}")
    out.print(
        f"evidence: {', '.join(used)}; domain {e.domain}" + (f"; {e.fusion}" if e.fusion else ""), highlight=False
    )
    for note in e.notes:
        err.print(f"note: {note}", highlight=False, markup=False)


@app.command()
def detect(
    image: Annotated[Path, typer.Argument(help="The image to inspect.")],
    category: Annotated[
        str | None, typer.Option(help="The part's category (default: the nearest knowledge's).")
    ] = None,
    mode: ModeOpt = "auto",
    prompts: PromptsOpt = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write a heatmap overlay with region boxes here.")
    ] = None,
    kb: KbOpt = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """AD Expert: anomaly score, map, regions and defect type of one image."""
    with _open(kb, url, collection, None) as base:
        result = base.detect(image, category, mode=mode, prompts=prompts)
    if out_path is not None:
        from reasoning.expert.overlay import write_overlay

        write_overlay(image, result, out_path)
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        print_detection(result)
        if out_path is not None:
            out.print(f"overlay written to {out_path}")


def print_zsad(report: ZsadReport) -> None:
    out.print(
        f"detection on {escape(report.dataset)}: mode {report.mode}, {report.shots} shot(s), {report.encoder}"
        + (f", prompts {report.prompts}" if report.prompts else "")
        + f" ({report.mean.images} images, {report.ms_per_image:.0f} ms/image)",
        highlight=False,
    )
    names = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_aupro", "pixel_f1_max")
    table = Table("category", "images", *(n.replace("_", " ") for n in names))
    for row in [*report.rows, report.mean]:
        values = [getattr(row, n) for n in names]
        table.add_row(
            row.category,
            str(row.images),
            *("-" if v is None else f"{v:.3f}" for v in values),
            end_section=row is report.rows[-1],
        )
    out.print(table)


@eval_app.command("zsad")
def eval_zsad_command(
    dataset: Annotated[Path, typer.Argument(help="An MVTec-layout dataset with ground-truth masks.")],
    mode: ModeOpt = "auto",
    shots: Annotated[
        int, typer.Option(min=0, help="Normal references per category from train/good (0 = zero-shot).")
    ] = 16,
    prompts: PromptsOpt = None,
    category: Annotated[list[str] | None, typer.Option(help="Only these categories (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many test images per category.")] = None,
    encoder: EncOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Anomaly detection metrics per category: image AUROC/AP/F1-max, pixel AUROC/AUPRO/F1-max."""
    from kbengine.evaluation import eval_zsad

    settings = Settings() if encoder is None else Settings(encoder=encoder)
    bar, update = _progress("detecting")
    with bar:
        report = eval_zsad(
            dataset,
            settings,
            mode=mode,
            shots=shots,
            prompts=prompts,
            categories=category,
            limit=limit,
            progress=update,
        )
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        print_zsad(report)


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
    kb: KbOpt = None,
    encoder: EncOpt = None,
) -> None:
    """Learn object-agnostic prompts with hierarchical sparse prompts (HSP) for zero-shot detection."""
    from reasoning.expert.training import train_prompts
    from reasoning.expert.zero_shot import require_joint

    with _open(kb, None, None, encoder) as base:
        require_joint(base.encoder)
        result = train_prompts(
            base.encoder,
            dataset,
            out_path,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            limit=limit,
            log=lambda line: out.print(line, highlight=False),
        )
    out.print(f"prompts written to {result['out']} (load them with --prompts)")


LlmOpt = Annotated[str | None, typer.Option("--llm", help="none (grounded report) | openai | hf (KBENGINE_LLM).")]
LlmUrlOpt = Annotated[str | None, typer.Option("--llm-url", help="OpenAI-compatible server URL (KBENGINE_LLM_URL).")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Model name (openai) or local model folder (hf) (KBENGINE_LLM_MODEL).")
]
SettingOpt = Annotated[str, typer.Option("--setting", help="seek (knowledge + expert) | vanilla (1-shot).")]


def _llm_settings(llm: str | None, llm_url: str | None, model: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if llm is not None:
        changes["llm"] = llm
    if llm_url is not None:
        changes["llm_url"] = llm_url
    if model is not None:
        changes["llm_model"] = model
    return changes


@app.command()
def ask(
    image: Annotated[Path, typer.Argument(help="The image to ask about.")],
    question: Annotated[str, typer.Argument(help="The question, e.g. 'Is there a defect? What type, where?'")],
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    model: ModelOpt = None,
    setting: SettingOpt = "seek",
    knowledge: Annotated[bool, typer.Option("--knowledge/--no-knowledge", help="Send retrieved knowledge.")] = True,
    expert: Annotated[bool, typer.Option("--expert/--no-expert", help="Send the AD Expert's findings.")] = True,
    category: Annotated[str | None, typer.Option(help="The part's category (default: inferred).")] = None,
    kb: KbOpt = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer a question about an image from the plant's knowledge and the AD Expert (streamed)."""
    from kbengine.facade import KnowledgeBase

    settings = Settings().model_copy(update=_llm_settings(llm, llm_url, model))
    with KnowledgeBase.open(kb, url=url, collection=collection, settings=settings) as base:
        stream = None if as_json else (lambda piece: out.print(piece, end="", highlight=False, markup=False))
        answer = base.ask(
            image, question, setting=setting, knowledge=knowledge, expert=expert, category=category, stream=stream
        )
    if as_json:
        out.print_json(answer.model_dump_json())
        return
    out.print()
    out.file.flush()
    cited = ", ".join(f"[{h.rank}] {h.title}" for h in answer.hits)
    err.print(f"({answer.llm}; knowledge: {cited or '-'})", highlight=False, markup=False)
    for note in answer.notes:
        err.print(f"note: {note}", highlight=False, markup=False)


@eval_app.command("mmad")
def eval_mmad_command(
    mmad_json: Annotated[Path, typer.Argument(help="MMAD's mmad.json (or a file in its format).")],
    images: Annotated[Path, typer.Option("--images", help="The image root the JSON's paths are relative to.")],
    setting: SettingOpt = "vanilla",
    llm: LlmOpt = None,
    llm_url: LlmUrlOpt = None,
    model: ModelOpt = None,
    types: Annotated[list[str] | None, typer.Option("--types", help="Only these question types (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images.")] = None,
    records: Annotated[
        Path | None, typer.Option("--records", help="JSONL of per-question records (resumed when it exists).")
    ] = None,
    kb: KbOpt = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """MMAD accuracy per question type (Anomaly Detection as balanced accuracy) and the average."""
    from kbengine.evaluation import eval_mmad
    from kbengine.facade import KnowledgeBase

    settings = Settings().model_copy(update=_llm_settings(llm, llm_url, model))
    bar, update = _progress("asking")
    use_kb = setting == "seek" or kb is not None or url is not None
    opened = KnowledgeBase.open(kb, url=url, collection=collection, settings=settings) if use_kb else nullcontext()
    with bar, opened as base:
        report = eval_mmad(mmad_json, images, settings, kb=base, setting=setting, types=types, limit=limit,
                           records=records, progress=update)  # fmt: skip
    if as_json:
        out.print_json(report.model_dump_json())
        return
    out.print(
        f"MMAD {escape(report.file)}: setting {report.setting}, {report.llm}, {report.questions} questions "
        f"({report.resumed} resumed from {escape(report.records)}), {report.score.unparseable} unparseable",
        highlight=False,
    )
    table = Table("question type", "questions", "accuracy")
    for name, value in report.score.per_type.items():
        table.add_row(name, str(report.score.counts.get(name, 0)), f"{value:.1%}")
    table.add_row("average", str(report.score.answered), f"{report.score.average:.1%}", end_section=True)
    out.print(table)


def print_seek_eval(report: SeekEvalReport) -> None:
    out.print(
        f"seek accuracy on {escape(report.dataset)} against {escape(report.knowledge)} "
        f"(strategy {report.strategy}, k={report.k}, {report.overall.queries} queries, {report.seconds:.0f}s)",
        highlight=False,
    )
    table = Table("category", "queries", "type top-1", "type top-3", "category top-1", "category top-3", "centroid")
    for row in [*report.rows, report.overall]:
        table.add_row(
            row.category,
            str(row.queries),
            f"{row.top1:.1%}",
            f"{row.top3:.1%}",
            f"{row.category_top1:.1%}",
            f"{row.category_top3:.1%}",
            "-" if row.type_accuracy is None else f"{row.type_accuracy:.1%}",
            end_section=row is report.rows[-1],
        )
    out.print(table)


@eval_app.command("seek")
def eval_seek_command(
    dataset: Annotated[Path, typer.Argument(help="An MVTec-layout dataset (root or one category).")],
    k: KOpt = 5,
    strategy: StrategyOpt = "kde",
    category: Annotated[list[str] | None, typer.Option(help="Only these categories (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many queries per category.")] = None,
    kb: Annotated[
        Path | None,
        typer.Option("--kb", help="Query this knowledge base instead of leave-one-out on the dataset itself."),
    ] = None,
    url: UrlOpt = None,
    collection: CollOpt = None,
    encoder: EncOpt = None,
    focus: Annotated[
        bool | None, typer.Option("--focus/--no-focus", help="Add the defect-region key to every query.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Seek accuracy: each defective test image queries the knowledge; is the right (category,
    defect type) document first, in the top 3? Leave-one-out on the dataset unless --kb/--url."""
    from kbengine.evaluation import eval_seek

    settings = Settings() if encoder is None else Settings(encoder=encoder)
    bar, update = _progress("seeking")
    opened = _open(kb, url, collection, encoder) if kb is not None or url is not None else nullcontext()
    with bar, opened as base:
        report = eval_seek(
            dataset,
            settings,
            kb=base,
            strategy=strategy,
            k=k,
            categories=category,
            limit=limit,
            progress=update,
            ingest_progress=update,
            focus=focus,
        )
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        print_seek_eval(report)


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
    print_seek(result.seek)
    print_detection(result.detection)
    out.print(f"heatmap overlay: {result.overlay}", highlight=False)
    out.print(f"\nask: {result.answer.question}\n{escape(result.answer.text)}", highlight=False)
    out.print(
        f"Knowledge base ready at {result.kb}. Try: kbengine seek {result.query} --kb {result.kb} --plot scores.png"
        f" or kbengine detect {result.query} --kb {result.kb} --out heat.png"
        f' or kbengine ask {result.query} "What defect is this?" --kb {result.kb}',
        highlight=False,
    )


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
