from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation.errors import ConfigError
from segmentation.insights.profiles import (
    build_profile,
    resolve_names,
    segment_names,
    standardized_differences,
    top_features,
)


@pytest.fixture
def planted() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], [500, 300, 150, 50])
    spend = np.where(labels == 0, 100.0, np.where(labels == 1, 1000.0, 400.0)) + rng.normal(
        0, 10, len(labels)
    )
    cash = np.where(labels == 2, 900.0, 50.0) + rng.normal(0, 10, len(labels))
    raw = pd.DataFrame({"spend": spend, "cash_advance": cash})
    x = ((raw - raw.mean()) / raw.std(ddof=0)).to_numpy(np.float32)
    return raw, x, labels, list(raw.columns)


def test_profile_sizes_shares_and_index(planted) -> None:
    raw, x, labels, names = planted
    profile = build_profile(raw, standardized_differences(x, labels, names), labels)
    assert profile["size"].sum() == len(labels)
    assert profile["share"].sum() == pytest.approx(1.0)
    assert list(profile["segment"]) == [-1, 0, 1, 2]
    row = profile.set_index("segment").loc[1]
    assert row["spend__mean"] == pytest.approx(raw["spend"][labels == 1].mean())
    assert row["spend__median"] == pytest.approx(raw["spend"][labels == 1].median())
    assert row["spend__index"] == pytest.approx(row["spend__mean"] / raw["spend"].mean() * 100)
    assert row["top_features"].startswith("spend +")


def test_names_are_deterministic_readable_and_unique(planted) -> None:
    _, x, labels, feature_names = planted
    diffs = standardized_differences(x, labels, feature_names)
    names = segment_names(diffs)
    assert names == segment_names(diffs.copy())
    assert names[-1] == "noise"
    assert names[1].startswith("high spend")
    assert names[2].startswith("high cash advance")
    assert names[0].startswith("low spend")
    assert len(set(names.values())) == len(names)


def test_colliding_names_get_more_features_then_ids() -> None:
    diffs = pd.DataFrame({"a": [1.0, 1.0, 1.0], "b": [0.5, 0.5, 0.5], "c": [0.1, -0.2, 0.1]}, index=[0, 1, 2])
    names = segment_names(diffs)
    assert len(set(names.values())) == 3
    assert names[1] == "high a, high b, low c"
    assert names[0].endswith("(segment 0)")


def test_top_features_order_by_magnitude_then_name() -> None:
    diffs = pd.Series({"b": -2.0, "a": 2.0, "c": 0.1})
    assert top_features(diffs, 2) == [("a", 2.0), ("b", -2.0)]


def test_user_names_beat_carried_names_beat_derived_ones() -> None:
    derived = {0: "high spend", 1: "low spend", 2: "high visits"}
    names, sources = resolve_names(derived, {1: "Bargain hunters"}, {1: "old", 2: "Regulars"})
    assert names == {0: "high spend", 1: "Bargain hunters", 2: "Regulars"}
    assert sources == {0: "auto", 1: "user", 2: "previous"}
    # A derived name equal to a given one is disambiguated, never duplicated.
    names, _ = resolve_names(derived, {1: "high spend"})
    assert names[0] == "high spend (segment 0)"
    with pytest.raises(ConfigError, match="no segment 7"):
        resolve_names(derived, {7: "Ghosts"})
