"""check_columns on Arrow data: the same verdicts as on pandas, and the same preprocessed numbers.

Batch scoring checks Parquet chunks as Arrow columns (whole-column reductions; row masks only for a column
that fails) and hands them to the preprocessor without a pandas copy. These tests pin that fast route to
the pandas one (:func:`row_failures`, :meth:`Preprocessor.transform`) row for row and bit for bit, including
what Arrow allows and pandas hides: NaN stored as a value next to nulls, and undefined values in null slots.
Bit for bit holds on any machine: preprocessing is elementwise NumPy work on each value (no BLAS, no sums
across rows), so both routes apply the same operations to the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from segmentation.config import PreprocessConfig
from segmentation.contract.checks import CheckedNumbers, check_columns, column_rows, row_failures
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.preprocess import Preprocessor

N = 3000

SCHEMA = TableSchema(
    kind="inferred",
    id_column=None,
    columns=(
        ColumnSpec(name="share", kind="numeric", min_value=0.0, max_value=1.0, nullable=False),
        ColumnSpec(name="amount", kind="numeric", min_value=0.0, weight=2.0),
        ColumnSpec(name="count", kind="numeric", min_value=0.0, integer=True),
        ColumnSpec(name="free", kind="numeric"),
        ColumnSpec(name="flag", kind="boolean"),
        ColumnSpec(name="since", kind="datetime"),
        ColumnSpec(name="channel", kind="categorical", categories=("web", "store", "app"), weight=0.5),
        ColumnSpec(name="tier", kind="ordinal", categories=("bronze", "silver", "gold")),
        ColumnSpec(name="store", kind="categorical", categories=("3", "1", "2")),  # integer codes
        ColumnSpec(name="pair", kind="categorical", categories=("yes", "no")),  # one column
    ),
    reference_date="2025-01-01",
)


def _mask(rng: np.random.Generator, share: float = 0.03) -> np.ndarray:
    return rng.random(N) < share


def _numbers(values: np.ndarray, nulls: np.ndarray, kind: pa.DataType, slot: float | None = None) -> pa.Array:
    """An Arrow number array with nulls; ``slot`` is written into the (undefined) values of null slots."""
    if slot is None:
        return pa.array(values, type=kind, mask=nulls)
    data = np.asarray(values, dtype=kind.to_pandas_dtype()).copy()
    data[nulls] = slot if data.dtype.kind == "f" else -7  # integers: out of bounds instead
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little").tobytes())
    return pa.Array.from_buffers(
        kind, N, [validity, pa.py_buffer(data.tobytes())], null_count=int(nulls.sum())
    )


def _table(slot: float | None = None, **changes: pa.Array) -> pa.Table:
    rng = np.random.default_rng(3)
    amount = rng.lognormal(3, 1.5, N)
    days = rng.integers(0, 2000, N)
    columns = {
        "share": pa.array(rng.random(N).astype(np.float32)),
        "amount": _numbers(amount, _mask(rng), pa.float64(), slot),
        "count": _numbers(rng.poisson(4, N).astype(np.int32), _mask(rng), pa.int32(), slot),
        "free": pa.array(rng.normal(0, 5, N)),
        "flag": pa.array(rng.random(N) < 0.3, mask=_mask(rng)),
        "since": pa.array(np.datetime64("2024-12-31", "ns") - days.astype("timedelta64[D]"), mask=_mask(rng)),
        "channel": pa.array(rng.choice(["web", "store", "app", "kiosk"], N), mask=_mask(rng)),
        "tier": pa.array(rng.choice(["bronze", "silver", "gold"], N), mask=_mask(rng)),
        "store": pa.array(rng.integers(1, 5, N), mask=_mask(rng)),  # 4: a store unseen in training
        "pair": pa.array(rng.choice(["yes", "no", "maybe"], N), mask=_mask(rng)),
    }
    return pa.table(columns | changes)


def _replace(table: pa.Table, name: str, values: np.ndarray, rows: list[int]) -> pa.Array:
    column = table.column(name).to_numpy(zero_copy_only=False).copy()
    column[rows] = values
    mask = table.column(name).is_null().to_numpy(zero_copy_only=False)
    mask[rows] = False
    return pa.array(column, type=table.schema.field(name).type, mask=mask)


def _cases() -> dict[str, pa.Table]:
    base = _table()
    return {
        "valid": base,
        "bounds": _table(
            share=_replace(base, "share", np.array([1.5, -0.1], dtype=np.float32), [5, 7]),
            amount=_replace(base, "amount", np.array([-3.0]), [7]),
            count=_replace(base, "count", np.array([-2], dtype=np.int32), [11]),
        ),
        "nan-values": _table(
            amount=_replace(base, "amount", np.array([np.nan, np.nan]), [1, 2]),
            free=_replace(base, "free", np.array([np.nan]), [3]),
        ),
        "infinities": _table(free=_replace(base, "free", np.array([np.inf, -np.inf]), [4, 9])),
        "null-in-required": _table(share=pa.array(base.column("share").to_numpy(), mask=np.arange(N) == 6)),
        "garbage-in-null-slots": _table(slot=-1e30),
        "nan-in-null-slots": _table(slot=np.nan),
        "text-in-numbers": _table(free=pa.array(np.where(np.arange(N) == 8, "x", "1.5"))),
        "unseen-ordinal-level": _table(tier=_replace(base, "tier", np.array(["platinum", "Gold"]), [12, 40])),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_arrow_columns_get_the_verdicts_pandas_columns_get(case: str) -> None:
    table = _cases()[case]
    rows = np.arange(N) + 10_000  # chunk rows carry global numbers
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, rows)

    frame = table.to_pandas()
    frame.index = rows
    valid, rejects = row_failures(frame, SCHEMA)

    assert checked.valid.tolist() == valid.tolist()
    pd.testing.assert_frame_equal(checked.rejects, rejects, check_exact=True)
    if case in {"valid", "garbage-in-null-slots", "nan-in-null-slots", "nan-values"}:
        assert checked.valid.all()
    else:
        assert not checked.valid.all()


def test_an_unseen_ordinal_level_rejects_its_row_by_name() -> None:
    table = _cases()["unseen-ordinal-level"]
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, np.arange(N))
    lines = checked.rejects[checked.rejects["column"] == "tier"]
    assert lines[["row", "check", "value"]].values.tolist() == [
        [12, "ordinal_level", "platinum"],
        [40, "ordinal_level", "Gold"],
    ]
    valid = _cases()["valid"]
    passing = check_columns({name: valid.column(name) for name in valid.column_names}, SCHEMA, np.arange(N))
    ranks = passing.columns["tier"]
    assert isinstance(ranks, CheckedNumbers)  # Arrow text read as ranks, without pandas
    tiers = valid.column("tier").to_pandas()
    present = tiers.notna().to_numpy()
    expected = tiers[present].map({"bronze": 0.0, "silver": 1.0, "gold": 2.0}).to_numpy()
    np.testing.assert_array_equal(ranks.values[present], expected)


def test_numbers_that_pass_as_a_whole_are_read_without_a_copy() -> None:
    table = _cases()["valid"]
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, np.arange(N))
    amount = checked.columns["amount"]
    assert isinstance(amount, CheckedNumbers)
    assert np.shares_memory(
        amount.values, np.frombuffer(table.column("amount").chunk(0).buffers()[1], np.float64)
    )
    assert amount.missing is not None
    assert (
        amount.missing.tolist() == np.flatnonzero(table.column("amount").is_null().to_numpy(False)).tolist()
    )
    block = column_rows(amount, 100, 200)
    assert isinstance(block, CheckedNumbers)
    assert block.missing is not None
    assert block.missing.tolist() == [p - 100 for p in amount.missing.tolist() if 100 <= p < 200]


@pytest.mark.parametrize(
    "case",
    ["valid", "nan-values", "garbage-in-null-slots", "nan-in-null-slots", "bounds", "unseen-ordinal-level"],
)
@pytest.mark.parametrize("skew", ["yeo-johnson", "log1p"])
def test_arrow_route_preprocesses_valid_rows_bit_for_bit_like_pandas(case: str, skew: str) -> None:
    train = _cases()["valid"].to_pandas()
    pre = Preprocessor(SCHEMA, PreprocessConfig(skew=skew, fit_sample=N)).fit(train)
    table = _cases()[case]
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, np.arange(N))
    fast = pre.transform_columns(checked.columns, N).T
    frame = table.to_pandas()
    slow = pre.transform(frame[checked.valid])
    assert np.array_equal(fast[checked.valid], slow)
    assert fast.dtype == slow.dtype == np.float32


@pytest.mark.parametrize(
    "kind", [pa.timestamp("s"), pa.timestamp("us"), pa.timestamp("ms", tz="Europe/Paris")]
)
def test_dates_in_any_arrow_unit_become_the_days_pandas_computes(kind: pa.DataType) -> None:
    base = _cases()["valid"]
    since = base.column("since").cast(kind)
    table = base.set_column(base.column_names.index("since"), "since", since)
    pre = Preprocessor(SCHEMA, PreprocessConfig(fit_sample=N)).fit(base.to_pandas())
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, np.arange(N))
    assert type(checked.columns["since"]).__name__ == "CheckedTimestamps"
    fast = pre.transform_columns(checked.columns, N).T
    assert np.array_equal(fast, pre.transform(table.to_pandas()))


@pytest.mark.parametrize("case", ["valid", "bounds", "garbage-in-null-slots"])
def test_sliced_arrow_columns_are_read_from_their_offset(case: str) -> None:
    """Arrow arrays that start inside their buffers (a slice: values and validity bits at an offset)."""
    table = _cases()[case].slice(3, 2000)
    assert table.column("amount").chunk(0).offset == 3
    rows = np.arange(2000)
    checked = check_columns({name: table.column(name) for name in table.column_names}, SCHEMA, rows)
    frame = table.to_pandas()
    valid, rejects = row_failures(frame, SCHEMA)
    assert checked.valid.tolist() == valid.tolist()
    pd.testing.assert_frame_equal(checked.rejects, rejects, check_exact=True)
    pre = Preprocessor(SCHEMA, PreprocessConfig(fit_sample=N)).fit(_cases()["valid"].to_pandas())
    fast = pre.transform_columns(checked.columns, 2000).T
    assert np.array_equal(fast[valid], pre.transform(frame[valid]))
