"""A memory bank grown by added normal references instead of rebuilt (an inspector's ``good``
feedback adds one reference at a time).

When: the new references are the bank's in the same order with others added (nothing removed or
reordered), the bank keeps what an extension needs (banks cached before extensions do not), its
coreset subsampled (more candidate patches than its capacity: below that a rebuild keeps every
patch, is cheap and exact), the profile's decisions (brightness standardisation, flips, tiles),
recomputed from all the references, are unchanged, and the grown bank stays within ``GROWTH``
times its capacity. Otherwise ``CannotExtend`` says why and the caller rebuilds.

How it stays correct:

- Coreset. The greedy k-center coreset leaves every candidate it considered within its covering
  radius r of a kept patch (r: the largest remaining distance when it stopped, in its seeded
  64-d projection; ``memory_bank.coreset_cover``). Only the new references are embedded (the
  bank's layers, layer scale and profile: standardised, tiled and flipped alike), and of their
  patches those farther than r from the bank are added greedily, the farthest first, each
  addition lowering the others' distances, until every new patch is within r. So the invariant
  holds for every candidate, old and new, and the bank grows only by what is new; old patches
  are never removed. (The build's candidates are a uniform pool when they exceed
  ``POOL_FACTOR`` times the capacity; the new references' patches all join the candidates.)
- Layer scale: the bank's per-layer divisor (the references' mean feature norm per layer, which
  balances the layers) is kept, so old and new patches are in one space; a rebuild refreshes it
  from all the references, and a few added references move a mean over many very little.
- Calibration: recomputed as a build computes it, on the grown bank: leave-one-out over the first
  ``CALIBRATION_IMAGES`` references in the bank's order (sha256 order in a knowledge base), each
  against the bank without the patches it contributed (each patch keeps its reference's index,
  remapped to the new order). An old reference's own patches are unchanged and the bank only
  gained patches of others, so its leave-one-out grid is the kept grid's minimum with its
  distances to the added patches (its features re-embedded only when patches were added); a new
  reference among the first ``CALIBRATION_IMAGES`` gets its grid against the whole grown bank
  less its own patches.

What is guaranteed: the same bank and references give the same extended bank (every step is
seeded or deterministic). An extended bank is not bit-identical to a rebuilt one (a rebuild
draws a new pool and coreset over all the patches and a new layer scale), but both cover every
candidate patch within a covering radius (the extension's is the old bank's r), both are
calibrated by the same leave-one-out rule on the bank they are, and both keep at most
``GROWTH`` times the capacity (a rebuild exactly the capacity).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from kbengine.core.banks.memory_bank import (
    CALIBRATION_IMAGES,
    Coverage,
    MemoryBank,
    calibrate,
    embed_patches,
    projection,
)
from kbengine.core.banks.nearest import nearest_distance
from kbengine.core.banks.profile import BankProfile, flips, profile_references, standardise
from kbengine.core.encoders.base import Encoder

GROWTH = 1.25
"""An extended bank may hold this many times its coreset's capacity; past it, a rebuild."""


class CannotExtend(ValueError):
    """Why a bank is rebuilt rather than extended."""


def matched_positions(old: Sequence[str], new: Sequence[str]) -> list[int] | None:
    """Each of ``old``'s positions in ``new`` when ``new`` is ``old`` with items inserted (the same
    relative order); None otherwise."""
    positions, j = [], 0
    for sha in old:
        while j < len(new) and new[j] != sha:
            j += 1
        if j == len(new):
            return None
        positions.append(j)
        j += 1
    return positions


def same_reading(a: BankProfile, b: BankProfile) -> bool:
    """Whether two profiles read photos alike (their decisions; the statistics behind them may move)."""
    return (a.photometric, a.augment, a.tiles) == (b.photometric, b.augment, b.tiles)


