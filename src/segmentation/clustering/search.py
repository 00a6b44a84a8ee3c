"""Fit the configured clusterer, choosing k by a stated criterion when it is not fixed."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segmentation.clustering.base import Clusterer, ClusterResult
from segmentation.clustering.centroid import KMeansClusterer, MiniBatchKMeansClusterer
from segmentation.clustering.gmm import GMMClusterer
from segmentation.clustering.kinds import _CLASSES
from segmentation.clustering.lloyd import lloyd_refine
from segmentation.clustering.silhouette import sampled_silhouette, sampled_silhouettes
from segmentation.config import (
    AgglomerativeConfig,
    ClusterConfig,
    GMMConfig,
    KMeansConfig,
    MiniBatchKMeansConfig,
)
from segmentation.data.chunks import sample_positions

logger = logging.getLogger(__name__)

_KConfig = KMeansConfig | MiniBatchKMeansConfig | GMMConfig | AgglomerativeConfig
"""Configurations of the clusterers whose k is fixed or searched."""


def fit_clusterer(
    z: np.ndarray, x_eval: np.ndarray, config: ClusterConfig, *, seed: int, silhouette_sample: int
) -> ClusterResult:
    """Fit the configured clusterer; when ``n_clusters`` is null, try every k and keep the best.

    The criterion is the silhouette on a seeded sample, computed in ``x_eval`` (the preprocessed input
    space) so the choice does not depend on the featurizer. Ties go to the smaller k.

    Args:
        z: feature-space matrix the clusterer is fitted on.
        x_eval: preprocessed matrix (same rows) for the criterion.
        config: the clusterer section of the configuration.
        seed: random seed.
        silhouette_sample: rows sampled for the silhouette.
    """
    cls = _CLASSES[config.kind]
    if not isinstance(config, _KConfig):
        model = cls(config, seed=seed).fit(z)
        score = sampled_silhouette(x_eval, model.labels_, silhouette_sample, seed)
        return ClusterResult(
            model=model, labels=model.labels_, score=score, k_scores={}, criterion="density (k not searched)"
        )
    # On large tables candidates are fitted on a sample (scored on the same rows) and only the winner
    # sees every row: k-means over k = 3..10 on 2,000,000 rows costs one full fit, not eight.
    rows = sample_positions(len(z), config.fit_sample, seed) if len(z) > config.fit_sample else None
    z_fit = z if rows is None else np.ascontiguousarray(z[rows])
    x_fit = x_eval if rows is None else np.ascontiguousarray(x_eval[rows])
    if config.n_clusters is not None:
        best = cls(config, seed=seed).fit(z_fit)
        criterion, scores = "fixed k", None
    else:
        criterion = "silhouette"
        best, scores = _search_k(
            cls, config, z_fit, x_fit, seed=seed, silhouette_sample=silhouette_sample, capped=rows is not None
        )
    if rows is not None:
        best = _refine_on_all_rows(best, config, z, seed)
    if rows is None and scores:
        score = scores[best.n_clusters_]  # the same rows and sample: no need to compute it twice
    else:
        score = sampled_silhouette(x_eval, best.labels_, silhouette_sample, seed)
    if scores is None:
        scores = {best.n_clusters_: score}
    return ClusterResult(model=best, labels=best.labels_, score=score, k_scores=scores, criterion=criterion)


def _search_k(
    cls: type[Clusterer],
    config: _KConfig,
    z_fit: np.ndarray,
    x_fit: np.ndarray,
    *,
    seed: int,
    silhouette_sample: int,
    capped: bool,
) -> tuple[Clusterer, dict[int, float | None]]:
    """Fit one candidate per k in the search range and keep the best silhouette (ties: smaller k).

    ``capped``: the candidates are fitted on a sample, so their ``max_iter`` is capped by the search's.

    Returns:
        ``(best, scores)``: the winning candidate and the silhouette of every k tried.

    Raises:
        ValueError: no k gave two or more clusters.
    """
    scores: dict[int, float | None] = {}
    ks = range(config.search.k_min, config.search.k_max + 1)
    candidates: dict[int, Clusterer] = {}
    for k in tqdm(ks, desc=f"{config.kind}: choosing k", disable=None, leave=False):
        started = time.perf_counter()
        update: dict[str, Any] = {"n_clusters": k}
        if capped and "max_iter" in type(config).model_fields:
            # A candidate only has to rank k; the winner is refined on all rows to convergence.
            update["max_iter"] = min(config.max_iter, config.search.max_iter)  # type: ignore[union-attr]
        candidates[k] = cls(config.model_copy(update=update), seed=seed).fit(z_fit)
        logger.info(
            "%s k=%d fitted on %d rows in %.1f s",
            config.kind,
            k,
            len(z_fit),
            time.perf_counter() - started,
        )
    # Every candidate is scored on the same sampled rows: their distances are computed once.
    silhouettes = sampled_silhouettes(
        x_fit, [model.labels_ for model in candidates.values()], silhouette_sample, seed
    )
    fitted: Clusterer | None = None
    best_score: float | None = None
    for (k, model), score in zip(candidates.items(), silhouettes, strict=True):
        scores[k] = score
        logger.info("%s k=%d silhouette=%s", config.kind, k, "n/a" if score is None else f"{score:.4f}")
        if score is not None and (best_score is None or score > best_score):
            fitted, best_score = model, score
    if fitted is None:
        raise ValueError(f"no k in {config.search.k_min}..{config.search.k_max} gave two or more clusters")
    return fitted, scores


def _refine_on_all_rows(model: Clusterer, config: Any, z: np.ndarray, seed: int) -> Clusterer:
    """Refit a model chosen on a sample on every row, starting from the sample's solution.

    ``config`` is the configured clusterer (its own ``max_iter``, not a candidate's capped one).
    """
    started = time.perf_counter()
    config = config.model_copy(update={"n_clusters": model.n_clusters_})
    refined: Clusterer
    if isinstance(model, KMeansClusterer | MiniBatchKMeansClusterer):
        # Mini-batch k-means has no max_iter of its own: the refinement allows k-means' default.
        max_iter = config.max_iter if isinstance(config, KMeansConfig) else KMeansConfig().max_iter
        centers, raw_labels, iterations = lloyd_refine(z, model.cluster_centers_, max_iter=max_iter)
        refined = type(model)(config, seed=seed)
        refined._finish(z, centers, raw_labels)
        logger.info("lloyd refinement: %d iteration(s) over all rows", iterations)
    elif isinstance(model, GMMClusterer):
        refined = GMMClusterer(config, seed=seed).fit(z, init=model.model_.means_)
    else:
        # Agglomerative fits on its own sample; every row then joins the nearest centroid.
        refined = type(model)(config, seed=seed).fit(z)
    logger.info(
        "%s k=%d refined on all %d rows in %.1f s",
        model.kind,
        refined.n_clusters_,
        len(z),
        time.perf_counter() - started,
    )
    return refined
