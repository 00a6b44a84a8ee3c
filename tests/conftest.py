"""Shared fixtures: an isolated Prefect API (a real temporary server) and small customer tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from segmentation.data.io import sample_data_path, write_table
from segmentation.data.synthetic import make_customers


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A real Prefect API server on a temporary database for the whole session."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def segment_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh result cache for one test."""
    home = tmp_path / "segment-home"
    monkeypatch.setenv("SEGMENT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def cc_general() -> pd.DataFrame:
    """The bundled CC GENERAL sample."""
    return pd.read_csv(sample_data_path())


@pytest.fixture(scope="session")
def synthetic_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A 3,000-row synthetic table with 5 planted segments, as Parquet, and its ground truth."""
    table, truth = make_customers(3000, 24, 5, seed=7)
    path = tmp_path_factory.mktemp("synthetic") / "customers.parquet"
    write_table(table, path)
    return path, truth


@pytest.fixture(scope="session")
def scoring_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PCA + k-means bundle (4 segments, model ``test-model``) saved to disk, as scoring loads it."""
    from segmentation.bundle import save_bundle
    from segmentation.config import SegmentConfig
    from segmentation.stages.assemble import fit_model

    table, _ = make_customers(3000, 10, 4, seed=5)
    config = SegmentConfig.model_validate(
        {
            "seed": 7,
            "model_name": "test-model",
            "featurize": {"kind": "pca", "n_components": 5},
            "cluster": {"kind": "kmeans", "n_clusters": 4, "n_init": 2},
            "evaluate": {"silhouette_sample": 500, "agreement_sample": 2000},
        }
    )
    model, _ = fit_model(table, config, source="test", data_hash="abc")
    return save_bundle(model, tmp_path_factory.mktemp("bundle") / "bundle")
