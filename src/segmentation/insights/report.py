"""The run report a marketing team reads: ``report.html`` (self-contained) and ``report.md``.

The content is built once as a list of blocks (:mod:`segmentation.insights.render`: headings, paragraphs,
tables, images, the verdict) and rendered twice: Markdown links the PNGs in ``plots/``; HTML embeds them
as base64 data URIs so the file can be mailed or attached to a ticket on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from segmentation.clustering import NOISE
from segmentation.config import VerdictConfig
from segmentation.contract.notes import ColumnNote, columns_read_table
from segmentation.data.io import write_text
from segmentation.insights.naming import Feature, features_of
from segmentation.insights.profiles import row, top_features
from segmentation.insights.render import (
    Block,
    Bullets,
    Code,
    Heading,
    Image,
    Para,
    Table,
    Verdict,
    render_html,
    render_markdown,
)
from segmentation.verdict import CRITICAL, MEANING, judge


@dataclass(frozen=True)
class Thresholds:
    """The segment-size and noise warnings' thresholds (shares of all customers).

    A run's warnings are judged at training and read from its metrics; these only judge a run trained
    before verdicts existed (see :func:`report_verdict`).
    """

    small_segment: float = 0.02
    large_segment: float = 0.60
    noise: float = 0.10


# ----------------------------------------------------------------------------------------- content
def report_verdict(metrics: dict[str, Any], thresholds: Thresholds) -> Verdict:
    """The verdict and warnings ``metrics.json`` holds, for the report's first screen.

    A run trained before verdicts existed has none in its metrics: it is judged here, from the metrics it
    has, with the default verdict thresholds and ``thresholds`` (checks whose metrics it lacks are skipped,
    and the meaning says so).
    """
    judged, note = metrics, ""
    if "verdict" not in metrics:
        judged = judge(
            metrics,
            VerdictConfig(),
            small_segment_share=thresholds.small_segment,
            large_segment_share=thresholds.large_segment,
            noise_share=thresholds.noise,
        )
        note = " (judged when this report was built: the run predates verdicts, so some checks are missing)"
    warnings = judged.get("warnings") or []
    verdict = str(judged.get("verdict", "n/a"))
    return Verdict(
        verdict,
        MEANING.get(verdict, "") + note,
        [("Critical: " if w.get("severity") == CRITICAL else "") + str(w["message"]) for w in warnings],
    )


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    magnitude = abs(float(value))
    if magnitude >= 1000:
        return f"{float(value):,.0f}"
    return f"{float(value):.{digits}g}" if magnitude < 1 else f"{float(value):,.{digits - 1}f}"


def highlights(profile_row: pd.Series, centroid: pd.Series, n: int = 5) -> list[str]:
    """The segment's largest standardized differences, with its values in original units.

    Numeric features read "mean M vs population P (index I)"; categorical levels read "S of the segment
    vs P overall".
    """
    items = []
    for feature, diff in top_features(centroid, n):
        direction = f"{'higher' if diff > 0 else 'lower'} ({diff:+.2f} SD)"
        mean, index = profile_row.get(f"{feature}__mean"), profile_row.get(f"{feature}__index")
        share, share_index = profile_row.get(f"{feature}__share"), profile_row.get(f"{feature}__index")
        if mean is not None and index is not None and not pd.isna(index) and index != 0:
            population = float(mean) / float(index) * 100
            items.append(
                f"{feature}: {direction}; mean {_num(float(mean))} vs {_num(population)} overall "
                f"(index {float(index):.0f})"
            )
        elif share is not None and share_index is not None and not pd.isna(share_index) and share_index != 0:
            overall = float(share) / float(share_index) * 100
            items.append(
                f"{feature}: {direction}; {float(share):.1%} of the segment vs {overall:.1%} overall"
            )
        else:
            items.append(f"{feature}: {direction}")
    return items


@dataclass
class ReportContext:
    """Everything the report shows, from the bundle's manifest and the run's outputs."""

    manifest: dict[str, Any]
    segments: list[dict[str, Any]]
    centroids: pd.DataFrame
    profile: pd.DataFrame
    plots: dict[str, str]
    thresholds: Thresholds = field(default_factory=Thresholds)
    feature_count: int = 0
    columns_read: Sequence[ColumnNote] = ()


def build_blocks(ctx: ReportContext, run_dir: Path) -> list[Block]:
    """The report's content, in reading order."""
    metrics = ctx.manifest.get("metrics", {})
    data = ctx.manifest.get("data", {})
    config = ctx.manifest.get("config", {})
    stability = metrics.get("stability") or {}
    plots = {name: Path(path) for name, path in ctx.plots.items()}

    def image(name: str, alt: str) -> list[Block]:
        if name not in plots:
            return []
        path = plots[name]
        return [Image(str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path), alt)]

    blocks: list[Block] = [
        Heading(1, f"Customer segments: {ctx.manifest.get('name', 'segmentation')}"),
        Para(
            f"{metrics.get('n_rows', 0):,} customers from {Path(str(data.get('source', '?'))).name}, "
            f"{metrics.get('n_clusters', len(ctx.segments))} segments. Trained "
            f"{ctx.manifest.get('created_at', '?')} (code {ctx.manifest.get('code_version', '?')})."
        ),
        Heading(2, "Verdict"),
        report_verdict(metrics, ctx.thresholds),
        Heading(2, "Segments at a glance"),
        _glance_table(ctx, stability),
    ]
    if ctx.columns_read:
        blocks += [Heading(2, "How each column was read"), _columns_table(ctx.columns_read)]
    blocks += [Heading(2, "Run summary"), Table(["", "value"], _summary_rows(ctx, metrics, data, config))]
    blocks += image("sizes", "Segment sizes")
    blocks += image("segments_2d", "Customers in two dimensions, coloured by segment")
    blocks += image("profile_heatmap", "Standardized difference of every feature per segment")
    blocks += image("top_features", "Distributions of the most discriminating features per segment")
    for seg in ctx.segments:
        sid = int(seg["id"])
        blocks += _segment_section(ctx, seg, stability)
        blocks += image("segment_noise" if sid == NOISE else f"segment_{sid}", f"Profile of segment {sid}")
    blocks += [Heading(2, "Stability"), _stability_para(stability), Heading(2, "How the model was chosen")]
    blocks += _k_selection_blocks(metrics.get("k_selection") or {})
    blocks += image("k_selection", "Criterion for every number of segments tried")
    blocks += image("loss_history", "Autoencoder loss per epoch")
    blocks += [
        Heading(2, "Configuration"),
        Code(yaml.safe_dump(config, sort_keys=False).strip()),
    ]
    return blocks


