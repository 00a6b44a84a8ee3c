"""The training stages as pure functions (nodes). Orchestration, caching and retries live in ``workflows/``.

Each node takes data and a config section and returns data; none touches global state. Cache keys
for a stage chain the key of the stage before it with the stage's own parameters and code, see
:func:`stage_keys`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from segmentation.alignment import Alignment, align_by_centroids, align_by_overlap
from segmentation.bundle import (
    SegmentationModel,
    bundle_digest,
    find_bundle,
    load_bundle,
    save_bundle,
    segment_summary,
)
from segmentation.clustering import NOISE, ClusterResult, fit_clusterer
from segmentation.config import (
    ClusterConfig,
    DataConfig,
    FeaturizeConfig,
    InsightsConfig,
    PreprocessConfig,
    SegmentConfig,
)
from segmentation.data.io import file_digest, read_table, write_json, write_table, write_text
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
from segmentation.errors import BundleError, ConfigError, DataValidationError
from segmentation.evaluation import bootstrap_stability, evaluate_segments
from segmentation.features import Featurizer, build_featurizer
from segmentation.insights.profiles import (
    build_profile,
    resolve_names,
    segment_names,
    standardized_differences,
)
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
    "cluster": ("segmentation.clustering", "segmentation.alignment"),
    "evaluate": ("segmentation.evaluation",),
}
_STAGE_SECTIONS = {
    "load": ("data",),
    "preprocess": ("preprocess",),
    "featurize": ("featurize",),
    "cluster": ("cluster",),
    "evaluate": ("evaluate",),
}


def stage_keys(data_hash: str, config: SegmentConfig, align_digest: str | None = None) -> dict[str, str]:
    """Chained cache keys: each stage's key hashes the previous key, its own parameters and its code.

    So a rerun with nothing changed hits every stage; changing only clusterer parameters changes the
    keys of ``cluster`` and ``evaluate`` only; changing the data changes every key. The seed is part of
    every stage's parameters. ``align_digest`` (the digest of the bundle whose IDs are kept, see
    :func:`align_segments`) is part of the cluster stage's key: the alignment happens there.
    """
    keys: dict[str, str] = {}
    previous = data_hash
    for stage in STAGES:
        digest = hashlib.sha256(previous.encode())
        digest.update(f"seed={config.seed}".encode())
        for section in _STAGE_SECTIONS[stage]:
            digest.update(config.section_json(section).encode())
        digest.update(code_fingerprint(*_STAGE_CODE[stage]).encode())
        if stage == "cluster" and align_digest:
            digest.update(f"align={align_digest}".encode())
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


def previous_model(align_to: str) -> tuple[SegmentationModel, str]:
    """Load the bundle named by ``insights.align_to`` and its digest.

    Raises:
        ConfigError: the path is not a run directory or bundle, or the bundle fails verification.
    """
    try:
        model = load_bundle(find_bundle(align_to))
    except BundleError as exc:
        raise ConfigError(f"insights.align_to: {exc}") from exc
    return model, bundle_digest(model.manifest)


def align_segments(
    result: ClusterResult,
    table: ValidatedTable,
    x: np.ndarray,
    feature_names: list[str],
    previous: SegmentationModel,
    *,
    reference: str,
    sample: int = 100_000,
    seed: int = 0,
) -> ClusterResult:
    """Renumber the new segments so that they keep the previous model's IDs (and user names).

    The previous bundle scores (a seeded sample of) the training table and IDs are matched by customer
    overlap (:func:`segmentation.alignment.align_by_overlap`). If the previous model cannot score the
    table (its columns changed), centroids are matched on the features both share instead.

    Returns:
        A result whose model, labels and ``alignment`` record reflect the new IDs.
    """
    labels = result.labels
    rows = np.arange(len(labels))
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(labels), sample, replace=False))
    n_clusters = result.model.n_clusters_
    alignment: Alignment
    try:
        before = previous.predict(table.frame.iloc[rows])
        alignment = align_by_overlap(before, labels[rows], n_clusters)
    except DataValidationError as exc:
        logger.warning("the previous model cannot score this table (%s); matching centroids instead", exc)
        current = standardized_differences(x, labels, feature_names)
        try:
            alignment = align_by_centroids(previous.centroids, current)
        except ValueError as err:
            raise ConfigError(f"insights.align_to: {err}") from err
    result.model.relabel(alignment.mapping)
    aligned = np.where(labels >= 0, alignment.mapping[np.maximum(labels, 0)], NOISE)
    carried = {
        seg["id"]: seg["name"]
        for seg in previous.segments["segments"]
        if seg.get("name_source", "auto") != "auto" and (seg["id"] == NOISE or seg["id"] in alignment.matched)
    }
    record = {
        **alignment.to_dict(),
        "reference": reference,
        "previous_model": previous.name,
        "previous_digest": bundle_digest(previous.manifest) if "files" in previous.manifest else None,
        "carried_names": {str(k): v for k, v in carried.items()},
    }
    logger.info(
        "segment IDs aligned to %s (%s): new->aligned %s, agreement %s",
        reference,
        alignment.method,
        record["mapping"],
        "n/a" if alignment.agreement is None else f"{alignment.agreement:.3f}",
    )
    return dataclasses.replace(result, labels=aligned.astype(labels.dtype), alignment=record)


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
    if result.alignment:
        metrics["alignment"] = result.alignment
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
    carried = {int(k): v for k, v in ((result.alignment or {}).get("carried_names") or {}).items()}
    names, sources = resolve_names(segment_names(centroids), config.insights.names, carried)
    model = SegmentationModel(
        schema=table.schema,
        preprocessor=pre,
        featurizer=featurizer,
        clusterer=result.model,
        segments=segment_summary(centroids, result.labels, names, sources),
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
    metrics = evaluate(x, z, result, featurizer, config=config)
    model = assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash=data_hash, source=source
    )
    return model, result


# ------------------------------------------------------------------------------------------ outputs
def write_run_outputs(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    featurizer: Featurizer,
) -> dict[str, str]:
    """Write the run's outputs: bundle, metrics, labels, config (and the autoencoder's losses)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bundle": str(save_bundle(model, out_dir / "bundle"))}
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


