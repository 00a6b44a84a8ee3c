"""Tests for the preprocessing fitted on training data only."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segmentation.config import PreprocessConfig
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.preprocess import Preprocessor, signed_log1p, yeo_johnson

N = 2000


def _numeric_schema(*names: str) -> TableSchema:
    return TableSchema(
        kind="inferred", id_column=None, columns=tuple(ColumnSpec(name=n, kind="numeric") for n in names)
    )


def _lognormal_frame(seed: int = 0, n: int = N, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "skewed": np.exp(rng.normal(2.0 + shift, 1.0, n)),
            "normal": rng.normal(5.0 + shift, 2.0, n),
        }
    )


def _cfg(**kwargs: object) -> PreprocessConfig:
    base: dict[str, object] = {"clip_quantiles": None, "skew": "none", "scale": "none"}
    base.update(kwargs)
    return PreprocessConfig(**base)


def _col(pre: Preprocessor, out: np.ndarray, name: str) -> np.ndarray:
    return out[:, pre.feature_names_out_.index(name)]


# ------------------------------------------------------------------------------------------ fitting
def test_transform_of_new_data_uses_training_parameters() -> None:
    train, other = _lognormal_frame(0), _lognormal_frame(1, n=500, shift=3.0)
    pre = Preprocessor(_numeric_schema("skewed", "normal"), PreprocessConfig(), float32=False).fit(train)
    before = {k: np.array(v, copy=True) for k, v in pre.get_state()[1].items()}
    first = pre.transform(train)
    out_other = pre.transform(other)
    after = pre.get_state()[1]
    for key, value in before.items():
        assert np.array_equal(value, after[key]), key
    # Transforming other data changes nothing: the training rows transform identically afterwards.
    assert np.array_equal(first, pre.transform(train))
    # The shifted data is not re-centred: its mean stays far from 0 in the training scale.
    assert _col(pre, out_other, "normal").mean() > 1.0


def test_fit_depends_only_on_training_rows() -> None:
    train = _lognormal_frame(0)
    a = Preprocessor(_numeric_schema("skewed", "normal"), PreprocessConfig(), float32=False).fit(train)
    b = Preprocessor(_numeric_schema("skewed", "normal"), PreprocessConfig(), float32=False).fit(train)
    b.transform(_lognormal_frame(5, shift=10.0))
    test = _lognormal_frame(7, n=300)
    assert np.array_equal(a.transform(test), b.transform(test))


def test_imputation_uses_training_median() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 10.0, np.nan] * 400})
    pre = Preprocessor(_numeric_schema("a"), _cfg(impute="median"), float32=False).fit(train)
    assert pre.impute_[0] == pytest.approx(2.5)
    out = pre.transform(pd.DataFrame({"a": [np.nan, 7.0, np.nan]}))
    assert out[:, 0].tolist() == [2.5, 7.0, 2.5]
    assert not np.isnan(pre.transform(train)).any()


def test_imputation_mean() -> None:
    train = pd.DataFrame({"a": [1.0, 2.0, 3.0, 10.0, np.nan] * 400})
    pre = Preprocessor(_numeric_schema("a"), _cfg(impute="mean"), float32=False).fit(train)
    assert pre.transform(pd.DataFrame({"a": [np.nan]}))[0, 0] == pytest.approx(4.0)


def test_clipping_bounds_values_and_never_drops_rows() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, N)
    values[:5] = [1e6, -1e6, 5e5, -5e5, 1e9]
    train = pd.DataFrame({"a": values})
    pre = Preprocessor(_numeric_schema("a"), _cfg(clip_quantiles=(0.01, 0.99)), float32=False).fit(train)
    low, high = np.quantile(values, [0.01, 0.99])
    assert pre.clip_low_[0] == pytest.approx(low)
    assert pre.clip_high_[0] == pytest.approx(high)
    out = pre.transform(train)
    assert out.shape == (N, 1)
    assert out.min() >= low - 1e-12
    assert out.max() <= high + 1e-12
    new = pd.DataFrame({"a": [1e12, -1e12, 0.0, np.nan]})
    out_new = pre.transform(new)
    assert out_new.shape == (4, 1)
    assert out_new[:, 0].tolist() == pytest.approx([high, low, 0.0, float(np.median(values))])


def test_clipping_disabled_keeps_values() -> None:
    train = pd.DataFrame({"a": np.arange(N, dtype=float)})
    pre = Preprocessor(_numeric_schema("a"), _cfg(clip_quantiles=None), float32=False).fit(train)
    assert np.array_equal(pre.transform(pd.DataFrame({"a": [-5.0, 1e9]}))[:, 0], [-5.0, 1e9])


@pytest.mark.parametrize("skew", ["yeo-johnson", "log1p"])
def test_skew_transform_reduces_skewness(skew: str) -> None:
    train = _lognormal_frame(0)
    raw_skew = stats.skew(train["skewed"])
    assert raw_skew > 2
    pre = Preprocessor(_numeric_schema("skewed", "normal"), _cfg(skew=skew), float32=False).fit(train)
    out = pre.transform(train)
    assert pre.skewed_.tolist() == [True, False]
    assert abs(stats.skew(_col(pre, out, "skewed"))) < 0.5
    # The roughly normal column is below the threshold and left untouched.
    assert np.allclose(_col(pre, out, "normal"), train["normal"].to_numpy())


def test_skew_none_leaves_column() -> None:
    train = _lognormal_frame(0)
    pre = Preprocessor(_numeric_schema("skewed", "normal"), _cfg(skew="none"), float32=False).fit(train)
    assert not pre.skewed_.any()
    out = pre.transform(train)
    assert np.allclose(_col(pre, out, "skewed"), train["skewed"].to_numpy())
    assert stats.skew(_col(pre, out, "skewed")) > 2


def test_yeo_johnson_matches_scipy() -> None:
    x = np.array([-3.0, -0.5, 0.0, 0.5, 2.0, 100.0])
    for lmbda in (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0):
        assert np.allclose(yeo_johnson(x, lmbda), stats.yeojohnson(x, lmbda=lmbda)), lmbda
    assert np.allclose(signed_log1p(np.array([-np.e + 1, 0.0, np.e - 1])), [-1.0, 0.0, 1.0])


def test_standard_scaling_on_train() -> None:
    train = _lognormal_frame(0)
    pre = Preprocessor(_numeric_schema("skewed", "normal"), PreprocessConfig(), float32=False).fit(train)
    out = pre.transform(train)
    assert np.allclose(out.mean(axis=0), 0.0, atol=1e-9)
    assert np.allclose(out.std(axis=0), 1.0, atol=1e-9)


def test_robust_scaling_on_train() -> None:
    train = _lognormal_frame(0)
    pre = Preprocessor(_numeric_schema("normal"), _cfg(scale="robust"), float32=False).fit(train)
    out = pre.transform(train)[:, 0]
    q1, med, q3 = np.quantile(out, [0.25, 0.5, 0.75])
    assert med == pytest.approx(0.0, abs=1e-9)
    assert q3 - q1 == pytest.approx(1.0)


def test_constant_column_does_not_divide_by_zero() -> None:
    train = pd.DataFrame({"a": np.full(N, 3.0), "b": np.arange(N, dtype=float)})
    pre = Preprocessor(_numeric_schema("a", "b"), PreprocessConfig(), float32=False).fit(train)
    out = pre.transform(train)
    assert np.isfinite(out).all()
    assert np.allclose(out[:, 0], 0.0)


def test_fit_sample_limits_rows_used() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(0, 1, 5000)})
    pre = Preprocessor(_numeric_schema("a"), _cfg(fit_sample=1000), float32=False, seed=1).fit(train)
    assert pre.transform(train).shape == (5000, 1)


# ---------------------------------------------------------------------------------- column kinds
def _mixed_schema() -> TableSchema:
    return TableSchema(
        kind="inferred",
        id_column="cid",
        columns=(
            ColumnSpec(name="amount", kind="numeric"),
            ColumnSpec(name="flag", kind="boolean"),
            ColumnSpec(name="last", kind="datetime"),
            ColumnSpec(name="channel", kind="categorical", categories=("web", "store", "app")),
        ),
        reference_date="2026-01-01",
    )


def _mixed_frame(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "cid": [f"C{i}" for i in range(n)],
            "amount": rng.normal(10, 2, n),
            "flag": rng.random(n) < 0.3,
            "last": pd.Timestamp("2026-01-01") - pd.to_timedelta(rng.integers(1, 400, n), unit="D"),
            "channel": pd.Series(rng.choice(["web", "store", "app"], n), dtype="str"),
        }
    )


def _plain_pre(schema: TableSchema, float32: bool = False) -> Preprocessor:
    return Preprocessor(schema, _cfg(), float32=float32)


def test_feature_names_and_unseen_or_missing_level_is_no_level() -> None:
    frame = _mixed_frame()
    pre = _plain_pre(_mixed_schema()).fit(frame)
    assert pre.feature_names_out_ == ["amount", "flag", "last", "channel=web", "channel=store", "channel=app"]
    new = _mixed_frame(4)
    new["channel"] = pd.Series(["store", "partner", None, "app"], dtype="str")
    block = pre.transform(new)[:, 3:]
    p = frame["channel"].value_counts(normalize=True)[["web", "store", "app"]].to_numpy()
    factor = 1 / np.sqrt(np.sum(p * (1 - p)))
    none = -p * factor  # the all-zero indicator, centred and scaled
    np.testing.assert_allclose(block[1], none)
    np.testing.assert_allclose(block[2], none)
    np.testing.assert_allclose(block[0], none + np.array([0, 1, 0]) * factor)
    np.testing.assert_allclose(block[3], none + np.array([0, 0, 1]) * factor)


# ---------------------------------------------------------------------------------------- weighting
def _variance_by_column(pre: Preprocessor, out: np.ndarray) -> dict[str, float]:
    """Total variance of each input column's output columns (a categorical's block together)."""
    total: dict[str, float] = {}
    for j, name in enumerate(pre.feature_names_out_):
        column = name.split("=")[0]
        total[column] = total.get(column, 0.0) + float(out[:, j].var())
    return total


def _kinds_frame(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": np.exp(rng.normal(3, 1, n)),
            "flag": rng.random(n) < 0.2,
            "many": pd.Series(rng.choice([f"L{i}" for i in range(40)], n), dtype="str"),
            "few": pd.Series(rng.choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1]), dtype="str"),
            "pair": pd.Series(rng.choice(["yes", "no", None], n, p=[0.3, 0.6, 0.1]), dtype="str"),
            "band": pd.Series(rng.choice(["low", "mid", "high"], n), dtype="str"),
        }
    )


def _kinds_schema(**weights: float) -> TableSchema:
    frame = _kinds_frame()

    def levels(name: str, keep: int = 20) -> tuple[str, ...]:
        return tuple(frame[name].value_counts().index[:keep])

    specs = [
        ColumnSpec(name="amount", kind="numeric", min_value=0.0),
        ColumnSpec(name="flag", kind="boolean"),
        ColumnSpec(name="many", kind="categorical", categories=levels("many")),
        ColumnSpec(name="few", kind="categorical", categories=levels("few")),
        ColumnSpec(name="pair", kind="categorical", categories=levels("pair")),
        ColumnSpec(name="band", kind="ordinal", categories=("low", "mid", "high")),
    ]
    specs = [s.model_copy(update={"weight": weights.get(s.name, 1.0)}) for s in specs]
    return TableSchema(kind="inferred", id_column=None, columns=tuple(specs))


def test_every_column_weighs_one_unit_of_variance_whatever_its_kind() -> None:
    """Numbers, a flag, a 40-level categorical (20 kept), a 3-level one, a 2-level one, an ordinal: 1 each."""
    frame = _kinds_frame()
    pre = Preprocessor(_kinds_schema(), PreprocessConfig(), float32=False).fit(frame)
    assert [n for n in pre.feature_names_out_ if n.startswith("pair")] == ["pair=no"]  # one column, not two
    assert len([n for n in pre.feature_names_out_ if n.startswith("many=")]) == 20
    out = pre.transform(frame)
    for column, variance in _variance_by_column(pre, out).items():
        assert variance == pytest.approx(1.0, abs=1e-9), column
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-9)  # centred, categorical blocks included


def test_weight_multiplies_a_columns_variance() -> None:
    frame = _kinds_frame()
    pre = Preprocessor(
        _kinds_schema(amount=2.0, many=0.5, pair=3.0, flag=0.0), PreprocessConfig(), float32=False
    ).fit(frame)
    variance = _variance_by_column(pre, pre.transform(frame))
    assert variance["amount"] == pytest.approx(2.0)  # counts like two copies of the column
    assert variance["many"] == pytest.approx(0.5)
    assert variance["pair"] == pytest.approx(3.0)
    assert variance["flag"] == 0.0  # weight 0: out of the segments
    assert variance["few"] == pytest.approx(1.0)


def test_two_levels_are_one_column_with_missing_in_between() -> None:
    frame = _kinds_frame()
    pre = Preprocessor(_kinds_schema(), PreprocessConfig(), float32=False).fit(frame)
    new = frame.head(4).copy()
    new["pair"] = pd.Series(["no", "yes", None, "maybe"], dtype="str")
    column = _col(pre, pre.transform(new), "pair=no")
    assert column[0] > column[2] > column[1]
    assert column[2] == column[3]  # missing and unseen: between the two levels


def test_ordinal_is_its_rank_standardized_neither_clipped_nor_unskewed() -> None:
    frame = _kinds_frame()
    frame.loc[:2, "band"] = "high"
    frame.loc[3:, "band"] = "low"  # "high" in 0.1 % of rows: a quantile clip would fold it into "low"
    pre = Preprocessor(_kinds_schema(), PreprocessConfig(), float32=False).fit(frame)
    j = pre.dense_columns.index("band")
    assert not pre.skewed_[j]
    new = frame.head(4).copy()
    new["band"] = pd.Series(["low", "mid", "high", None], dtype="str")
    ranks = _col(pre, pre.transform(new), "band") * pre.scale_[j] + pre.center_[j]
    np.testing.assert_allclose(ranks, [0.0, 1.0, 2.0, 0.0])  # missing: the median rank
    assert pre.raw_values(pd.Series(["mid", "nope", None]), "band")[0] == 1.0
    assert np.isnan(pre.raw_values(pd.Series(["mid", "nope", None]), "band")[1:]).all()


def test_integer_codes_read_as_floats_are_the_same_levels() -> None:
    schema = TableSchema(
        kind="inferred",
        id_column=None,
        columns=(ColumnSpec(name="store", kind="categorical", categories=("12", "7", "30")),),
    )
    frame = pd.DataFrame({"store": np.array([12, 7, 30, 12] * 300)})
    pre = Preprocessor(schema, _cfg(), float32=False).fit(frame)
    as_ints = pre.transform(pd.DataFrame({"store": [12, 7, 99]}))
    as_floats = pre.transform(pd.DataFrame({"store": [12.0, 7.0, np.nan]}))
    np.testing.assert_array_equal(as_ints[:2], as_floats[:2])
    np.testing.assert_array_equal(as_ints[2], as_floats[2])  # unseen and missing: no level


def test_state_saved_before_weighting_loads_with_plain_one_hot() -> None:
    """A bundle's preprocess state without ``level_shares`` (saved before weighting) keeps 0/1 columns."""
    frame = _mixed_frame()
    pre = _plain_pre(_mixed_schema()).fit(frame)
    meta, arrays = pre.get_state()
    legacy = {k: v for k, v in arrays.items() if k != "level_shares"}
    old = Preprocessor.from_state(_mixed_schema(), meta, legacy)
    new = _mixed_frame(4)
    new["channel"] = pd.Series(["store", "partner", None, "app"], dtype="str")
    assert old.transform(new)[:, 3:].tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]
    two = TableSchema(
        kind="inferred",
        id_column=None,
        columns=(ColumnSpec(name="pair", kind="categorical", categories=("yes", "no")),),
    )
    pairs = pd.DataFrame({"pair": ["yes", "no"] * 600})
    meta, arrays = _plain_pre(two).fit(pairs).get_state()
    meta["feature_names_out"] = ["pair=yes", "pair=no"]  # what an old bundle lists: two columns
    old = Preprocessor.from_state(two, meta, {k: v for k, v in arrays.items() if k != "level_shares"})
    assert old.transform(pairs.head(2)).tolist() == [[1, 0], [0, 1]]


