"""The ``kbengine`` Typer app, the options commands share, and the console entry point."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kbengine.cli.rendering import err
from kbengine.core.errors import KBEngineError

app = typer.Typer(
    help="kbengine: knowledge-grounded visual inspection (ADSeeker). Store options: --kb DIR or --url URL.",
    no_args_is_help=True,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate kbengine on a dataset: seek accuracy, detection, MMAD.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False) -> None:
    """kbengine's commands; ``--debug`` is read by :func:`run`."""


def run(argv: list[str] | None = None) -> Any:
    """Console entry point: our errors become one line on stderr and exit code 2 (a traceback
    with ``--debug``)."""
    args = sys.argv[1:] if argv is None else argv
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
    try:
        return app(args=args, prog_name="kbengine")
    except KBEngineError as e:
        if "--debug" in args[:command]:  # an option of kbengine itself, before the command
            raise
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)
