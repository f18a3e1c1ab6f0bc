"""How a category's photos are read, decided once per category when its memory bank is built,
from its normal references alone (a user has no defect labels at that point).

- ``photometric``: each photo's grey levels are standardised (one affine map for all channels,
  so colour ratios stay) before the encoder sees it, when the references' mean brightness varies
  (coefficient of variation above ``BRIGHTNESS_CV``): exposure is then not controlled, and a
  normal photo taken brighter than every reference must not look anomalous.
- ``augment`` (opt-in, setting ``detect_augment``): horizontal and vertical flips of the
  references join the bank, with ``auto`` when the references are not aligned (``alignment``
  below ``ALIGNED``): a texture or a part photographed in any pose has no fixed layout a flip
  could violate; an aligned part has one, so ``auto`` never flips it.
- ``tiles`` (opt-in, setting ``detect_tiles=auto``): photos whose references are at least
  ``2 * TILE_SIDE`` pixels along a side are read as a grid of tiles (at most ``MAX_TILES`` per
  side), each at the encoder's resolution, so a defect of 0.1% of a large photo still covers
  several patches. Every photo of the category is split on the same grid, which is fixed in the
  photo's relative coordinates, so references and queries are read alike whatever their pixel
  size. Off by default: on generated 1024 px parts, whose defects are not small, tiles lost 0.04
  image AUROC (an aligned part 0.986 -> 0.944); the whole part in one view sees its layout.

The image score is the patches' alone: a global-embedding term (for references that share a
layout and agree) tied with no term on the multi-set suite, so it went.

``alignment`` is the share of the references' pixel variance that their mean image keeps (64x64
grey, after per-photo standardisation): about 1/n for a texture, near 1 for an aligned part.
docs/detect.md and docs/suite.md have the measurements behind each threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

BRIGHTNESS_CV = 0.1
ALIGNED = 0.3
TILE_SIDE = 224
MAX_TILES = 2
GREY_MEAN, GREY_STD = 127.0, 50.0


@dataclass(frozen=True)
class BankProfile:
    photometric: bool = False
    augment: bool = False
    tiles: tuple[int, int] = (1, 1)
    """(rows, columns)."""
    alignment: float = 1.0
    brightness_cv: float = 0.0

    def to_array(self) -> np.ndarray:
        return np.array(
            [
                self.photometric,
                self.augment,
                *self.tiles,
                self.alignment,
                self.brightness_cv,
            ],
            np.float64,
        )

    @classmethod
    def from_array(cls, values: np.ndarray) -> BankProfile:
        v = [float(x) for x in values]
        if len(v) == 8:  # banks cached before the global term was dropped: (.., global_term, .., global_cv)
            v = [v[0], v[1], v[3], v[4], v[5], v[6]]
        return cls(bool(v[0]), bool(v[1]), (int(v[2]), int(v[3])), v[4], v[5])

    def describe(self) -> str:
        """What a user reads in ``Detection.evidence.views``."""
        parts = [f"{self.tiles[0]}x{self.tiles[1]} tiles" if self.tiles != (1, 1) else "whole photo"]
        if self.photometric:
            parts.append("brightness-standardised")
        if self.augment:
            parts.append("references flipped")
        return ", ".join(parts)


def profile_references(references: Sequence[Image.Image], augment: str = "never", tiles: str = "off") -> BankProfile:
    """The profile the references call for. ``augment``: never, auto or always;
    ``tiles``: off (every photo whole) or auto."""
    grey = np.stack(
        [np.asarray(im.convert("L").resize((64, 64), Image.Resampling.BILINEAR), np.float64) for im in references]
    )
    means = grey.mean(axis=(1, 2))
    brightness_cv = float(means.std() / max(means.mean(), 1e-6))
    alignment = 1.0
    if len(references) >= 2:
        z = (grey - means[:, None, None]) / np.maximum(grey.std(axis=(1, 2)), 1e-6)[:, None, None]
        alignment = float(z.mean(axis=0).var())
    widths = float(np.median([im.size[0] for im in references]))
    heights = float(np.median([im.size[1] for im in references]))
    return BankProfile(
        photometric=brightness_cv > BRIGHTNESS_CV,
        augment=augment == "always" or (augment == "auto" and len(references) >= 2 and alignment < ALIGNED),
        tiles=(tiles_along(heights), tiles_along(widths)) if tiles == "auto" else (1, 1),
        alignment=round(alignment, 4),
        brightness_cv=round(brightness_cv, 4),
    )


def tiles_along(side: float) -> int:
    """Tiles along a side of ``side`` pixels: one per ``TILE_SIDE`` (never upsampling), at most ``MAX_TILES``."""
    return int(min(MAX_TILES, max(1, side // TILE_SIDE)))


def standardise(image: Image.Image) -> Image.Image:
    """Grey levels mapped to mean 127 and standard deviation 50 (one affine map for all channels)."""
    a = np.asarray(image.convert("RGB"), np.float32)
    a = (a - a.mean()) / max(float(a.std()), 1e-3) * GREY_STD + GREY_MEAN
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def split(image: Image.Image, tiles: tuple[int, int]) -> list[Image.Image]:
    """The photo's tiles, row by row (the grid is in relative coordinates: every photo of a
    category is split alike whatever its size)."""
    rows, cols = tiles
    if (rows, cols) == (1, 1):
        return [image]
    width, height = image.size
    xs = [round(i * width / cols) for i in range(cols + 1)]
    ys = [round(j * height / rows) for j in range(rows + 1)]
    return [image.crop((xs[i], ys[j], xs[i + 1], ys[j + 1])) for j in range(rows) for i in range(cols)]


def flips(image: Image.Image) -> list[Image.Image]:
    return [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)]
