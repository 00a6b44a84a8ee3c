"""The training stages as pure functions (nodes). Orchestration, caching and retries live in ``workflows/``.

Each node takes data and a config section and returns data; none touches global state. Cache keys
for a stage chain the key of the stage before it with the stage's own parameters and code, see
:func:`stage_keys`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from segmentation.bundle import SegmentationModel, save_bundle, segment_summary
from segmentation.clustering import ClusterResult, fit_clusterer
from segmentation.config import ClusterConfig, DataConfig, FeaturizeConfig, PreprocessConfig, SegmentConfig
from segmentation.data.io import write_json, write_table, write_text
from segmentation.data.validation import (
    CC_GENERAL_ID,
    Failure,
    TableSchema,
    ValidationReport,
    cc_general_schema,
    detect_id_column,
    infer_schema,
    looks_like_cc_general,
    validate_frame,
)
from segmentation.errors import DataValidationError
from segmentation.evaluation import bootstrap_stability, evaluate_segments
from segmentation.features import Featurizer, build_featurizer
from segmentation.insights.profiles import build_profile, segment_names, standardized_differences
from segmentation.preprocess import Preprocessor
from segmentation.versioning import code_fingerprint, code_version

logger = logging.getLogger(__name__)

STAGES = ("load", "preprocess", "featurize", "cluster", "evaluate")
# Library code each stage runs; this module (which holds every node) is part of the load stage's key and
# so, through the chain, of every stage's key.
_STAGE_CODE = {
    "load": ("segmentation.data", "segmentation.pipeline"),
    "preprocess": ("segmentation.preprocess",),
    "featurize": ("segmentation.features",),
    "cluster": ("segmentation.clustering",),
    "evaluate": ("segmentation.evaluation",),
}
_STAGE_SECTIONS = {
    "load": ("data",),
    "preprocess": ("preprocess",),
    "featurize": ("featurize",),
    "cluster": ("cluster",),
    "evaluate": ("evaluate",),
}


def stage_keys(data_hash: str, config: SegmentConfig) -> dict[str, str]:
    """Chained cache keys: each stage's key hashes the previous key, its own parameters and its code.

    So a rerun with nothing changed hits every stage; changing only clusterer parameters changes the
    keys of ``cluster`` and ``evaluate`` only; changing the data changes every key. The seed is part of
    every stage's parameters.
    """
    keys: dict[str, str] = {}
    previous = data_hash
    for stage in STAGES:
        digest = hashlib.sha256(previous.encode())
        digest.update(f"seed={config.seed}".encode())
        for section in _STAGE_SECTIONS[stage]:
            digest.update(config.section_json(section).encode())
        digest.update(code_fingerprint(*_STAGE_CODE[stage]).encode())
        previous = keys[stage] = f"{stage}-{digest.hexdigest()[:32]}"
    return keys


# --------------------------------------------------------------------------------------- validation
@dataclass
class ValidatedTable:
    """A table that passed validation, with its schema."""

    frame: pd.DataFrame
    schema: TableSchema
    report: ValidationReport


def validate_table(frame: pd.DataFrame, config: DataConfig, *, source: str, seed: int = 0) -> ValidatedTable:
    """Choose the ID column and schema, then validate lazily.

    Raises:
        DataValidationError: with a report naming every failing column and check.
    """

    def fail(column: str, check: str, example: str) -> DataValidationError:
        return DataValidationError(
            ValidationReport(
                source=source,
                n_rows=len(frame),
                n_columns=frame.shape[1],
                failures=[Failure(column=column, check=check, count=1, examples=[example])],
            )
        )

    use_cc = config.schema_kind == "cc_general" or (
        config.schema_kind == "auto" and looks_like_cc_general([str(c) for c in frame.columns])
    )
    if use_cc:
        schema = cc_general_schema()
    else:
        id_column = config.id_column
        if id_column is not None and id_column not in frame.columns:
            raise fail(id_column, "missing_required_column", "configured ID column not in the table")
        if id_column is None:
            try:
                id_column = detect_id_column(frame)
            except ValueError as exc:
                raise fail("<id>", "unambiguous_id_column", str(exc)) from exc
        schema = infer_schema(
            frame,
            id_column,
            max_categories=config.max_categories,
            drop_columns=config.drop_columns,
            reference_date=config.reference_date,
            seed=seed,
        )
        if not schema.columns:
            raise fail(
                "<table>", "has_feature_columns", "no usable feature column (all constant, empty or text)"
            )
    validated, report = validate_frame(frame, schema, source=source)
    if not report.ok:
        raise DataValidationError(report)
    if schema.ignored_columns:
        logger.warning(
            "ignored columns (constant, free text or dropped): %s", ", ".join(schema.ignored_columns)
        )
    return ValidatedTable(frame=validated, schema=schema, report=report)


def customer_ids(table: ValidatedTable) -> pd.Series:
    """The ID column, or row numbers named ``row`` when the table has none."""
    if table.schema.id_column:
        return table.frame[table.schema.id_column].reset_index(drop=True)
    return pd.Series(np.arange(len(table.frame)), name="row")


# ------------------------------------------------------------------------------------ fitting stages
def fit_preprocessing(
    table: ValidatedTable, config: PreprocessConfig, *, float32: bool, seed: int
) -> tuple[Preprocessor, np.ndarray]:
    """Fit preprocessing on the training table; return it with the preprocessed matrix."""
    pre = Preprocessor(table.schema, config, float32=float32, seed=seed)
    return pre, pre.fit_transform(table.frame)


def fit_features(x: np.ndarray, config: FeaturizeConfig, *, seed: int) -> tuple[Featurizer, np.ndarray]:
    """Fit the featurizer; return it with the feature-space matrix."""
    featurizer = build_featurizer(config, seed=seed)
    return featurizer, featurizer.fit_transform(x)


def fit_segments(
    z: np.ndarray, x: np.ndarray, config: ClusterConfig, *, seed: int, silhouette_sample: int
) -> ClusterResult:
    """Fit the clusterer (choosing k when asked) and keep the winner with its labels and score."""
    return fit_clusterer(z, x, config, seed=seed, silhouette_sample=silhouette_sample)


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
    )
    metrics["k_selection"] = {
        "criterion": result.criterion,
        "space": "preprocessed",
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
    label from the full prediction path equals the training label: exactly 1 for centroid models
    (k-means, mini-batch, agglomerative, whose training labels are defined by the nearest-centroid rule)
    and GMMs; below 1 where training labels come from a fit that the prediction rule approximates
    (HDBSCAN's approximate_predict, DBSCAN's nearest core point).
    """
    centroids = standardized_differences(x, result.labels, pre.feature_names_out_)
    model = SegmentationModel(
        schema=table.schema,
        preprocessor=pre,
        featurizer=featurizer,
        clusterer=result.model,
        segments=segment_summary(centroids, result.labels, segment_names(centroids)),
        manifest={
            "name": config.model_name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "data": {
                "source": source,
                "content_hash": data_hash,
                "n_rows": len(table.frame),
                "schema_kind": table.schema.kind,
            },
            "config": config.model_dump(mode="json"),
        },
    )
    rng = np.random.default_rng(config.seed)
    n = len(table.frame)
    idx = (
        np.sort(rng.choice(n, config.evaluate.agreement_sample, replace=False))
        if n > config.evaluate.agreement_sample
        else np.arange(n)
    )
    predicted = model.predict(table.frame.iloc[idx], validate=False)
    metrics = {
        **metrics,
        "assignment_agreement": float((predicted == result.labels[idx]).mean()),
        "assignment_agreement_rows": len(idx),
    }
    model.manifest["metrics"] = metrics
    return model