def test_date_column_is_days_before_reference_date() -> None:
    pre = _plain_pre(_mixed_schema()).fit(_mixed_frame())
    new = _mixed_frame(3)
    new["last"] = pd.to_datetime(["2025-12-31", "2025-01-01", "2026-01-11"])
    out = pre.transform(new)
    assert out[:, 2].tolist() == [1.0, 365.0, -10.0]


def test_date_column_as_iso_text() -> None:
    pre = _plain_pre(_mixed_schema()).fit(_mixed_frame())
    new = _mixed_frame(2)
    new["last"] = ["2025-12-22", "2025-11-01"]
    assert pre.transform(new)[:, 2].tolist() == [10.0, 61.0]


def test_boolean_column_encodes_as_zero_one_and_imputes() -> None:
    frame = _mixed_frame()
    pre = _plain_pre(_mixed_schema()).fit(frame)
    out = pre.transform(frame)
    assert np.array_equal(out[:, 1], frame["flag"].to_numpy(dtype=float))
    new = _mixed_frame(3)
    new["flag"] = pd.Series([True, None, False], dtype="boolean")
    assert pre.transform(new)[:, 1].tolist() == [1.0, pre.impute_[1], 0.0]


@pytest.mark.parametrize("float32", [True, False])
def test_output_dtype(float32: bool) -> None:
    frame = _mixed_frame()
    pre = Preprocessor(_mixed_schema(), PreprocessConfig(), float32=float32).fit(frame)
    out = pre.transform(frame)
    assert out.dtype == (np.float32 if float32 else np.float64)
    assert out.shape == (len(frame), 6)
    assert np.isfinite(out).all()


