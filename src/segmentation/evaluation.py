"""Segment quality metrics, computed in the preprocessed input space so every featurizer is comparable."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from segmentation.clustering import NOISE, sampled_silhouette


def evaluate_segments(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    z: np.ndarray | None = None,
    silhouette_sample: int = 10_000,
    seed: int = 0,
    known_silhouette: float | None = None,
) -> dict[str, Any]:
    """Compute the metrics written to ``metrics.json``.

    Silhouette is computed on a seeded sample (its size is reported); Davies-Bouldin and
    Calinski-Harabasz are linear in the number of rows and use every non-noise row. Noise rows
    (label -1) are excluded from all three and reported as ``noise_fraction``.

    Args:
        x: preprocessed input matrix (the common evaluation space).
        labels: segment per row, -1 for noise.
        z: feature-space matrix; when given, ``silhouette_feature_space`` is added.
        silhouette_sample: rows sampled for silhouettes.
        seed: sample seed.
        known_silhouette: the silhouette of these labels, already computed on the same sample (same
            ``silhouette_sample`` and ``seed``); skips computing it twice.
    """
    n = len(labels)
    clustered = labels != NOISE
    segments, counts = np.unique(labels[clustered], return_counts=True)
    metrics: dict[str, Any] = {
        "n_rows": int(n),
        "n_clusters": len(segments),
        "noise_fraction": float(1.0 - clustered.mean()) if n else 0.0,
        "segment_sizes": {str(int(s)): int(c) for s, c in zip(segments, counts, strict=True)},
        "segment_shares": {str(int(s)): float(c / n) for s, c in zip(segments, counts, strict=True)},
        "min_segment_share": float(counts.min() / n) if len(counts) else 0.0,
        "max_segment_share": float(counts.max() / n) if len(counts) else 0.0,
        "silhouette_sample_size": int(min(silhouette_sample, int(clustered.sum()))),
        "evaluation_space": "preprocessed",
    }
    metrics["silhouette"] = (
        known_silhouette
        if known_silhouette is not None
        else sampled_silhouette(x, labels, silhouette_sample, seed)
    )
    if len(segments) >= 2:
        xc, lc = x[clustered], labels[clustered]
        metrics["davies_bouldin"] = float(davies_bouldin_score(xc, lc))
        metrics["calinski_harabasz"] = float(calinski_harabasz_score(xc, lc))
    else:
        metrics["davies_bouldin"] = None
        metrics["calinski_harabasz"] = None
    if z is not None:
        metrics["silhouette_feature_space"] = sampled_silhouette(z, labels, silhouette_sample, seed)
    return metrics
