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


def test_train_ends_with_the_verdict_and_its_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import segmentation_workflows.train

    data = tmp_path / "customers.csv"
    data.write_text("customer_id,spend\n1,2.0\n")
    metrics = {
        "n_rows": 200,
        "n_clusters": 10,
        "silhouette": 0.2,
        "silhouette_sample_size": 200,
        "noise_fraction": 0.0,
        "verdict": "weak",
        "warnings": [
            {"code": "low_stability", "severity": "critical", "message": "refits agree at 0.55"},
            {"code": "k_at_boundary", "severity": "caution", "message": "k = 10 is the largest k tried"},
        ],
    }

    def fake_training(*_args: object, **_kwargs: object) -> dict:
        return {"metrics": metrics, "stages": {}, "out_dir": str(tmp_path / "run"), "paths": {}}

    monkeypatch.setattr(segmentation_workflows.train, "run_training", fake_training)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-3:]
    assert last == [
        "verdict: weak: not reliable enough to act on: the segments do not reproduce or do not separate",
        "  CRITICAL [low_stability] refits agree at 0.55",
        "  warning [k_at_boundary] k = 10 is the largest k tried",
    ]
