"""Patch distances standardised by how far each patch lies from the border of what the encoder saw.

Near a border (of the photo, or of its tile when the category is tiled) a patch is often farther
from its nearest normal patch than an interior one, in normal photos too: the convolutions' zero
padding shifts its features, and a part's edge or a crop's cut lands there in ways the references
rarely repeat. Unscaled, those border patches are a normal photo's highest scores, so they set
its image score.

So each patch's distance becomes a z against the normal distances of its ring (its distance in
patches to the nearest border, the rings from ``RING_DEPTH`` inwards pooled as one interior),
fitted on the references' leave-one-out grids; the interior keeps its order. Only where the
references show the effect: when their outer ring is no farther from normal than their interior
(a part on a plain background, whose border is background), every patch shares one pooled ring,
since a per-ring z would raise the background's small distances to the part's scale. Depth,
alternatives (a z per grid position, a robust z) and the suite's figures: docs/detect.md and
docs/suite.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RING_DEPTH = 5
STD_FLOOR = 1e-6


def ring_depth(tile_grid: tuple[int, int]) -> int:
    """Rings counted on a tile's patch grid: ``RING_DEPTH``, fewer on a small grid (a 14x14 ViT
    grid gets 3) so the pooled interior keeps patches."""
    return max(0, min(RING_DEPTH, (min(tile_grid) - 1) // 4))


def rings(grid: tuple[int, int], tiles: tuple[int, int] = (1, 1)) -> np.ndarray:
    """(h, w) int: each patch's distance in patches to the nearest border of its tile, capped at
    the ring depth (``grid`` is the stitched grid, ``tiles`` its (rows, columns))."""
    rows, cols = tiles
    h, w = grid[0] // rows, grid[1] // cols
    depth = ring_depth((h, w))
    i = np.arange(grid[0])[:, None] % h
    j = np.arange(grid[1])[None, :] % w
    return np.minimum(np.minimum(i, h - 1 - i), np.minimum(j, w - 1 - j)).clip(max=depth)


@dataclass(frozen=True)
class RingStats:
    """The normal distances' mean and standard deviation per ring (ring 0 is the border)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, grids: Sequence[np.ndarray], tiles: tuple[int, int] = (1, 1)) -> RingStats:
        """From normal (leave-one-out) distance grids, all of one shape."""
        stack = np.stack(grids)
        ring = rings(stack.shape[1:], tiles)
        depth = int(ring.max())
        mean = np.array([stack[:, ring == r].mean() for r in range(depth + 1)], np.float64)
        std = np.array([stack[:, ring == r].std() for r in range(depth + 1)], np.float64)
        if depth and mean[0] <= mean[-1]:  # no border effect: one pooled ring
            mean, std = np.array([stack.mean()]), np.array([stack.std()])
        return cls(mean, np.maximum(std, STD_FLOOR))

    @property
    def by_ring(self) -> bool:
        """False when the references showed no border effect and every patch shares one ring."""
        return len(self.mean) > 1

    def z(self, grid: np.ndarray, tiles: tuple[int, int] = (1, 1)) -> np.ndarray:
        """``grid`` of distances -> float32 z against its rings' normal distances."""
        ring = rings(grid.shape, tiles).clip(max=len(self.mean) - 1)
        return ((grid - self.mean[ring]) / self.std[ring]).astype(np.float32)

    def to_array(self) -> np.ndarray:
        return np.stack([self.mean, self.std])

    @classmethod
    def from_array(cls, values: np.ndarray) -> RingStats | None:
        """``to_array``'s (2, rings) array; None for an empty, misshapen or non-finite one
        (distances are then read unscaled)."""
        if values.ndim != 2 or values.shape[0] != 2 or values.shape[1] == 0 or not np.isfinite(values).all():
            return None
        return cls(values[0].astype(np.float64), np.maximum(values[1].astype(np.float64), STD_FLOOR))