def _summary_rows(
    ctx: ReportContext, metrics: dict[str, Any], data: dict[str, Any], config: dict[str, Any]
) -> list[list[str]]:
    """The run summary: data, model, metrics, stability, seed."""
    cluster, featurize = config.get("cluster", {}), config.get("featurize", {})
    k_sel = metrics.get("k_selection", {})
    stability = metrics.get("stability") or {}
    summary = [
        ["data", f"{data.get('source', '?')} (sha256 {str(data.get('content_hash', ''))[:12]})"],
        ["customers", _num(int(metrics.get("n_rows", 0)))],
        ["input features", _num(ctx.feature_count)],
        [
            "featurizer",
            f"{featurize.get('kind', '?')}, {metrics.get('featurizer', {}).get('output_dim', '?')} dims",
        ],
        [
            "clusterer",
            f"{cluster.get('kind', '?')}, k chosen by {k_sel.get('criterion', 'n/a')}"
            if cluster.get("n_clusters") is None and "search" in cluster
            else str(cluster.get("kind", "?")),
        ],
        ["segments", _num(int(metrics.get("n_clusters", len(ctx.segments))))],
        ["silhouette (preprocessed space)", _num(metrics.get("silhouette"))],
        ["Davies-Bouldin", _num(metrics.get("davies_bouldin"))],
        ["Calinski-Harabasz", _num(metrics.get("calinski_harabasz"))],
        ["noise", f"{float(metrics.get('noise_fraction', 0.0)):.1%}"],
        ["bundle reproduces training labels", f"{float(metrics.get('assignment_agreement', 1.0)):.2%}"],
        [
            "segment rules (held-out fidelity)",
            _num((metrics.get("rules") or {}).get("fidelity"), 2),
        ],
        ["stability (mean pairwise ARI)", _num(stability.get("ari_pairwise_mean"))],
        ["seed", str(config.get("seed", "?"))],
    ]
    alignment = metrics.get("alignment")
    if alignment:
        summary.append(["IDs aligned to", f"{alignment.get('reference', '?')} ({alignment['method']})"])
    return summary


