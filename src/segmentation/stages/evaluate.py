"""The evaluate stage: every metric of a run, for ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from segmentation.clustering import ClusterResult, HDBSCANClusterer
from segmentation.config import KClustererConfig, SegmentConfig
from segmentation.evaluation import bootstrap_stability, evaluate_segments
from segmentation.features import Featurizer
from segmentation.verdict import judge_run


def evaluate(
    x: np.ndarray,
    z: np.ndarray,
    result: ClusterResult,
    featurizer: Featurizer,
    *,
    config: SegmentConfig,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """All metrics of the run, for ``metrics.json``, ending with the verdict and its warnings.

    ``k_selection`` states how k was chosen: the silhouette (``scores``) and stability of every k tried,
    the rule and its threshold (see :func:`segmentation.clustering.search.choose_k`). ``verdict``,
    ``warnings`` and ``verdict_rule`` come from :func:`segmentation.verdict.judge` with the ``verdict`` and
    ``insights`` thresholds. ``feature_names`` (``Preprocessor.feature_names_out_``) lets
    ``between_ss_share`` count a categorical's one-hot columns as one column.
    """
    metrics = evaluate_segments(
        x,
        result.labels,
        z=z,
        silhouette_sample=config.evaluate.silhouette_sample,
        seed=config.seed,
        known_silhouette=result.score,  # the clustering stage scored these labels on the same sample
        metrics_sample=config.evaluate.metrics_sample,
        feature_names=feature_names,
    )
    metrics["k_selection"] = {
        "criterion": result.criterion,
        "space": "preprocessed",
        "fit_sample": min(
            config.cluster.fit_sample if isinstance(config.cluster, KClustererConfig) else x.shape[0],
            x.shape[0],
        ),
        "scores": {str(k): v for k, v in result.k_scores.items()},  # the silhouette of every k tried
        "stability": {str(k): v for k, v in result.k_stability.items()},
        "chosen_k": result.model.n_clusters_,
        **result.selection,  # the rule, its threshold, the range (empty when k was fixed)
    }
    if config.evaluate.stability_resamples:
        metrics["stability"] = bootstrap_stability(
            z,
            result.labels,
            result.model,
            resamples=config.evaluate.stability_resamples,
            fraction=config.evaluate.stability_fraction,
            sample_size=config.evaluate.stability_sample,
            seed=config.seed,
        )
    if result.alignment:
        metrics["alignment"] = result.alignment
    if isinstance(result.model, HDBSCANClusterer) and hasattr(result.model, "sample_agreement_"):
        # Fitted on a sample, the rest assigned: how well the assignment rule reproduces the fit.
        metrics["clusterer_sample"] = {
            "fit_rows": int(result.model.fit_rows_),
            "rows": len(result.labels),
            "sample_agreement": float(result.model.sample_agreement_),
        }
    metrics["featurizer"] = {
        "kind": featurizer.kind,
        "output_dim": int(z.shape[1]),
        "input_dim": int(x.shape[1]),
    }
    if featurizer.history:
        metrics["featurizer"]["final_train_loss"] = featurizer.history[-1]["train_loss"]
        metrics["featurizer"]["final_val_loss"] = featurizer.history[-1]["val_loss"]
        metrics["featurizer"]["epochs"] = len(featurizer.history)
    metrics.update(judge_run(metrics, config))
    return metrics


__all__ = ["evaluate"]