def insights_config(model: SegmentationModel) -> InsightsConfig:
    """The insights settings the model was trained with (defaults for bundles that predate them)."""
    return InsightsConfig.model_validate(model.manifest.get("config", {}).get("insights", {}))


def write_insights(
    out_dir: Path,
    model: SegmentationModel,
    frame: pd.DataFrame,
    labels: np.ndarray,
    x: np.ndarray,
    history: list[dict[str, float]],
    *,
    seed: int,
) -> dict[str, str]:
    """The visualize stage: ``profile.csv``, plots in ``DIR/plots/``, ``report.html`` and ``report.md``.

    Everything is read from the saved bundle (names, centroids, metrics, settings) plus the training
    rows and labels, so ``segment report DIR`` regenerates exactly what the flow wrote. Plots sample
    rows, so the cost is bounded on millions of customers.
    """
    from segmentation.insights.plots import make_plots  # matplotlib is only needed here
    from segmentation.insights.report import ReportContext, Thresholds, write_report

    settings = insights_config(model)
    pre = model.preprocessor
    categorical_columns = [c.name for c in model.schema.columns if c.kind == "categorical"]
    profile = build_profile(
        ((name, pre.raw_column(frame, name)) for name in pre.dense_columns),  # one column at a time
        model.centroids,
        labels,
        model.segment_names,
        n_top=settings.top_features,
        categorical=frame[categorical_columns] if categorical_columns else None,
    )
    paths = {"profile": str(write_table(profile, out_dir / "profile.csv"))}
    metrics = model.manifest["metrics"]
    plots = make_plots(
        out_dir / "plots",
        x=x,
        labels=labels,
        raw=lambda rows: pre.raw_frame(frame.iloc[rows]),
        diffs=model.centroids,
        names=model.segment_names,
        k_scores=metrics["k_selection"]["scores"],
        chosen_k=int(metrics["k_selection"]["chosen_k"]),
        history=history,
        max_points=settings.max_points,
        embedding=settings.embedding,
        embedding_sample=settings.embedding_sample,
        seed=seed,
    )
    paths["plots"] = str(out_dir / "plots")
    context = ReportContext(
        manifest=model.manifest,
        segments=model.segments["segments"],
        centroids=model.centroids,
        profile=profile,
        plots=plots,
        thresholds=Thresholds(
            small_segment=settings.small_segment_share,
            large_segment=settings.large_segment_share,
            noise=settings.noise_share,
        ),
        feature_count=len(model.schema.columns),
    )
    return paths | write_report(context, out_dir)


