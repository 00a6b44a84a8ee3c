"""Batch scoring: chunked == whole-table, rejects, idempotent reruns, resume after SIGKILL, the row-level
validator against pandera, and `segment score`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numerics import CONFIDENCE_ATOL, assert_labels_equal_except_ties, assert_scores_match, assert_within

from segmentation import scoring
from segmentation.bundle import SegmentationModel, bundle_digest, load_bundle
from segmentation.config import RegistryConfig
from segmentation.contract.checks import row_failures
from segmentation.contract.frame import validate_frame
from segmentation.contract.schema import ColumnSpec, TableSchema
from segmentation.data.synthetic import make_customers
from segmentation.errors import DataValidationError
from segmentation.registry import LocalRegistry
from segmentation.scoring import plan_chunks, score_table
from segmentation_workflows.cli import main

ID = "customer_id"


@pytest.fixture(scope="module")
def bundle(scoring_bundle: Path) -> Path:
    return scoring_bundle


@pytest.fixture(scope="module")
def model(bundle: Path) -> SegmentationModel:
    return load_bundle(bundle)


@pytest.fixture(scope="module")
def customers() -> pd.DataFrame:
    """New customers (another seed than training) with their own IDs."""
    table, _ = make_customers(6000, 10, 4, seed=11)
    return table


@pytest.fixture(scope="module")
def parquet_data(customers: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The customers as Parquet with 500-row row groups (12 of them), so chunking has work to do."""
    path = tmp_path_factory.mktemp("data") / "customers.parquet"
    pq.write_table(pa.Table.from_pandas(customers, preserve_index=False), path, row_group_size=500)
    return path


def _expected(model: SegmentationModel, frame: pd.DataFrame) -> pd.DataFrame:
    """The whole-table, single-call prediction (what chunked scoring must reproduce)."""
    out = model.predict_details(frame, validate=False)
    out["segment_name"] = [model.segment_names.get(int(s), "noise") for s in out["segment"]]
    return out


# ------------------------------------------------------------------------------------------ chunking
def test_parquet_chunks_follow_row_groups(parquet_data: Path) -> None:
    n_rows, chunks = plan_chunks(parquet_data, chunk_rows=1200)
    assert n_rows == 6000
    assert [c.row_groups for c in chunks[:2]] == [(0, 1), (2, 3)]  # 2 x 500 rows fit in 1200, 3 do not
    assert [(c.start, c.stop) for c in chunks][-1] == (5000, 6000)
    assert sum(c.n_rows for c in chunks) == 6000
    # A row group larger than chunk_rows is a chunk of its own, never split.
    assert [c.n_rows for c in plan_chunks(parquet_data, chunk_rows=100)[1]] == [500] * 12


@pytest.mark.parametrize(
    ("chunk_rows", "threads", "block_rows"),
    [(500, 2, 16_384), (1200, 1, 16_384), (1_000_000, 2, 16_384), (1_000_000, 2, 700)],
)
def test_chunked_scoring_equals_whole_table_prediction(
    model: SegmentationModel,
    bundle: Path,
    customers: pd.DataFrame,
    parquet_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_rows: int,
    threads: int,
    block_rows: int,
) -> None:
    # Blocks of the model pass inside a chunk, patched in the module that reads it
    monkeypatch.setattr(scoring.assign, "MODEL_BLOCK_ROWS", block_rows)
    out = tmp_path / "scores.parquet"
    summary = score_table(model, parquet_data, out, chunk_rows=chunk_rows, threads=threads)
    assert (summary.rows, summary.scored, summary.rejected) == (6000, 6000, 0)

    scored = pd.read_parquet(out)
    assert list(scored.columns) == [ID, "segment", "segment_name", "confidence", "model_version"]
    schema = pq.read_schema(out)
    assert schema.field("segment").type == pa.int32()
    assert schema.field("confidence").type == pa.float32()
    expected = _expected(model, customers)
    assert scored[ID].tolist() == customers[ID].tolist()  # every customer once, in file order
    # Column-major blocks of a chunk against one row-major pass over the table: other BLAS calls, so
    # confidences agree to float32 rounding and segments except at ties.
    segments = scored["segment"].to_numpy()
    assert_labels_equal_except_ties(
        segments, expected["segment"].to_numpy(), expected["confidence"].to_numpy()
    )
    assert_within(scored["confidence"], expected["confidence"], CONFIDENCE_ATOL, "confidence")
    assert scored["segment_name"].tolist() == [model.segment_names.get(int(s), "noise") for s in segments]
    assert set(scored["model_version"]) == {f"bundle:{bundle_digest(model.manifest)[:12]}"}
    assert pd.read_parquet(tmp_path / "scores.rejects.parquet").empty
    written = json.loads((tmp_path / "scores.summary.json").read_text())
    assert written["scored"] == 6000
    assert written["data_hash"] == summary.data_hash
    assert not list(tmp_path.glob(".scores.parquet.parts-*")), "staging directory removed"


