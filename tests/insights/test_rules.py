"""Segment rules: short surrogate-tree rules in the table's own units, scored on held-out rows.

Measured on the tables below (seed 0, depth 3): planted ``make_customers(4000, 20, 6, seed=0)`` labels get
fidelity 0.977 with every rule at precision >= 0.97 and recall >= 0.95 (over seeds 0-5 of that table and
of a 4-segment 12-feature one: fidelity 0.965-0.992, precision >= 0.94, recall >= 0.91); a rule hidden in
CC GENERAL is recovered exactly (precision and recall 1.00); the mixed-kind table with 3 % noise gets
fidelity 0.969 (the noise rows are indistinguishable from the others, so 1 - 0.03 is the ceiling).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pydantic
import pytest

from segmentation.config import InsightsConfig
from segmentation.contract.inference import infer_schema
from segmentation.contract.schema import ColumnSpec, TableSchema, cc_general_schema
from segmentation.data.chunks import sample_positions
from segmentation.data.io import sample_data_path
from segmentation.data.synthetic import make_customers
from segmentation.insights.rules import (
    Condition,
    RuleSet,
    format_number,
    nice_threshold,
    render_conditions,
    segment_rules,
)


@pytest.fixture(scope="module")
def planted() -> tuple[pd.DataFrame, np.ndarray, TableSchema]:
    table, truth = make_customers(4000, 20, 6, seed=0)
    return table, truth["segment"].to_numpy(), infer_schema(table, "customer_id")


@pytest.fixture(scope="module")
def planted_rules(planted: tuple[pd.DataFrame, np.ndarray, TableSchema]) -> RuleSet:
    table, labels, schema = planted
    return segment_rules(table, labels, schema, max_depth=3, seed=0)


def _mixed_kinds(rows: int = 4000, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Segments planted as a decision list over a categorical, a date and a boolean column, 3 % noise.

    ``channel in {web, app}`` -> 0; else ``signup_date`` before 2023-04-01 -> 1; else member -> 2; else 3.
    ``amount`` is pure noise with 5 % missing values.
    """
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "store", "app", "phone", "partner"], rows)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365, rows), unit="D")
    member = rng.random(rows) < 0.5
    amount = np.round(rng.lognormal(5, 1, rows), 2)
    amount[rng.random(rows) < 0.05] = np.nan
    before = np.asarray(signup < pd.Timestamp("2023-04-01"))
    labels = np.where(np.isin(channel, ["web", "app"]), 0, np.where(before, 1, np.where(member, 2, 3)))
    labels[rng.random(rows) < 0.03] = -1
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(rows)],
            "channel": channel,
            "signup_date": signup,
            "is_member": member,
            "amount": amount,
        }
    )
    return frame, labels


def _satisfies(frame: pd.DataFrame, conditions: tuple[Condition, ...]) -> np.ndarray:
    """An independent reading of a rule on the original table (numbers, dates, levels as they are)."""
    hit = np.ones(len(frame), dtype=bool)
    for c in conditions:
        column = frame[c.column]
        missing = column.isna().to_numpy()
        if c.kind == "numeric":
            values = column.to_numpy(dtype=float)
            ok = values <= float(c.value) if c.op == "<=" else values > float(c.value)  # type: ignore[arg-type]
        elif c.kind == "datetime":
            day = pd.Timestamp(str(c.value))
            ok = np.asarray(column >= day) if c.op == ">=" else np.asarray(column < day)
        elif c.kind == "boolean":
            ok = column.to_numpy(dtype=bool) == c.value
        elif c.kind == "ordinal":
            order = list(frame.attrs["levels"][c.column])
            rank = column.map(order.index).to_numpy()
            ok = rank >= order.index(c.value) if c.op == ">=" else rank <= order.index(c.value)
        else:
            ok = column.isin(list(c.value)).to_numpy()  # type: ignore[arg-type]
        hit &= np.where(missing, c.missing, ok)
    return hit


