"""How the CLI shows results: rich tables and lines on stdout, notes and failures on stderr.
Printers take a result model and print it; they never compute one. Tables and progress bars
load with the first one (``kbengine --help`` loads neither)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.progress import Progress

    from kbengine.core.schemas import Answer, Detection, IngestReport, KBInfo, LabelSource, SeekResult
    from kbengine.demo import DemoResult
    from kbengine.evaluation.reports import MMADEvalReport, SeekEvalReport, SeekEvalRow, ZsadReport, ZsadRow

Result = TypeVar("Result", bound="BaseModel")

out = Console(soft_wrap=True)
err = Console(stderr=True)


def print_preview(report: IngestReport) -> None:
    """``ingest --dry-run``: each document with its labels' sources, figures and captions."""
    rows = []
    for doc in report.preview:
        labels = doc.labels

        def said(value: str, source: LabelSource | None) -> str:
            return value if source is None else f"{value} ({source.source}, {source.confidence:.2f})"

        figures = "; ".join(f"p.{f.page}: {f.caption}" if f.caption else f"p.{f.page}" for f in doc.figures)
        pages = ",".join(map(str, doc.pages)) or "-"
        if doc.ocr_pages:  # read by OCR: all its pages, or those named
            pages += (
                " OCR" if sorted(doc.ocr_pages) == sorted(doc.pages) else f" OCR:{','.join(map(str, doc.ocr_pages))}"
            )
        rows.append(
            [
                Path(doc.source).name,
                pages,
                doc.title,
                said(doc.category, labels.category if labels else None),
                said(doc.defect_type, labels.defect_type if labels else None),
                figures or (f"{doc.photos} photo(s)" if doc.photos else "-"),
                ", ".join(doc.sections) or "-",
            ]
        )
    out.print(f"dry run: {len(report.preview)} document(s), nothing written", highlight=False)
    print_table(["source", "pages", "title", "category", "defect type", "figures", "text sections"], rows)
    print_found(report, tables=True)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, markup=False)


RULINGS = {"grid": "a grid", "rules": "horizontal rules only", "whitespace": "whitespace (no rules)"}


def print_found(report: IngestReport, tables: bool) -> None:
    """The defect tables found (``tables``: each with its header) and the pages read by OCR, or
    that needed it and could not be read."""
    if tables:
        for table in report.tables:
            pages = "-".join(map(str, sorted({table.pages[0], table.pages[-1]})))
            out.print(
                f"table {Path(table.source).name} p.{pages}: {table.rows} row(s), ruled by {RULINGS[table.ruling]}; "
                f"header: {' | '.join(table.header)}",
                highlight=False,
                markup=False,
            )
    elif report.tables:
        rows = sum(t.rows for t in report.tables)
        out.print(f"defect tables: {len(report.tables)} ({rows} rows, a document each)", highlight=False)
    for page in report.ocr:
        where = f"{Path(page.source).name} p.{page.page}"
        if page.problem is None:
            out.print(
                f"OCR {where}: {page.characters} characters ({page.language}, {page.dpi} dpi)",
                highlight=False,
                markup=False,
            )
        else:
            err.print(f"OCR {where}: {page.problem}", highlight=False, markup=False)


def print_report(report: IngestReport) -> None:
    if report.dry_run:
        print_preview(report)
    else:
        print_ingest(report)
    for doc in report.unlabeled:
        where = f"{escape(doc.source)}" + (f" page {doc.page}" if doc.page else "")
        err.print(
            f"[yellow]unlabeled[/yellow] {where} ({escape(doc.title)}): no {' or '.join(doc.missing)}; "
            f"{escape(doc.hint)}",
            highlight=False,
        )
    for failure in report.failed:
        err.print(
            f"[red]failed[/red] {escape(failure.path)}: {escape(failure.reason)}", highlight=False, soft_wrap=True
        )


def print_ingest(report: IngestReport) -> None:
    changed = sum(1 for s in report.sources if s.status in ("added", "replaced"))
    unchanged = sum(1 for s in report.sources if s.status == "unchanged")
    out.print(
        f"ingested {changed} source(s) ({unchanged} unchanged) -> {report.documents} document(s): "
        f"{report.pages} pages, {report.figures} figures, {report.images} images, {report.texts} text chunks; "
        f"{report.locks_added} locks added, {report.locks_removed} removed in {report.seconds:.1f}s "
        + escape(f"[{report.encoder}]"),
        highlight=False,
    )
    if report.regions_added or report.regions_removed:
        out.print(
            f"region locks: {report.regions_added} added, {report.regions_removed} removed "
            "(defect examples against their category's normal references)",
            highlight=False,
        )
    if report.without_references:
        err.print(
            f"note: no region locks for {', '.join(report.without_references)}: no normal references "
            "(add good photos of those parts to seek by the defect's region)",
            highlight=False,
            markup=False,
        )
    print_found(report, tables=False)
    for note in report.notes:
        err.print(f"note: {note}", highlight=False, markup=False)


