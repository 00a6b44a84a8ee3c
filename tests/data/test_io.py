from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segmentation.data.io import file_digest, read_table, write_table
from segmentation.errors import DataValidationError

FRAME = pd.DataFrame({"customer_id": ["a", "b", "c"], "spend": [1.5, 2.0, 3.25], "visits": [1, 0, 4]})


@pytest.mark.parametrize(
    ("name", "sep"), [("t.csv", ","), ("t_semicolon.csv", ";"), ("t.tsv", "\t"), ("t_pipe.txt", "|")]
)
def test_delimited_text_is_read_whatever_the_delimiter(tmp_path: Path, name: str, sep: str) -> None:
    path = tmp_path / name
    FRAME.to_csv(path, sep=sep, index=False)
    pd.testing.assert_frame_equal(read_table(path), FRAME, check_dtype=False)


def test_parquet_round_trip_and_digest(tmp_path: Path) -> None:
    path = write_table(FRAME, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(path), FRAME)
    assert file_digest(path) == file_digest(path)
    other = write_table(FRAME.assign(spend=[1.5, 2.0, 3.5]), tmp_path / "u.parquet")
    assert file_digest(other) != file_digest(path)


def test_missing_file_is_an_io_error_not_bad_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_table(tmp_path / "absent.csv")


def test_unknown_extension_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_bytes(b"not really excel")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        read_table(path)