def extend_bank(
    encoder: Encoder,
    bank: MemoryBank,
    references: Sequence[Image.Image],
    shas: Sequence[str],
    augment: str = "never",
    tiles: str = "off",
    growth: float = GROWTH,
) -> MemoryBank:
    """The bank of ``references`` (content hashes ``shas``, in the bank's order) grown from
    ``bank``; ``CannotExtend`` when it must be rebuilt (the module docstring says when)."""
    if len(references) != len(shas):
        raise ValueError("one content hash per reference")
    if bank.origin is None or bank.coverage is None or bank.loo is None or len(bank.shas) != bank.references:
        raise CannotExtend("the bank keeps no extension data (cached before extensions)")
    positions = matched_positions(bank.shas, shas)
    if positions is None:
        raise CannotExtend("references were removed or reordered")
    added = sorted(set(range(len(shas))) - set(positions))
    if not added:
        raise CannotExtend("no reference was added")
    if not bank.coverage.subsampled:
        raise CannotExtend("the bank keeps every patch (a rebuild is cheap and exact)")
    if len(bank.patches) > growth * bank.coverage.capacity:
        raise CannotExtend("the bank has grown past its bound")
    profile = profile_references(references, augment, tiles)
    if not same_reading(profile, bank.profile):
        raise CannotExtend("the references call for another reading of the photos (profile)")

    remap = np.array(positions, np.int32)
    origin = remap[bank.origin]
    prepared = {i: standardise(references[i]) if profile.photometric else references[i] for i in added}
    views, owner = [prepared[i] for i in added], list(added)
    if profile.augment:
        for i in added:
            extra = flips(prepared[i])
            views += extra
            owner += [i] * len(extra)
    feats, _, grid = embed_patches(encoder, views, bank.layers, bank.layer_scale, tiles=profile.tiles)
    flat = feats.reshape(-1, feats.shape[-1])
    new_origin = np.repeat(np.array(owner, np.int32), feats.shape[1])
    take = cover(bank.patches, flat, bank.coverage.radius, bank.coverage.seed)
    patches = np.concatenate([bank.patches, flat[take]])
    origin = np.concatenate([origin, new_origin[take]])
    if len(patches) > growth * bank.coverage.capacity:
        raise CannotExtend("the grown bank would pass its bound")

    loo = _leave_one_out(encoder, bank, references, remap, profile, patches, origin, flat[take], feats, added, grid)
    return MemoryBank(
        patches=patches,
        layer_scale=bank.layer_scale,
        layers=bank.layers,
        references=len(references),
        calibration=calibrate(loo, profile.tiles),
        profile=profile,
        shas=tuple(shas),
        origin=origin,
        coverage=Coverage(
            bank.coverage.capacity, bank.coverage.candidates + len(flat), bank.coverage.radius, bank.coverage.seed
        ),
        loo=loo,
    )


def cover(bank: np.ndarray, candidates: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """Indices of ``candidates`` to add to ``bank`` so that every candidate lies within ``radius``
    of the grown bank, in the coreset's projection: greedily, the farthest candidate first (the
    k-center step the coreset took, resumed on the new candidates)."""
    p = projection(bank.shape[1], seed)
    xb = bank if p is None else bank @ p
    xc = np.ascontiguousarray(candidates if p is None else candidates @ p, np.float32)
    distance = torch.from_numpy(nearest_distance(xc, xb).astype(np.float32))
    x = torch.from_numpy(xc)
    norms = (x * x).sum(dim=1)
    chosen: list[int] = []
    while len(chosen) < len(x):
        far = int(torch.argmax(distance))
        if float(distance[far]) <= radius:
            break
        chosen.append(far)
        step = (norms - 2 * torch.mv(x, x[far]) + norms[far]).clamp_min_(0.0).sqrt_()
        torch.minimum(distance, step, out=distance)
    return np.array(chosen, np.int64)


def _leave_one_out(
    encoder: Encoder,
    bank: MemoryBank,
    references: Sequence[Image.Image],
    remap: np.ndarray,
    profile: BankProfile,
    patches: np.ndarray,
    origin: np.ndarray,
    gained: np.ndarray,
    new_feats: np.ndarray,
    added: list[int],
    grid: tuple[int, int],
) -> np.ndarray:
    """The first ``CALIBRATION_IMAGES`` references' leave-one-out grids on the grown bank (see the
    module docstring): kept grids updated by the gained patches, new references' computed."""
    assert bank.loo is not None
    kept = {int(remap[j]): bank.loo[j] for j in range(len(bank.loo))}
    count = min(len(references), CALIBRATION_IMAGES)
    fresh = {i: new_feats[added.index(i)] for i in added if i < count}  # a new reference's plain view
    old = [i for i in range(count) if i not in fresh and (len(gained) > 0 or i not in kept)]
    if old:
        images = [standardise(references[i]) if profile.photometric else references[i] for i in old]
        feats, _, _ = embed_patches(encoder, images, bank.layers, bank.layer_scale, tiles=profile.tiles)
        fresh.update(zip(old, feats, strict=True))
    grids = []
    for i in range(count):
        if i in kept:
            grid_i = kept[i]
            if len(gained) > 0:
                grid_i = np.minimum(grid_i, nearest_distance(fresh[i], gained).reshape(grid))
        else:
            grid_i = nearest_distance(fresh[i], patches[origin != i]).reshape(grid)
        grids.append(grid_i.astype(np.float32))
    return np.stack(grids)
