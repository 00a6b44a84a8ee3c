"""Every bad-data case stops the run before training: exit code 2, the column named, a report, no bundle."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.errors import ConfigError
from segmentation_workflows.cli import TerminalFormatter, main

pytestmark = pytest.mark.usefixtures("prefect_api", "segment_home")


def _cc_variant(cc: pd.DataFrame, mutate: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    return mutate(cc.head(400).copy())


def _set(column: str, row: int, value: object) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return mutate


CASES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, str]] = {
    "missing_required_column": (lambda f: f.drop(columns=["BALANCE"]), "BALANCE", "missing_required_column"),
    "uncoercible_type": (_set("PAYMENTS", 7, "twelve hundred"), "PAYMENTS", "coerce_dtype"),
    "entirely_empty_column": (lambda f: f.assign(TENURE=np.nan), "TENURE", "not_entirely_empty"),
    "duplicate_ids": (_set("CUST_ID", 5, "C10001"), "CUST_ID", "unique"),
    "negative_balance": (_set("BALANCE", 3, -12.5), "BALANCE", "greater_than_or_equal_to"),
    "frequency_above_one": (
        _set("PURCHASES_FREQUENCY", 9, 1.7),
        "PURCHASES_FREQUENCY",
        "less_than_or_equal_to",
    ),
    "frequency_below_zero": (
        _set("PRC_FULL_PAYMENT", 2, -0.1),
        "PRC_FULL_PAYMENT",
        "greater_than_or_equal_to",
    ),
}


def _assert_rejected(out: Path, err: str, column: str, check: str) -> None:
    assert column in err
    assert check in err
    report = json.loads((out / "validation_report.json").read_text())
    assert report["ok"] is False
    assert any(f["column"] == column and check in f["check"] for f in report["failures"]), report
    assert (out / "validation_report.txt").read_text().strip()
    assert not (out / "bundle").exists()
    assert not (out / "labels.parquet").exists()
    assert not list(out.glob(".bundle*")), "no half-written bundle may be left behind"


@pytest.mark.parametrize("case", sorted(CASES))
def test_cc_general_bad_data(
    case: str, cc_general: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutate, column, check = CASES[case]
    data = tmp_path / "customers.csv"
    _cc_variant(cc_general, mutate).to_csv(data, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    _assert_rejected(out, capsys.readouterr().err, column, check)


def test_all_failures_reported_at_once(
    cc_general: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = cc_general.head(300).copy()
    frame.loc[1, "BALANCE"] = -1.0
    frame.loc[2, "BALANCE"] = -2.0
    frame.loc[4, "PURCHASES_FREQUENCY"] = 3.0
    frame = frame.drop(columns=["CASH_ADVANCE"])
    data = tmp_path / "many.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    failures = json.loads((out / "validation_report.json").read_text())["failures"]
    by_column = {f["column"]: f for f in failures}
    assert set(by_column) >= {"BALANCE", "PURCHASES_FREQUENCY", "CASH_ADVANCE"}
    assert by_column["BALANCE"]["count"] == 2
    assert sorted(by_column["BALANCE"]["examples"]) == [-2.0, -1.0]
    capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "content", "check"),
    [
        ("empty.csv", b"", "non_empty_file"),
        ("header_only.csv", b"CUST_ID,BALANCE,PURCHASES\n", "has_rows"),
        ("picture.csv", bytes(range(256)) * 64, "<table>"),
        ("broken.parquet", b"PAR1 this is not really parquet", "readable_table"),
        ("notes.txt", b"just some words\nnothing tabular here\n", "has_columns"),
    ],
)
def test_files_that_are_not_tables(
    name: str, content: bytes, check: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / name
    data.write_bytes(content)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert check in err
    assert (out / "validation_report.json").exists()
    assert not (out / "bundle").exists()


def test_inferred_schema_bad_data(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duplicate IDs fail the run; an entirely empty column of an inferred schema is ignored with a note."""
    table = pd.read_parquet(synthetic_table[0])
    table.loc[10, "customer_id"] = table.loc[11, "customer_id"]
    table["freq_00"] = np.nan
    data = tmp_path / "generic.parquet"
    table.to_parquet(data)
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "customer_id" in err
    failures = json.loads((out / "validation_report.json").read_text())["failures"]
    assert {f["column"] for f in failures} == {"customer_id"}
    assert not (out / "bundle").exists()


def test_configured_id_column_must_exist(
    synthetic_table: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_table[0]), "--out", str(out), "--id-column", "client"]) == 2
    assert "client" in capsys.readouterr().err
    assert not (out / "bundle").exists()


def test_terminal_shows_the_report_not_a_traceback(
    cc_general: pd.DataFrame, tmp_path: Path, segment_home: Path
) -> None:
    """`segment train` as a user runs it (a process, this session's Prefect API): the validation report and
    a one-line error on the terminal; Prefect's traceback of the failed flow goes to the debug log only."""
    from prefect.settings import PREFECT_API_URL

    data = tmp_path / "customers.csv"
    _cc_variant(cc_general, _set("BALANCE", 3, -12.5)).to_csv(data, index=False)
    out = tmp_path / "run"
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "SEGMENT_HOME": str(segment_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    segment = Path(sys.executable).parent / "segment"
    result = subprocess.run(
        [str(segment), "train", "--data", str(data), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    terminal = result.stdout + result.stderr
    assert result.returncode == 2, terminal[-3000:]
    _assert_rejected(out, result.stderr, "BALANCE", "greater_than_or_equal_to")
    assert "Traceback" not in terminal, terminal[-3000:]
    assert "validation failed: report written to" in result.stderr
    # The flow's failure is still logged, in one line, and the traceback it left out is in the debug log.
    assert "Encountered exception during execution: DataValidationError" in result.stderr
    logs = list((segment_home / "logs").glob("segment-*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in result.stderr
    debug = logs[0].read_text()
    assert "Traceback (most recent call last)" in debug
    assert "DataValidationError" in debug


def test_a_bug_keeps_its_traceback_on_the_terminal() -> None:
    """Only errors the CLI reports itself lose their traceback; anything else is a bug and shows it."""
    formatter = TerminalFormatter()

    def record(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception:
            return logging.LogRecord(
                "prefect.flow_runs", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
            )

    assert "Traceback" in formatter.format(record(ValueError("a bug")))
    assert formatter.held == []
    reported = record(ConfigError("cluster.k: must be positive"))
    assert "Traceback" not in formatter.format(reported)
    assert "Traceback" in formatter.held[0]
    assert reported.exc_info is not None, "the record is left as it was for other handlers"
