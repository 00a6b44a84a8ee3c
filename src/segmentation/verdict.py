"""The verdict on a run (``strong`` / ``usable`` / ``weak``) and the warnings that decide it.

:func:`judge` reads nothing but a run's metrics (``metrics.json`` as the evaluate stage builds it) and
stated thresholds (:class:`segmentation.config.VerdictConfig`, and the report's segment-size and noise
shares from :class:`segmentation.config.InsightsConfig`). Every warning is
``{code, severity, message, value, threshold}``, plus ``segments`` (the IDs, the value being the worst of
them) or ``column`` where it is about some; a floor warns strictly below it and a ceiling strictly above
it, so a value exactly at a threshold passes.

The rule (:data:`RULE`): ``weak`` when a ``critical`` warning fires (the segments do not reproduce, or do
not separate); ``usable`` when any other warning fires; ``strong`` when none does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segmentation.config import SegmentConfig, VerdictConfig

STRONG, USABLE, WEAK = "strong", "usable", "weak"
CRITICAL, CAUTION = "critical", "caution"

RULE = (
    "weak if a critical warning fires (low_stability: mean pairwise ARI between subsample refits under "
    "verdict.min_stability; no_separation: silhouette under verdict.min_silhouette, or fewer than two "
    "segments); usable if any other warning fires; strong otherwise"
)

MEANING = {
    STRONG: "stable, separated segments; no warnings",
    USABLE: "act on the segments with care: read the warnings first",
    WEAK: "not reliable enough to act on: the segments do not reproduce or do not separate",
}
"""One line per verdict, for the CLI and the report."""


def judge(
    metrics: Mapping[str, Any],
    config: VerdictConfig,
    *,
    small_segment_share: float,
    large_segment_share: float,
    noise_share: float,
) -> dict[str, Any]:
    """The verdict and its warnings, from a run's metrics and the stated thresholds.

    Reads ``stability`` (``ari_pairwise_mean``, ``jaccard_per_segment``), ``k_selection`` (the range,
    ``chosen_k``, per-k ``stability``, ``no_stable_k``), ``silhouette``, ``n_clusters``,
    ``segment_shares``, ``noise_fraction`` and ``between_ss_share``; a missing key skips its check.

    Returns:
        ``{"verdict", "warnings", "verdict_rule"}``: critical warnings first.
    """
    warnings: list[dict[str, Any]] = []

    def warn(code: str, severity: str, message: str, value: Any, threshold: Any, **about: Any) -> None:
        warnings.append(
            {"code": code, "severity": severity, "message": message, "value": value, "threshold": threshold}
            | about
        )

    stability = metrics.get("stability") or {}
    k_sel = metrics.get("k_selection") or {}
    _stability_warnings(warn, stability, k_sel, config)
    _separation_warnings(warn, metrics, config)
    _k_warnings(warn, k_sel)
    shares = {int(seg): float(share) for seg, share in (metrics.get("segment_shares") or {}).items()}
    small = {seg: share for seg, share in shares.items() if share < small_segment_share}
    if small:
        warn(
            "small_segment",
            CAUTION,
            f"{_segments(small, '.1%')}: under {small_segment_share:.0%} of customers, too small to target "
            "alone; consider fewer segments.",
            min(small.values()),
            small_segment_share,
            segments=sorted(small),
        )
    large = {seg: share for seg, share in shares.items() if share > large_segment_share}
    if large:
        warn(
            "large_segment",
            CAUTION,
            f"{_segments(large, '.1%')}: over {large_segment_share:.0%} of customers, the segmentation "
            "barely splits the base; consider more segments or other features.",
            max(large.values()),
            large_segment_share,
            segments=sorted(large),
        )
    noise = float(metrics.get("noise_fraction") or 0.0)
    if noise > noise_share:
        warn(
            "high_noise",
            CAUTION,
            f"{noise:.1%} of customers are noise (in no segment), over {noise_share:.0%}: the density "
            "clusterer's parameters may be too strict.",
            noise,
            noise_share,
        )
    columns = metrics.get("between_ss_share") or {}
    if columns:
        column, share = max(columns.items(), key=lambda item: item[1])
        if share > config.max_column_share:
            warn(
                "dominant_column",
                CAUTION,
                f"{column} holds {share:.0%} of the difference between segments, over "
                f"{config.max_column_share:.0%}: the segments are mostly cuts of that one column; check it "
                "is meant to drive them (or drop or down-weight it).",
                share,
                config.max_column_share,
                column=column,
            )
    warnings.sort(key=lambda w: w["severity"] != CRITICAL)  # stable: checks keep their order otherwise
    critical = any(w["severity"] == CRITICAL for w in warnings)
    verdict = WEAK if critical else USABLE if warnings else STRONG
    return {"verdict": verdict, "warnings": warnings, "verdict_rule": RULE}


def judge_run(metrics: Mapping[str, Any], config: SegmentConfig) -> dict[str, Any]:
    """:func:`judge` with a run configuration's thresholds (``verdict`` and ``insights``)."""
    return judge(
        metrics,
        config.verdict,
        small_segment_share=config.insights.small_segment_share,
        large_segment_share=config.insights.large_segment_share,
        noise_share=config.insights.noise_share,
    )