def _two(value: float | None) -> str:
    """A share with two decimals (``n/a`` when not measured)."""
    return "n/a" if value is None else f"{float(value):.2f}"


_PLAIN_COLUMNS = 25
"""Past this many columns, numeric columns used as they are share one summary line in the column table."""


def _columns_table(notes: Sequence[ColumnNote]) -> Table:
    """How each column was read; on a wide table the plain numeric ones (used, weight 1) are one line."""
    header, rows = columns_read_table(notes)
    if len(rows) <= _PLAIN_COLUMNS:
        return Table(header, rows)
    plain = [r for r in rows if r[1] in {"numeric", "count", "ratio"} and r[2] == "yes"]
    shown = [r for r in rows if r not in plain]
    summary = (
        f"{len(plain)} more: " + ", ".join(r[0] for r in plain[:8]) + (", ..." if len(plain) > 8 else "")
    )
    return Table(header, [*shown, [summary, "numeric", "yes", "numbers used as they are"]])


def _glance_table(ctx: ReportContext, stability: dict[str, Any]) -> Table:
    """One row per segment: name, share, its rule with precision and recall, stability.

    Bundles that predate rules show the top distinguishing features in the rule's place.
    """
    rows = []
    for seg in ctx.segments:
        if seg.get("rule"):
            rule = f"{seg['rule']} ({_two(seg.get('rule_precision'))} / {_two(seg.get('rule_recall'))})"
        elif features_of(seg):
            rule = "; ".join(f.summary for f in features_of(seg)[:3])
        else:
            rule = ", ".join(f"{f} {v:+.2f}" for f, v in top_features(ctx.centroids.loc[seg["id"]], 3))
        rows.append(
            [
                str(seg["id"]),
                seg["name"],
                f"{seg['share']:.1%}",
                _num(int(seg["size"])),
                rule,
                _two((stability.get("jaccard_per_segment") or {}).get(str(seg["id"]))),
            ]
        )
    return Table(
        ["ID", "name", "share", "customers", "rule (precision / recall)", "stability (Jaccard)"], rows
    )


def _segment_section(ctx: ReportContext, seg: dict[str, Any], stability: dict[str, Any]) -> list[Block]:
    """A segment's heading, size and name source, and its highlights (its profile card follows)."""
    sid = int(seg["id"])
    source = {"user": "named by you", "previous": "name kept from the previous model"}.get(
        seg.get("name_source", "auto"), "name derived from its top features"
    )
    jaccard = (stability.get("jaccard_per_segment") or {}).get(str(sid))
    blocks: list[Block] = [
        Heading(2, f"Segment {sid}: {seg['name']}" if sid != NOISE else "Noise"),
        Para(
            f"{int(seg['size']):,} customers ({seg['share']:.1%}); {source}"
            + (f"; stability (Jaccard) {jaccard:.2f}." if jaccard is not None else ".")
        ),
    ]
    if seg.get("description"):  # its share is in the line above
        described = re.sub(r"^[\d.]+% of customers; ", "", str(seg["description"]))
        blocks.append(Para(described[:1].upper() + described[1:]))
    profile = ctx.profile.set_index("segment")
    features = features_of(seg)
    if features:
        blocks.append(Bullets(feature_lines(features, row(profile, sid) if sid in profile.index else None)))
    elif sid in profile.index:  # a bundle that predates effect sizes
        blocks.append(Bullets(highlights(row(profile, sid), row(ctx.centroids, sid))))
    if seg.get("rule"):
        blocks.append(
            Para(
                f"Rule: {seg['rule']} (precision {_two(seg.get('rule_precision'))}, recall "
                f"{_two(seg.get('rule_recall'))} on customers the rule was not fitted on)."
            )
        )
    return blocks


