"""The one streamed validator against pandera: the same broken tables, the same failures.

Training validates a file chunk by chunk (:func:`validate_source`, :class:`ChunkValidator`) and a table in
memory with pandera (:func:`validate_table`). Both are one contract: every broken table below must get the
same (column, check, count) failures from both, whatever the chunk size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.config import ColumnOverride, DataConfig
from segmentation.contract.report import Failure
from segmentation.contract.validator import ChunkValidator
from segmentation.data.synthetic import make_customers
from segmentation.errors import DataValidationError
from segmentation.stages.load import validate_source, validate_table

Breaker = Callable[[pd.DataFrame], pd.DataFrame]


def _put(column: str, rows: list[int], value: object) -> Breaker:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[rows, column] = value
        return frame

    return mutate


# CC GENERAL (its hand-written pandera model) broken in the ways real exports break, rows spread over chunks.
CC_CASES: dict[str, Breaker] = {
    "negative_amounts": _put("BALANCE", [3, 450, 1999], -12.5),
    "zero_credit_limit": _put("CREDIT_LIMIT", [8, 1300], 0.0),  # declared > 0, not >= 0
    "frequency_above_one": _put("PURCHASES_FREQUENCY", [9, 1200], 1.7),
    "text_in_a_number": _put("PAYMENTS", [7, 801], "twelve hundred"),
    "missing_in_a_required_column": _put("TENURE", [5, 1500], np.nan),
    "duplicate_ids": _put("CUST_ID", [5, 1700], "C10001"),
    "missing_id": _put("CUST_ID", [11], None),
    "missing_column": lambda f: f.drop(columns=["CASH_ADVANCE"]),
    "entirely_empty_column": lambda f: f.assign(MINIMUM_PAYMENTS=np.nan),
    "several_at_once": lambda f: _put("BALANCE", [1, 2], -1.0)(
        _put("TENURE", [1000], 13.0)(f.drop(columns=["PURCHASES"]))
    ),
}


def _failures(report_failures: list[Failure]) -> dict[tuple[str, str], int]:
    return {(f.column, f.check): f.count for f in report_failures}


def _both(frame: pd.DataFrame, config: DataConfig, tmp_path: Path, chunk_rows: int) -> tuple[dict, dict]:
    """The table as a CSV export: read whole into pandas and validated by pandera, or streamed (staged
    as Parquet and validated chunk by chunk, as the training flow does)."""
    csv = tmp_path / "table.csv"
    frame.to_csv(csv, index=False)
    with pytest.raises(DataValidationError) as in_memory:
        validate_table(pd.read_csv(csv), config, source="t")
    with pytest.raises(DataValidationError) as streamed:
        validate_source(
            str(csv), config, source="t", chunk_rows=chunk_rows, staged=tmp_path / "staged.parquet"
        )
    return _failures(in_memory.value.report.failures), _failures(streamed.value.report.failures)


@pytest.mark.parametrize("case", sorted(CC_CASES))
@pytest.mark.parametrize("chunk_rows", [333, 100_000])
def test_cc_general_broken_tables_fail_alike_in_memory_and_streamed(
    case: str, chunk_rows: int, cc_general: pd.DataFrame, tmp_path: Path
) -> None:
    frame = CC_CASES[case](cc_general.head(2000).copy())
    in_memory, streamed = _both(frame, DataConfig(), tmp_path, chunk_rows)
    assert in_memory == streamed


def test_an_inferred_contract_fails_alike_in_memory_and_streamed(tmp_path: Path) -> None:
    """A schema inferred from a clean table; a later table breaks it (bounds, types, IDs, empties)."""
    clean, _ = make_customers(3000, 12, 4, seed=3)
    schema = validate_table(clean, DataConfig(), source="clean").schema
    broken = clean.copy()
    amount = next(c.name for c in schema.columns if c.name.startswith("amount") and c.min_value == 0.0)
    freq = next(c.name for c in schema.columns if c.name.startswith("freq") and c.max_value == 1.0)
    broken[amount] = broken[amount].astype(object)
    broken.loc[[4, 2100], amount] = -3.0
    broken.loc[[900], amount] = "unknown"
    broken.loc[[17, 2999], freq] = 1.25
    broken.loc[[6, 2500], "customer_id"] = broken.loc[[7, 8], "customer_id"].to_numpy()
    from segmentation.contract.frame import validate_frame

    csv = tmp_path / "broken.csv"
    broken.to_csv(csv, index=False)
    _, in_memory = validate_frame(pd.read_csv(csv), schema, source="t")
    staged = tmp_path / "staged.parquet"
    with pytest.raises(DataValidationError) as streamed:
        validate_source(str(csv), DataConfig(), source="t", chunk_rows=700, schema=schema, staged=staged)
    assert _failures(in_memory.failures) == _failures(streamed.value.report.failures)
    assert (amount, "greater_than_or_equal_to(0.0)") in _failures(in_memory.failures)


def test_an_ordinal_contract_fails_alike_in_memory_and_streamed(tmp_path: Path) -> None:
    """Ordered levels (``data.columns.band.order``): a level outside the order breaks the contract."""
    clean, _ = make_customers(3000, 8, 3, seed=4)
    rng = np.random.default_rng(4)
    clean["band"] = rng.choice(["0-20k", "20-50k", "50k+"], len(clean))
    clean.loc[rng.random(len(clean)) < 0.05, "band"] = None
    order = ColumnOverride(kind="ordinal", order=("0-20k", "20-50k", "50k+"))
    config = DataConfig(columns={"band": order})
    schema = validate_table(clean, config, source="clean").schema
    assert schema.column("band").kind == "ordinal"
    broken = clean.copy()
    broken.loc[[3, 1500, 2999], "band"] = "100k+"
    broken.loc[[7], "band"] = "20-50K"
    in_memory, streamed = _both(broken, config, tmp_path, chunk_rows=700)
    assert in_memory == streamed == {("band", "ordinal_level"): 4}
    csv = tmp_path / "broken.csv"
    broken.to_csv(csv, index=False)
    from segmentation.contract.frame import validate_frame

    _, scored = validate_frame(pd.read_csv(csv), schema, source="t", require_id=False)
    with pytest.raises(DataValidationError) as against_model:
        validate_source(
            str(csv), config, source="t", chunk_rows=700, schema=schema, staged=tmp_path / "s.parquet"
        )
    assert _failures(scored.failures) == _failures(against_model.value.report.failures)
    assert _failures(scored.failures) == {("band", "ordinal_level"): 4}


def test_the_validator_reports_one_failure_per_column_and_check_over_chunks() -> None:
    frame, _ = make_customers(1000, 8, 3, seed=1)
    schema = validate_table(frame, DataConfig(), source="t").schema
    column = schema.columns[0].name
    validator = ChunkValidator(schema, source="t", columns=list(frame.columns))
    broken = frame.copy()
    broken[column] = broken[column].astype(object)
    broken.loc[[1, 600, 999], column] = "x"
    valid = np.concatenate([validator.check(part) for part in (broken.iloc[:500], broken.iloc[500:])])
    assert np.flatnonzero(~valid).tolist() == [1, 600, 999]
    report = validator.report()
    assert [(f.column, f.check, f.count, f.examples) for f in report.failures] == [
        (column, "coerce_dtype('float64')", 3, ["x"])
    ]
    assert report.n_rows == 1000


def test_a_missing_column_fails_at_once_where_no_row_could_be_used() -> None:
    frame, _ = make_customers(200, 8, 2, seed=1)
    schema = validate_table(frame, DataConfig(), source="t").schema
    gone = schema.columns[1].name
    with pytest.raises(DataValidationError) as info:
        ChunkValidator(schema, source="snapshot", columns=[c for c in frame.columns if c != gone])
    assert _failures(info.value.report.failures) == {(gone, "missing_required_column"): 1}
