"""The ``kbengine`` command line: ``app`` (Typer) and ``run`` (the console entry point).

``app`` holds the commands (``commands``, ``evaluate``); ``rendering`` prints their results."""

from kbengine.cli import commands, evaluate, knowledge, lifecycle, serve
from kbengine.cli.app import app, run

__all__ = ["app", "commands", "evaluate", "knowledge", "lifecycle", "run", "serve"]
