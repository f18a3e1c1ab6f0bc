"""``kbengine seek --plot``: a picture of why these documents were chosen.

Left: the considered documents' scores in rank order, coloured by cluster, the chosen ones ringed.
Right: the score histogram, each fitted mixture component (weight x normal density), the KDE
and the chosen scores as a rug. Drawn from a ``SeekResult`` alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kbengine.core.errors import InvalidInputError, MissingDependencyError
from kbengine.core.schemas import SeekResult

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise InvalidInputError(f"--plot {path}: give a file ending in {', '.join(PLOT_SUFFIXES)}")


def plot_seek(result: SeekResult, path: Path) -> Path:
    """Write the figure to ``path`` (.png, .pdf, .svg or .jpg)."""
    check_plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise MissingDependencyError("--plot needs matplotlib: pip install matplotlib") from e
    from scipy.stats import gaussian_kde

    d = result.diagnostics
    scores = np.asarray(d.scores, np.float64)
    chosen = {h.doc_id for h in result.hits}
    taken = np.array([doc in chosen for doc in d.doc_ids], bool)
    labels = np.asarray(d.labels if d.labels is not None else [0] * len(scores))
    colours = plt.get_cmap("tab10")

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    ranks = np.arange(1, len(scores) + 1)
    for c in np.unique(labels) if len(scores) else []:
        mask = labels == c
        name = f"cluster {c}" if d.labels is not None else "candidates"
        left.scatter(ranks[mask], scores[mask], s=14, color=colours(int(c) % 10), label=name)
    if taken.any():
        left.scatter(ranks[taken], scores[taken], s=90, facecolors="none", edgecolors="black", label="taken")
    left.set_xlabel("rank")
    left.set_ylabel("fused score")
    left.set_title(f"{len(scores)} documents considered, {len(result.hits)} taken ({result.strategy})")
    if len(scores):
        left.legend(fontsize=8)

    if len(scores):
        spread = max(float(scores.max() - scores.min()), 1e-3)
        grid = np.linspace(scores.min() - 0.15 * spread, scores.max() + 0.15 * spread, 400)
        right.hist(scores, bins=min(40, max(5, len(scores) // 3)), density=True, color="0.85", label="scores")
        for cluster in d.clusters:
            sd = np.sqrt(max(cluster.variance, 1e-12))
            normal = np.exp(-0.5 * ((grid - cluster.mean) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
            density = cluster.mixture_weight * normal
            right.plot(
                grid,
                density,
                color=colours(cluster.index % 10),
                label=f"component {cluster.index}: W={cluster.kde_weight:.3g}, took {cluster.taken}",
            )
        if len(scores) > 1 and scores.std() > 1e-9:
            right.plot(grid, gaussian_kde(scores)(grid), color="black", linestyle="--", label="KDE")
        right.plot(scores[taken], np.zeros(int(taken.sum())), "|", color="black", markersize=18)
        right.legend(fontsize=8)
    right.set_xlabel("fused score")
    right.set_ylabel("density")
    k_text = f"K={d.k_clusters}" if d.k_clusters is not None else "no clustering"
    right.set_title(f"mixture and KDE ({k_text})")
    fig.suptitle(f"seek {result.query}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
