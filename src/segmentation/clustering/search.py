"""Fit the configured clusterer, choosing k by a stated rule (stability, then silhouette) if not fixed."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from segmentation.clustering.base import Clusterer, ClusterResult
from segmentation.clustering.centroid import KMeansClusterer, MiniBatchKMeansClusterer
from segmentation.clustering.gmm import GMMClusterer
from segmentation.clustering.kinds import _CLASSES
from segmentation.clustering.lloyd import lloyd_refine
from segmentation.clustering.silhouette import sampled_silhouette, sampled_silhouettes
from segmentation.clustering.stability import pairwise_ari, refits, subsamples
from segmentation.config import (
    AgglomerativeConfig,
    ClusterConfig,
    GMMConfig,
    KMeansConfig,
    KSearch,
    MiniBatchKMeansConfig,
)
from segmentation.data.chunks import sample_positions

logger = logging.getLogger(__name__)

_KConfig = KMeansConfig | MiniBatchKMeansConfig | GMMConfig | AgglomerativeConfig
"""Configurations of the clusterers whose k is fixed or searched."""


def fit_clusterer(
    z: np.ndarray, x_eval: np.ndarray, config: ClusterConfig, *, seed: int, silhouette_sample: int
) -> ClusterResult:
    """Fit the configured clusterer; when ``n_clusters`` is null, try every k and pick by :func:`choose_k`.

    Every k gets its silhouette on a seeded sample, computed in ``x_eval`` (the preprocessed input space,
    so the choice does not depend on the featurizer), and its stability under resampling (see
    :class:`segmentation.config.KSearch`); the rule picks among the stable k.

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
    stability: dict[int, float | None] = {}
    selection: dict[str, Any] = {}
    if config.n_clusters is not None:
        best = cls(config, seed=seed).fit(z_fit)
        criterion, scores = "fixed k", None
    else:
        best, scores, stability, selection = _search_k(
            cls, config, z_fit, x_fit, seed=seed, silhouette_sample=silhouette_sample, capped=rows is not None
        )
        criterion = selection["criterion"]
    if rows is not None:
        best = _refine_on_all_rows(best, config, z, seed)
    if rows is None and scores:
        score = scores[best.n_clusters_]  # the same rows and sample: no need to compute it twice
    else:
        score = sampled_silhouette(x_eval, best.labels_, silhouette_sample, seed)
    if scores is None:
        scores = {best.n_clusters_: score}
    return ClusterResult(
        model=best,
        labels=best.labels_,
        score=score,
        k_scores=scores,
        criterion=criterion,
        k_stability=stability,
        selection=selection,
    )


def choose_k(
    silhouettes: Mapping[int, float | None], stability: Mapping[int, float | None], search: KSearch
) -> tuple[int, dict[str, Any]]:
    """The k search's rule, on the numbers of every k tried.

    Among the k whose stability is at least ``search.stability_threshold``, the best silhouette (ties:
    the smaller k). When none reaches the threshold, the most stable k (ties: the better silhouette, then
    the smaller k), and ``no_stable_k`` is set. Without stability values (``stability_resamples: 0``) the
    best silhouette. A k without a silhouette (fewer than two clusters) is never chosen.

    Returns:
        ``(k, selection)``: ``selection`` states the criterion, the rule in words, the threshold, the
        range and the stable k, for ``metrics.json``'s ``k_selection``.

    Raises:
        ValueError: no k gave two or more clusters.
    """
    scored = {k: float(v) for k, v in sorted(silhouettes.items()) if v is not None}
    if not scored:
        raise ValueError(f"no k in {search.k_min}..{search.k_max} gave two or more clusters")
    measured = {k: float(v) for k in scored if (v := stability.get(k)) is not None}
    threshold = search.stability_threshold
    selection: dict[str, Any] = {"k_min": search.k_min, "k_max": search.k_max}
    if not measured:
        k = max(scored, key=lambda k: (scored[k], -k))
        return k, {
            **selection,
            "criterion": "silhouette",
            "rule": "the best silhouette (ties: the smaller k); per-k stability was not measured",
        }
    stable = [k for k, value in measured.items() if value >= threshold]
    if stable:
        k = max(stable, key=lambda k: (scored[k], -k))
    else:
        k = max(measured, key=lambda k: (measured[k], scored[k], -k))
    return k, {
        **selection,
        "criterion": "silhouette among stable k",
        "rule": f"the best silhouette among the k whose stability is at least {threshold:g} (ties: the "
        "smaller k); when none is, the most stable k",
        "stability_threshold": threshold,
        "stable_k": stable,
        "no_stable_k": not stable,
    }


