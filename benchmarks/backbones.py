"""Speed and memory of each image backbone: one forward pass, detect at 256x256 and 1024x1024
(``detect_sizes.py``, 16 references), and the peak RSS of that run, one process per backbone.

    python benchmarks/backbones.py [--images 12] [--only lite0,lite2,dinov2-small]

Backbones: the packaged EfficientNet-Lite0/1/2 (real weights), and DINOv2 ViT-S/14 and ViT-B/14
built from their published configurations with random weights (no hub here): the time and memory
of a network depend on its architecture and input size, not on its weights, so these are the
figures a user with the real weights gets (at ``KBENGINE_DINO_IMAGE_SIZE``, default 224)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DINO = {
    "dinov2-small": {"hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12},
    "dinov2-base": {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12},
}
BACKBONES = ("lite0", "lite1", "lite2", *DINO)


def dino_folder(name: str, root: Path) -> Path:
    """A DINOv2 of the published ``name`` configuration, random weights, saved as transformers does."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    folder = root / name
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        config = Dinov2Config(image_size=518, patch_size=14, mlp_ratio=4, **DINO[name])
        Dinov2Model(config).eval().save_pretrained(folder)
    return folder


def run(name: str, root: Path, images: int) -> str:
    env = dict(os.environ)
    if name in DINO:
        env |= {"KBENGINE_ENCODER": "dinov2", "KBENGINE_DINO_MODEL": str(dino_folder(name, root))}
    else:
        env |= {"KBENGINE_ENCODER": "packaged", "KBENGINE_PACKAGED_MODEL": name}
    cmd = [sys.executable, str(HERE / "detect_sizes.py"), "--images", str(images)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12, help="Timed detections per size.")
    parser.add_argument("--only", help=f"Comma-separated subset of {','.join(BACKBONES)}.")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BACKBONES)
    print("| backbone | forward pass ms | detect 256 ms | detect 1024 ms (tiles) | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            out = run(name, Path(tmp), args.images)
            forward = re.search(r"p50 ([\d.]+) ms", out)
            peak = re.search(r"peak RSS (\d+) MiB", out)
            rows = {m[0]: (m[1], m[2]) for m in re.findall(r"^\s*(\d+x\d+)\s+(\S+)\s+\S+\s+\d+\s+([\d.]+)", out, re.M)}
            small = rows.get("256x256", ("", "-"))[1]
            large = rows.get("1024x1024", ("-", "-"))
            cells = [forward[1] if forward else "-", small, f"{large[1]} ({large[0]})", peak[1] if peak else "-"]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