def test_table_without_id_column_gets_row_numbers(
    model: SegmentationModel, customers: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "no_ids.parquet"
    pq.write_table(pa.Table.from_pandas(customers.drop(columns=[ID])), data, row_group_size=1000)
    score_table(model, data, tmp_path / "out.parquet", chunk_rows=1000)
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert scored.columns[0] == "row"
    assert scored["row"].tolist() == list(range(6000))


# ------------------------------------------------------------------------------------------- rejects
def _broken_csv(customers: pd.DataFrame, path: Path) -> dict[int, set[tuple[str, str]]]:
    """The customers as CSV with known bad cells; returns row -> the (column, check) pairs expected."""
    frame = customers.astype({"amount_00": object, "flag_00": object, "last_active_00": object})
    frame["last_active_00"] = customers["last_active_00"].dt.strftime("%Y-%m-%d").astype(object)
    breaks = {
        3: ("amount_00", "abc", "coerce_dtype('float64')"),
        10: ("amount_00", -5.0, "greater_than_or_equal_to(0.0)"),
        777: ("freq_00", 1.7, "less_than_or_equal_to(1.0)"),
        1500: ("flag_00", "maybe", "boolean_values"),
        2500: ("last_active_00", "not a date", "coerce_dtype('datetime64[ns]')"),
        4000: ("amount_00", "inf", "finite"),
    }
    for row, (column, value, _) in breaks.items():
        frame.loc[row, column] = value
    frame.loc[5999, "channel_00"] = "a level never seen in training"  # unseen level: NOT a reject
    frame.to_csv(path, index=False)
    return {row: {(column, check)} for row, (column, _, check) in breaks.items()}


@pytest.mark.parametrize("block_rows", [16_384, 300])
def test_invalid_rows_go_to_rejects_with_reasons_and_valid_rows_are_scored(
    model: SegmentationModel,
    customers: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    block_rows: int,
) -> None:
    # 300: blocks with and without bad rows
    monkeypatch.setattr(scoring.assign, "MODEL_BLOCK_ROWS", block_rows)
    data = tmp_path / "broken.csv"
    expected = _broken_csv(customers, data)
    out = tmp_path / "scores.parquet"
    summary = score_table(model, data, out, rejects=tmp_path / "bad.parquet", chunk_rows=1000, threads=2)

    assert (summary.rows, summary.scored, summary.rejected) == (6000, 6000 - len(expected), len(expected))
    rejects = pd.read_parquet(tmp_path / "bad.parquet")
    assert list(rejects.columns) == ["row", "id", "column", "check", "value"]
    got: dict[int, set[tuple[str, str]]] = {}
    for line in rejects.itertuples():
        got.setdefault(int(line.row), set()).add((str(line.column), str(line.check)))
    assert got == expected
    assert rejects.set_index("row").loc[3, "value"] == "abc"
    assert rejects.set_index("row").loc[3, "id"] == customers.loc[3, ID]
    assert summary.rejects_by_check["amount_00: finite"] == 1

    scored = pd.read_parquet(out)
    valid = customers.drop(index=list(expected))
    assert scored[ID].tolist() == valid[ID].tolist()
    assert customers.loc[5999, ID] in set(scored[ID])  # the unseen category was scored
    # The valid rows score as the typed table does, to float32 rounding (other products, and CSV text
    # rounds float32 values); the last row differs from `customers` by its unseen channel: left out.
    reference = model.predict_details(valid.iloc[:-1], validate=False)
    assert_labels_equal_except_ties(
        scored["segment"].to_numpy()[:-1], reference["segment"].to_numpy(), reference["confidence"].to_numpy()
    )
    assert_within(
        scored["confidence"].to_numpy()[:-1], reference["confidence"], CONFIDENCE_ATOL, "confidence"
    )


def test_missing_column_fails_the_whole_table_naming_it(
    model: SegmentationModel, customers: pd.DataFrame, tmp_path: Path
) -> None:
    data = tmp_path / "missing.parquet"
    customers.drop(columns=["freq_01"]).to_parquet(data)
    with pytest.raises(DataValidationError) as info:
        score_table(model, data, tmp_path / "out.parquet")
    failures = [(f.column, f.check) for f in info.value.report.failures]
    assert failures == [("freq_01", "missing_required_column")]
    assert not list(tmp_path.glob("out*"))
    assert not list(tmp_path.glob(".out*"))


# ---------------------------------------------------------------------------------------- idempotence
def test_rerun_is_a_no_op_and_a_forced_rerun_rewrites_the_same_bytes(
    model: SegmentationModel, parquet_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    # The same process, chunks and BLAS threads (one per scoring thread) as the forced rerun below: the
    # same operations, so the same bytes.
    first = score_table(model, parquet_data, out, chunk_rows=1000, threads=2)
    files = [out, tmp_path / "scores.rejects.parquet"]
    content = [f.read_bytes() for f in files]
    stamps = [f.stat().st_mtime_ns for f in files]

    again = score_table(model, parquet_data, out, chunk_rows=1000)
    assert again.skipped
    assert again.scored == first.scored
    assert [f.stat().st_mtime_ns for f in files] == stamps  # untouched

    forced = score_table(model, parquet_data, out, chunk_rows=1000, force=True, threads=2)
    assert not forced.skipped
    assert [f.read_bytes() for f in files] == content
    scored = pd.read_parquet(out)
    assert len(scored) == 6000
    assert scored[ID].is_unique

    # Another chunking or model version is another key: it rescores (still the same rows).
    other = score_table(model, parquet_data, out, chunk_rows=2000)
    assert not other.skipped
    assert pd.read_parquet(out)[ID].is_unique


_KILLABLE = """
import sys, time
from segmentation.bundle import load_bundle
from segmentation.scoring import score_table
model = load_bundle(sys.argv[1])
score_table(model, sys.argv[2], sys.argv[3], chunk_rows=500, threads=1,
            on_part=lambda part: time.sleep(0.4))  # slow enough to be killed mid-run
"""


def test_sigkill_mid_run_leaves_no_output_and_the_rerun_resumes_to_the_same_result(
    bundle: Path, model: SegmentationModel, parquet_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed" / "scores.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(bundle), str(parquet_data), str(out)])
    try:
        deadline = time.monotonic() + 120
        while len(list(out.parent.glob(".scores.parquet.parts-*/part-*.json"))) < 3:
            assert proc.poll() is None, "the scorer finished or died before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    visible = sorted(p.name for p in out.parent.iterdir() if not p.name.startswith("."))
    assert visible == [], f"no output may be visible after a crash, found {visible}"

    resumed = score_table(model, parquet_data, out, chunk_rows=500, threads=2)
    assert resumed.resumed_chunks >= 3
    assert resumed.scored == 6000

    clean = tmp_path / "clean" / "scores.parquet"
    score_table(model, parquet_data, clean, chunk_rows=500)
    # Parts from the killed process (BLAS threads unlimited) and from this one (one BLAS thread per
    # scoring thread): the same rows in the same order, floats to float32 rounding.
    assert_scores_match(pd.read_parquet(out), pd.read_parquet(clean))
    assert pq.read_schema(out) == pq.read_schema(clean)
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "scores.parquet",
        "scores.rejects.parquet",
        "scores.summary.json",
    ]


