"""The local registry: immutable digest-checked versions, gated promotion, rollback, concurrent promoters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from segmentation.bundle import save_bundle
from segmentation.config import RegistryConfig, load_config
from segmentation.data.synthetic import make_customers
from segmentation.registry import (
    LocalRegistry,
    PromotionRefusedError,
    RegistryError,
    gate_reasons,
    metric_value,
)
from segmentation.stages.assemble import assemble_model
from segmentation.stages.evaluate import evaluate
from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import validate_table


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Real bundles (k = 3, 4, 5, ...) whose gate metrics are set by the test."""
    frame, _ = make_customers(1200, 8, 4, seed=2)
    config = load_config(overrides=["evaluate.stability_resamples=0"])
    table = validate_table(frame, config.data, source="t")
    pre, x = fit_preprocessing(table, config.preprocess, float32=True, seed=0)
    featurizer, z = fit_features(x, config.featurize, seed=0)
    root = tmp_path_factory.mktemp("bundles")

    def make(k: int, silhouette: float, stability: float | None = 0.95, min_share: float = 0.1) -> Path:
        cluster = config.cluster.model_copy(update={"n_clusters": k})
        result = fit_segments(z, x, cluster, seed=0, silhouette_sample=1000)
        metrics = evaluate(x, z, result, featurizer, config=config)
        metrics |= {"silhouette": silhouette, "min_segment_share": min_share}
        if stability is not None:
            metrics["stability"] = {"ari_pairwise_mean": stability}
        model = assemble_model(
            table, pre, featurizer, result, x, metrics, config=config, data_hash="h", source="t"
        )
        return save_bundle(model, root / f"k{k}-{silhouette}-{stability}-{min_share}")

    return make


def test_versions_are_immutable_copies_verified_on_load(bundles, tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path, "segments")
    bundle = bundles(3, 0.30)
    first = registry.register(bundle, source="run-a")
    assert (first.version, first.aliases) == (1, ("candidate", "latest"))
    # The same files again: the same digest, the same version. (Not a retrained bundle: with 3+ OpenMP
    # threads scikit-learn's k-means may give centroids that differ in the last bits, hence another digest.)
    assert registry.register(bundle).version == 1
    second = registry.register(bundles(4, 0.35))
    assert second.version == 2
    assert registry.get("v1").aliases == ()
    assert registry.get("candidate").version == registry.get("2").version == 2
    assert registry.load("v1").clusterer.n_clusters_ == 3
    assert not os.access(first.bundle_path / "manifest.json", os.W_OK) or os.geteuid() == 0
    # Tampering with a registered file is caught when the version is loaded.
    target = first.bundle_path / "segments.json"
    target.chmod(0o644)
    target.write_text(target.read_text().replace('"name"', '"name" ', 1))
    with pytest.raises(RegistryError, match="v1"):
        registry.load("v1")
    with pytest.raises(RegistryError, match="no alias 'production'"):
        registry.get("production")
    with pytest.raises(RegistryError, match="no version v9"):
        registry.get("v9")


def test_gate_refuses_a_worse_model_with_reasons_and_rollback_restores(bundles, tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path, "segments")
    gate = RegistryConfig()
    good = registry.register(bundles(3, 0.30))
    assert "production" in registry.promote(good.version, gate).aliases
    worse = registry.register(bundles(4, 0.25))
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote(worse.version, gate)
    assert refused.value.exit_code != 0
    assert "silhouette 0.2500 is not above production's 0.3000" in str(refused.value)
    assert registry.aliases()["production"] == good.version  # nothing moved
    unstable = registry.register(bundles(5, 0.40, stability=0.5, min_share=0.01))
    with pytest.raises(PromotionRefusedError) as refused:
        registry.promote(unstable.version, gate)
    assert any("stability" in r for r in refused.value.reasons)
    assert any("smallest segment holds 1.0%" in r for r in refused.value.reasons)
    better = registry.register(bundles(6, 0.35))
    registry.promote(better.version, gate)
    assert registry.aliases()["production"] == better.version
    assert registry.aliases()["previous"] == good.version
    assert registry.rollback().version == good.version
    assert registry.aliases()["previous"] == better.version
    events = [json.loads(line) for line in (registry.path / "events.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events].count("refused") == 2
    # A forced promotion passes the gate but is recorded as forced.
    registry.promote(worse.version, gate, force=True)
    assert json.loads((registry.path / "events.jsonl").read_text().splitlines()[-1])["forced"] is True


def test_gate_metric_goal_and_missing_values() -> None:
    gate = RegistryConfig(metric="davies_bouldin", goal="minimize", min_stability=None)
    assert gate_reasons({"davies_bouldin": 1.0}, {"davies_bouldin": 1.2}, gate) == []
    assert gate_reasons({"davies_bouldin": 1.3}, {"davies_bouldin": 1.2}, gate)
    assert gate_reasons({}, None, gate) == ["davies_bouldin is missing from the candidate's metrics"]
    assert metric_value({"stability": {"ari_pairwise_mean": 0.9}}, "stability.ari_pairwise_mean") == 0.9
    assert metric_value({"a": True}, "a") is None


_PROMOTE = """
import sys
from segmentation.config import RegistryConfig
from segmentation.registry import LocalRegistry, PromotionRefusedError
registry = LocalRegistry(sys.argv[1], "segments")
try:
    registry.promote(sys.argv[2], RegistryConfig(min_stability=None))
except PromotionRefusedError:
    pass
"""


def test_two_concurrent_promoters_leave_a_consistent_registry(bundles, tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path, "segments")
    gate = RegistryConfig(min_stability=None)
    base = registry.register(bundles(3, 0.30))
    registry.promote(base.version, gate)
    a = registry.register(bundles(4, 0.32))
    b = registry.register(bundles(5, 0.34))
    for _ in range(3):  # several rounds: the interleaving differs from run to run
        procs = [
            subprocess.Popen([sys.executable, "-c", _PROMOTE, str(tmp_path), version])
            for version in (f"v{a.version}", f"v{b.version}")
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        aliases = registry.aliases()
        # Replaying the event log gives exactly the aliases on disk: no lost or torn update.
        replay: dict[str, int] = {}
        for line in (registry.path / "events.jsonl").read_text().splitlines():
            event = json.loads(line)
            if event["action"] == "promote":
                if "production" in replay:
                    replay["previous"] = replay["production"]
                replay["production"] = event["version"]
            elif event["action"] == "rollback":
                replay["production"], replay["previous"] = replay["previous"], replay["production"]
        assert aliases["production"] == replay["production"] == b.version  # the better one wins either way
        assert aliases["previous"] == replay["previous"]
        registry.rollback()
        registry.rollback()  # back to the same state for the next round
        registry.promote(base.version, gate, force=True)
