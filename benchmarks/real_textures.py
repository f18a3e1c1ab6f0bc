"""Detection and type classification on real photographs: scikit-image's public texture photos
(brick, grass, gravel; 512x512) cut into 256x256 parts, with kbengine's generated defects painted on
the real texture. Normal parts are real crops (random position, flip, brightness); the defects are
synthetic, their masks exact. Writes an MVTec-layout dataset, then you run the evaluations on it:

    pip download --no-deps scikit-image -d /tmp/sk && unzip -q /tmp/sk/scikit_image-*.whl 'skimage/data/*' -d /tmp/sk/x
    python benchmarks/real_textures.py /tmp/sk/x/skimage/data /tmp/textures
    kbengine eval zsad /tmp/textures --shots 16 --encoder packaged
    kbengine eval seek /tmp/textures --encoder packaged            # leave-one-out seek accuracy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from kbengine import synth

TEXTURES = ("brick", "grass", "gravel")
DEFECTS = ("scratch", "crack", "stain", "hole")


def part(texture: np.ndarray, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    y, x = rng.integers(0, texture.shape[0] - size), rng.integers(0, texture.shape[1] - size)
    crop = texture[y : y + size, x : x + size].astype(np.float32)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop * rng.uniform(0.9, 1.1)
    return np.repeat(crop[..., None], 3, axis=2) if crop.ndim == 2 else crop[..., :3]


def write(data: Path, out: Path, train: int = 20, test_good: int = 8, test_defect: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in TEXTURES:
        texture = np.asarray(Image.open(data / f"{name}.png"))
        base = out / name
        for split, count in (("train", train), ("test", test_good)):
            folder = base / split / "good"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                synth.to_uint8(part(texture, rng)).save(folder / f"{i:03d}.png")
        for defect in DEFECTS:
            (base / "test" / defect).mkdir(parents=True, exist_ok=True)
            (base / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            for i in range(test_defect):
                img = part(texture, rng)
                painted, mask = synth.add_defect(img, np.ones(img.shape[:2], bool), defect, rng)
                synth.to_uint8(painted).save(base / "test" / defect / f"{i:03d}.png")
                mask_path = base / "ground_truth" / defect / f"{i:03d}_mask.png"
                Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("skimage_data", type=Path, help="scikit-image's data folder (brick.png, grass.png, ...)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    print(f"wrote {write(args.skimage_data, args.out)}")


if __name__ == "__main__":
    main()
