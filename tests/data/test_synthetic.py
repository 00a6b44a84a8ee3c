"""Tests for the synthetic customer generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from segmentation.data.synthetic import CHANNEL_LEVELS, REFERENCE_DATE, SEGMENT_COLUMN, make_customers

ROWS, FEATURES, SEGMENTS = 3000, 40, 6


@pytest.fixture(scope="module")
def generated() -> tuple[pd.DataFrame, pd.DataFrame]:
    return make_customers(ROWS, FEATURES, SEGMENTS, seed=0)


def _columns(table: pd.DataFrame, prefix: str) -> list[str]:
    return [c for c in table.columns if c.startswith(prefix)]


def test_shapes_and_column_order(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, truth = generated
    assert table.shape == (ROWS, FEATURES + 1)
    assert list(truth.columns) == ["customer_id", SEGMENT_COLUMN]
    assert len(truth) == ROWS
    assert table.columns[0] == "customer_id"
    pd.testing.assert_series_equal(table["customer_id"], truth["customer_id"])
    assert pd.api.types.is_integer_dtype(truth[SEGMENT_COLUMN])


def test_column_kinds_and_proportions(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, _ = generated
    amounts, freqs = _columns(table, "amount_"), _columns(table, "freq_")
    counts, noise = _columns(table, "count_"), _columns(table, "noise_")
    assert [c for c in table.columns if c.startswith(("flag_", "channel_", "last_active_"))] == [
        "flag_00",
        "channel_00",
        "last_active_00",
    ]
    assert len(amounts) + len(freqs) + len(counts) + len(noise) + 3 == FEATURES
    assert 0.45 * FEATURES <= len(amounts) <= 0.6 * FEATURES
    assert len(freqs) == round(0.2 * FEATURES)
    assert len(counts) == len(noise) == round(0.1 * FEATURES)
    assert all(table[c].dtype == np.float32 for c in amounts + freqs + noise)
    assert all(pd.api.types.is_integer_dtype(table[c]) for c in counts)
    assert table["flag_00"].dtype == bool
    assert pd.api.types.is_string_dtype(table["channel_00"])
    assert pd.api.types.is_datetime64_dtype(table["last_active_00"])
    assert pd.api.types.is_string_dtype(table["customer_id"])


def test_ids_unique_and_zero_padded(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, _ = generated
    ids = table["customer_id"]
    assert ids.is_unique
    assert ids.notna().all()
    assert ids.iloc[0] == "C0001"
    assert ids.iloc[-1] == "C3000"
    assert ids.str.fullmatch(r"C\d{4}").all()


def test_value_ranges(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, _ = generated
    freqs = table[_columns(table, "freq_")].to_numpy()
    assert ((freqs >= 0) & (freqs <= 1)).all()
    amounts = table[_columns(table, "amount_")].to_numpy(dtype=np.float64)
    assert np.nanmin(amounts) >= 0
    # Right-skewed: mean above median in every amount column; cents only.
    amount_frame = table[_columns(table, "amount_")]
    assert (amount_frame.mean() > amount_frame.median()).all()
    finite = amounts[np.isfinite(amounts)]
    np.testing.assert_allclose(finite, np.round(finite, 2), atol=1e-3)
    assert (table[_columns(table, "count_")] >= 0).all().all()
    assert set(table["channel_00"].unique()) <= set(CHANNEL_LEVELS)
    assert 4 <= table["channel_00"].nunique() <= 6
    assert 0 < table["flag_00"].mean() < 1
    reference = pd.Timestamp(REFERENCE_DATE)
    assert (table["last_active_00"] < reference).all()
    assert (table["last_active_00"] >= reference - pd.Timedelta(days=3650)).all()


def test_missing_only_in_amounts_at_requested_rate(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, truth = generated
    amounts = _columns(table, "amount_")
    missing = table.isna()
    assert not missing.drop(columns=amounts).any().any()
    assert not truth.isna().any().any()
    rate = missing[amounts].to_numpy().mean()
    assert rate == pytest.approx(0.01, abs=0.003)
    assert missing[amounts].any().sum() > 0
    assert not missing[amounts].all().any()


def test_missing_rate_parameter() -> None:
    table, _ = make_customers(2000, 20, 3, seed=2, missing_rate=0.2)
    amounts = table[_columns(table, "amount_")]
    assert amounts.isna().to_numpy().mean() == pytest.approx(0.2, abs=0.02)
    none, _ = make_customers(500, 20, 3, seed=2, missing_rate=0.0)
    assert not none.isna().any().any()


def test_never_a_fully_empty_column() -> None:
    table, _ = make_customers(3, 10, 1, seed=0, missing_rate=0.99)
    assert not table.isna().all().any()


def test_every_segment_present_with_reasonable_share(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, truth = generated
    shares = truth[SEGMENT_COLUMN].value_counts(normalize=True)
    assert sorted(shares.index) == list(range(SEGMENTS))
    assert shares.min() >= 0.04
    assert shares.max() - shares.min() > 0.01  # unequal sizes


def test_deterministic_for_a_seed(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, truth = make_customers(ROWS, FEATURES, SEGMENTS, seed=0)
    # Exact: the same seeded calls in one process (the same BLAS kernel and threads for its products).
    pd.testing.assert_frame_equal(table, generated[0], check_exact=True)
    pd.testing.assert_frame_equal(truth, generated[1], check_exact=True)


def test_different_seeds_differ(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, truth = make_customers(ROWS, FEATURES, SEGMENTS, seed=1)
    assert not table.equals(generated[0])
    assert not truth[SEGMENT_COLUMN].equals(generated[1][SEGMENT_COLUMN])
    assert not np.allclose(table["freq_00"], generated[0]["freq_00"])


def _kmeans_ari(table: pd.DataFrame, truth: pd.DataFrame, segments: int) -> float:
    numeric = table.select_dtypes(include=["number", "bool"]).astype(np.float64)
    amounts = _columns(numeric, "amount_")
    numeric[amounts] = np.log1p(numeric[amounts])
    numeric = numeric.fillna(numeric.median())
    x = ((numeric - numeric.mean()) / numeric.std(ddof=0)).to_numpy()
    labels = KMeans(n_clusters=segments, n_init=4, random_state=0).fit_predict(x)
    return adjusted_rand_score(truth[SEGMENT_COLUMN], labels)


def test_planted_segments_recoverable_by_kmeans(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    assert _kmeans_ari(*generated, SEGMENTS) >= 0.95


def test_low_separation_is_harder() -> None:
    table, truth = make_customers(ROWS, FEATURES, SEGMENTS, seed=0, separation=0.3)
    assert _kmeans_ari(table, truth, SEGMENTS) < 0.5


def test_noise_columns_carry_no_segment_signal(generated: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table, truth = generated
    for column in _columns(table, "noise_"):
        values = table[column].astype(np.float64)
        segment_means = values.groupby(truth[SEGMENT_COLUMN]).mean()
        # Segment means stay within a few standard errors of each other.
        assert segment_means.std() < 0.25 * values.std()


@pytest.mark.parametrize("features", [1, 5, 7])
def test_small_feature_counts_use_numeric_kinds(features: int) -> None:
    table, truth = make_customers(400, features, 3, seed=3)
    assert table.shape == (400, features + 1)
    assert len(truth) == 400
    kinds = {c.split("_")[0] for c in table.columns[1:]}
    assert kinds <= {"amount", "freq", "count"}
    assert "amount" in kinds
    assert all(pd.api.types.is_numeric_dtype(table[c]) for c in table.columns[1:])
    assert truth[SEGMENT_COLUMN].nunique() == 3


def test_eight_features_have_every_kind() -> None:
    table, _ = make_customers(200, 8, 2, seed=0)
    kinds = {c.rsplit("_", 1)[0] for c in table.columns[1:]}
    assert kinds == {"amount", "freq", "count", "flag", "channel", "last_active", "noise"}


def test_custom_id_column() -> None:
    table, truth = make_customers(50, 10, 2, id_column="cid")
    assert table.columns[0] == "cid"
    assert list(truth.columns) == ["cid", SEGMENT_COLUMN]


def test_id_width_follows_rows() -> None:
    table, _ = make_customers(10, 3, 2)
    assert table["customer_id"].tolist()[:2] == ["C01", "C02"]
    assert table["customer_id"].iloc[-1] == "C10"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rows": 2, "segments": 3}, "rows"),
        ({"features": 0}, "features"),
        ({"segments": 0}, "segments"),
        ({"missing_rate": 1.0}, "missing_rate"),
        ({"missing_rate": -0.1}, "missing_rate"),
        ({"separation": -1.0}, "separation"),
        ({"id_column": "amount_00"}, "clashes"),
        ({"id_column": SEGMENT_COLUMN}, "clashes"),
        ({"id_column": ""}, "id_column"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"rows": 100, "features": 10, "segments": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_customers(**args)  # type: ignore[arg-type]
