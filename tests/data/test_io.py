from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segmentation.data.io import file_digest, read_table, reserve_space, write_table
from segmentation.errors import DataValidationError

FRAME = pd.DataFrame({"customer_id": ["a", "b", "c"], "spend": [1.5, 2.0, 3.25], "visits": [1, 0, 4]})


@pytest.mark.parametrize(
    ("name", "sep"), [("t.csv", ","), ("t_semicolon.csv", ";"), ("t.tsv", "\t"), ("t_pipe.txt", "|")]
)
def test_delimited_text_is_read_whatever_the_delimiter(tmp_path: Path, name: str, sep: str) -> None:
    path = tmp_path / name
    FRAME.to_csv(path, sep=sep, index=False)
    # Round trips of values exact in binary and decimal (1.5, 2.0, 3.25): exact.
    pd.testing.assert_frame_equal(read_table(path), FRAME, check_dtype=False, check_exact=True)


def test_parquet_round_trip_and_digest(tmp_path: Path) -> None:
    path = write_table(FRAME, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read_table(path), FRAME, check_exact=True)
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


def test_tables_are_read_and_hashed_from_fsspec_urls(tmp_path) -> None:
    """s3:// paths go through fsspec (s3fs); the in-memory filesystem exercises the same code path here."""
    import fsspec

    from segmentation.data.io import file_digest, is_url, read_table, sample_data_path

    local = sample_data_path()
    with fsspec.open("memory://bucket/customers/cc_general.csv", "wb") as fh:
        fh.write(local.read_bytes())
    url = "memory://bucket/customers/cc_general.csv"
    assert is_url(url)
    assert not is_url(local)
    assert file_digest(url) == file_digest(local)
    assert read_table(url).equals(read_table(local))
    frame = read_table(local)
    frame.to_parquet(tmp_path / "t.parquet")
    with fsspec.open("memory://bucket/customers/t.parquet", "wb") as fh:
        fh.write((tmp_path / "t.parquet").read_bytes())
    assert read_table("memory://bucket/customers/t.parquet").shape == frame.shape
    import pytest

    with pytest.raises(FileNotFoundError):
        read_table("memory://bucket/missing.csv")


def test_reserve_space_allocates_a_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    with path.open("wb") as fh:
        fh.truncate(8 * 1024 * 1024)  # sparse: a size, no blocks (what a new memory-mapped file is)
    assert path.stat().st_blocks * 512 < 8 * 1024 * 1024
    reserve_space(path)
    assert path.stat().st_blocks * 512 >= 8 * 1024 * 1024
    assert path.stat().st_size == 8 * 1024 * 1024
