"""Writing a drift report: ``drift.json``, ``drift.csv``, ``drift.png``, ``drift.md`` and ``drift.html``.

The plot and the Markdown/HTML pages use the project's report building blocks
(:mod:`segmentation.insights.plots`, :mod:`segmentation.insights.render`), imported when a report is
written. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segmentation.data.io import atomic_path, write_json, write_table, write_text
from segmentation.drift.report import DriftReport

_COLOURS = {"ok": "#2ca02c", "warn": "#ff7f0e", "alert": "#d62728"}


def plot_drift(report: DriftReport, path: Path, top: int = 20) -> Path:
    """``drift.png``: the top features by PSI (coloured by status, threshold lines) and segment shares."""
    from segmentation.insights.plots import plt  # Agg backend, as every plot of the project

    ranked = sorted(report.features, key=lambda f: -f.psi)[:top][::-1]
    seg = report.segments
    height = max(4.0, 0.3 * max(len(ranked), len(seg.bins)) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [3, 2]})
    left.barh([f.name for f in ranked], [f.psi for f in ranked], color=[_COLOURS[f.status] for f in ranked])
    for name, style in (("warn", "--"), ("alert", "-")):
        left.axvline(
            report.thresholds[name],
            color=_COLOURS[name],
            linestyle=style,
            label=f"{name} {report.thresholds[name]}",
        )
    left.set_xlabel("population stability index")
    left.set_title(f"Top {len(ranked)} features by PSI ({report.status})")
    left.legend(loc="lower right")
    y = np.arange(len(seg.bins))
    right.barh(y - 0.2, seg.expected, height=0.4, color="#7f7f7f", label="training")
    right.barh(y + 0.2, seg.actual, height=0.4, color=_COLOURS[seg.status], label="snapshot")
    right.set_yticks(y, [b if len(b) <= 40 else b[:39] + "\u2026" for b in seg.bins])
    right.invert_yaxis()
    right.set_xlabel("share of customers")
    right.set_title(f"Segment shares: PSI {seg.psi:.3f} ({seg.status})")
    right.legend(loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _blocks(report: DriftReport, top: int = 25) -> list[Any]:
    from segmentation.insights.render import Heading, Image, Para, Table, Warnings

    model, snap, th = report.model, report.snapshot, report.thresholds
    alerts, warns = report.by_status("alert"), report.by_status("warn")
    items = [f"ALERT (PSI >= threshold): {', '.join(alerts)}"] if alerts else []
    items += [f"warn: {', '.join(warns)}"] if warns else []
    if snap["invalid_rows"]:
        items.append(f"{snap['invalid_rows']:,} invalid rows were left out (see below)")
    table = report.table()
    blocks: list[Any] = [
        Heading(1, f"Drift report: {report.status.upper()}"),
        Para(
            f"Model {model['name']} {model.get('version') or ''} (digest {str(model.get('digest'))[:12]}, "
            f"trained {model.get('trained_at')}) vs snapshot {snap['path']} (sha256 {snap['sha256'][:12]}, "
            f"{snap['rows']:,} rows, {snap['valid_rows']:,} valid), {report.created_at}."
        ),
        Para(
            f"Population stability index per feature against {snap['reference_rows']:,} training rows: "
            f"warn at {th['warn']}, alert at {th['alert']}; segment shares warn at {th['segment_warn']}, "
            f"alert at {th['segment_alert']}. Two samples of the same population give about "
            f"{snap['noise_floor_psi']:.4f}."
        ),
        Warnings(items),
        Image("drift.png", "top features by PSI and segment shares"),
        Heading(2, "Segment shares"),
        Table(
            ["segment", "training", "snapshot"],
            [
                [b, f"{e:.1%}", f"{a:.1%}"]
                for b, e, a in zip(
                    report.segments.bins, report.segments.expected, report.segments.actual, strict=True
                )
            ],
        ),
        Heading(2, f"Features (top {min(top, len(table))} of {len(table)}; all in drift.csv)"),
        Table(
            ["feature", "kind", "PSI", "status"],
            [
                [str(r.feature), str(r.kind), f"{r.psi:.4f}", str(r.status)]
                for r in table.head(top).itertuples()
            ],
        ),
    ]
    if report.invalid:
        blocks += [
            Heading(2, "Invalid rows (left out)"),
            Table(
                ["column", "check", "count", "examples"],
                [[f.column, f.check, str(f.count), ", ".join(map(str, f.examples))] for f in report.invalid],
            ),
        ]
    return blocks


def write_report(report: DriftReport, out_dir: str | Path) -> dict[str, str]:
    """Write ``drift.json``, ``drift.csv``, ``drift.png``, ``drift.md`` and ``drift.html`` (atomically)."""
    from segmentation.insights.render import render_html, render_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": write_json(report.to_dict(), out / "drift.json"),
        "csv": write_table(report.table(), out / "drift.csv"),
        "png": plot_drift(report, out / "drift.png"),
    }
    blocks = _blocks(report)
    paths["md"] = write_text(render_markdown(blocks), out / "drift.md")
    paths["html"] = write_text(render_html(blocks, out), out / "drift.html")
    return {k: str(v) for k, v in paths.items()}


__all__ = ["plot_drift", "write_report"]
