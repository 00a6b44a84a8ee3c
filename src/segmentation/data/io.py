"""Reading and writing customer tables, content hashing and atomic writes."""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from segmentation.contract.report import Failure, ValidationReport
from segmentation.errors import DataValidationError

SAMPLE_DATA = Path(__file__).resolve().parent / "sample" / "cc_general.csv"
"""The bundled CC GENERAL sample, shipped inside the package (source: ``sample/README.md`` beside it)."""

_READ_BLOCK = 8 * 1024 * 1024


def sample_data_path() -> Path:
    """Path of the bundled CC GENERAL sample."""
    return SAMPLE_DATA


def is_url(path: str | Path) -> bool:
    """Whether ``path`` names a remote object (``s3://bucket/key``, any fsspec protocol but ``file``)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def open_binary(path: str | Path) -> Any:
    """A binary file object for a local path or an fsspec URL (``s3://`` needs ``s3fs``)."""
    if is_url(path):
        import fsspec

        return fsspec.open(str(path), "rb").open()
    return Path(path).open("rb")


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed (the data content hash used in cache keys and manifests).

    Works for local paths and fsspec URLs alike, so an ``s3://`` table gets the same content hash as
    the same bytes on disk.
    """
    with open_binary(path) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def table_failure(path: str | Path, check: str, detail: str) -> DataValidationError:
    """A one-failure validation error about the file as a whole (column ``<table>``)."""
    report = ValidationReport(
        source=str(path),
        n_rows=0,
        n_columns=0,
        failures=[Failure(column="<table>", check=check, count=1, examples=[detail])],
    )
    return DataValidationError(report)


def table_format(path: str | Path) -> str:
    """``"parquet"`` or ``"csv"`` from the file name.

    Raises:
        DataValidationError: any other suffix.
    """
    suffix = "".join(Path(str(path).split("://", 1)[-1]).suffixes[-2:]).lower()
    if suffix.endswith((".parquet", ".pq")):
        return "parquet"
    if suffix.endswith((".csv", ".csv.gz", ".txt", ".tsv")):
        return "csv"
    raise table_failure(
        path, "known_format", f"unsupported file type {suffix or '(none)'!r}; use .csv or .parquet"
    )


def require_table_file(path: str | Path) -> Any:
    """Check that a table file (local or a URL) exists and is not empty; return what readers open.

    Returns:
        The URL as a string, or the local path as a ``Path``.

    Raises:
        FileNotFoundError: the path does not exist (an IO problem, retryable by callers).
        DataValidationError: the file is empty (check ``non_empty_file``).
    """
    if is_url(path):
        import fsspec

        filesystem, inner = fsspec.core.url_to_fs(str(path))
        if not filesystem.exists(inner):
            raise FileNotFoundError(f"data file not found: {path}")
        size = int(filesystem.size(inner))
        source: Any = str(path)
    else:
        source = Path(path)
        if not source.exists():
            raise FileNotFoundError(f"data file not found: {path}")
        size = source.stat().st_size
    if size == 0:
        raise table_failure(path, "non_empty_file", "the file is empty (0 bytes)")
    return source


def unreadable_table(path: str | Path, exc: Exception) -> DataValidationError:
    """The validation error for a file that the CSV or Parquet reader rejected (check ``readable_table``)."""
    return table_failure(path, "readable_table", f"cannot read as a table: {type(exc).__name__}: {exc}")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet customer table.

    CSV goes through the pyarrow engine (multi-threaded, typed); Parquet is read with its stored types.

    Raises:
        FileNotFoundError: the path does not exist (an IO problem, retryable by callers).
        DataValidationError: the file is empty or is not a table; the report names the problem.
    """
    source = require_table_file(path)
    try:
        frame = pd.read_parquet(source) if table_format(path) == "parquet" else _read_csv(source)
    except DataValidationError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types for garbage input
        raise unreadable_table(path, exc) from exc
    if frame.shape[1] < 2:
        raise table_failure(
            path,
            "has_columns",
            f"found {frame.shape[1]} column(s); a customer table needs an ID and features",
        )
    if len(frame) == 0:
        raise table_failure(path, "has_rows", "the table has a header but no rows")
    return frame


def sniff_delimiter(path: str | Path) -> str:
    """The delimiter of a delimited text file (comma, semicolon, tab or pipe), from its first 64 KiB."""
    with open_binary(path) as fh:
        head = fh.read(65536).decode("utf-8", errors="replace")
    try:
        return csv.Sniffer().sniff(head.split("\n", 1)[0], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _read_csv(path: str | Path) -> pd.DataFrame:
    # Semicolon-separated CSV (common where the decimal mark is a comma) and TSV are read as well.
    sep = sniff_delimiter(path)
    try:
        return pd.read_csv(path, engine="pyarrow", sep=sep)
    except UnicodeDecodeError:
        raise
    except Exception:
        return pd.read_csv(path, low_memory=False, sep=sep)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV or Parquet (by suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() in {".parquet", ".pq"}:
            # Row groups of 256k rows: chunked readers and parallel scorers split the file along them.
            frame.to_parquet(tmp, index=False, row_group_size=262_144)
        elif path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            raise ValueError(f"unsupported output type {path.suffix!r}; use .csv or .parquet")
    return path


def reserve_space(path: Path) -> None:
    """Allocate disk blocks for the whole of an existing file (a memory-mapped output) before writing it.

    Writing through a memory map to a full disk kills the process with SIGBUS, with no message; reserved
    up front, a full disk is an ``OSError`` (ENOSPC) naming the file before anything is written. Where the
    platform or file system cannot reserve space, this does nothing.

    Raises:
        OSError: not enough free space (or quota) for the file.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    size = path.stat().st_size
    with path.open("r+b") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, size)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                return  # e.g. a file system without fallocate: the writes themselves will tell
            raise OSError(exc.errno, f"cannot reserve {size:,} bytes for {path}: {exc.strerror}") from exc


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically (sorted keys, indented)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def write_text(text: str, path: str | Path) -> Path:
    """Write text atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def replace_dir(staging: Path, target: Path) -> None:
    """Move a fully written directory onto ``target``; a previous ``target`` is removed only afterwards."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    try:
        staging.replace(target)
    except BaseException:
        if old is not None:
            old.rename(target)  # put the previous version back: never leave the target missing
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(target: Path) -> Path:
    """A fresh temporary directory beside ``target`` (same filesystem, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    path.chmod(0o755)  # mkdtemp makes 0700; bundles must be readable by serving processes of other users
    return path
