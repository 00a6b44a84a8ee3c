"""The output stages: what a run writes beside its bundle (labels, metrics, profile, plots, report)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from segmentation.bundle import SegmentationModel, save_bundle
from segmentation.config import InsightsConfig
from segmentation.contract.report import ValidationReport
from segmentation.data.io import write_json, write_table, write_text
from segmentation.features import Featurizer
from segmentation.insights.naming import Feature
from segmentation.insights.profiles import build_profile, segment_effects
from segmentation.preprocess import Preprocessor
from segmentation.stages.load import ValidatedTable, customer_ids


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


def _raw_columns(
    table: ValidatedTable, pre: Preprocessor, batch: int = 16
) -> Iterator[tuple[str, np.ndarray]]:
    """Dense columns in original units, read ``batch`` columns at a time (bounded memory, few reads)."""
    names = pre.dense_columns
    for start in range(0, len(names), batch):
        part = table.read(names[start : start + batch])
        for name in names[start : start + batch]:
            yield name, pre.raw_column(part, name)


def segment_insights(
    model: SegmentationModel, table: ValidatedTable, labels: np.ndarray, x: np.ndarray
) -> tuple[dict[int, list[Feature]], pd.DataFrame, dict[int, str]]:
    """Each segment's distinguishing features, every effect size, and the descriptions.

    Read from the bundle; recomputed from the training rows (``x``, the categorical columns) for bundles
    written before ``segments.json`` held them.
    """
    stored, effects = model.segment_features, model.effects
    if stored is not None and effects is not None:
        return stored, effects, model.segment_descriptions
    computed = segment_effects(
        x, labels, model.preprocessor.feature_names_out_, model.schema, lambda c: table.read([c])[c]
    )
    return computed.ranking(), computed.effects, computed.descriptions()


def write_insights(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    x: np.ndarray,
    history: list[dict[str, float]],
    *,
    seed: int,
) -> dict[str, str]:
    """The visualize stage: ``profile.csv``, plots in ``DIR/plots/``, ``report.html`` and ``report.md``.

    Everything is read from the saved bundle (names, centroids, metrics, settings) plus the training
    rows and labels, so ``segment report DIR`` regenerates exactly what the flow wrote. Plots sample
    rows and the profile reads one column at a time, so the cost is bounded on millions of customers.
    """
    from segmentation.insights.plots import make_plots  # matplotlib is only needed here
    from segmentation.insights.report import ReportContext, Thresholds, write_report

    settings = insights_config(model)
    pre = model.preprocessor
    categorical_columns = [c.name for c in model.schema.columns if c.kind == "categorical"]
    features, effects, descriptions = segment_insights(model, table, labels, x)
    profile = build_profile(
        _raw_columns(table, pre),  # a few columns at a time
        labels,
        features,
        model.segment_names,
        n_top=settings.top_features,
        categorical=table.read(categorical_columns) if categorical_columns else None,
        descriptions=descriptions,
        effects=effects,
    )
    profile = _with_rules(profile, model)
    paths = {"profile": str(write_table(profile, out_dir / "profile.csv"))}
    metrics = model.manifest["metrics"]
    plots = make_plots(
        out_dir / "plots",
        x=x,
        labels=labels,
        raw=lambda rows: pre.raw_frame(table.take(rows)),
        diffs=effects,
        names=model.segment_names,
        k_scores=metrics["k_selection"]["scores"],
        chosen_k=int(metrics["k_selection"]["chosen_k"]),
        k_stability=metrics["k_selection"].get("stability"),
        stability_threshold=metrics["k_selection"].get("stability_threshold"),
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
        columns_read=model.schema.columns_read,
    )
    return paths | write_report(context, out_dir)


def _with_rules(profile: pd.DataFrame, model: SegmentationModel) -> pd.DataFrame:
    """``rule``, ``rule_precision`` and ``rule_recall`` beside each segment's description (when stored)."""
    by_id = {int(seg["id"]): seg for seg in model.segments["segments"]}
    if not any("rule" in seg for seg in by_id.values()):
        return profile
    at = list(profile.columns).index("description") + 1  # build_profile always writes one
    for offset, key in enumerate(("rule", "rule_precision", "rule_recall")):
        profile.insert(at + offset, key, [by_id.get(int(s), {}).get(key) for s in profile["segment"]])
    return profile


def write_validation_report(out_dir: Path, report: ValidationReport) -> list[Path]:
    """Write ``validation_report.json`` and ``validation_report.txt`` next to the run."""
    return [
        write_json(report.to_dict(), out_dir / "validation_report.json"),
        write_text(report.to_text() + "\n", out_dir / "validation_report.txt"),
    ]


__all__ = [
    "insights_config",
    "segment_insights",
    "write_insights",
    "write_run_outputs",
    "write_validation_report",
]
