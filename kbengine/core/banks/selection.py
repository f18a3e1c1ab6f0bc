"""Which normal references a memory bank takes when a category has more than it may hold.

The references' global embeddings are grouped into as many clusters as the bank may take
(spherical k-means, seeded) and each cluster gives its member nearest the centre: a capped bank
covers the kinds of normal photo there are (acquisitions, lighting, framing) in proportion,
instead of a random slice of them, and without the outliers that farthest-point selection takes
first. Measured with ``eval zsad --pick first|diverse`` (image AUROC, packaged encoder; docs/detect.md
has the table): magnetic tile, 16 of 200 normal photos, 0.693 -> 0.780; elpv solar cells, 32 of
64, 0.818 -> 0.891; real textures, 16 of 20, 0.911 -> 0.894 (farthest-point: 0.789, 0.892, 0.884).
"""

from __future__ import annotations

import numpy as np


def cluster_medoids(keys: np.ndarray, count: int, seed: int = 0, iterations: int = 50) -> list[int]:
    """Indices of ``count`` rows of unit ``keys`` (n, d), sorted: spherical k-means into ``count``
    clusters (k-means++ seeding from a seeded generator, then Lloyd steps on cosine similarity),
    then per cluster the member nearest its centre; every row when ``count >= n``. NumPy alone,
    so the choice is the same in every process whatever its thread settings."""
    n = len(keys)
    if count >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    centres = [int(rng.integers(n))]
    distance = np.maximum(1.0 - keys @ keys[centres[0]], 0.0)
    while len(centres) < count:
        weights = distance**2
        total = float(weights.sum())
        following = int(rng.choice(n, p=weights / total)) if total > 0 else int(np.argmax(distance))
        centres.append(following)
        distance = np.minimum(distance, np.maximum(1.0 - keys @ keys[following], 0.0))
    centre = keys[centres].astype(np.float64)
    labels = np.full(n, -1)
    for _ in range(iterations):
        assigned = np.argmax(keys @ centre.T, axis=1)
        if np.array_equal(assigned, labels):
            break
        labels = assigned
        for c in range(count):
            members = keys[labels == c]
            if len(members):
                mean = members.mean(axis=0)
                centre[c] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    chosen = set()
    for c in range(count):
        members = np.flatnonzero(labels == c)
        if len(members):
            chosen.add(int(members[np.argmax(keys[members] @ centre[c])]))
    return sorted(chosen)
