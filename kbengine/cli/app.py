"""The ``kbengine`` Typer app, the options commands share, and the console entry point."""

from __future__ import annotations

import contextlib
import os
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


def show_version(given: bool) -> None:
    if given:
        from kbengine.core import __version__

        typer.echo(f"kbengine {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=show_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """kbengine's commands; ``--debug`` is read by :func:`run`."""


QUICK_EXIT = frozenset({"seek", "detect", "ask", "info", "docs"})
"""Commands that only read: once one has finished (its knowledge base closed, its output
written), the console entry ends the process at once instead of finalising torch, scikit-learn
and SciPy module by module, which took 0.6 s of a 3.2 s cold ``kbengine seek``."""


def run(argv: list[str] | None = None) -> Any:
    """Console entry point: our errors become one line on stderr and exit code 2 (a traceback
    with ``--debug``)."""
    args = sys.argv[1:] if argv is None else argv
    command = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
    try:
        return app(args=args, prog_name="kbengine")
    except SystemExit as done:
        if argv is None and command < len(args) and args[command] in QUICK_EXIT and done.code in (0, None):
            quick_exit()
        raise
    except KBEngineError as e:
        if "--debug" in args[:command]:  # an option of kbengine itself, before the command
            raise
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(2)


def quick_exit() -> None:
    """End a finished read-only command's process now (exit code 0): its output is flushed, and
    nothing it wrote waits in a Python buffer."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(0)
