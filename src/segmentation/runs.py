"""Compare local runs without a dashboard: one row per run, the config keys that differ, and metrics.

A run is any directory holding ``metrics.json`` and ``config.yaml`` (what ``segment train`` writes), found
recursively under the given roots (by default ``runs/`` and the offline sweeps under ``$SEGMENT_HOME``).
Like W&B's runs table or ``dvc exp show``: constant configuration is left out so the differences stand out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from segmentation.config import flatten
from segmentation.registry import metric_value

DEFAULT_METRICS = (
    "silhouette",
    "davies_bouldin",
    "n_clusters",
    "noise_fraction",
    "min_segment_share",
    "stability.ari_pairwise_mean",
)
_IGNORED_KEYS = ("data.path", "insights.", "tracking.", "registry.", "model_name")


def find_runs(roots: list[Path]) -> list[Path]:
    """Run directories under ``roots`` (sorted by path)."""
    found = set()
    for root in roots:
        if root.is_dir():
            found |= {p.parent for p in root.rglob("metrics.json") if (p.parent / "config.yaml").is_file()}
    return sorted(found)


def collect_runs(roots: list[Path], metrics: tuple[str, ...] = DEFAULT_METRICS) -> pd.DataFrame:
    """One row per run: ``run``, every flat config key, and the chosen metrics (NaN when absent)."""
    rows = []
    for run in find_runs(roots):
        try:
            values = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
            config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, ValueError, yaml.YAMLError):
            continue  # a half-written or foreign directory is not a run
        row: dict[str, object] = {"run": str(run)}
        row |= {
            f"config:{k}": (str(v) if isinstance(v, list | dict) else v) for k, v in flatten(config).items()
        }
        row |= {m: metric_value(values, m) for m in metrics}
        rows.append(row)
    return pd.DataFrame(rows)


def differing_config(frame: pd.DataFrame) -> list[str]:
    """Config columns whose values differ between runs (paths and presentation settings left out)."""
    columns = [c for c in frame.columns if c.startswith("config:")]
    keep = []
    for column in columns:
        key = column.removeprefix("config:")
        if key.startswith(_IGNORED_KEYS):
            continue
        if frame[column].astype(str).nunique(dropna=False) > 1:
            keep.append(column)
    return keep


def runs_table(
    frame: pd.DataFrame,
    *,
    sort: str = "silhouette",
    ascending: bool = False,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> pd.DataFrame:
    """The comparison table: run, differing config keys, metrics; sorted by ``sort``.

    Raises:
        KeyError: ``sort`` is neither a metric column nor a differing config key.
    """
    if frame.empty:
        return frame
    config_columns = differing_config(frame)
    table = frame[["run", *config_columns, *[m for m in metrics if m in frame.columns]]].copy()
    table.columns = [c.removeprefix("config:") for c in table.columns]
    if sort not in table.columns:
        raise KeyError(f"cannot sort by {sort!r}; columns: {', '.join(table.columns)}")
    return table.sort_values(sort, ascending=ascending, na_position="last", kind="stable").reset_index(
        drop=True
    )


def format_table(table: pd.DataFrame, base: Path | None = None) -> str:
    """Plain-text rendering with run paths shortened relative to ``base``."""
    if table.empty:
        return "no runs found"
    shown = table.copy()
    if base is not None:
        shown["run"] = [
            str(Path(r).relative_to(base)) if Path(r).is_relative_to(base) else r for r in shown["run"]
        ]
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return shown.to_string(index=False)