# ------------------------------------------------------------------------------ row validator vs pandera
_SCHEMA = TableSchema(
    kind="inferred",
    id_column="cid",
    columns=(
        ColumnSpec(name="share", kind="numeric", min_value=0.0, max_value=1.0, nullable=False),
        ColumnSpec(name="amount", kind="numeric", min_value=0.0),
        ColumnSpec(name="free", kind="numeric"),
        ColumnSpec(name="flag", kind="boolean", nullable=False),
        ColumnSpec(name="since", kind="datetime", nullable=False),
        ColumnSpec(name="channel", kind="categorical", categories=("web", "store"), nullable=False),
        ColumnSpec(name="region", kind="categorical", categories=("n", "s")),
    ),
    reference_date="2025-01-01",
)


def _normalise(pairs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """What both validators can report.

    pandera also reports a column-level dtype failure for a bad boolean column (rows cannot carry it), and the
    project's report keeps only the coerce failure of a column with values that cannot be coerced (its other
    checks ran on uncoerced values); the row validator reports every failed check of every row.
    """
    uncoercible = {column for column, check in pairs if check.startswith("coerce_dtype")}
    return {
        (column, check)
        for column, check in pairs
        if not check.startswith("dtype(") and (column not in uncoercible or check.startswith("coerce_dtype"))
    }


def _frames() -> list[pd.DataFrame]:
    good = {
        "cid": ["a", "b", "c", "d", "e"],
        "share": [0.1, 0.5, 0.9, 0.0, 1.0],
        "amount": [1.0, 2.0, np.nan, 0.0, 5.0],
        "free": [-1.0, 2.0, 3.0, np.nan, 1e9],
        "flag": [True, False, True, True, False],
        "since": ["2024-01-01", "2023-05-06", "2024-12-31", "2020-01-01", "2022-02-02"],
        "channel": ["web", "store", "web", "mobile", "web"],  # "mobile": unseen, not an error
        "region": ["n", None, "s", "s", "n"],
    }
    return [
        pd.DataFrame(good),  # valid
        pd.DataFrame(good | {"share": [0.1, -0.5, 1.5, np.nan, 1.0], "amount": [-1.0, 2, 3, 4, -2]}),
        pd.DataFrame(good | {"share": ["0.1", "x", "0.3", "0.4", "y"]}),  # not numbers
        pd.DataFrame(good | {"flag": [True, "yes", False, None, 1]}),
        pd.DataFrame(good | {"since": ["2024-01-01", "bad", None, "2020-01-01", "2022-13-45"]}),
        pd.DataFrame(good | {"channel": ["web", None, "store", None, "x"]}),
    ]


@pytest.mark.parametrize("frame", _frames(), ids=["valid", "ranges", "coerce", "boolean", "dates", "nulls"])
def test_row_validator_flags_what_pandera_flags(frame: pd.DataFrame) -> None:
    _, report = validate_frame(frame, _SCHEMA, require_id=False)
    pandera = {(f.column, f.check): f.count for f in report.failures}
    valid, rejects = row_failures(frame, _SCHEMA)
    mine = rejects.groupby(["column", "check"]).size().to_dict() if len(rejects) else {}
    assert _normalise(set(mine)) == _normalise(set(pandera))
    for key, count in pandera.items():
        if key in mine:
            assert mine[key] == count, key
    assert valid.tolist() == [row not in set(rejects["row"]) for row in range(len(frame))]


def test_row_validator_rejects_infinities_and_names_rows_by_index() -> None:
    frame = _frames()[0].assign(free=[1.0, np.inf, 2.0, -np.inf, 3.0])
    frame.index = pd.RangeIndex(1000, 1005)
    valid, rejects = row_failures(frame, _SCHEMA)
    assert valid.tolist() == [True, False, True, False, True]
    assert rejects[["row", "column", "check"]].values.tolist() == [
        [1001, "free", "finite"],
        [1003, "free", "finite"],
    ]
    with pytest.raises(DataValidationError, match="since: missing_required_column"):
        row_failures(frame.drop(columns=["since"]), _SCHEMA)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_scores_a_registered_model_and_reports_counts(
    bundle: Path,
    customers: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("SEGMENT_HOME", str(home))
    registry = LocalRegistry(home / "registry", "test-model")
    entry = registry.register(bundle)
    registry.promote(entry.version, RegistryConfig(), force=True)
    data = tmp_path / "broken.csv"
    expected = _broken_csv(customers, data)
    common = ["-S", "model_name=test-model", "--data", str(data), "--chunk-rows", "2000"]

    assert main(["score", "--model", "production", *common, "--out", str(tmp_path / "s.parquet")]) == 0
    printed = capsys.readouterr().out
    assert f"scored {6000 - len(expected)} of 6000 rows with test-model:v1" in printed
    assert f"rejected {len(expected)}" in printed
    assert set(pd.read_parquet(tmp_path / "s.parquet")["model_version"]) == {"test-model:v1"}
    assert main(["score", "--model", "production", *common, "--out", str(tmp_path / "s.parquet")]) == 0
    assert "up to date" in capsys.readouterr().out

    # Bad model: unknown alias (registry error, 3), a directory that is no bundle (3); bad data (2).
    assert main(["score", "--model", "staging", *common, "--out", str(tmp_path / "x.parquet")]) == 3
    assert main(["score", "--bundle", str(tmp_path), *common, "--out", str(tmp_path / "x.parquet")]) == 3
    missing = tmp_path / "missing.parquet"
    customers.drop(columns=["amount_00"]).to_parquet(missing)
    args = ["score", "--bundle", str(bundle), "--data", str(missing), "--out", str(tmp_path / "x.parquet")]
    assert main(args) == 2
    assert "amount_00" in capsys.readouterr().err
    assert main(["score", "--bundle", str(bundle), "--data", str(tmp_path / "nope.csv"), "--out", "x"]) == 2
    assert main(["score", "--bundle", str(bundle), *common, "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.parquet").exists()
    assert not (tmp_path / "x.csv").exists()
