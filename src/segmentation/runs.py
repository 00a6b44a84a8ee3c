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


def config_diff(run: dict[str, object], reference: dict[str, object]) -> list[tuple[str, object, object]]:
    """``(key, run value, reference value)`` for every flat config key that differs (paths left out)."""
    keys = sorted(set(run) | set(reference))
    return [
        (key, run.get(key), reference.get(key))
        for key in keys
        if not key.startswith(_IGNORED_KEYS) and str(run.get(key)) != str(reference.get(key))
    ]


def experiment_report(
    roots: list[Path], production: dict[str, object] | None, gate: object | None = None
) -> str:
    """Markdown for a pull request: the runs table, the best run against production, the gate's verdict.

    Args:
        roots: directories holding the experiment's runs.
        production: ``{"tag", "metrics", "config"}`` of the production model, or None when there is none.
        gate: the registry gate (``RegistryConfig``) to apply to the best run.
    """
    from segmentation.registry import gate_reasons

    frame = collect_runs(roots)
    lines = ["## Experiment report", ""]
    if frame.empty:
        return "\n".join([*lines, "No runs found."]) + "\n"
    table = runs_table(frame, sort="silhouette")
    lines += [f"{len(table)} run(s), best first by silhouette:", "", _markdown(table.head(20)), ""]
    best = Path(str(table.loc[0, "run"]))
    metrics = json.loads((best / "metrics.json").read_text(encoding="utf-8"))
    config = flatten(yaml.safe_load((best / "config.yaml").read_text(encoding="utf-8")) or {})
    lines += [f"### Best run: `{best.name}`", ""]
    if production is None:
        lines += ["No production model in the registry yet: nothing to compare against.", ""]
    else:
        prod_metrics = production["metrics"] if isinstance(production["metrics"], dict) else {}
        rows = [
            (name, metric_value(metrics, name), metric_value(prod_metrics, name)) for name in DEFAULT_METRICS
        ]
        lines += [
            f"Against production ({production['tag']}):",
            "",
            "| metric | this run | production |",
            "| --- | ---: | ---: |",
            *(f"| {n} | {_fmt(a)} | {_fmt(b)} |" for n, a, b in rows),
            "",
        ]
        reference = production["config"] if isinstance(production["config"], dict) else {}
        changed = config_diff(config, flatten(reference))
        lines += ["Parameters that differ from production:", ""]
        lines += (
            [
                "| key | this run | production |",
                "| --- | --- | --- |",
                *(f"| {k} | {a} | {b} |" for k, a, b in changed),
            ]
            if changed
            else ["(none)"]
        )
        lines.append("")
        if gate is not None:
            reasons = gate_reasons(metrics, prod_metrics, gate)  # type: ignore[arg-type]
            verdict = (
                "would pass the promotion gate" if not reasons else "would be refused: " + "; ".join(reasons)
            )
            lines += [f"Promotion gate: {verdict}.", ""]
    plots = sorted(p.name for p in (best / "plots").glob("*.png"))
    if plots:
        lines += [
            f"Plots ({len(plots)}) and report.html are in the workflow's artifacts: {', '.join(plots)}.",
            "",
        ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + " --- |" * len(table.columns)
    body = [
        "| " + " | ".join(_fmt(v) if isinstance(v, float) else str(v) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])
