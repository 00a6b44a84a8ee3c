"""Out-of-core training: a table read in chunks gives what the same table in memory gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerics import TIE_MARGIN, assert_labels_equal_except_ties, distance_margins

from segmentation.clustering import fit_clusterer
from segmentation.config import load_config
from segmentation.contract.inference import infer_schema
from segmentation.data.chunks import iter_chunks, take_rows
from segmentation.data.io import write_table
from segmentation.data.synthetic import make_customers
from segmentation.errors import DataValidationError
from segmentation.stages.assemble import assemble_model, fit_model
from segmentation.stages.evaluate import evaluate
from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import customer_ids, validate_source, validate_table
from segmentation.stages.outputs import write_insights, write_run_outputs
from segmentation.stages.rebuild import rebuild_insights


@pytest.fixture(scope="module")
def customers(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    table, _ = make_customers(6000, 14, 4, seed=3)
    path = tmp_path_factory.mktemp("ooc") / "customers.parquet"
    table.to_parquet(path, index=False, row_group_size=1000)  # six row groups
    return table, path


def test_chunks_carry_global_row_numbers_and_take_picks_by_position(
    customers: tuple[pd.DataFrame, Path],
) -> None:
    frame, path = customers
    chunks = list(iter_chunks(path, chunk_rows=700))
    assert sum(len(c) for c in chunks) == len(frame)
    assert pd.concat(chunks).index.tolist() == list(range(len(frame)))
    rows = np.array([0, 999, 1000, 4321, 5999])
    picked = take_rows(path, rows)
    assert picked.index.tolist() == rows.tolist()
    assert picked["customer_id"].tolist() == frame["customer_id"].iloc[rows].tolist()


def test_streamed_schema_and_matrix_equal_the_in_memory_ones(
    customers: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    frame, path = customers
    config = load_config(overrides=["preprocess.fit_sample=2000"])
    in_memory = validate_table(frame, config.data, source="t", seed=0)
    streamed = validate_source(str(path), config.data, source="t", seed=0, chunk_rows=900)
    # Bounds, categories and the reference date come from every row, not from the first chunk.
    assert streamed.schema == in_memory.schema
    assert streamed.n_rows == len(frame)
    assert customer_ids(streamed).tolist() == frame["customer_id"].tolist()
    pre_a, x_a = fit_preprocessing(in_memory, config.preprocess, float32=True, seed=0)
    pre_b, x_b = fit_preprocessing(
        streamed, config.preprocess, float32=True, seed=0, out=tmp_path / "x.npy", chunk_rows=777
    )
    assert isinstance(x_b, np.memmap)
    # Exact: the same sampled rows, in the same order, through the same NumPy reductions (no BLAS).
    np.testing.assert_array_equal(pre_a.center_, pre_b.center_)
    np.testing.assert_allclose(x_a, x_b, rtol=0, atol=1e-6)


def test_writing_the_matrix_again_leaves_a_reader_of_the_previous_file_intact(
    customers: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    """Parallel sweep trials compute the same preprocessing stage into the same file.

    The second must not truncate the file the first has mapped (its reader died with SIGBUS): it
    writes a new file and renames it into place, leaving no temporary file behind.
    """
    _, path = customers
    config = load_config(overrides=["preprocess.fit_sample=2000"])
    table = validate_source(str(path), config.data, source="t", seed=0, chunk_rows=900)
    out = tmp_path / "stage.x.npy"
    _, first = fit_preprocessing(table, config.preprocess, float32=True, seed=0, out=out)
    expected = np.array(first)
    before = out.stat().st_ino
    _, second = fit_preprocessing(table, config.preprocess, float32=True, seed=0, out=out)
    assert out.stat().st_ino != before, "the file was rewritten in place under its reader"
    np.testing.assert_array_equal(first, expected)  # the first reader's pages are untouched
    np.testing.assert_array_equal(second, expected)
    assert not second.flags.writeable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage.x.npy"]


def test_a_full_disk_is_an_error_naming_the_file_not_a_crash(
    customers: tuple[pd.DataFrame, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes through a memory map to a full disk kill the process (SIGBUS); the space is reserved first."""
    import errno
    import os

    def full_disk(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _, path = customers
    config = load_config(overrides=["preprocess.fit_sample=2000"])
    table = validate_source(str(path), config.data, source="t", seed=0)
    monkeypatch.setattr(os, "posix_fallocate", full_disk)  # the one thing this machine cannot do for real
    with pytest.raises(OSError, match=r"cannot reserve [\d,]+ bytes for .*stage\.x\.npy") as caught:
        fit_preprocessing(table, config.preprocess, float32=True, seed=0, out=tmp_path / "stage.x.npy")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_schema_scan_over_chunks_matches_one_pass(customers: tuple[pd.DataFrame, Path]) -> None:
    from segmentation.contract.inference import SchemaScan

    frame, _ = customers
    # A column negative only in the last chunk, and a level that is rare early: the whole table decides.
    frame = frame.copy()
    frame.loc[len(frame) - 1, "amount_00"] = -5.0
    scan = SchemaScan("customer_id", expected_rows=len(frame))
    for start in range(0, len(frame), 1000):
        scan.update(frame.iloc[start : start + 1000])
    whole = infer_schema(frame, "customer_id")
    assert scan.schema().column("amount_00").min_value is None
    assert {c.name: (c.kind, c.min_value, c.max_value) for c in scan.schema().columns} == {
        c.name: (c.kind, c.min_value, c.max_value) for c in whole.columns
    }


def test_failures_are_counted_over_every_chunk_like_whole_table_validation(
    customers: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    frame, _ = customers
    config = load_config()
    schema_source = validate_table(frame, config.data, source="t").schema
    bad = frame.copy()
    bad["amount_01"] = bad["amount_01"].astype(str)  # numbers as text, as CSV exports often have
    bad.loc[[10, 2500, 5000], "amount_01"] = "n/a"  # not a number, in three different chunks
    bad.loc[[3, 4200], "customer_id"] = bad.loc[
        [4100, 10], "customer_id"
    ].to_numpy()  # duplicates across chunks
    bad["flag_00"] = np.where(np.arange(len(bad)) < 1000, np.nan, bad["flag_00"].astype(float))
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path, index=False, row_group_size=1000)
    with pytest.raises(DataValidationError) as streamed:
        validate_source(str(path), config.data.model_copy(update={"schema_kind": "inferred"}), source="b")
    found = {(f.column, f.check): f.count for f in streamed.value.report.failures}
    assert found[("customer_id", "unique")] == 4
    assert found[("amount_01", "coerce_dtype('float64')")] == 3
    # flag_00 is empty only in the first chunk: not an "entirely empty" column.
    assert not any(column == "flag_00" for column, _ in found)
    assert schema_source.column("amount_01").kind == "numeric"


def test_csv_is_staged_as_parquet_once(customers: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    frame, _ = customers
    csv = tmp_path / "customers.csv"
    write_table(frame, csv)
    staged = tmp_path / "stage" / "table.parquet"
    table = validate_source(str(csv), load_config().data, source=str(csv), staged=staged)
    assert table.path == str(staged)
    assert staged.is_file()
    assert table.n_rows == len(frame)


def test_k_search_on_a_sample_then_refined_on_all_rows() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 6, (4, 5))
    truth = rng.integers(0, 4, 20_000)
    z = (centers[truth] + rng.normal(0, 1, (20_000, 5))).astype(np.float32)
    config = load_config(overrides=["cluster.fit_sample=2000", "cluster.search.k_max=6"]).cluster
    result = fit_clusterer(z, z, config, seed=0, silhouette_sample=1000)
    assert result.model.n_clusters_ == 4
    assert sorted(result.k_scores) == [3, 4, 5, 6]
    assert len(result.labels) == len(z)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, result.labels) > 0.99
    # The labels are the refined model's own predictions on every row (what a saved bundle reproduces).
    np.testing.assert_array_equal(result.model.predict(z), result.labels)