# ------------------------------------------------------------------------------------ planted segments
def test_planted_segments_get_faithful_rules(
    planted: tuple[pd.DataFrame, np.ndarray, TableSchema], planted_rules: RuleSet
) -> None:
    _, labels, schema = planted
    rules = planted_rules
    assert [r.segment for r in rules.rules] == sorted(set(labels.tolist()))
    assert rules.fidelity is not None
    assert rules.fidelity >= 0.95  # measured 0.977
    assert rules.unmatched is not None
    assert rules.unmatched <= 0.05
    for rule in rules.rules:
        assert rule.precision is not None
        assert rule.recall is not None
        assert rule.precision >= 0.9, rule  # measured >= 0.976
        assert rule.recall >= 0.9, rule  # measured >= 0.951
        assert 1 <= len({c.column for c in rule.conditions}) <= rules.max_depth
        assert {c.column for c in rule.conditions} <= set(schema.feature_names)
        for column in {c.column for c in rule.conditions}:
            assert column in rule.text  # rules name columns by their own names
    assert rules.train_rows + rules.holdout_rows == 4000
    assert rules.holdout_rows == pytest.approx(0.3 * 4000, abs=6)


def test_thresholds_are_in_original_units(
    planted: tuple[pd.DataFrame, np.ndarray, TableSchema], planted_rules: RuleSet
) -> None:
    table, labels, _ = planted
    numeric = [c for r in planted_rules.rules for c in r.conditions if c.kind == "numeric"]
    assert numeric
    for c in numeric:
        observed = table[c.column].dropna()
        assert observed.min() <= float(c.value) < observed.max(), c  # type: ignore[arg-type]
        assert len(f"{abs(float(c.value)):.10g}".replace(".", "").strip("0")) <= 3, c  # type: ignore[arg-type]
    for rule in planted_rules.rules:
        # Read on the raw table with plain pandas, the rule scores as it does on the held-out rows.
        hit = _satisfies(table, rule.conditions)
        truth = labels == rule.segment
        assert (hit & truth).sum() / hit.sum() == pytest.approx(rule.precision, abs=0.03)
        assert (hit & truth).sum() / truth.sum() == pytest.approx(rule.recall, abs=0.03)
        for c in rule.conditions:
            if c.kind == "numeric":
                assert format_number(float(c.value)) in rule.text  # type: ignore[arg-type]


def test_rule_hidden_in_cc_general_is_recovered() -> None:
    """The brief's example, planted in the real table: the rule comes back in dollars."""
    table = pd.read_csv(sample_data_path())
    labels = ((table["CASH_ADVANCE"] > 1200) & (table["PURCHASES"] <= 300)).to_numpy().astype(np.int64)
    labels[(table["CREDIT_LIMIT"] > 12_000).to_numpy()] = 2
    rules = segment_rules(table, labels, cc_general_schema())
    hidden = rules.rule(1)
    assert hidden is not None
    assert "PURCHASES ≤ 300" in hidden.text
    assert "CASH_ADVANCE > 1,200" in hidden.text
    assert hidden.precision == pytest.approx(1.0)
    assert hidden.recall == pytest.approx(1.0)
    limit = rules.rule(2)
    assert limit is not None
    assert limit.text == "CREDIT_LIMIT > 12,000"
    # CREDIT_LIMIT has a missing value: it takes the median, which is below 12,000.
    assert limit.conditions[0].missing is False


# --------------------------------------------------------------------------------------- column kinds
def test_categorical_date_and_boolean_conditions_read_naturally() -> None:
    frame, labels = _mixed_kinds()
    schema = infer_schema(frame, "customer_id")
    rules = segment_rules(frame, labels, schema)
    web = rules.rule(0)
    assert web is not None
    assert [(c.column, c.kind, set(c.value)) for c in web.conditions] == [  # type: ignore[arg-type]
        ("channel", "categorical", {"web", "app"})
    ]
    assert web.text in {"channel in {web, app}", "channel in {app, web}"}
    early = rules.rule(1)
    assert early is not None
    assert "signup_date before 2023-04-01" in early.text
    assert [c.value for c in early.conditions if c.kind == "datetime"] == ["2023-04-01"]
    member, other = rules.rule(2), rules.rule(3)
    assert member is not None
    assert other is not None
    assert "signup_date on or after 2023-04-01" in member.text
    assert "is_member is true" in member.text
    assert "is_member is false" in other.text
    assert "amount" not in " ".join(rules.texts().values())  # the noise column explains nothing
    assert rules.fidelity is not None
    assert rules.fidelity >= 0.95  # measured 0.969: the 3 % noise labels are the only misses
    for rule in rules.rules:
        assert rule.recall == pytest.approx(1.0)
        assert rule.precision is not None
        assert rule.precision >= 0.93


