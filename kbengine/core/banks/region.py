"""Region keys: the descriptor of an image's anomalous region against its category's normal
memory bank. Knowledge examples get one at ingest (``region`` locks); a query gets one at seek,
computed the same way from the same bank, so the two compare in one space.

The descriptor: the image's ``k`` most anomalous patches (``k`` = 2% of the patch grid, at least
8) give two unit vectors, the mean of their multi-scale features (what the region looks like) and
the mean of their residuals to those nearest normal patches (how it differs from normal); the
descriptor is the two concatenated, L2-normalised. A global embedding mostly describes the
object, this one the defect. Measured against the alternatives (top-k mean alone, residual alone,
other k, map statistics): docs/seek.md has the table.

Patches are ranked as detect reads them (``MemoryBank.patch_z``: the distance to the nearest
normal patch as a z against the normal distances of the patch's ring from the border). Ranked by
the raw distance, border patches crowd the defect out: seek type top-1 with the fused key (5
splits) on magnetic tile / real textures / generated parts is 0.500 / 0.875 / 0.975 raw against
0.572 / 0.921 / 0.983 by ring z.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kbengine.core.banks.memory_bank import MemoryBank, PatchScores, reference_layers
from kbengine.core.encoders.base import Encoder, l2_normalise

REGION_VERSION = "2"
"""Part of every region lock's fingerprint: a change of the descriptor renews them all."""
REGION_FRACTION = 0.02
MIN_REGION_PATCHES = 8


def region_fingerprint(bank_fingerprint: str) -> str:
    """What a region lock records as its ``bank``: the bank's fingerprint and the descriptor's version.
    A query's region key compares only with region locks of the same fingerprint."""
    return f"{bank_fingerprint}:{REGION_VERSION}"


def region_size(patches: int) -> int:
    """How many of an image's patches describe its region."""
    return min(patches, max(MIN_REGION_PATCHES, round(REGION_FRACTION * patches)))


def region_descriptor(scores: PatchScores, bank: MemoryBank) -> np.ndarray:
    """(2 D,) float32, unit length: appearance and residual of the most anomalous patches."""
    ranked = bank.patch_z(scores.distance_grid).ravel()
    top = np.argsort(-ranked, kind="stable")[: region_size(len(ranked))]
    appearance = scores.features[top].mean(axis=0)
    residual = (scores.features[top] - bank.patches[scores.nearest(top)]).mean(axis=0)
    pair = np.concatenate([l2_normalise(appearance[None])[0], l2_normalise(residual[None])[0]])
    return l2_normalise(pair[None])[0]


def region_dim(encoder: Encoder) -> int:
    """The descriptor's length for ``encoder`` (twice its memory-bank feature width)."""
    probe = Image.new("RGB", (64, 64), (128, 128, 128))
    features = encoder.patch_features([probe], reference_layers(encoder))
    return 2 * sum(int(f.shape[-1]) for f in features.values())
