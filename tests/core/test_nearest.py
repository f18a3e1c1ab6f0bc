"""The blocked nearest-patch search against torch.cdist: same distances, same nearest patch,
across block boundaries, and clear errors on an empty bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kbengine.core.banks import nearest as nearest_module
from kbengine.core.banks.nearest import PatchSearch, nearest_distance


def cancellation(queries: np.ndarray, patches: np.ndarray) -> float:
    """The float32 error of ||q||^2 + ||b||^2 - 2 q.b near zero, as a distance (cdist has it too)."""
    largest = max(float((queries**2).sum(axis=1).max()), float((patches**2).sum(axis=1).max()))
    return 4 * float(np.sqrt(np.finfo(np.float32).eps * largest))


def reference(queries: np.ndarray, patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = torch.cdist(torch.from_numpy(queries).double(), torch.from_numpy(patches).double())
    values, index = d.min(dim=1)
    return values.numpy(), index.numpy()


@pytest.mark.parametrize(("n", "m"), [(1, 1), (7, 5), (300, 2049), (1500, 4100)])
def test_matches_cdist_across_blocks(n: int, m: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nearest_module, "ROW_BLOCK", 512)
    rng = np.random.default_rng(n + m)
    patches = rng.normal(size=(m, 24)).astype(np.float32)
    # queries near some bank patches (distances close to 0 included) and far from all
    near = patches[rng.integers(0, m, n // 2)] + rng.normal(scale=1e-3, size=(n // 2, 24)).astype(np.float32)
    queries = np.concatenate([near, rng.normal(size=(n - n // 2, 24)).astype(np.float32)])
    search = PatchSearch(patches)
    expected, index = reference(queries, patches)
    got = search.distances(queries)
    assert got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=cancellation(queries, patches))
    assert np.all(got >= 0)
    found = search.nearest(queries)
    # the same patch, or one as near within float32 rounding
    np.testing.assert_allclose(
        np.linalg.norm(queries - patches[found], axis=1), expected, atol=cancellation(queries, patches)
    )
    assert np.mean(found == index) > 0.99
    np.testing.assert_allclose(nearest_distance(queries, patches), got)


def test_duplicate_query_is_at_distance_zero() -> None:
    patches = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32) * 30
    got = PatchSearch(patches).distances(patches[[3, 17]])
    np.testing.assert_allclose(got, 0.0, atol=cancellation(patches, patches))
    assert np.all(got < 0.01 * np.linalg.norm(patches[[3, 17]], axis=1))


def test_empty_inputs() -> None:
    search = PatchSearch(np.ones((4, 3), np.float32))
    assert search.distances(np.zeros((0, 3), np.float32)).shape == (0,)
    assert search.nearest(np.zeros((0, 3), np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="empty bank"):
        PatchSearch(np.zeros((0, 3), np.float32)).distances(np.ones((2, 3), np.float32))
