"""Normal-reference evidence: a patch memory bank of a category's normal images, and each query
patch scored by its distance to the nearest normal patch (PatchCore-style; beyond the paper,
which is zero-shot only).

Features: the encoder's patch features at ``reference_layers`` (all its patch layers but the
shallowest: EfficientNet-Lite0 blocks 4, 7 and 10, strides 8, 16 and 16; a ViT's last three
quarters; docs/detect.md has the layer comparison). Each is averaged over its 3x3 neighbourhood
(local context, tolerance to small shifts), upsampled to the finest grid and concatenated; each
layer is divided by its mean feature norm over the references first so no layer dominates.

Size: greedy k-center coreset (on a 64-d random projection) keeps at most ``max_patches``
(32768: up to 41 references at 28x28 patches fit whole; more are subsampled once, then cached,
from a candidate pool of at most ``POOL_FACTOR * max_patches``, so a bank of 200 references
builds in about 23 s and 1 GB on 2 cores). Features are assembled batch by batch into one
array, so memory grows with the patches, not with a
forward pass over every reference at once (200 references: 3.3 GB peak before, 1.0 GB after). A tiled
category's queries have more patches, so its bank keeps at most ``2 * max_patches / tiles``
(16384 at 2x2 tiles): the nearest-patch search, the larger cost of a query, stays bounded.
Calibration: with two or more references, up to 16 of them are each scored against the bank
without the patches they contributed (leave-one-out). Their distance grids first give the normal
distances per ring from the border (``border``: a patch near the border is farther from normal
in normal photos too), and every patch distance is read as a z against its ring's; on those z the
normal patch and image scores give the map's scale (the 99.9th percentile of normal patch z
becomes the binarisation threshold) and the image score's z statistics (the image threshold is
z = 3).

Image level: the local score's z (the mean of the top 1% of the smoothed patch z, against the
references' leave-one-out scores); a global-embedding term tied with none on the multi-set suite
(docs/suite.md) and went.

How photos are read (brightness standardisation, tiles, flipped references) is the category's
``BankProfile``, decided here from the references alone and applied alike to every query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from kbengine.core.banks.border import RingStats
from kbengine.core.banks.nearest import PatchSearch, nearest_distance
from kbengine.core.banks.profile import BankProfile, flips, profile_references, split, standardise
from kbengine.core.banks.scoring import image_score
from kbengine.core.encoders.base import Encoder

MAX_PATCHES = 32_768
CALIBRATION_IMAGES = 16
PROJECTION_DIM = 64
PATCH_QUANTILE = 0.999
EMBED_BATCH = 8
POOL_FACTOR = 2


SHALLOW_LAYERS_LEFT_OUT = 1
"""The encoder's shallowest patch layers the bank leaves out (when it has three or more)."""


def reference_layers(encoder: Encoder) -> tuple[int, ...]:
    """The blocks whose patch features the memory bank uses (mid-level: local and semantic)."""
    layers = tuple(sorted(encoder.patch_layers))
    return layers[SHALLOW_LAYERS_LEFT_OUT:] if len(layers) >= 3 else layers


@dataclass
class Calibration:
    patch_mean: float
    patch_threshold: float
    image_mean: float
    image_std: float
    rings: RingStats | None = None
    """Normal distances per ring from the border (``border``): patch distances are read as z
    against them, and the fields above are in those z units; None in a bank cached before them."""

    def image_z(self, local: float) -> float:
        """How unusual the image is, in normal standard deviations (the image threshold is z = 3)."""
        return (local - self.image_mean) / max(self.image_std, 1e-6)


@dataclass(frozen=True)
class Coverage:
    """The coreset's bookkeeping: the most patches it keeps, how many the references offered,
    and its covering radius (every candidate it considered lies within ``radius`` of a kept
    patch, measured in the seeded projection ``projection(dim, seed)``; 0 when all were kept)."""

    capacity: int
    candidates: int
    radius: float
    seed: int = 0

    @property
    def subsampled(self) -> bool:
        return self.candidates > self.capacity