def _stability_warnings(
    warn: Any, stability: Mapping[str, Any], k_sel: Mapping[str, Any], config: VerdictConfig
) -> None:
    """Low overall stability (critical), unstable segments, or stability not measured at all."""
    overall = stability.get("ari_pairwise_mean")
    chosen = k_sel.get("chosen_k")
    per_k = (k_sel.get("stability") or {}).get(str(chosen))
    if overall is not None:
        value = float(overall)
        how = (
            f"{stability.get('resamples', '?')} refits on {float(stability.get('fraction', 0.8)):.0%} "
            "subsamples agree"
        )
    elif per_k is not None:
        value = float(per_k)
        how = "in the k search, refits on subsamples agree"
    else:
        warn(
            "stability_not_measured",
            CAUTION,
            "stability was not measured (evaluate.stability_resamples and cluster.search."
            "stability_resamples are 0, or k was fixed): nothing shows these segments would come out "
            "again on other customers.",
            None,
            None,
        )
        return
    if value < config.min_stability:
        warn(
            "low_stability",
            CRITICAL,
            f"the segments do not reproduce: {how} at a mean adjusted Rand index of {value:.2f} (1 = the "
            f"same segments, 0 = chance), under {config.min_stability:.2f}. Do not act on individual "
            "segments; try fewer segments, other features or more customers.",
            value,
            config.min_stability,
        )
    jaccard = {int(seg): float(v) for seg, v in (stability.get("jaccard_per_segment") or {}).items()}
    unstable = {seg: value for seg, value in jaccard.items() if value < config.min_segment_jaccard}
    if unstable:
        warn(
            "unstable_segment",
            CAUTION,
            f"{_segments(unstable, '.2f')}: unstable, the mean best overlap (Jaccard) with the refits' "
            f"segments is under {config.min_segment_jaccard:.2f} (below 0.5 a segment dissolves); treat "
            "as a tendency, not a fixed group.",
            min(unstable.values()),
            config.min_segment_jaccard,
            segments=sorted(unstable),
        )


def _segments(values: Mapping[int, float], spec: str) -> str:
    """``segment 3 (1.2%)`` or ``segments 3 (1.2%) and 5 (0.8%)``, in ID order."""
    items = [f"{seg} ({value:{spec}})" for seg, value in sorted(values.items())]
    if len(items) == 1:
        return f"segment {items[0]}"
    return f"segments {', '.join(items[:-1])} and {items[-1]}"