def test_ordinal_levels_read_in_their_order() -> None:
    rng = np.random.default_rng(11)
    tiers = ("bronze", "silver", "gold", "platinum")
    tier = rng.choice(tiers, 3000)
    store = rng.choice([3.0, 7.0, 12.0, np.nan], 3000)  # integer codes read as floats, some missing
    labels = np.where(np.isin(tier, ["gold", "platinum"]), 1, np.where(store == 7.0, 2, 0))
    frame = pd.DataFrame({"tier": tier, "store": store, "x": rng.normal(size=3000)})
    schema = TableSchema(
        kind="inferred",
        id_column=None,
        columns=(
            ColumnSpec(name="tier", kind="ordinal", categories=tiers),
            ColumnSpec(name="store", kind="categorical", categories=("3", "7", "12")),
            ColumnSpec(name="x", kind="numeric"),
        ),
    )
    rules = segment_rules(frame, labels, schema)
    assert rules.texts()[1] == "tier ≥ gold"
    assert rules.texts()[2] == "tier ≤ silver and store = 7"
    assert rules.fidelity == pytest.approx(1.0)
    low = rules.rule(0)
    assert low is not None
    assert low.text == "tier ≤ silver and store ≠ 7"  # "≠" keeps the missing stores
    as_text = frame.assign(store=frame["store"].map("{:.0f}".format).where(frame["store"].notna()))
    as_text.attrs["levels"] = {"tier": tiers}
    assert (_satisfies(as_text, low.conditions) == (labels == 0)).all()


def test_missing_numbers_follow_the_training_median() -> None:
    rng = np.random.default_rng(5)
    amount = np.round(rng.lognormal(6, 1, 3000), 2)
    labels = (amount > 1000).astype(np.int64)
    amount[rng.random(3000) < 0.1] = np.nan
    frame = pd.DataFrame({"amount": amount, "other": rng.normal(size=3000)})
    schema = infer_schema(frame, None)
    rules = segment_rules(frame, labels, schema)
    high, low = rules.rule(1), rules.rule(0)
    assert high is not None
    assert low is not None
    assert high.text == "amount > 1,000"
    assert low.text == "amount ≤ 1,000"
    median = float(np.nanmedian(amount))
    assert median < 1000
    assert high.conditions[0].missing is False
    assert low.conditions[0].missing is True


# -------------------------------------------------------------------------------------------- noise
def test_noise_gets_no_rule_and_agrees_when_unmatched(
    planted: tuple[pd.DataFrame, np.ndarray, TableSchema],
) -> None:
    table, labels, schema = planted
    noisy = np.where(labels == 2, -1, labels)  # one well-separated group becomes noise
    rules = segment_rules(table, noisy, schema)
    assert rules.rule(-1) is None
    assert 2 not in rules.texts()
    assert sorted(rules.texts()) == [0, 1, 3, 4, 5]
    assert rules.noise_rows == int((noisy == -1).sum())
    assert rules.unmatched is not None
    assert rules.unmatched >= 0.9 * (noisy == -1).mean()  # the noise rows match no rule ...
    assert rules.fidelity is not None
    assert rules.fidelity >= 0.95  # ... and count as agreeing with the surrogate
    assert all(r.precision is not None and r.precision >= 0.9 for r in rules.rules)


def test_segment_missing_from_the_sample_says_so() -> None:
    table, truth = make_customers(3000, 8, 3, seed=2)
    labels = truth["segment"].to_numpy().copy()
    sampled = sample_positions(len(table), 600, 0)
    lone = int(np.setdiff1d(np.arange(len(table)), sampled)[0])
    labels[lone] = 9
    rules = segment_rules(table, labels, infer_schema(table, "customer_id"), sample=600)
    absent = rules.rule(9)
    assert absent is not None
    assert absent.conditions == ()
    assert absent.precision is None
    assert absent.recall is None
    assert absent.text.startswith("no rule")
    assert rules.train_rows + rules.holdout_rows == 600


def test_a_single_segment_is_everyone() -> None:
    table, _ = make_customers(500, 6, 1, seed=1)
    rules = segment_rules(table, np.zeros(500, dtype=np.int64), infer_schema(table, "customer_id"))
    assert rules.texts() == {0: "all customers"}
    assert rules.fidelity == pytest.approx(1.0)