@dataclass
class MemoryBank:
    patches: np.ndarray
    """(M, D) float32 normal patch features."""
    layer_scale: np.ndarray
    """Per-layer divisor (mean feature norm over the references)."""
    layers: tuple[int, ...]
    references: int
    calibration: Calibration | None = None
    profile: BankProfile = field(default_factory=BankProfile)
    shas: tuple[str, ...] = ()
    """The references' content hashes in the bank's order (empty when built from bare images)."""
    origin: np.ndarray | None = None
    """(M,) int32: the reference (index into the references, ``shas``) each patch came from."""
    coverage: Coverage | None = None
    """What the coreset kept and how closely (``extension`` grows a bank by it)."""
    loo: np.ndarray | None = None
    """(k, h, w) float32: the leave-one-out distance grids of the first ``k`` references (the
    calibration's input, kept so an extension updates them instead of recomputing them)."""

    def patch_z(self, distances: np.ndarray) -> np.ndarray:
        """A (h, w) grid of nearest-normal distances in the units of the calibration: z against
        the normal distances of each patch's ring from the border (``border``); as it is when
        the bank has no ring statistics (one reference, or cached before them)."""
        rings = self.calibration.rings if self.calibration is not None else None
        return rings.z(distances, self.profile.tiles) if rings is not None else distances

    @cached_property
    def search(self) -> PatchSearch:
        """The patches ready for nearest-patch queries (made once per loaded bank)."""
        return PatchSearch(self.patches)

    def prepare(self, image: Image.Image) -> Image.Image:
        """A photo as this bank reads it (brightness-standardised when the profile says so)."""
        return standardise(image) if self.profile.photometric else image

    def to_arrays(self) -> dict[str, np.ndarray]:
        c = self.calibration
        calib = (
            np.array(
                [
                    c.patch_mean,
                    c.patch_threshold,
                    c.image_mean,
                    c.image_std,
                ],
                np.float64,
            )
            if c
            else np.zeros(0)
        )
        return {
            "patches": self.patches,
            "layer_scale": self.layer_scale,
            "layers": np.array(self.layers, np.int64),
            "references": np.array(self.references),
            "calibration": calib,
            "profile": self.profile.to_array(),
            "rings": c.rings.to_array() if c is not None and c.rings is not None else np.zeros((0, 0)),
            **self._growth_arrays(),
        }

    def _growth_arrays(self) -> dict[str, np.ndarray]:
        """What an extension needs (absent from banks cached before extensions: they rebuild)."""
        if self.origin is None or self.coverage is None or self.loo is None or len(self.shas) != self.references:
            return {}
        v = self.coverage
        return {
            "shas": np.array(self.shas, dtype="<U64"),
            "origin": self.origin.astype(np.int32),
            "coverage": np.array([v.capacity, v.candidates, v.radius, v.seed], np.float64),
            "loo": self.loo.astype(np.float32),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> MemoryBank:
        c = data["calibration"]
        calibration = None
        if len(c) in (4, 6):  # 6: cached with the global term's mean and std after these
            patch_mean, patch_threshold, image_mean, image_std = (float(v) for v in c[:4])
            calibration = Calibration(
                patch_mean,
                patch_threshold,
                image_mean,
                image_std,
                rings=RingStats.from_array(data["rings"]) if "rings" in data else None,
            )
        bank = cls(
            patches=data["patches"].astype(np.float32),
            layer_scale=data["layer_scale"],
            layers=tuple(int(x) for x in data["layers"]),
            references=int(data["references"]),
            calibration=calibration,
            profile=BankProfile.from_array(data["profile"]) if "profile" in data else BankProfile(),
        )
        if {"shas", "origin", "coverage", "loo"} <= data.keys():  # absent before extensions
            capacity, candidates, radius, seed = (float(v) for v in data["coverage"])
            bank.shas = tuple(str(sha) for sha in data["shas"])
            bank.origin = data["origin"].astype(np.int32)
            bank.coverage = Coverage(int(capacity), int(candidates), radius, int(seed))
            bank.loo = data["loo"].astype(np.float32)
        return bank


def patch_grid(
    encoder: Encoder,
    images: Sequence[Image.Image],
    layers: Sequence[int],
    raw: dict[int, np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Per layer, (N, C, h, w) neighbourhood-pooled features upsampled to the finest grid
    (``raw``: the encoder's patch features of ``images``, when a pass already gave them)."""
    raw = encoder.patch_features(images, layers) if raw is None else raw
    size = max(raw[layer].shape[1] for layer in layers), max(raw[layer].shape[2] for layer in layers)
    out = []
    for layer in layers:
        x = torch.from_numpy(np.ascontiguousarray(raw[layer])).permute(0, 3, 1, 2).float()
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        out.append(x.numpy())
    return out


def embed_patches(
    encoder: Encoder,
    images: Sequence[Image.Image],
    layers: Sequence[int],
    scale: np.ndarray | None,
    batch: int = EMBED_BATCH,
    tiles: tuple[int, int] = (1, 1),
    raw: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(N, h*w, D) concatenated scaled features, the per-layer scale used, and the grid (h, w).
    With ``tiles`` (rows, columns) each image is read tile by tile and the tiles' grids are
    stitched back in place. ``raw``: the encoder's patch features of ``images`` (whole, not
    tiled), when a pass already gave them. Batches are written into one output array, so memory
    is that array plus one batch, whatever the number of images."""
    per_image = tiles[0] * tiles[1]
    whole = raw is not None and per_image == 1
    step = len(images) if whole else max(1, batch // per_image)
    out: np.ndarray | None = None
    widths: list[int] = []
    for i in range(0, len(images), step):
        chunk = images[i : i + step]
        pieces = [tile for image in chunk for tile in split(image, tiles)]
        grids = patch_grid(encoder, pieces, layers, raw if whole else None)
        stitched = [_stitch(g, tiles) for g in grids]
        if out is None:
            widths = [g.shape[1] for g in stitched]
            h, w = stitched[0].shape[-2:]
            out = np.empty((len(images), h * w, sum(widths)), np.float32)
        n, h, w = len(chunk), *stitched[0].shape[-2:]
        out[i : i + n] = np.concatenate(stitched, axis=1).transpose(0, 2, 3, 1).reshape(n, h * w, -1)
    assert out is not None
    spans = list(pairwise(np.cumsum([0, *widths]).tolist()))
    if scale is None:
        scale = np.array([float(np.linalg.norm(out[..., a:b], axis=-1).mean()) or 1.0 for a, b in spans])
    for (a, b), s in zip(spans, scale, strict=True):
        out[..., a:b] /= s
    return out, scale, (h, w)


def _stitch(grids: np.ndarray, tiles: tuple[int, int]) -> np.ndarray:
    """(N * rows * cols, C, h, w) tile grids -> (N, C, rows * h, cols * w)."""
    rows, cols = tiles
    if rows * cols == 1:
        return grids
    n, (c, h, w) = len(grids) // (rows * cols), grids.shape[1:]
    return grids.reshape(n, rows, cols, c, h, w).transpose(0, 3, 1, 4, 2, 5).reshape(n, c, rows * h, cols * w)


def projection(dim: int, seed: int = 0) -> np.ndarray | None:
    """The coreset's seeded (dim, 64) random projection; None when features have 64 or fewer
    dimensions (then they are used as they are)."""
    if dim <= PROJECTION_DIM:
        return None
    return np.random.default_rng(seed).normal(size=(dim, PROJECTION_DIM)).astype(np.float32)


def coreset(features: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of a greedy k-center coreset (``coreset_cover``)."""
    return coreset_cover(features, size, seed)[0]


def coreset_cover(features: np.ndarray, size: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Indices of a greedy k-center coreset (each step adds the point furthest from the set) and
    its covering radius: the largest distance of a candidate to the set when it stopped, so every
    candidate lies within it of a kept point (0 when every point is kept). Squared distances via
    ||x||^2 - 2 x.c + ||c||^2, one matrix-vector product per step, on a 64-d random projection
    (``projection``: small enough to stay in cache, 10x faster per step than 128-d); the radius is
    in that projection.

    The candidates are at most ``POOL_FACTOR * size`` patches, a seeded uniform sample when there
    are more, so the cost is bounded by ``size`` whatever the number of references: 200 magnetic
    tile references (157k patches) build in 28 s instead of 69 s, image AUROC 0.896 against
    0.901 with every patch a candidate and 0.887 for a uniform sample of ``size`` alone. The
    radius then covers the pool (the candidates the greedy saw), not the patches left out of it."""
    n = len(features)
    if size >= n:
        return np.arange(n), 0.0
    rng = np.random.default_rng(seed)
    if n > POOL_FACTOR * size:
        pool = np.sort(rng.choice(n, POOL_FACTOR * size, replace=False))
        chosen, radius = coreset_cover(features[pool], size, seed)
        return pool[chosen], radius
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    if features.shape[1] > PROJECTION_DIM:
        projection = torch.from_numpy(rng.normal(size=(features.shape[1], PROJECTION_DIM)).astype(np.float32))
        x = x @ projection
    x = x.contiguous()
    norms = (x * x).sum(dim=1)
    chosen = np.empty(size, np.int64)
    chosen[0] = int(rng.integers(n))
    distance = norms - 2 * torch.mv(x, x[chosen[0]]) + norms[chosen[0]]
    step_distance = torch.empty_like(distance)
    for step in range(1, size):
        nxt = int(torch.argmax(distance))
        chosen[step] = nxt
        torch.addmv(norms, x, x[nxt], alpha=-2, out=step_distance)
        step_distance += norms[nxt]
        torch.minimum(distance, step_distance, out=distance)
    return chosen, float(distance.max().clamp_min(0.0).sqrt())


def build_bank(
    encoder: Encoder,
    references: Sequence[Image.Image],
    max_patches: int = MAX_PATCHES,
    seed: int = 0,
    augment: str = "never",
    tiles: str = "off",
    shas: Sequence[str] = (),
) -> MemoryBank:
    """The category's memory bank from its normal reference images (calibrated when >= 2), read
    as their ``BankProfile`` says (decided here, from them alone). ``shas``: the references'
    content hashes, kept in the bank so a later set that adds to them can extend it."""
    if not references:
        raise ValueError("a memory bank needs at least one normal reference image")
    layers = reference_layers(encoder)
    profile = profile_references(references, augment, tiles)
    prepared = [standardise(im) if profile.photometric else im for im in references]
    views, owner = list(prepared), list(range(len(prepared)))
    if profile.augment:
        for i, image in enumerate(prepared):
            extra = flips(image)
            views += extra
            owner += [i] * len(extra)
    feats, scale, grid = embed_patches(encoder, views, layers, None, tiles=profile.tiles)
    flat = feats.reshape(-1, feats.shape[-1])
    origin = np.repeat(np.array(owner), feats.shape[1])
    count = profile.tiles[0] * profile.tiles[1]
    capacity = max_patches if count == 1 else min(max_patches, 2 * max_patches // count)
    keep, radius = coreset_cover(flat, capacity, seed)
    bank = MemoryBank(
        patches=flat[keep],
        layer_scale=scale,
        layers=layers,
        references=len(references),
        profile=profile,
        shas=tuple(shas),
        origin=origin[keep].astype(np.int32),
        coverage=Coverage(capacity, len(flat), radius, seed),
        loo=np.zeros((0, *grid), np.float32),
    )
    if len(references) >= 2:
        bank.loo = leave_one_out(feats[: len(prepared)], grid, bank.patches, bank.origin)  # type: ignore[arg-type]
        bank.calibration = calibrate(bank.loo, profile.tiles)
    return bank


def leave_one_out(feats: np.ndarray, grid: tuple[int, int], bank: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """(k, h, w): the first ``k`` (up to ``CALIBRATION_IMAGES``) references' patch distances to
    the bank without the patches each contributed (``origin``: each bank patch's reference)."""
    count = min(len(feats), CALIBRATION_IMAGES)
    grids = [nearest_distance(feats[i], bank[origin != i]).reshape(grid) for i in range(count)]
    return np.stack(grids).astype(np.float32) if grids else np.zeros((0, *grid), np.float32)


def calibrate(grids: np.ndarray, tiles: tuple[int, int]) -> Calibration:
    """The calibration from the references' leave-one-out distance grids (``leave_one_out``):
    they fit the ring statistics first; the patch and image statistics are then taken on the
    grids read as ring z."""
    rings = RingStats.fit(list(grids), tiles)
    z = [rings.z(g, tiles) for g in grids]
    patches = np.concatenate([g.ravel() for g in z])
    images = np.array([image_score(g) for g in z])
    return Calibration(
        patch_mean=float(patches.mean()),
        patch_threshold=float(np.quantile(patches, PATCH_QUANTILE)),
        image_mean=float(images.mean()),
        image_std=float(images.std()),
        rings=rings,
    )


@dataclass
class PatchScores:
    """One image against a bank: its patch features and each patch's nearest normal patch."""

    features: np.ndarray
    """(h*w, D) scaled, concatenated patch features (the bank's layers and scale)."""
    distances: np.ndarray
    """(h*w,) distance to the nearest normal patch."""
    grid: tuple[int, int]
    search: PatchSearch = field(repr=False)

    def nearest(self, rows: np.ndarray) -> np.ndarray:
        """Index in ``MemoryBank.patches`` of the nearest normal patch of each of ``rows``."""
        return self.search.nearest(self.features[rows])

    @property
    def distance_grid(self) -> np.ndarray:
        return self.distances.reshape(self.grid)


def score_images(
    encoder: Encoder, bank: MemoryBank, images: Sequence[Image.Image], raw: dict[int, np.ndarray] | None = None
) -> list[PatchScores]:
    """Each image's patches against the bank (one encoder pass per batch), read as the bank's
    profile says. ``raw``: the images' patch features from a pass already made, used when the
    profile reads photos as they are (whole, not standardised)."""
    plain = bank.profile.tiles == (1, 1) and not bank.profile.photometric
    prepared = [bank.prepare(image) for image in images]
    feats, _, grid = embed_patches(
        encoder, prepared, bank.layers, bank.layer_scale, tiles=bank.profile.tiles, raw=raw if plain else None
    )
    scored = []
    search = bank.search
    for f in feats:
        scored.append(PatchScores(f, search.distances(f), grid, search))
    return scored


def score_patches(encoder: Encoder, bank: MemoryBank, images: Sequence[Image.Image]) -> np.ndarray:
    """(N, h, w) nearest-normal-patch distances of each query patch."""
    return np.stack([s.distance_grid for s in score_images(encoder, bank, images)])
