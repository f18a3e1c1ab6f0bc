"""The lifecycle commands: ``snapshot create|restore``, ``migrate`` and ``gc`` (see
:mod:`kbengine.lifecycle`). Each prints the report its function returns."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import app
from kbengine.cli.rendering import err, out, progress_bar, show
from kbengine.core.errors import InvalidInputError

if TYPE_CHECKING:
    from kbengine.lifecycle import GcReport, MigrateReport, RestoreReport, SnapshotReport

snapshot_app = typer.Typer(
    help="Back a knowledge base up into one file (store, blobs, manifest) and restore it.", no_args_is_help=True
)
app.add_typer(snapshot_app, name="snapshot")

SHOWN = 5


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def print_snapshot(report: SnapshotReport) -> None:
    out.print(
        f"snapshot {report.path} ({report.compression}, {_size(report.bytes)}): {report.locks} locks, "
        f"{report.sources} sources, {report.blobs} blobs; encoder {report.encoder}; {report.seconds:.1f} s",
        highlight=False,
        markup=False,
    )
    for what, names in (("missing", report.missing_blobs), ("damaged (left out)", report.damaged_blobs)):
        if names:
            err.print(
                f"warning: {len(names)} blob(s) {what}, e.g. {names[0]}; run kbengine verify",
                highlight=False,
                markup=False,
            )


def print_restore(report: RestoreReport) -> None:
    verb = "replaced" if report.replaced else "restored"
    out.print(
        f"{verb} {report.kb} from {report.path} (taken {report.created}): {report.locks} locks, "
        f"{report.sources} sources, {report.blobs} blobs; encoder {report.encoder}; {report.seconds:.1f} s",
        highlight=False,
        markup=False,
    )


def print_migrate(report: MigrateReport) -> None:
    out.print(
        f"migrated {report.source} -> {report.target}: {report.points} points, {report.copied} copied "
        f"({report.rate:.0f}/s), {report.skipped} already there, {report.removed} removed; blobs: "
        f"{report.blobs_copied} copied, {report.blobs_present} already there, in {report.blob_dir}",
        highlight=False,
        markup=False,
    )
    if report.missing_blobs:
        err.print(
            f"warning: {len(report.missing_blobs)} blob(s) missing or damaged in the source, e.g. "
            f"{report.missing_blobs[0]}; run kbengine verify on it",
            highlight=False,
            markup=False,
        )
    check = report.verification
    if check is None:
        return
    said = (
        f"{check.source_points} / {check.target_points} points, {check.payloads_checked} payloads, "
        f"{check.vectors_checked} vectors, {check.seeks_checked} seeks compared"
    )
    out.print(f"verify: {'ok' if check.ok else 'DIFFERENT'} ({said})", highlight=False, markup=False)
    for what, ids in (
        ("missing in the target", check.missing),
        ("only in the target", check.extra),
        ("payloads differ", check.payload_mismatches),
        ("vectors differ", check.vector_mismatches),
        ("seek results differ for", check.seek_mismatches),
    ):
        if ids:
            out.print(f"  {what}: {', '.join(ids[:SHOWN])}", highlight=False, markup=False)


def print_gc(report: GcReport) -> None:
    verb = "would remove" if report.dry_run else "removed"
    out.print(
        f"{verb} {len(report.removed_blobs)} blob(s), {len(report.removed_caches)} cache file(s), "
        f"{len(report.removed_temps)} temp file(s) ({_size(report.bytes_freed)}); kept {report.blobs_kept} "
        f"blob(s) in {report.blob_dir}",
        highlight=False,
        markup=False,
    )
    if report.blobs_recent:
        err.print(
            f"note: {report.blobs_recent} unreferenced blob(s) younger than --min-age kept (an ingest may be "
            "writing them)",
            highlight=False,
            markup=False,
        )
    if report.blobs_missing:
        err.print(
            f"warning: {report.blobs_missing} referenced blob(s) are missing; run kbengine verify",
            highlight=False,
            markup=False,
        )
    if report.dry_run:
        for name in [*report.removed_blobs, *report.removed_caches, *report.removed_temps][:SHOWN]:
            out.print(f"  {name}", highlight=False, markup=False)


@snapshot_app.command("create")
def snapshot_create(
    file: Annotated[Path, typer.Argument(help="The snapshot file: NAME.tar.zst (zstd), .tar.gz or .tar.")],
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.")] = False,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """Write the knowledge base to one file, while holding its lock.

    The file holds every point, the blobs its locks name and a manifest with the sha256 of each member."""
    with options.existing_kb(kb_dir, url, collection) as kb:
        report = kb.snapshot(file, force=force)
    show(report, as_json, print_snapshot)


@snapshot_app.command("restore")
def snapshot_restore(
    file: Annotated[Path, typer.Argument(help="A snapshot file written by 'kbengine snapshot create'.")],
    kb_dir: options.KbDir = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the knowledge base in --kb if there is one.")] = False,
    as_json: options.Json = False,
) -> None:
    """Restore a snapshot as an embedded knowledge base (--kb DIR).

    Every member is verified against the manifest first: a snapshot that does not verify writes nothing."""
    from kbengine.lifecycle import restore_snapshot

    settings = options.settings_for(kb_dir=kb_dir).model_copy(update={"qdrant_url": None})
    report = restore_snapshot(file, settings, force=force)
    show(report, as_json, print_restore)


@app.command()
def migrate(
    kb_dir: options.KbDir = None,
    to_url: Annotated[
        str | None, typer.Option("--to-url", help="Copy the embedded --kb into this Qdrant server (--collection).")
    ] = None,
    from_url: Annotated[
        str | None, typer.Option("--from-url", help="Copy this Qdrant server's --collection into --to-kb.")
    ] = None,
    to_kb: Annotated[
        Path | None, typer.Option("--to-kb", help="The embedded knowledge base folder to copy into (--from-url).")
    ] = None,
    collection: options.Collection = None,
    blob_dir: Annotated[
        Path | None,
        typer.Option(
            "--blob-dir", help="The server side's blob folder, a volume every worker shares (KBENGINE_BLOB_DIR)."
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Then compare counts, payloads, sampled vectors and seek results."),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Make an existing target an exact copy, deleting points the source lacks."),
    ] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Points per batch.")] = 256,
    as_json: options.Json = False,
) -> None:
    """Copy a knowledge base to a Qdrant server (--kb DIR --to-url URL) or back (--from-url URL --to-kb DIR).

    Points go in batches with their blobs; run it again after an interruption and it resumes. Shards and
    replication of a new collection: KBENGINE_SHARD_NUMBER, KBENGINE_REPLICATION_FACTOR. Exit code 1 when
    --verify finds a difference."""
    from kbengine.lifecycle import migrate_to

    if (to_url is None) == (from_url is None):
        raise InvalidInputError("give one direction: --kb DIR --to-url URL, or --from-url URL --to-kb DIR")
    base = options.settings_for(kb_dir=kb_dir, collection=collection, blob_dir=blob_dir)
    server = {"qdrant_url": to_url or from_url}
    embedded = {"qdrant_url": None, "blob_dir": None}
    if to_url is not None:
        if to_kb is not None:
            raise InvalidInputError("--to-kb goes with --from-url; with --to-url the source is --kb DIR")
        source, target = base.model_copy(update=embedded), base.model_copy(update=server)
        options.require_kb(source)
    else:
        if to_kb is None:
            raise InvalidInputError("--from-url needs --to-kb DIR: the embedded knowledge base to copy into")
        source, target = base.model_copy(update=server), base.model_copy(update={**embedded, "kb": to_kb})
    with options.open_kb(source) as kb:
        bar, update = progress_bar("migrating")
        with bar:
            encoder = kb.encoder if verify else None  # the seeks --verify compares
            report = migrate_to(
                kb, target, batch=batch, verify=verify, replace=replace, progress=update, encoder=encoder
            )
    show(report, as_json, print_migrate)
    if to_url is not None and Path(report.blob_dir).resolve() == (source.kb / "blobs").resolve() and not as_json:
        err.print(
            f"note: the blobs stay in {report.blob_dir}; for replicas on other machines copy them to a shared "
            "volume with --blob-dir (KBENGINE_BLOB_DIR)",
            highlight=False,
            markup=False,
        )
    raise typer.Exit(1 if report.verification is not None and not report.verification.ok else 0)


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")] = False,
    min_age: Annotated[
        float | None,
        typer.Option(
            "--min-age",
            min=0,
            help="Only remove unreferenced blobs older than this many seconds (default 0 embedded, 3600 server).",
        ),
    ] = None,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    as_json: options.Json = False,
) -> None:
    """Remove the blobs no lock references and the cache entries nothing uses (never a referenced blob)."""
    with options.existing_kb(kb_dir, url, collection) as kb:
        report = kb.gc(dry_run=dry_run, min_age=min_age)
    show(report, as_json, print_gc)