# ------------------------------------------------------------------------------------------ outputs
def write_run_outputs(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    featurizer: Featurizer,
) -> dict[str, str]:
    """Write the run's outputs: bundle, metrics, labels, profile, config (and the autoencoder's losses)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bundle": str(save_bundle(model, out_dir / "bundle"))}
    raw = model.preprocessor.raw_frame(table.frame)
    profile = build_profile(raw, model.centroids, labels, model.segment_names)
    paths["profile"] = str(write_table(profile, out_dir / "profile.csv"))
    ids = customer_ids(table)
    frame = pd.DataFrame({ids.name or "id": ids.to_numpy(), "segment": labels.astype(np.int32)})
    paths["labels"] = str(write_table(frame, out_dir / "labels.parquet"))
    paths["metrics"] = str(write_json(model.manifest["metrics"], out_dir / "metrics.json"))
    paths["config"] = str(
        write_text(yaml.safe_dump(model.manifest["config"], sort_keys=False), out_dir / "config.yaml")
    )
    if featurizer.history:
        paths["loss_history"] = str(
            write_table(pd.DataFrame(featurizer.history), out_dir / "loss_history.csv")
        )
    return paths


def write_plots(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    featurizer: Featurizer,
    x: np.ndarray,
    *,
    seed: int,
) -> dict[str, str]:
    """The visualize stage: every plot of the run into ``DIR/plots/`` (sampled, bounded on large tables)."""
    from segmentation.insights.plots import make_plots  # matplotlib is only needed here

    pre = model.preprocessor
    metrics = model.manifest["metrics"]
    return make_plots(
        out_dir / "plots",
        x=x,
        labels=labels,
        raw=pre.raw_frame(table.frame),
        diffs=model.centroids,
        names=model.segment_names,
        k_scores=metrics["k_selection"]["scores"],
        chosen_k=int(metrics["k_selection"]["chosen_k"]),
        history=featurizer.history,
        seed=seed,
    )


def write_validation_report(out_dir: Path, report: ValidationReport) -> list[Path]:
    """Write ``validation_report.json`` and ``validation_report.txt`` next to the run."""
    return [
        write_json(report.to_dict(), out_dir / "validation_report.json"),
        write_text(report.to_text() + "\n", out_dir / "validation_report.txt"),
    ]


__all__ = [
    "CC_GENERAL_ID",
    "STAGES",
    "ValidatedTable",
    "assemble_model",
    "customer_ids",
    "evaluate",
    "fit_features",
    "fit_preprocessing",
    "fit_segments",
    "stage_keys",
    "validate_table",
    "write_run_outputs",
    "write_validation_report",
]