def print_info(info: KBInfo) -> None:
    from rich.table import Table

    out.print(f"knowledge base: {info.location} ({info.store})")
    text = f"{info.text_dim}-d text" if info.text_dim else "no text"
    joint = "joint space" if info.joint_space else "separate spaces: no image->text scoring"
    out.print(f"encoder: {info.encoder} ({info.image_dim}-d image, {text}; {joint})")
    out.print(
        f"{info.documents} documents, {info.locks} locks from {info.sources} sources; "
        f"domains: {', '.join(info.domains) or '-'}"
    )
    if info.without_references:
        err.print(
            "note: no normal references, so no region locks, for "
            + ", ".join(info.without_references)
            + "; ingest good photos of those parts (<category>/good/) to seek by the defect's region",
            highlight=False,
            markup=False,
        )
    elif not info.region_locks and info.locks:
        err.print("note: made before region locks; ingest into a new knowledge base to seek by region", markup=False)
    if not info.entries:
        return
    kinds = sorted({k for e in info.entries for k in e.locks})
    fed = any(e.feedback for e in info.entries)
    table = Table("category", "defect type", "documents", *(["from feedback"] if fed else []), *kinds)
    for e in info.entries:
        counts = [str(e.documents), *([str(e.feedback)] if fed else []), *(str(e.locks.get(k, 0)) for k in kinds)]
        table.add_row(e.category, e.defect_type, *counts)
    out.print(table)


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_seek(result: SeekResult) -> None:
    from rich.table import Table

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
            f"(similarity {t.similarity:.3f}, margin {fmt(t.margin)}{versus}; key {t.key})",
            highlight=False,
        )
    if result.hits:
        table = Table("#", "score", "fused", "category", "defect type", "best lock", "cluster (W)")
        for h in result.hits:
            lock = h.best_lock
            where = f"{lock.kind}" + (f" p.{lock.page}" if lock.page else "") + f" [{lock.pipeline}]"
            cluster = "-" if h.cluster is None else f"{h.cluster} ({fmt(h.cluster_weight, 2)})"
            table.add_row(
                str(h.rank),
                fmt(h.score),
                fmt(h.fused_score),
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
    if d.region.used:
        how = "inferred" if d.region.category_inferred else "given"
        out.print(
            f"region key: against the {d.region.references} normal references of {d.region.category} ({how})",
            highlight=False,
        )
    elif d.region.note:
        err.print(f"note: global key only: {d.region.note}", highlight=False, markup=False)
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


def print_detection(det: Detection) -> None:
    verdict = {True: "[red]ANOMALOUS[/red]", False: "[green]normal[/green]", None: "uncalibrated"}[det.is_anomalous]
    threshold = f" (threshold {det.threshold:.2f})" if det.threshold is not None else ""
    category = escape(f"[{det.category or '?'}]")
    out.print(f"{escape(det.image)} {category}: {verdict} score {det.score:.3f}{threshold}")
    t = det.predicted_defect_type
    if t is not None:
        out.print(
            f"defect type: [bold]{t.defect_type}[/bold] (similarity {t.similarity:.3f}, margin {fmt(t.margin)}; "
            f"key {t.key})",
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


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str] | None = None) -> None:
    """A table of ``rows``, and a ``total`` row below a line when given."""
    from rich.table import Table

    table = Table(*columns)
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=total is not None and i == len(rows) - 1)
    if total is not None:
        table.add_row(*total)
    out.print(table)


def _metric(value: float | None, percent: bool = False) -> str:
    return "-" if value is None else f"{value:.1%}" if percent else f"{value:.3f}"


def print_zsad(report: ZsadReport) -> None:
    out.print(
        f"detection on {escape(report.dataset)}: mode {report.mode}, {report.shots} shot(s) ({report.pick}), "
        f"{report.encoder}"
        + (f", prompts {report.prompts}" if report.prompts else "")
        + f" ({report.mean.images} images, {report.ms_per_image:.0f} ms/image)",
        highlight=False,
    )
    from kbengine.evaluation.reports import ZSAD_METRICS as names

    def cells(row: ZsadRow) -> list[str]:
        return [row.category, str(row.images), *(_metric(getattr(row, n)) for n in names)]

    short = {"image": "img", "pixel": "px", "region": "region", "box": "box"}
    columns = ["category", "images", *(" ".join(short.get(w, w) for w in n.split("_")) for n in names)]
    print_table(columns, [cells(r) for r in report.rows], cells(report.mean))
    rules = [r for r in report.rows if r.score_rule]
    if rules:
        out.print("image score rule and views per category (chosen from the references alone):", highlight=False)
        print_table(
            ["category", "image score rule", "views"], [[r.category, r.score_rule or "", r.views or ""] for r in rules]
        )


