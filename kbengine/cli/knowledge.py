"""The commands that look at and edit what a knowledge base holds: docs, remove, relabel."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import app
from kbengine.cli.rendering import err, out, show

if TYPE_CHECKING:
    from kbengine.core.schemas import DocumentList, EditReport

DocOption = Annotated[list[str] | None, typer.Option("--doc", help="A document id (repeatable; see kbengine docs).")]
SourceOption = Annotated[
    Path | None, typer.Option("--source", help="The documents from this file, or from the files in this folder.")
]
CategoryOption = Annotated[str | None, typer.Option("--category", help="Only documents of this category.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]


@app.command()
def docs(
    category: CategoryOption = None,
    defect_type: Annotated[str | None, typer.Option("--defect-type", help="Only this defect type.")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="Only this domain.")] = None,
    source: SourceOption = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many documents.")] = 0,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 200,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """List the knowledge documents: id, category, defect type, title, locks per kind, source."""
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli.remote import call
        from kbengine.core.schemas import DocumentList

        query = {"category": category, "defect_type": defect_type, "domain": domain, "source": source}
        listing = call(remote, "GET", "/v1/documents", DocumentList, params={**query, "offset": offset, "limit": limit})
        show(listing, as_json, print_documents)
        return
    with options.existing_kb(kb_dir, url, collection, lazy_encoder=True) as kb:
        listing = kb.documents(
            category=category,
            defect_type=defect_type,
            domain=domain,
            source=str(source) if source else None,
            offset=offset,
            limit=limit,
        )
    show(listing, as_json, print_documents)


def print_documents(listing: DocumentList) -> None:
    from rich.table import Table

    if not listing.documents:
        out.print("no documents" + (" match" if listing.filters else ""))
        return
    table = Table("id", "category", "defect type", "title", "locks", "source")
    for d in listing.documents:
        locks = ", ".join(f"{n} {kind}" for kind, n in sorted(d.kinds.items()))
        source = (
            f"{d.source} ({d.feedback.at}{': ' + d.feedback.note if d.feedback.note else ''})"
            if d.feedback
            else d.source
        )
        table.add_row(d.doc_id, d.category, d.defect_type, d.title, locks, source)
    out.print(table)
    shown = f"{listing.offset + 1}-{listing.offset + len(listing.documents)}"
    err.print(f"{shown} of {listing.total} documents", highlight=False)


@app.command()
def remove(
    doc: DocOption = None,
    source: SourceOption = None,
    category: CategoryOption = None,
    dry_run: DryRun = False,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """Remove documents (by --doc, --source or --category) with every lock they have; a source left
    empty can be ingested again later."""
    with options.existing_kb(kb_dir, url, collection) as kb:
        report = kb.remove(doc, source=source, category=category, dry_run=dry_run)
    show(report, as_json, print_edit)


@app.command()
def relabel(
    doc: DocOption = None,
    source: SourceOption = None,
    in_category: Annotated[
        str | None, typer.Option("--in-category", help="Choose every document of this category.")
    ] = None,
    category: Annotated[str | None, typer.Option("--category", help="The new category.")] = None,
    defect_type: Annotated[str | None, typer.Option("--defect-type", help="The new defect type.")] = None,
    domain: Annotated[str | None, typer.Option("--domain", help="The new domain.")] = None,
    dry_run: DryRun = False,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """Fix the labels of documents (chosen by --doc, --source or --in-category): the new --defect-type,
    --category and/or --domain on every lock; region locks and type centroids follow."""
    with options.existing_kb(kb_dir, url, collection) as kb:
        report = kb.relabel(
            doc,
            source=source,
            in_category=in_category,
            category=category,
            defect_type=defect_type,
            domain=domain,
            dry_run=dry_run,
        )
    show(report, as_json, print_edit)


def print_edit(report: EditReport) -> None:
    from rich.table import Table

    verb = {"remove": "removed", "relabel": "relabelled"}[report.action]
    if report.dry_run:
        verb = f"would be {verb}"
    if not report.documents:
        out.print("no documents match: nothing changed")
        return
    table = Table("id", "category", "defect type", "title")
    for d in report.documents:
        table.add_row(d.doc_id, d.category, d.defect_type, d.title)
    out.print(table)
    labels = " to " + ", ".join(f"{k} {v}" for k, v in report.labels.items()) if report.labels else ""
    out.print(f"{len(report.documents)} document(s), {report.locks} lock(s) {verb}{labels}", highlight=False)
    if report.sources_removed:
        out.print(
            f"{len(report.sources_removed)} source(s) left empty: ingest them again to add them back", highlight=False
        )
    if not report.dry_run and (report.regions_added or report.regions_removed):
        out.print(f"region locks: {report.regions_added} added, {report.regions_removed} removed", highlight=False)
