"""Names and descriptions read in the columns' own words: kinds, levels, yes/no columns, dates, collisions."""

from __future__ import annotations

import math

import pytest

from segmentation.insights.naming import (
    Feature,
    describe_segment,
    features_of,
    is_yes_no,
    needs_column,
    rank,
    readable,
    segment_names,
)


def _h(segment: float, overall: float) -> float:
    return 2 * math.asin(math.sqrt(segment)) - 2 * math.asin(math.sqrt(overall))


def _level(column: str, level: str, segment: float, overall: float, **kw: bool) -> Feature:
    return Feature(column, "categorical", _h(segment, overall), level, segment, overall, **kw)


def test_columns_keep_their_own_spelling() -> None:
    assert readable("CASH_ADVANCE") == "CASH ADVANCE"
    assert readable("MntWines") == "MntWines"
    assert readable("Dt_Customer") == "Dt Customer"
    assert Feature("MntWines", "numeric", -0.9).label == "low MntWines"
    assert Feature("CASH_ADVANCE", "numeric", 1.4).clause == "much higher CASH_ADVANCE (+1.4 SD)"
    assert Feature("PURCHASES", "numeric", -0.3).clause == "slightly lower PURCHASES (-0.3 SD)"


def test_dates_read_as_recency() -> None:
    # Dates are days before the reference date: a negative effect is a more recent date.
    recent, old = Feature("signup_date", "datetime", -0.9), Feature("signup_date", "datetime", 0.6)
    assert recent.label == "recent signup date"
    assert recent.clause == "much more recent signup_date (by 0.9 SD)"
    assert old.label == "earlier signup date"
    assert old.clause == "earlier signup_date (by 0.6 SD)"


def test_levels_read_as_words() -> None:
    assert _level("gender", "Female", 0.8, 0.5).label == "mostly Female"
    assert _level("channel", "web", 0.4, 0.2).label == "often web"
    assert _level("channel", "web", 0.05, 0.3).label == "rarely web"
    assert _level("channel", "web", 0.2, 0.3).label == "less often web"
    assert _level("tier", "1", 0.8, 0.3, qualified=True).label == "mostly tier 1"
    assert Feature("flag", "boolean", 0.7).label == "more often flag"
    web = _level("channel", "web", 0.61, 0.30)
    assert web.clause == "more often channel = web (61% vs 30%)"
    assert web.difference_pp == pytest.approx(31.0)
    assert web.lift == pytest.approx(0.61 / 0.30)
    assert web.measure == "h"
    assert _level("channel", "fax", 0.05, 0.01).clause.endswith("(5.0% vs 1.0%)")


def test_yes_no_levels_read_as_with_and_without() -> None:
    assert all(is_yes_no(levels) for levels in (["yes", "no"], ["True", "False"], ["1", "0"], ["N", "Y"]))
    assert not any(is_yes_no(levels) for levels in (["0", "1", "2"], ["yes"], ["yes", "maybe"]))
    assert _level("card", "yes", 0.8, 0.4, yes_no=True).label == "with card"
    assert _level("card", "no", 0.2, 0.6, yes_no=True).label == "with card"  # fewer "no": more card holders
    assert _level("selfemp", "no", 0.9, 0.7, yes_no=True).label == "without selfemp"
    assert _level("card", "yes", 0.4, 0.2, yes_no=True).label == "more often with card"
    assert _level("card", "yes", 0.6, 0.8, yes_no=True).label == "less often with card"


def test_ambiguous_levels_are_named_with_their_column() -> None:
    levels = ["web", "store", "A", "1", "yes", "no", "yes", "no"]
    assert not needs_column("web", levels)
    assert all(needs_column(level, levels) for level in ("A", "1", "yes"))


def test_a_binary_column_shows_once_in_a_name_positive_level_first() -> None:
    female, male = _level("gender", "Female", 0.8, 0.5), _level("gender", "Male", 0.2, 0.5)
    assert math.isclose(female.effect, -male.effect)
    ranked = rank([male, female, Feature("spend", "numeric", 0.3)])
    assert ranked[0] == female
    assert segment_names({0: ranked}) == {0: "mostly Female, high spend"}


def test_a_name_skips_a_second_column_of_the_same_family_and_direction() -> None:
    features = [
        Feature("amount_00", "numeric", 1.5),
        Feature("amount_01", "numeric", 1.4),
        Feature("amount_02", "numeric", -1.2),
    ]
    assert segment_names({0: features}) == {0: "high amount 00, low amount 02"}


def test_names_are_unique_and_segments_without_features_are_typical() -> None:
    spend = [Feature("spend", "numeric", 1.0), Feature("visits", "numeric", 0.5)]
    names = segment_names({0: spend, 1: [*spend, Feature("age", "numeric", -0.3)], 2: [], -1: []})
    assert names == {
        0: "high spend, high visits",
        1: "high spend, high visits, low age",
        2: "typical customers",
        -1: "noise",
    }


def test_descriptions_are_one_sentence() -> None:
    features = [Feature("CASH_ADVANCE", "numeric", 1.4), _level("channel", "web", 0.61, 0.30)]
    assert (
        describe_segment(0, 0.22, features, 0.2)
        == "22% of customers; much higher CASH_ADVANCE (+1.4 SD), more often channel = web (61% vs 30%)"
    )
    assert describe_segment(1, 0.05, [], 0.31).startswith("5.0% of customers; close to the population")
    assert describe_segment(-1, 0.03, [], 0.2) == "3.0% of customers, in no segment (noise)"


def test_features_round_trip_through_json_fields() -> None:
    feature = _level("card", "yes", 0.8, 0.4, yes_no=True, qualified=True)
    data = feature.to_dict()
    assert data["feature"] == "card=yes"
    assert data["text"] == feature.clause
    assert data["difference_pp"] == pytest.approx(40.0)
    assert features_of({"features": [data]}) == [feature]
    assert features_of({}) == []