# --------------------------------------------------------------------------- determinism and outputs
def test_same_seed_same_rules_and_json_round_trip(
    planted: tuple[pd.DataFrame, np.ndarray, TableSchema], planted_rules: RuleSet
) -> None:
    table, labels, schema = planted
    again = segment_rules(table, labels, schema, max_depth=3, seed=0)
    assert again.to_dict() == planted_rules.to_dict()
    restored = RuleSet.from_dict(json.loads(json.dumps(planted_rules.to_dict())))
    assert restored == planted_rules
    other = segment_rules(table, labels, schema, max_depth=3, seed=1)
    assert other.seed == 1
    assert other.fidelity is not None
    assert other.fidelity >= 0.95


def test_depth_bounds_the_rule_length(planted: tuple[pd.DataFrame, np.ndarray, TableSchema]) -> None:
    table, labels, schema = planted
    rules = segment_rules(table, labels, schema, max_depth=1, sample=2000)
    assert rules.max_depth == 1
    assert all(len(r.conditions) <= 1 for r in rules.rules)
    assert rules.train_rows + rules.holdout_rows == 2000


def test_lines_and_summary(planted_rules: RuleSet) -> None:
    lines = planted_rules.lines({0: "big spenders"})
    assert len(lines) == len(planted_rules.rules)
    first = planted_rules.rules[0]
    assert lines[0] == (
        f"big spenders: {first.text} (precision {first.precision:.2f}, recall {first.recall:.2f})"
    )
    assert lines[1].startswith("segment 1: ")
    summary = planted_rules.summary()
    assert summary["rules_fidelity"] == planted_rules.fidelity
    assert summary["rules_max_depth"] == 3
    assert json.loads(json.dumps(summary)) == summary


def test_bad_arguments_are_refused(planted: tuple[pd.DataFrame, np.ndarray, TableSchema]) -> None:
    table, labels, schema = planted
    with pytest.raises(ValueError, match="labels for"):
        segment_rules(table, labels[:-1], schema)
    with pytest.raises(ValueError, match="amount_00"):
        segment_rules(table.drop(columns="amount_00"), labels, schema)
    with pytest.raises(ValueError, match="holdout"):
        segment_rules(table, labels, schema, holdout=1.0)


# ---------------------------------------------------------------------------------------- rendering
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1213.7, "1,210"),
        (0.45678, "0.457"),
        (3.0, "3"),
        (1_234_567, "1,230,000"),
        (0.0, "0"),
        (-12.34, "-12.3"),
    ],
)
def test_numbers_show_three_significant_digits(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [(1207.3, 1221.9, 1210.0), (3, 4, 3.0), (-0.5, 2.0, 0.0), (99.5, 100.5, 100.0), (0.0831, 0.0834, 0.0832)],
)
def test_thresholds_are_the_roundest_number_in_the_gap(lo: float, hi: float, expected: float) -> None:
    assert nice_threshold(lo, hi) == pytest.approx(expected)
    assert lo <= nice_threshold(lo, hi) < hi


def test_render_merges_columns_and_reads_sets_naturally() -> None:
    levels = {"channel": ("web", "store", "app", "phone")}
    rule = (
        Condition("BALANCE", "numeric", ">", 1000.0),
        Condition("BALANCE", "numeric", "<=", 5000.0),
        Condition("signup", "datetime", ">=", "2023-01-01"),
        Condition("signup", "datetime", "<", "2023-04-01"),
        Condition("vip", "boolean", "is", False),
        Condition("channel", "categorical", "in", ("web", "store", "app"), missing=True),
    )
    assert render_conditions(rule, levels) == (
        "1,000 < BALANCE ≤ 5,000 and signup on or after 2023-01-01 and before 2023-04-01 "
        "and vip is false and channel ≠ phone"
    )
    assert render_conditions([Condition("channel", "categorical", "in", ("web",))], levels) == "channel = web"
    assert (
        render_conditions([Condition("channel", "categorical", "in", ("web", "app"), missing=True)], levels)
        == "channel not in {store, phone}"
    )
    assert render_conditions([]) == "all customers"


def test_insights_config_has_rule_settings() -> None:
    config = InsightsConfig()
    assert (config.rule_depth, config.rule_sample) == (3, 20_000)
    with pytest.raises(pydantic.ValidationError):
        InsightsConfig(rule_depth=6)
    with pytest.raises(pydantic.ValidationError):
        InsightsConfig(rule_sample=100)