def test_streamed_lloyd_matches_scikit_learn_kmeans_from_the_same_start() -> None:
    from sklearn.cluster import KMeans

    from segmentation.clustering import lloyd_refine

    rng = np.random.default_rng(1)
    z = np.vstack([rng.normal(c, 1.0, (3000, 3)) for c in (0.0, 4.0, 9.0)]).astype(np.float32)
    start = z[[0, 3000, 6000]] + 1.5
    centers, labels, iterations = lloyd_refine(z, start, chunk_rows=1000)
    reference = KMeans(3, init=start, n_init=1).fit(z)
    # Two implementations, float32 distances in both: centroids to float32 rounding of the means (|c| < 10,
    # so 1e-4 is ~100 eps; a wrong update moves them by ~1e-1), labels equal except at ties. A centroid
    # shift of `gap` moves a row's relative margin by at most 2 * gap * sqrt(3) / (second distance).
    np.testing.assert_allclose(centers, reference.cluster_centers_, rtol=0, atol=1e-4)
    gap = float(np.abs(centers - reference.cluster_centers_).max())
    distances = np.sqrt(((z[:, None, :].astype(np.float64) - reference.cluster_centers_[None]) ** 2).sum(-1))
    second = np.sort(distances, axis=1)[:, 1]
    tol = TIE_MARGIN + 2 * gap * np.sqrt(3) / second
    assert_labels_equal_except_ties(labels, reference.labels_, distance_margins(distances), tol=tol)
    assert 1 <= iterations < 300


