"""The evaluate stage: every metric of a run, for ``metrics.json``."""

from __future__ import annotations

from typing import Any

import numpy as np

from segmentation.clustering import ClusterResult, HDBSCANClusterer
from segmentation.config import KClustererConfig, SegmentConfig
from segmentation.evaluation import bootstrap_stability, evaluate_segments
from segmentation.features import Featurizer


def evaluate(
    x: np.ndarray, z: np.ndarray, result: ClusterResult, featurizer: Featurizer, *, config: SegmentConfig
) -> dict[str, Any]:
    """All metrics of the run, for ``metrics.json``."""
    metrics = evaluate_segments(
        x,
        result.labels,
        z=z,
        silhouette_sample=config.evaluate.silhouette_sample,
        seed=config.seed,
        known_silhouette=result.score,  # the clustering stage scored these labels on the same sample
        metrics_sample=config.evaluate.metrics_sample,
    )
    metrics["k_selection"] = {
        "criterion": result.criterion,
        "space": "preprocessed",
        "fit_sample": min(
            config.cluster.fit_sample if isinstance(config.cluster, KClustererConfig) else x.shape[0],
            x.shape[0],
        ),
        "scores": {str(k): v for k, v in result.k_scores.items()},
        "chosen_k": result.model.n_clusters_,
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
    return metrics


__all__ = ["evaluate"]