def feature_lines(features: Sequence[Feature], profile_row: pd.Series | None) -> list[str]:
    """A segment's distinguishing features, largest effect first, each with its effect size.

    Numeric features add their mean in original units against the population's (from ``profile.csv``);
    categorical levels carry their shares in the clause itself.
    """
    lines = []
    for feature in features[:5]:
        line = feature.clause
        if profile_row is not None and feature.kind != "categorical":
            mean, index = (
                profile_row.get(f"{feature.column}__mean"),
                profile_row.get(f"{feature.column}__index"),
            )
            if mean is not None and index is not None and not pd.isna(index) and index != 0:
                line += f"; mean {_num(float(mean))} vs {_num(float(mean) / float(index) * 100)} overall"
        lines.append(line)
    return lines


def _k_selection_blocks(k_sel: dict[str, Any]) -> list[Block]:
    """The k rule in words and every k tried with its silhouette and stability (when k was searched)."""
    scores = k_sel.get("scores") or {}
    if "rule" not in k_sel or len(scores) < 2:
        return []
    stability = k_sel.get("stability") or {}
    chosen, stable = str(k_sel.get("chosen_k")), {str(k) for k in k_sel.get("stable_k") or []}
    text = f"k = {chosen}, chosen over {k_sel.get('k_min')}..{k_sel.get('k_max')} by {k_sel['rule']}."
    if "stability_resamples" in k_sel:
        text += (
            f" A k's stability: its model refitted on {k_sel['stability_resamples']} subsamples of "
            f"{float(k_sel['stability_fraction']):.0%} of {int(k_sel['stability_rows']):,} customers, "
            "mean adjusted Rand index between the refits on the customers they share."
        )
    rows = [
        [k, _num(score), _num(stability.get(k)), "chosen" if k == chosen else "stable" if k in stable else ""]
        for k, score in sorted(scores.items(), key=lambda item: int(item[0]))
    ]
    return [Para(text), Table(["k", "silhouette", "stability", ""], rows)]


def _stability_para(stability: dict[str, Any]) -> Para:
    """What the bootstrap refits measured, or that they were not run."""
    if not stability:
        return Para("Not measured (evaluate.stability_resamples = 0).")
    return Para(
        f"{stability['resamples']} refits on {stability['fraction']:.0%} subsamples of "
        f"{stability['sample_size']:,} customers. Adjusted Rand index between refits on the "
        f"customers they share: mean {_num(stability.get('ari_pairwise_mean'))}, minimum "
        f"{_num(stability.get('ari_pairwise_min'))} (1 = identical segmentations, 0 = chance). "
        f"Lowest per-segment Jaccard: {_num(stability.get('jaccard_min'))}."
    )


def write_report(ctx: ReportContext, run_dir: Path) -> dict[str, str]:
    """Write ``report.md`` and ``report.html`` into ``run_dir`` (atomically); return their paths."""
    blocks = build_blocks(ctx, run_dir)
    return {
        "report_html": str(write_text(render_html(blocks, run_dir), run_dir / "report.html")),
        "report_md": str(write_text(render_markdown(blocks), run_dir / "report.md")),
    }
