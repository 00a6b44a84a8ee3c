"""Stability under resampling: refit a clusterer on subsamples of customers and compare the refits.

Shared by the k search (every candidate k, on the search sample) and by
:func:`segmentation.evaluation.bootstrap_stability` (the trained model, in the evaluate stage).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score

from segmentation.clustering.base import Clusterer
from segmentation.clustering.kinds import refit_like

Refit = tuple[np.ndarray, np.ndarray]
"""``(rows, labels)``: the rows a refit saw (sorted positions) and the labels it gave them."""


def subsamples(
    n: int, *, resamples: int, fraction: float, sample_size: int, seed: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A seeded base sample of at most ``sample_size`` of ``n`` rows, and ``resamples`` subsamples of it.

    Each subsample holds ``fraction`` of the base rows (at least 2), sorted, drawn without replacement.
    """
    rng = np.random.default_rng(seed)
    base = np.sort(rng.choice(n, min(sample_size, n), replace=False))
    size = max(2, round(fraction * len(base)))
    return base, [np.sort(rng.choice(base, size, replace=False)) for _ in range(resamples)]


def refits(model: Clusterer, z: np.ndarray, rows: list[np.ndarray], *, seed: int) -> list[Refit]:
    """The model's kind, parameters and k refitted on each subsample (refit ``b`` seeded ``seed + 1 + b``)."""
    return [(r, refit_like(model, z[r], seed=seed + 1 + b).labels_) for b, r in enumerate(rows)]


def pairwise_ari(fits: list[Refit]) -> list[float]:
    """Adjusted Rand index between every pair of refits, on the rows both contain."""
    out = []
    for i in range(len(fits)):
        for j in range(i + 1, len(fits)):
            (rows_i, lab_i), (rows_j, lab_j) = fits[i], fits[j]
            common, ci, cj = np.intersect1d(rows_i, rows_j, assume_unique=True, return_indices=True)
            if len(common):
                out.append(float(adjusted_rand_score(lab_i[ci], lab_j[cj])))
    return out


__all__ = ["Refit", "pairwise_ari", "refits", "subsamples"]
