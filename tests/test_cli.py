from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segmentation_workflows.cli import main


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_make_data_writes_table_and_truth(
    tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"synth{suffix}"
    assert main(["make-data", "--rows", "500", "--features", "12", "--segments", "3", "--out", str(out)]) == 0
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    table = read(out)
    truth = read(tmp_path / f"synth.truth{suffix}")
    assert table.shape == (500, 13)
    assert list(truth.columns) == ["customer_id", "segment"]
    assert truth["segment"].nunique() == 3
    assert table["customer_id"].tolist() == truth["customer_id"].tolist()
    assert "wrote 500 rows" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*tmp*")), "atomic write leaves no temp file"


def test_make_data_rejects_unknown_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-data", "--rows", "10", "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "--out must end in .csv or .parquet" in capsys.readouterr().err


def test_missing_data_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "run")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_command_and_help() -> None:
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