def _search_k(
    cls: type[Clusterer],
    config: _KConfig,
    z_fit: np.ndarray,
    x_fit: np.ndarray,
    *,
    seed: int,
    silhouette_sample: int,
    capped: bool,
) -> tuple[Clusterer, dict[int, float | None], dict[int, float | None], dict[str, Any]]:
    """Fit one candidate per k in the search range, score each, and keep the one :func:`choose_k` picks.

    ``capped``: the candidates are fitted on a sample, so their ``max_iter`` is capped by the search's.

    Returns:
        ``(chosen, silhouettes, stability, selection)``: the chosen candidate, the silhouette and the
        stability of every k tried, and how the k was chosen.

    Raises:
        ValueError: no k gave two or more clusters.
    """
    search = config.search
    ks = range(search.k_min, search.k_max + 1)
    candidates: dict[int, Clusterer] = {}
    for k in tqdm(ks, desc=f"{config.kind}: choosing k", disable=None, leave=False):
        started = time.perf_counter()
        update: dict[str, Any] = {"n_clusters": k}
        if capped and "max_iter" in type(config).model_fields:
            # A candidate only has to rank k; the winner is refined on all rows to convergence.
            update["max_iter"] = min(config.max_iter, search.max_iter)  # type: ignore[union-attr]
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
    scores = dict(zip(candidates, silhouettes, strict=True))
    stability, stability_rows = _stability_per_k(candidates, scores, z_fit, search, seed=seed)
    for k, score in scores.items():
        logger.info(
            "%s k=%d silhouette=%s stability=%s",
            config.kind,
            k,
            "n/a" if score is None else f"{score:.4f}",
            "n/a" if stability.get(k) is None else f"{stability[k]:.3f}",
        )
    chosen, selection = choose_k(scores, stability, search)
    if search.stability_resamples:
        selection.update(
            stability_resamples=search.stability_resamples,
            stability_fraction=search.stability_fraction,
            stability_rows=stability_rows,
        )
    if selection.get("no_stable_k"):
        logger.warning(
            "no k in %d..%d reached stability %.2f; chose the most stable, k=%d (%.3f)",
            search.k_min,
            search.k_max,
            search.stability_threshold,
            chosen,
            stability[chosen],
        )
    return candidates[chosen], scores, stability, selection


def _stability_per_k(
    candidates: dict[int, Clusterer],
    scores: dict[int, float | None],
    z_fit: np.ndarray,
    search: KSearch,
    *,
    seed: int,
) -> tuple[dict[int, float | None], int]:
    """Each candidate refitted on the same seeded subsamples; its mean pairwise ARI on shared rows.

    The subsamples hold ``stability_fraction`` of at most ``stability_rows`` rows of the search sample,
    so the cost is bounded whatever the table: (k_max - k_min + 1) x ``stability_resamples`` fits.

    Returns:
        ``(stability, rows)``: per k (None for a k without a silhouette or with a subsample too small for
        it; empty when ``stability_resamples`` is 0), and the number of rows the subsamples drew from.
    """
    if not search.stability_resamples:
        return {}, 0
    started = time.perf_counter()
    base, subsets = subsamples(
        len(z_fit),
        resamples=search.stability_resamples,
        fraction=search.stability_fraction,
        sample_size=search.stability_rows,
        seed=seed,
    )
    stability: dict[int, float | None] = {}
    for k, model in tqdm(candidates.items(), desc="stability per k", disable=None, leave=False):
        if scores[k] is None or len(subsets[0]) <= k:
            stability[k] = None
            continue
        pairs = pairwise_ari(refits(model, z_fit, subsets, seed=seed))
        stability[k] = float(np.mean(pairs)) if pairs else None
    logger.info(
        "stability per k: %d refits on %d of %d rows in %.1f s",
        len(candidates) * search.stability_resamples,
        len(subsets[0]),
        len(base),
        time.perf_counter() - started,
    )
    return stability, len(base)


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
