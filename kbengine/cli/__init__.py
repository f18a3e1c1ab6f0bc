"""The ``kbengine`` command line: ``app`` (Typer) and ``run`` (the console entry point).

``app`` holds the commands (``commands``, ``evaluate``); ``rendering`` prints their results."""

from kbengine.cli.deferred import defer

defer()  # before anything imports scikit-learn

from kbengine.cli import commands, evaluate, feedback, knowledge, lifecycle, serve  # noqa: E402
from kbengine.cli.app import app, run  # noqa: E402

__all__ = ["app", "commands", "evaluate", "feedback", "knowledge", "lifecycle", "run", "serve"]
