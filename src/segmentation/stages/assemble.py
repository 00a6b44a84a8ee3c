"""Assembly: the fitted parts, segment names and drift reference put together as one model bundle.

:func:`fit_model` is every stage in this process, without Prefect or caching.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from segmentation import drift
from segmentation.bundle import SegmentationModel, segment_summary
from segmentation.clustering import ClusterResult
from segmentation.config import SegmentConfig
from segmentation.data.chunks import sample_positions
from segmentation.features import Featurizer
from segmentation.insights.profiles import (
    resolve_names,
    segment_effects,
    segment_names,
    standardized_differences,
)
from segmentation.insights.rules import RuleSet, segment_rules
from segmentation.preprocess import Preprocessor
from segmentation.stages.evaluate import evaluate
from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import ValidatedTable, validate_table
from segmentation.versioning import code_version


def assemble_model(
    table: ValidatedTable,
    pre: Preprocessor,
    featurizer: Featurizer,
    result: ClusterResult,
    x: np.ndarray,
    metrics: dict[str, Any],
    *,
    config: SegmentConfig,
    data_hash: str,
    source: str,
) -> SegmentationModel:
    """Put the fitted parts together and measure how well the bundle reproduces the training labels.

    ``assignment_agreement`` is the share of (up to ``evaluate.agreement_sample``) training rows whose
    label from the full prediction path equals the training label: 1 by construction for centroid models
    (k-means, mini-batch, agglomerative, whose training labels are defined by the nearest-centroid rule)
    and GMMs, up to a row within float32 rounding of a boundary (the sample is predicted in products of
    another shape, which some BLAS kernels sum in another order); below 1 where training labels come
    from a fit that the prediction rule approximates (HDBSCAN's approximate_predict, DBSCAN's nearest
    core point).
    """
    centroids = standardized_differences(x, result.labels, pre.feature_names_out_)
    # What distinguishes each segment: effect sizes from the preprocessed numeric columns and from the
    # original categorical values (one column read at a time); names and descriptions come from them.
    effects = segment_effects(
        x,
        result.labels,
        pre.feature_names_out_,
        table.schema,
        lambda column: table.read([column])[column],
        centroids=centroids,
    )
    carried = {int(k): v for k, v in ((result.alignment or {}).get("carried_names") or {}).items()}
    names, sources = resolve_names(segment_names(effects.ranking()), config.insights.names, carried)
    model = SegmentationModel(
        schema=table.schema,
        preprocessor=pre,
        featurizer=featurizer,
        clusterer=result.model,
        segments=segment_summary(
            centroids,
            result.labels,
            names,
            sources,
            insights=effects.summary_fields(),
            effect_names=list(effects.effects.columns),
        ),
        manifest={
            "name": config.model_name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "data": {
                "source": source,
                "content_hash": data_hash,
                "n_rows": table.n_rows,
                "schema_kind": table.schema.kind,
            },
            "config": config.model_dump(mode="json"),
        },
    )
    n = table.n_rows
    idx = sample_positions(n, config.evaluate.agreement_sample, config.seed)
    reference_idx = sample_positions(n, config.drift.reference_sample, config.seed)
    # Both samples are seeded draws of the same rows (identical at the default sizes): read them once.
    rows = table.take(np.union1d(idx, reference_idx))
    model.reference = drift.build_reference(  # training distributions for drift monitoring
        rows.loc[reference_idx], pre, result.labels, bins=config.drift.bins
    )
    predicted = model.predict(rows.loc[idx], validate=False)
    rules = _attach_rules(model, rows.loc[reference_idx], result.labels[reference_idx], config)
    metrics = {
        **metrics,
        "assignment_agreement": float((predicted == result.labels[idx]).mean()),
        "assignment_agreement_rows": len(idx),
        "rules": {key.removeprefix("rules_"): value for key, value in rules.summary().items()},
    }
    model.manifest["metrics"] = metrics
    return model


def _attach_rules(
    model: SegmentationModel, rows: pd.DataFrame, labels: np.ndarray, config: SegmentConfig
) -> RuleSet:
    """Each segment's rule in original units (a shallow surrogate tree), stored in ``segments.json``.

    ``rows`` are training rows in original units (the drift reference's sample, already read) and
    ``labels`` their final, aligned segments; the rules' precision and recall are measured on rows the
    trees never saw.
    """
    rules = segment_rules(
        rows,
        labels,
        model.schema,
        max_depth=config.insights.rule_depth,
        sample=config.insights.rule_sample,
        seed=config.seed,
    )
    model.segments["rules"] = rules.to_dict()
    for seg in model.segments["segments"]:
        rule = rules.rule(int(seg["id"]))
        if rule is not None:
            seg["rule"] = rule.text
            seg["rule_precision"], seg["rule_recall"] = rule.precision, rule.recall
    return rules


def fit_model(
    frame: pd.DataFrame, config: SegmentConfig, *, source: str = "<frame>", data_hash: str = ""
) -> tuple[SegmentationModel, ClusterResult]:
    """Every stage in this process, without Prefect or caching (notebooks, tests, benchmarks).

    The flow runs the same nodes as cached tasks; this is the plain sequence, returning the assembled
    model (not yet saved) and the clustering result with its training labels.
    """
    table = validate_table(frame, config.data, source=source, seed=config.seed)
    pre, x = fit_preprocessing(table, config.preprocess, float32=config.data.float32, seed=config.seed)
    featurizer, z = fit_features(x, config.featurize, seed=config.seed)
    result = fit_segments(
        z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
    )
    metrics = evaluate(x, z, result, featurizer, config=config, feature_names=pre.feature_names_out_)
    model = assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash=data_hash, source=source
    )
    return model, result


__all__ = ["assemble_model", "fit_model"]
