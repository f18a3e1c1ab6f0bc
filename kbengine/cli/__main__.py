"""``python -m kbengine.cli``: the same as the ``kbengine`` command."""

from kbengine.cli import run

if __name__ == "__main__":
    run()