def _separation_warnings(warn: Any, metrics: Mapping[str, Any], config: VerdictConfig) -> None:
    """No separation (critical) or weak separation, by the silhouette in the preprocessed space."""
    if "silhouette" not in metrics:
        return
    silhouette = metrics.get("silhouette")
    if silhouette is None:
        warn(
            "no_separation",
            CRITICAL,
            f"fewer than two segments ({metrics.get('n_clusters', 0)}): there is nothing to compare.",
            None,
            config.min_silhouette,
        )
    elif silhouette < config.min_silhouette:
        warn(
            "no_separation",
            CRITICAL,
            f"the segments do not separate: silhouette {silhouette:.3f} (preprocessed space), under "
            f"{config.min_silhouette:.2f}: customers are about as close to another segment as to their own.",
            float(silhouette),
            config.min_silhouette,
        )
    elif silhouette < config.good_silhouette:
        warn(
            "weak_separation",
            CAUTION,
            f"the segments separate weakly: silhouette {silhouette:.3f} (preprocessed space), under "
            f"{config.good_silhouette:.2f}: they are regions of a continuum rather than distinct groups, "
            "and customers near a boundary could belong to either side.",
            float(silhouette),
            config.good_silhouette,
        )


def _k_warnings(warn: Any, k_sel: Mapping[str, Any]) -> None:
    """A k chosen at an end of the search range; no k stable enough in the search."""
    k_min, k_max, chosen = k_sel.get("k_min"), k_sel.get("k_max"), k_sel.get("chosen_k")
    if k_min is None or k_max is None or chosen is None or k_min == k_max:
        return  # k fixed, not searched, or a range of one
    if chosen == k_max:
        warn(
            "k_at_boundary",
            CAUTION,
            f"k = {chosen} is the largest k tried (cluster.search.k_max = {k_max}): the best k may lie "
            "above the range; widen it (raise cluster.search.k_max) and train again.",
            chosen,
            k_max,
        )
    elif chosen == k_min and k_min > 2:
        # At k_min = 2 there is no smaller k to try: whether there is structure at all is for the
        # stability and separation warnings to say.
        warn(
            "k_at_boundary",
            CAUTION,
            f"k = {chosen} is the smallest k tried (cluster.search.k_min = {k_min}): the best k may lie "
            "below the range; widen it (lower cluster.search.k_min) and train again.",
            chosen,
            k_min,
        )
    if k_sel.get("no_stable_k"):
        value = (k_sel.get("stability") or {}).get(str(chosen))
        threshold = k_sel.get("stability_threshold")
        warn(
            "no_stable_k",
            CAUTION,
            f"no k in {k_min}..{k_max} reached the search's stability threshold ({threshold}); k = {chosen} "
            f"is the most stable ({'n/a' if value is None else f'{value:.2f}'}).",
            value,
            threshold,
        )
    else:
        _unstable_best_warning(warn, k_sel, chosen)


def _unstable_best_warning(warn: Any, k_sel: Mapping[str, Any], chosen: int) -> None:
    """The k with the best silhouette was passed over for being unstable: say so, with both figures.

    The rule chose a stable k instead, which is right for acting on the segments; but the better-separated
    k is a real candidate when more customers are available (stability grows with rows), so the analyst
    hears of it.
    """
    scores = {int(k): float(v) for k, v in (k_sel.get("scores") or {}).items() if v is not None}
    stability = {int(k): v for k, v in (k_sel.get("stability") or {}).items()}
    if not scores or not stability:
        return
    best = max(scores, key=lambda k: (scores[k], -k))
    best_stability = stability.get(best)
    threshold = k_sel.get("stability_threshold")
    if best == chosen or best_stability is None or threshold is None or best_stability >= threshold:
        return
    chosen_score = scores.get(chosen, float("nan"))
    warn(
        "best_k_unstable",
        CAUTION,
        f"k = {best} separates best (silhouette {scores[best]:.3f}) but its segments do not reproduce on "
        f"subsamples (stability {best_stability:.2f}, under {threshold}); k = {chosen} was chosen "
        f"(silhouette {chosen_score:.3f}). With more customers, or fixing cluster.n_clusters = {best}, "
        "compare both.",
        best_stability,
        threshold,
    )


__all__ = [
    "CAUTION",
    "CRITICAL",
    "MEANING",
    "RULE",
    "STRONG",
    "USABLE",
    "WEAK",
    "judge",
    "judge_run",
]