def print_seek_eval(report: SeekEvalReport) -> None:
    out.print(
        f"seek accuracy on {escape(report.dataset)} against {escape(report.knowledge)} "
        f"(strategy {report.strategy}, k={report.k}, {report.overall.queries} queries, {report.seconds:.0f}s)",
        highlight=False,
    )
    names = ("top1", "top3", "category_top1", "category_top3", "type_accuracy")

    def cells(row: SeekEvalRow) -> list[str]:
        return [row.category, str(row.queries), *(_metric(getattr(row, n), percent=True) for n in names)]

    columns = ["category", "queries", "type top-1", "type top-3", "category top-1", "category top-3", "centroid"]
    print_table(columns, [cells(r) for r in report.rows], cells(report.overall))
    keys = report.overall.keys
    if keys:
        rows = [
            [name, str(s.queries), _metric(s.top1, True), _metric(s.top3, True), _metric(s.type_accuracy, True)]
            for name, s in keys.items()
        ]
        out.print("per key (auto = region and global fused; region needs normal references):", highlight=False)
        print_table(["key", "queries", "type top-1", "type top-3", "type prediction"], rows)


def print_mmad(report: MMADEvalReport) -> None:
    out.print(
        f"MMAD {escape(report.file)}: setting {report.setting}, {report.llm}, {report.questions} questions "
        f"({report.resumed} resumed from {escape(report.records)}), {report.score.unparseable} unparseable",
        highlight=False,
    )
    score = report.score
    rows = [[name, str(score.counts.get(name, 0)), f"{value:.1%}"] for name, value in score.per_type.items()]
    total = ["average", str(score.answered), f"{score.average:.1%}"]
    print_table(["question type", "questions", "accuracy"], rows, total)


def print_answer_footer(answer: Answer) -> None:
    """After a streamed answer: the backend and the cited knowledge, and the notes, on stderr."""
    out.print()
    out.file.flush()
    cited = ", ".join(f"[{h.rank}] {h.title}" for h in answer.hits)
    err.print(f"({answer.llm}; knowledge: {cited or '-'})", highlight=False, markup=False)
    for note in answer.notes:
        err.print(f"note: {note}", highlight=False, markup=False)


def print_demo(result: DemoResult) -> None:
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


def print_json(result: BaseModel) -> None:
    out.print_json(result.model_dump_json())


def show(result: Result, as_json: bool, printer: Callable[[Result], None]) -> None:
    """``--json``: the result's JSON; else the human form ``printer`` gives."""
    if as_json:
        print_json(result)
    else:
        printer(result)


def progress_bar(label: str) -> tuple[Progress, Callable[[int, int, str], None]]:
    """A transient progress bar on stderr (off when stderr is not a terminal) and its callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


if TYPE_CHECKING:
    from kbengine.verify import VerifyReport

SHOWN_FILES = 5
"""Damaged files a printed ``verify`` problem lists (``--json`` has them all)."""


def print_verify(report: VerifyReport) -> None:
    """``verify``: what ``--repair`` did, then ``ok (...)`` or each problem with how to repair it."""
    for action in report.repaired:
        out.print(f"repaired: {action}", highlight=False, markup=False)
    counts = f"{report.locks} locks, {report.blobs} blobs, {report.sources} sources"
    damaged = [p for p in report.problems if p.damage]
    if damaged:
        out.print(f"damaged: {len(damaged)} problem(s) in {report.location} ({counts})", highlight=False)
    else:
        out.print(f"ok ({counts})", highlight=False)
    for p in damaged:
        out.print(f"[red]{p.kind}[/red] {escape(p.source or p.files[0])}: {escape(p.detail)}", highlight=False)
        shown = p.files if p.source is not None else p.files[1:]
        for name in shown[:SHOWN_FILES]:
            out.print(f"  {name}", highlight=False, markup=False)
        if len(shown) > SHOWN_FILES:
            out.print(f"  ... and {len(shown) - SHOWN_FILES} more (--json lists them all)", highlight=False)
        out.print(f"  repair: {p.repair}", highlight=False, markup=False)
    for p in report.problems:
        if not p.damage:
            err.print(f"note: {p.kind}: {p.source}: {p.detail}; {p.repair}", highlight=False, markup=False)
