"""A finished run's insights again: new segment names, or the report rebuilt, without retraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from segmentation.bundle import SegmentationModel, find_bundle, load_bundle, save_bundle
from segmentation.config import DataConfig, InsightsConfig
from segmentation.contract.report import ValidationReport
from segmentation.data.io import file_digest, read_table, table_format
from segmentation.errors import BundleError, ConfigError
from segmentation.insights.profiles import resolve_names, segment_names
from segmentation.stages.fit import transform_table
from segmentation.stages.load import ValidatedTable, validate_source
from segmentation.stages.outputs import write_insights


def rename_segments(model: SegmentationModel, names: dict[int, str], bundle_dir: Path) -> SegmentationModel:
    """Store user names in a finished run's bundle (no refit); other segments keep their names.

    Raises:
        ConfigError: a name for a segment the model does not have, or duplicate names.
    """
    validated = InsightsConfig(names=names).names
    sources = {int(seg["id"]): seg.get("name_source", "auto") for seg in model.segments["segments"]}
    current = model.segment_names
    kept = {src: {s: current[s] for s in current if sources[s] == src} for src in ("user", "previous")}
    # Derived names come from the distinguishing features stored in the bundle (the same names training
    # derived); a bundle that predates them keeps the names it has.
    features = model.segment_features
    derived = segment_names(features) if features is not None else current
    final, final_sources = resolve_names(derived, {**kept["user"], **validated}, kept["previous"])
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
    if table_format(source) == "parquet":
        # Read in chunks against the model's own schema: a table of millions of rows never sits in memory.
        table = validate_source(source, DataConfig(), source=source, schema=model.schema)
    else:
        frame = model.validate(read_table(source), source=source)
        table = ValidatedTable(
            schema=model.schema,
            report=ValidationReport(source=source, n_rows=len(frame), n_columns=frame.shape[1]),
            frame=frame,
        )
    labels_path = run_dir / "labels.parquet"
    if not labels_path.is_file():
        raise BundleError(f"{run_dir}: labels.parquet is missing; cannot rebuild the report")
    labels = pd.read_parquet(labels_path)["segment"].to_numpy().astype(np.int64)
    if len(labels) != table.n_rows:
        raise BundleError(f"{labels_path} has {len(labels)} rows, the training data {table.n_rows}")
    history_path = run_dir / "loss_history.csv"
    history: list[dict[str, float]] = (
        [{str(k): float(v) for k, v in r.items()} for r in pd.read_csv(history_path).to_dict("records")]
        if history_path.is_file()
        else []
    )
    x = transform_table(model.preprocessor, table)
    seed = int(model.manifest.get("config", {}).get("seed", 0))
    paths = write_insights(run_dir, model, table, labels, x, history, seed=seed)
    if names:
        paths["bundle"] = str(bundle_dir)
    return paths


__all__ = ["rebuild_insights", "rename_segments"]