def test_hdbscan_fits_a_configured_sample_assigns_the_rest_and_reports_the_agreement() -> None:
    frame, _ = make_customers(5000, 10, 3, seed=5, separation=6.0)
    config = load_config(
        overrides=[
            "cluster=hdbscan",
            "cluster.max_fit_rows=1500",
            "cluster.min_cluster_size=50",
            "evaluate.stability_resamples=0",
        ]
    )
    model, result = fit_model(frame, config)
    sample = model.manifest["metrics"]["clusterer_sample"]
    assert sample["fit_rows"] == 1500
    assert sample["rows"] == len(frame) == len(result.labels)
    assert 0.9 <= sample["sample_agreement"] <= 1.0
    assert result.model.n_clusters_ >= 2


def test_report_of_a_parquet_run_is_rebuilt_from_the_file_in_chunks(
    customers: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = customers
    config = load_config(overrides=["cluster.n_clusters=4", "evaluate.stability_resamples=0"])
    table = validate_source(str(path), config.data, source=str(path), sample_size=2000)
    pre, x = fit_preprocessing(table, config.preprocess, float32=True, seed=config.seed)
    featurizer, z = fit_features(x, config.featurize, seed=config.seed)
    result = fit_segments(z, x, config.cluster, seed=config.seed, silhouette_sample=1000)
    metrics = evaluate(x, z, result, featurizer, config=config)
    from segmentation.data.io import file_digest

    model = assemble_model(
        table,
        pre,
        featurizer,
        result,
        x,
        metrics,
        config=config,
        data_hash=file_digest(path),
        source=str(path),
    )
    run = tmp_path / "run"
    write_run_outputs(run, model, table, result.labels, featurizer)
    write_insights(run, model, table, result.labels, x, [], seed=config.seed)
    first = pd.read_csv(run / "profile.csv")
    (run / "profile.csv").unlink()
    rebuild_insights(run)
    # Exact: the same raw values read from the same file, the same labels (read back from labels.parquet)
    # and the same NumPy reductions in the same order; floats go through CSV text both times.
    pd.testing.assert_frame_equal(pd.read_csv(run / "profile.csv"), first, check_exact=True)
