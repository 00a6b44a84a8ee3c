"""Segment quality metrics, computed in the preprocessed input space so every featurizer is comparable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score

from segmentation.clustering import NOISE, Clusterer, sampled_silhouette
from segmentation.clustering.stability import pairwise_ari, refits, subsamples


def evaluate_segments(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    z: np.ndarray | None = None,
    silhouette_sample: int = 10_000,
    seed: int = 0,
    known_silhouette: float | None = None,
    metrics_sample: int = 200_000,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Compute the metrics written to ``metrics.json``.

    Silhouette is computed on a seeded sample (its size is reported); Davies-Bouldin and
    Calinski-Harabasz are linear in the number of rows and use every non-noise row up to
    ``metrics_sample`` rows (a seeded sample beyond that; ``metrics_sample_size`` says how many). Noise rows
    (label -1) are excluded from all three and reported as ``noise_fraction``. ``between_ss_share`` (how
    much of the difference between segments each input column holds, see :func:`between_ss_share`) uses
    the same rows as Davies-Bouldin.

    Args:
        x: preprocessed input matrix (the common evaluation space).
        labels: segment per row, -1 for noise.
        z: feature-space matrix; when given, ``silhouette_feature_space`` is added.
        silhouette_sample: rows sampled for silhouettes.
        seed: sample seed.
        known_silhouette: the silhouette of these labels, already computed on the same sample (same
            ``silhouette_sample`` and ``seed``); skips computing it twice.
        metrics_sample: most rows Davies-Bouldin and Calinski-Harabasz are computed on.
        feature_names: names of ``x``'s columns (``Preprocessor.feature_names_out_``), to group a
            categorical's one-hot columns in ``between_ss_share``; without them each column is its own.
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
        rows = np.flatnonzero(clustered)
        if len(rows) > metrics_sample:
            rows = np.sort(np.random.default_rng(seed).choice(rows, metrics_sample, replace=False))
        xc, lc = x[rows], labels[rows]
        if len(np.unique(lc)) >= 2:
            metrics["davies_bouldin"] = float(davies_bouldin_score(xc, lc))
            metrics["calinski_harabasz"] = float(calinski_harabasz_score(xc, lc))
        else:
            metrics["davies_bouldin"] = metrics["calinski_harabasz"] = None
        metrics["metrics_sample_size"] = len(rows)
        metrics["between_ss_share"] = between_ss_share(xc, lc, feature_names)
    else:
        metrics["davies_bouldin"] = None
        metrics["calinski_harabasz"] = None
    if z is not None:
        metrics["silhouette_feature_space"] = sampled_silhouette(z, labels, silhouette_sample, seed)
    return metrics


def between_ss_share(
    x: np.ndarray, labels: np.ndarray, feature_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Share of the between-segment sum of squares held by each input column, largest first.

    The between-segment sum of squares of preprocessed column ``j`` is ``sum_s n_s (mean_sj - mean_j)^2``
    over the segments ``s`` (noise rows, label -1, left out). Columns are grouped back to input columns by
    name: a categorical's one-hot columns (``col=level``) count as one column. Without names every
    preprocessed column is its own group (``column 0``, ``column 1``, ...). Empty when fewer than two
    segments or no difference between them.
    """
    keep = labels >= 0
    xs, ls = x[keep], labels[keep]
    segments = np.unique(ls)
    if len(segments) < 2:
        return {}
    overall = xs.mean(axis=0, dtype=np.float64)
    between = np.zeros(xs.shape[1])
    for seg in segments:
        rows = xs[ls == seg]
        between += len(rows) * (rows.mean(axis=0, dtype=np.float64) - overall) ** 2
    total = float(between.sum())
    if total <= 0.0:
        return {}
    names = list(feature_names) if feature_names is not None else [f"column {j}" for j in range(xs.shape[1])]
    if len(names) != xs.shape[1]:
        raise ValueError(f"{len(names)} feature names for {xs.shape[1]} columns")
    shares: dict[str, float] = {}
    for name, value in zip(names, between, strict=True):
        group = name.partition("=")[0]
        shares[group] = shares.get(group, 0.0) + float(value) / total
    return dict(sorted(shares.items(), key=lambda item: -item[1]))


def bootstrap_stability(
    z: np.ndarray,
    labels: np.ndarray,
    model: Clusterer,
    *,
    resamples: int = 10,
    fraction: float = 0.8,
    sample_size: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """How reproducible the segmentation is under resampling of customers.

    The clusterer is refitted (same kind, parameters and k) on ``resamples`` random subsamples of
    ``fraction`` of the rows (drawn from a fixed sample of at most ``sample_size`` rows, so the cost is
    bounded on millions of customers). Reported:

    * ``ari_pairwise_mean`` / ``ari_pairwise_min``: adjusted Rand index between every pair of refits,
      on the customers both subsamples contain (each refit labels them with its own fitted labels);
    * ``ari_vs_model_mean``: ARI of each refit against the trained model's labels on its rows;
    * ``jaccard_per_segment``: for every segment of the trained model, the mean over refits of the best
      Jaccard overlap with a refit's cluster (Hennig's cluster-wise stability; above 0.75 is stable,
      below 0.5 dissolves).

    Args:
        z: feature-space matrix the model was fitted on.
        labels: the trained model's labels for those rows (-1 noise).
        model: the trained clusterer (its kind, parameters and k are reused).
        resamples: number of refits (at least 2 for pairwise values).
        fraction: share of the sample in each refit.
        sample_size: rows sampled once for all refits.
        seed: random seed.
    """
    base, subsets = subsamples(
        len(z), resamples=resamples, fraction=fraction, sample_size=sample_size, seed=seed
    )
    fits = refits(model, z, subsets, seed=seed)
    pairwise = pairwise_ari(fits)
    vs_model = [float(adjusted_rand_score(labels[rows], lab)) for rows, lab in fits]
    jaccard: dict[str, float] = {}
    for seg in sorted(set(labels[labels != NOISE].tolist())):
        best = []
        for rows, lab in fits:
            in_seg = labels[rows] == seg
            if not in_seg.any():
                continue
            scores = [
                np.logical_and(in_seg, lab == c).sum() / np.logical_or(in_seg, lab == c).sum()
                for c in set(lab[lab != NOISE].tolist())
            ]
            best.append(max(scores, default=0.0))
        jaccard[str(seg)] = float(np.mean(best)) if best else 0.0
    return {
        "resamples": resamples,
        "fraction": fraction,
        "sample_size": len(base),
        "ari_pairwise_mean": float(np.mean(pairwise)) if pairwise else None,
        "ari_pairwise_min": float(np.min(pairwise)) if pairwise else None,
        "ari_vs_model_mean": float(np.mean(vs_model)) if vs_model else None,
        "jaccard_per_segment": jaccard,
        "jaccard_min": min(jaccard.values()) if jaccard else None,
    }
