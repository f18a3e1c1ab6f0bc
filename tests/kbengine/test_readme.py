"""The README's walk-through runs as written: every ```bash block that uses the demo knowledge base
is run, line by line, in a fresh folder with the installed ``kbengine`` on the PATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def demo_blocks(text: str) -> list[list[str]]:
    """The commands of each bash block that uses ``demo/kb`` (comments and ``source`` lines dropped)."""
    blocks = []
    for body in FENCE.findall(text):
        if "demo/kb" not in body:
            continue
        commands = [
            line for line in body.splitlines() if line.strip() and not line.lstrip().startswith(("#", "source "))
        ]
        blocks.append(commands)
    return blocks


def test_the_readme_has_a_walk_through_on_the_demo_knowledge_base():
    blocks = demo_blocks(README.read_text())
    assert blocks and sum(len(b) for b in blocks) >= 5
    assert any(c.startswith("kbengine demo demo") for b in blocks for c in b)


def test_the_readme_walk_through_runs_as_written(tmp_path: Path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KBENGINE_KB", None)
    for block in demo_blocks(README.read_text()):
        for command in block:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    assert (tmp_path / "demo" / "heatmap.png").stat().st_size > 0
    seek = json.loads((tmp_path / "demo" / "seek.json").read_text())
    assert seek["hits"] and seek["hits"][0]["category"] == "disc"
