"""The score-customers flow on a real temporary Prefect API: threads, and a local Dask cluster (2 workers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numerics import assert_scores_match

from segmentation.bundle import load_bundle
from segmentation.data.synthetic import make_customers
from segmentation.registry import ModelSource
from segmentation.scoring import score_table
from segmentation_workflows.score import run_scoring

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def bundle(scoring_bundle: Path) -> Path:
    return scoring_bundle


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 customers in 2,000-row row groups (10 chunks), three of them invalid."""
    table, _ = make_customers(20_000, 10, 4, seed=21)
    table.loc[[5, 12_345], "amount_00"] = -1.0
    table.loc[19_999, "freq_00"] = 3.0
    path = tmp_path_factory.mktemp("data") / "customers.parquet"
    pq.write_table(pa.Table.from_pandas(table, preserve_index=False), path, row_group_size=2000)
    return path


@pytest.fixture(scope="module")
def single_process(bundle: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the library scoring the table in one process, one thread."""
    out = tmp_path_factory.mktemp("reference") / "scores.parquet"
    score_table(load_bundle(bundle), data, out, chunk_rows=2000, threads=1)
    return out


def _same_output(out: Path, reference: Path) -> None:
    """The same rows, segments and rejects as the reference; confidences to float32 rounding.

    Not the same bytes: the reference runs BLAS on every core, the flow one BLAS thread per chunk (Dask
    workers in other processes), and a kernel may sum a product in another order with other threads.
    """
    assert pq.read_schema(out) == pq.read_schema(reference)
    assert_scores_match(pd.read_parquet(out), pd.read_parquet(reference))
    rejects, expected = (p.with_name(f"{p.stem}.rejects.parquet") for p in (out, reference))
    # No floats in the rejects (row numbers, IDs, column and check names, values as text): exact.
    pd.testing.assert_frame_equal(pd.read_parquet(rejects), pd.read_parquet(expected), check_exact=True)


def test_flow_on_threads_equals_single_process(
    bundle: Path, data: Path, single_process: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    summary = run_scoring(ModelSource(bundle=str(bundle)), data, out, chunk_rows=2000)
    assert (summary.rows, summary.scored, summary.rejected, summary.chunks) == (20_000, 19_997, 3, 10)
    _same_output(out, single_process)
    again = run_scoring(ModelSource(bundle=str(bundle)), data, out, chunk_rows=2000)
    assert again.skipped


def test_flow_on_a_local_dask_cluster_with_two_workers_equals_single_process(
    bundle: Path, data: Path, single_process: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    summary = run_scoring(ModelSource(bundle=str(bundle)), data, out, chunk_rows=2000, dask_workers=2)
    assert (summary.rows, summary.scored, summary.rejected) == (20_000, 19_997, 3)
    _same_output(out, single_process)
    assert sorted(pd.read_parquet(out.with_name("scores.rejects.parquet"))["row"]) == [5, 12_345, 19_999]