def test_chunked_transform_equals_single_pass() -> None:
    frame = _mixed_frame()
    pre = Preprocessor(_mixed_schema(), PreprocessConfig(), float32=True).fit(frame)
    # Exact: transforming is elementwise (no BLAS, no sums across rows), so chunking cannot change a value.
    assert np.array_equal(pre.transform(frame, chunk_rows=97), pre.transform(frame))


# ----------------------------------------------------------------------------------------- state
@pytest.mark.parametrize("skew", ["yeo-johnson", "log1p", "none"])
def test_state_round_trip_is_identical(skew: str) -> None:
    frame = _mixed_frame()
    frame["amount"] = np.exp(frame["amount"] / 3)
    pre = Preprocessor(_mixed_schema(), PreprocessConfig(skew=skew), float32=True).fit(frame)
    meta, arrays = pre.get_state()
    for value in arrays.values():
        assert type(value) is np.ndarray
        assert value.dtype != object
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files}
    import json

    meta = json.loads(json.dumps(meta))
    clone = Preprocessor.from_state(_mixed_schema(), meta, loaded)
    assert clone.feature_names_out_ == pre.feature_names_out_
    new = _mixed_frame(500)
    assert np.array_equal(clone.transform(frame), pre.transform(frame))
    assert np.array_equal(clone.transform(new), pre.transform(new))
