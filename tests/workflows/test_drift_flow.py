"""The monitor-drift flow on a real temporary Prefect API: Completed without drift, Failed on alert."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from segmentation.bundle import save_bundle
from segmentation.config import load_config
from segmentation.data.io import write_table
from segmentation.data.synthetic import make_customers
from segmentation.drift import DriftAlertError
from segmentation.registry import LocalRegistry
from segmentation.stages.assemble import fit_model
from segmentation_workflows.drift import monitor_drift

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture(scope="module")
def drift_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A bundle trained on half a synthetic population; the other half unshifted and shifted."""
    root = tmp_path_factory.mktemp("drift-flow")
    table, _ = make_customers(8000, 12, 3, seed=5)
    train, fresh = table.iloc[:4000], table.iloc[4000:].reset_index(drop=True)
    config = load_config(overrides=["cluster.n_clusters=3", "evaluate.stability_resamples=0"])
    model, _ = fit_model(train, config, source="train")
    shifted = fresh.copy()
    shifted["amount_00"] = shifted["amount_00"] * math.exp(float(np.log(shifted["amount_00"]).std()))
    return {
        "bundle": save_bundle(model, root / "bundle"),
        "fresh": write_table(fresh, root / "fresh.parquet"),
        "shifted": write_table(shifted, root / "shifted.parquet"),
    }


def test_no_drift_completes(drift_setup: dict[str, Path], tmp_path: Path) -> None:
    state = monitor_drift(
        data_path=str(drift_setup["fresh"]),
        out_dir=str(tmp_path / "ok"),
        bundle=str(drift_setup["bundle"]),
        return_state=True,
    )
    assert state.is_completed()
    result = state.result()
    assert result["status"] == "ok"
    assert result["rows"] == 4000
    assert json.loads((tmp_path / "ok" / "drift.json").read_text())["status"] == "ok"


def test_alert_fails_the_flow_run_after_writing_the_report(
    drift_setup: dict[str, Path], tmp_path: Path, segment_home: Path
) -> None:
    # Through the registry's production alias, as a scheduled deployment run would resolve it.
    config = load_config(overrides=[f"registry.dir={segment_home / 'registry'}"])
    registry = LocalRegistry(segment_home / "registry", config.model_name)
    version = registry.register(drift_setup["bundle"])
    registry.promote(version.version, config.registry, force=True)
    state = monitor_drift(
        data_path=str(drift_setup["shifted"]),
        out_dir=str(tmp_path / "alert"),
        config=config,
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(DriftAlertError, match="amount_00"):
        state.result()
    saved = json.loads((tmp_path / "alert" / "drift.json").read_text())
    assert saved["status"] == "alert"
    assert saved["alerts"] == ["amount_00"]
    assert saved["model"]["version"] == version.tag
    # The same snapshot with the threshold raised (a deployment run's overrides): Completed, warn at most.
    raised = monitor_drift(
        data_path=str(drift_setup["shifted"]),
        out_dir=str(tmp_path / "raised"),
        overrides=[f"registry.dir={segment_home / 'registry'}", "drift.warn=50", "drift.alert=100"],
        return_state=True,
    )
    assert raised.is_completed()
