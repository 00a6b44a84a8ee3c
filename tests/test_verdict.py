"""The verdict on a run: every warning at and around its threshold, the rule, and whole runs judged."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest

from segmentation.config import VerdictConfig, load_config
from segmentation.data.synthetic import make_customers
from segmentation.stages.assemble import fit_model
from segmentation.verdict import CAUTION, CRITICAL, RULE, judge, judge_run

LIMITS = {"small_segment_share": 0.02, "large_segment_share": 0.6, "noise_share": 0.1}
CONFIG = VerdictConfig()


def _clean() -> dict[str, Any]:
    """Metrics of a run nothing is wrong with: stable, separated, balanced, k inside the range."""
    return {
        "n_clusters": 3,
        "silhouette": 0.5,
        "noise_fraction": 0.0,
        "segment_shares": {"0": 0.4, "1": 0.35, "2": 0.25},
        "stability": {
            "resamples": 10,
            "fraction": 0.8,
            "ari_pairwise_mean": 0.95,
            "jaccard_per_segment": {"0": 0.97, "1": 0.95, "2": 0.9},
        },
        "k_selection": {
            "criterion": "silhouette among stable k",
            "k_min": 2,
            "k_max": 6,
            "chosen_k": 3,
            "scores": {"2": 0.4, "3": 0.5},
            "stability": {"2": 0.9, "3": 0.95},
            "stability_threshold": 0.8,
            "no_stable_k": False,
        },
        "between_ss_share": {"spend": 0.4, "visits": 0.35, "channel": 0.25},
    }


def _judge(metrics: dict[str, Any], config: VerdictConfig = CONFIG) -> dict[str, Any]:
    return judge(metrics, config, **LIMITS)


def _codes(metrics: dict[str, Any]) -> list[str]:
    return [w["code"] for w in _judge(metrics)["warnings"]]


def _set(path: str, value: Any) -> dict[str, Any]:
    metrics = copy.deepcopy(_clean())
    *parents, leaf = path.split(".")
    node = metrics
    for part in parents:
        node = node[part]
    node[leaf] = value
    return metrics


def test_a_clean_run_is_strong() -> None:
    judged = _judge(_clean())
    assert judged == {"verdict": "strong", "warnings": [], "verdict_rule": RULE}


# (metric path, value that passes: exactly at the threshold or on its good side, value that warns, code,
# severity, threshold). Floors warn strictly below, ceilings strictly above.
CASES = [
    ("stability.ari_pairwise_mean", 0.8, 0.7999, "low_stability", CRITICAL, 0.8),
    ("silhouette", 0.1, 0.0999, "no_separation", CRITICAL, 0.1),
    ("silhouette", 0.25, 0.2499, "weak_separation", CAUTION, 0.25),
    ("noise_fraction", 0.1, 0.1001, "high_noise", CAUTION, 0.1),
]


@pytest.mark.parametrize(("path", "passes", "warns", "code", "severity", "threshold"), CASES)
def test_each_warning_fires_exactly_past_its_threshold(
    path: str, passes: float, warns: float, code: str, severity: str, threshold: float
) -> None:
    assert code not in _codes(_set(path, passes))
    judged = _judge(_set(path, warns))
    (warning,) = [w for w in judged["warnings"] if w["code"] == code]
    assert warning["severity"] == severity
    assert warning["value"] == pytest.approx(warns)
    assert warning["threshold"] == threshold
    assert warning["message"]
    assert judged["verdict"] == ("weak" if severity == CRITICAL else "usable")


def test_segment_jaccard_warns_below_its_floor_and_names_the_segments() -> None:
    assert _codes(_set("stability.jaccard_per_segment", {"0": 0.75, "1": 0.9})) == []
    judged = _judge(_set("stability.jaccard_per_segment", {"0": 0.7499, "1": 0.9, "2": 0.3}))
    (warning,) = judged["warnings"]
    assert warning["code"] == "unstable_segment"
    assert warning["segments"] == [0, 2]
    assert warning["value"] == pytest.approx(0.3)  # the worst of them
    assert warning["threshold"] == 0.75
    assert "segments 0 (0.75) and 2 (0.30)" in warning["message"]
    assert judged["verdict"] == "usable"


def test_segment_sizes_use_the_report_thresholds() -> None:
    at_limits = {"0": 0.6, "1": 0.38, "2": 0.02}
    assert _codes(_set("segment_shares", at_limits)) == []
    judged = _judge(_set("segment_shares", {"0": 0.6001, "1": 0.3809, "2": 0.0199}))
    small, large = judged["warnings"]
    assert (small["code"], small["segments"], small["threshold"]) == ("small_segment", [2], 0.02)
    assert small["value"] == pytest.approx(0.0199)
    assert small["message"].startswith("segment 2 (2.0%): under 2% of customers")
    assert (large["code"], large["segments"], large["threshold"]) == ("large_segment", [0], 0.6)
    assert judged["verdict"] == "usable"
    # The thresholds are the caller's (insights.small_segment_share, ...), not fixed.
    assert (
        judge(_set("segment_shares", at_limits), CONFIG, **{**LIMITS, "small_segment_share": 0.05})[
            "warnings"
        ][0]["code"]
        == "small_segment"
    )


def test_one_column_holding_most_of_the_difference_warns() -> None:
    assert _codes(_set("between_ss_share", {"spend": 0.5, "visits": 0.5})) == []
    (warning,) = _judge(_set("between_ss_share", {"visits": 0.4999, "spend": 0.5001}))["warnings"]
    assert (warning["code"], warning["column"], warning["threshold"]) == ("dominant_column", "spend", 0.5)
    assert warning["value"] == pytest.approx(0.5001)
    assert warning["message"].startswith("spend holds 50%")


@pytest.mark.parametrize(
    ("k_min", "k_max", "chosen", "bound"),
    [(2, 6, 6, 6), (3, 10, 10, 10), (3, 10, 3, 3), (2, 6, 2, None), (2, 6, 4, None), (4, 4, 4, None)],
)
def test_k_at_an_end_of_the_search_range(k_min: int, k_max: int, chosen: int, bound: int | None) -> None:
    metrics = _clean()
    metrics["k_selection"].update(k_min=k_min, k_max=k_max, chosen_k=chosen)
    metrics["k_selection"]["stability"] = {str(chosen): 0.95}
    warnings = [w for w in _judge(metrics)["warnings"] if w["code"] == "k_at_boundary"]
    if bound is None:  # inside the range, k_min = 2 (nothing smaller to try), or a range of one k
        assert warnings == []
        return
    (warning,) = warnings
    assert (warning["value"], warning["threshold"], warning["severity"]) == (chosen, bound, CAUTION)
    assert ("raise cluster.search.k_max" if chosen == k_max else "lower cluster.search.k_min") in warning[
        "message"
    ]


def test_fixed_or_density_k_has_no_boundary() -> None:
    metrics = _clean()
    metrics["k_selection"] = {"criterion": "fixed k", "chosen_k": 6, "scores": {"6": 0.5}, "stability": {}}
    assert _codes(metrics) == []


def test_no_stable_k_in_the_search_warns() -> None:
    metrics = _set("k_selection.no_stable_k", True)
    metrics["k_selection"]["stability"] = {"2": 0.5, "3": 0.7}
    (warning,) = _judge(metrics)["warnings"]
    assert (warning["code"], warning["value"], warning["threshold"]) == ("no_stable_k", 0.7, 0.8)


def test_stability_falls_back_to_the_search_then_warns_when_never_measured() -> None:
    metrics = _clean()
    del metrics["stability"]  # evaluate.stability_resamples = 0: the chosen k's search stability counts
    assert _judge(metrics)["verdict"] == "strong"
    metrics["k_selection"]["stability"]["3"] = 0.6
    (warning,) = _judge(metrics)["warnings"]
    assert (warning["code"], warning["value"], warning["severity"]) == ("low_stability", 0.6, CRITICAL)
    assert "in the k search" in warning["message"]
    metrics["k_selection"]["stability"] = {}
    (warning,) = _judge(metrics)["warnings"]
    assert (warning["code"], warning["severity"]) == ("stability_not_measured", CAUTION)
    assert _judge(metrics)["verdict"] == "usable"


def test_fewer_than_two_segments_is_weak() -> None:
    metrics = _set("silhouette", None)
    metrics["n_clusters"] = 1
    judged = _judge(metrics)
    assert [w["code"] for w in judged["warnings"]] == ["no_separation"]
    assert judged["verdict"] == "weak"


def test_critical_warnings_come_first_and_thresholds_come_from_the_config() -> None:
    metrics = _set("silhouette", 0.2)
    metrics["stability"]["ari_pairwise_mean"] = 0.55  # the users' case: it used to say "No warnings"
    judged = _judge(metrics)
    assert [w["code"] for w in judged["warnings"]] == ["low_stability", "weak_separation"]
    assert judged["verdict"] == "weak"
    assert "0.55" in judged["warnings"][0]["message"]
    lenient = VerdictConfig(min_stability=0.5, good_silhouette=0.2)
    assert _judge(metrics, lenient)["verdict"] == "strong"
    with pytest.raises(ValueError, match="good_silhouette must be >= min_silhouette"):
        VerdictConfig(min_silhouette=0.3, good_silhouette=0.2)


def test_judge_run_reads_the_verdict_and_insights_sections() -> None:
    config = load_config(overrides=["verdict.min_stability=0.99", "insights.noise_share=0.5"])
    metrics = _set("noise_fraction", 0.3)
    assert [w["code"] for w in judge_run(metrics, config)["warnings"]] == ["low_stability"]


# ----------------------------------------------------------------------------------------- whole runs
def _metrics(frame: pd.DataFrame, *overrides: str) -> dict[str, Any]:
    model, _ = fit_model(frame, load_config(overrides=["evaluate.stability_resamples=3", *overrides]))
    return model.manifest["metrics"]


def test_a_planted_table_is_strong() -> None:
    table, _ = make_customers(1500, 12, 4, seed=2)
    metrics = _metrics(table, "cluster.search.k_max=6")
    assert metrics["k_selection"]["chosen_k"] == 4
    assert metrics["verdict"] == "strong", metrics["warnings"]
    assert metrics["warnings"] == []
    assert metrics["verdict_rule"] == RULE


def test_a_pure_noise_table_is_weak() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(1000, 8)), columns=[f"v{i}" for i in range(8)])
    table.insert(0, "customer_id", np.arange(1000))
    metrics = _metrics(table, "cluster.search.k_max=6")
    assert metrics["verdict"] == "weak"
    codes = [w["code"] for w in metrics["warnings"]]
    assert {"low_stability", "no_separation", "no_stable_k"} <= set(codes)
    assert metrics["k_selection"]["no_stable_k"] is True


def test_planted_k_above_k_max_is_chosen_at_the_boundary_and_warned() -> None:
    table, _ = make_customers(800, 12, 7, seed=4, separation=5.0)  # 7 planted segments
    metrics = _metrics(table, "cluster.search.k_min=2", "cluster.search.k_max=5")
    k_selection = metrics["k_selection"]
    assert k_selection["chosen_k"] == 5
    assert set(k_selection["stability"]) == {"2", "3", "4", "5"}
    assert k_selection["stability_rows"] == 800
    (warning,) = [w for w in metrics["warnings"] if w["code"] == "k_at_boundary"]
    assert (warning["value"], warning["threshold"]) == (5, 5)
    assert "raise cluster.search.k_max" in warning["message"]
    assert metrics["verdict"] == "usable"


def test_the_best_separated_k_passed_over_as_unstable_is_named() -> None:
    metrics = _clean()
    metrics["k_selection"]["scores"] = {"2": 0.4, "3": 0.5, "4": 0.6}
    metrics["k_selection"]["stability"] = {"2": 0.9, "3": 0.95, "4": 0.8}
    assert _judge(metrics)["verdict"] == "strong"  # k = 4 at the threshold is stable: the rule would take it
    metrics["k_selection"]["stability"]["4"] = 0.7999
    (warning,) = _judge(metrics)["warnings"]
    assert (warning["code"], warning["value"], warning["threshold"]) == ("best_k_unstable", 0.7999, 0.8)
    assert "k = 4 separates best" in warning["message"]
    assert "k = 3 was chosen" in warning["message"]


def test_a_small_planted_table_whose_best_k_does_not_reproduce_says_so() -> None:
    """200 customers, 3 planted segments: on 160-row subsamples k-means finds another 3-way split 2 times
    in 5 (with lower inertia than the planted one), so k = 3 is unstable and a stable k = 4 is chosen."""
    table, _ = make_customers(200, 10, 3, seed=5)
    metrics = _metrics(table)
    k_selection = metrics["k_selection"]
    assert k_selection["chosen_k"] != 3
    assert k_selection["stability"]["3"] < 0.8
    (warning,) = [w for w in metrics["warnings"] if w["code"] == "best_k_unstable"]
    assert "k = 3 separates best" in warning["message"]