def rename_segments(model: SegmentationModel, names: dict[int, str], bundle_dir: Path) -> SegmentationModel:
    """Store user names in a finished run's bundle (no refit); other segments keep their names.

    Raises:
        ConfigError: a name for a segment the model does not have, or duplicate names.
    """
    validated = InsightsConfig(names=names).names
    sources = {int(seg["id"]): seg.get("name_source", "auto") for seg in model.segments["segments"]}
    current = model.segment_names
    kept = {src: {s: current[s] for s in current if sources[s] == src} for src in ("user", "previous")}
    final, final_sources = resolve_names(
        segment_names(model.centroids), {**kept["user"], **validated}, kept["previous"]
    )
    for seg in model.segments["segments"]:
        seg["name"], seg["name_source"] = final[int(seg["id"])], final_sources[int(seg["id"])]
    insights = model.manifest.setdefault("config", {}).setdefault("insights", {})
    insights["names"] = {str(k): v for k, v in final.items() if final_sources[k] == "user"}
    save_bundle(model, bundle_dir)
    return model


def rebuild_insights(
    run_dir: Path, *, data: str | None = None, names: dict[int, str] | None = None
) -> dict[str, str]:
    """``segment report DIR``: profile, plots and report of a finished run, without retraining.

    The training table is read again (``data`` or the path in the bundle's manifest) and must be the
    same file: its content hash is checked, so labels and rows line up. The saved bundle transforms it
    (nothing is refit); labels come from ``labels.parquet``.

    Raises:
        BundleError: ``run_dir`` holds no valid bundle.
        ConfigError: the data file is missing or differs from the training data, or bad ``names``.
    """
    bundle_dir = find_bundle(run_dir)
    model = load_bundle(bundle_dir)
    source = data or str(model.manifest["data"]["source"])
    if not Path(source).is_file():
        raise ConfigError(
            f"training data {source} not found; pass --data with the file the model was trained on"
        )
    expected = model.manifest["data"]["content_hash"]
    if file_digest(source) != expected:
        raise ConfigError(
            f"{source} is not the training data of this run (sha256 differs from {expected[:12]}...); "
            "pass --data with the exact file the model was trained on"
        )
    if names:
        model = rename_segments(model, names, bundle_dir)
    frame = model.validate(read_table(source), source=source)
    labels_path = run_dir / "labels.parquet"
    if not labels_path.is_file():
        raise BundleError(f"{run_dir}: labels.parquet is missing; cannot rebuild the report")
    labels = pd.read_parquet(labels_path)["segment"].to_numpy().astype(np.int64)
    if len(labels) != len(frame):
        raise BundleError(f"{labels_path} has {len(labels)} rows, the training data {len(frame)}")
    history_path = run_dir / "loss_history.csv"
    history: list[dict[str, float]] = (
        [{str(k): float(v) for k, v in r.items()} for r in pd.read_csv(history_path).to_dict("records")]
        if history_path.is_file()
        else []
    )
    x = model.preprocessor.transform(frame)
    seed = int(model.manifest.get("config", {}).get("seed", 0))
    paths = write_insights(run_dir, model, frame, labels, x, history, seed=seed)
    if names:
        paths["bundle"] = str(bundle_dir)
    return paths


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
    "align_segments",
    "assemble_model",
    "customer_ids",
    "evaluate",
    "fit_features",
    "fit_model",
    "fit_preprocessing",
    "fit_segments",
    "previous_model",
    "rebuild_insights",
    "stage_keys",
    "validate_table",
    "write_insights",
    "write_run_outputs",
    "write_validation_report",
]
