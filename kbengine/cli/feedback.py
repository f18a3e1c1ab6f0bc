"""``kbengine feedback``: an inspector's verdict on a photo becomes knowledge (``kb.feedback``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import app
from kbengine.cli.rendering import out, show

if TYPE_CHECKING:
    from kbengine.core.schemas import FeedbackReport


@app.command()
def feedback(
    image: Annotated[Path, typer.Argument(help="The photo the verdict is about (the one just inspected).")],
    category: Annotated[str, typer.Option("--category", help="The part's category, e.g. bottle.")],
    defect_type: Annotated[
        str,
        typer.Option(
            "--defect-type", help="What the part really is: its defect type, or good for a normal part (a reference)."
        ),
    ],
    note: Annotated[str | None, typer.Option("--note", help="The inspector's note, kept with the example.")] = None,
    domain: Annotated[
        str | None, typer.Option("--domain", help="Its domain (default: the category's, else industrial).")
    ] = None,
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    server: options.Server = None,
    api_key: options.ApiKey = None,
    as_json: options.Json = False,
) -> None:
    """Teach the knowledge base: store PHOTO as an example of its defect type (or, with --defect-type
    good, as a normal reference of its category). The same photo again relabels it; undo with
    kbengine remove --source feedback/<sha256> (kbengine docs --source feedback lists them)."""
    remote = options.service(server, api_key, kb_dir, url)
    if remote is not None:
        from kbengine.cli.remote import call
        from kbengine.core.schemas import FeedbackReport

        fields = {"category": category, "defect_type": defect_type, "note": note, "domain": domain}
        given = {name: value for name, value in fields.items() if value is not None}
        report = call(remote, "POST", "/v1/feedback", FeedbackReport, fields=given, files=[("image", image)])
    else:
        settings = options.settings_for(kb_dir=kb_dir, url=url, collection=collection)
        options.require_kb(settings)
        with options.open_kb(settings) as kb:
            report = kb.feedback(image, category=category, defect_type=defect_type, domain=domain, note=note)
    show(report, as_json, print_feedback)


def print_feedback(report: FeedbackReport) -> None:
    what = "a normal reference of" if report.normal_reference else f"a {report.defect_type} example of"
    verb = {"added": "stored as", "relabelled": "relabelled as", "updated": "updated:", "unchanged": "already"}
    line = f"{verb[report.status]} {what} {report.category}"
    if report.previous:
        line += f" (was {report.previous})"
    out.print(f"{line}  [{report.source}]", highlight=False, markup=False)
    extra = f"{report.regions_added} region lock(s) written" if report.regions_added else ""
    if extra:
        out.print(f"  {extra}", highlight=False, markup=False)
    for note in report.notes:
        out.print(f"  note: {note}", highlight=False, markup=False)
    out.print(f"  undo: kbengine remove --source {report.source}", highlight=False, markup=False)
