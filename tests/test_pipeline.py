"""Pipeline nodes on tables the product was not built around; cache keys; the library/orchestration split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.config import load_config
from segmentation.errors import DataValidationError
from segmentation.stages.fit import fit_features, fit_preprocessing, fit_segments
from segmentation.stages.load import customer_ids, validate_table
from segmentation_workflows.caching import STAGES, stage_keys


def _odd_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    return pd.DataFrame(
        {
            "spend": np.exp(rng.normal(group * 1.5, 0.4)).round(2),
            "visits": rng.poisson(2 + 6 * group),
            "is_member": group == 2,
            "region": np.array(["north", "south", "east"])[group],
            "signup": (
                pd.Timestamp("2025-06-30") - pd.to_timedelta(rng.integers(1, 100, n) + group * 300, unit="D")
            ).strftime("%Y-%m-%d"),
            "comment": [f"free text {i}" for i in range(n)],  # unique, complete text
            "constant": 1.0,
        }
    )


def test_table_without_id_and_with_mixed_kinds_trains() -> None:
    frame = _odd_table().drop(columns=["comment"])
    config = load_config(overrides=["cluster.search.k_max=5"])
    table = validate_table(frame, config.data, source="odd")
    kinds = {c.name: c.kind for c in table.schema.columns}
    assert kinds == {
        "spend": "numeric",
        "visits": "numeric",
        "is_member": "boolean",
        "region": "categorical",
        "signup": "datetime",
    }
    assert table.schema.id_column is None
    assert "constant" in table.schema.ignored_columns
    assert table.schema.reference_date == frame["signup"].max()
    ids = customer_ids(table)
    assert ids.name == "row"
    assert ids.tolist() == list(range(len(frame)))
    _, x = fit_preprocessing(table, config.preprocess, float32=True, seed=0)
    assert x.dtype == np.float32
    assert x.shape == (len(frame), 4 + 3)  # four dense columns, three one-hot levels
    assert not np.isnan(x).any()
    _, z = fit_features(x, config.featurize, seed=0)
    result = fit_segments(z, x, config.cluster, seed=0, silhouette_sample=1000)
    assert result.model.n_clusters_ == 3


def test_unique_text_column_is_an_ambiguity_only_when_no_id_name() -> None:
    frame = _odd_table()
    config = load_config()
    table = validate_table(frame, config.data, source="odd")
    assert table.schema.id_column == "comment"  # the one unique, complete text column
    frame["code"] = [f"K{i}" for i in range(len(frame))]
    with pytest.raises(DataValidationError, match="ambiguous ID column"):
        validate_table(frame, config.data, source="odd")
    frame["client_id"] = frame["code"]
    assert validate_table(frame, config.data, source="odd").schema.id_column == "client_id"


def test_high_cardinality_text_is_ignored() -> None:
    frame = _odd_table()
    frame.insert(0, "customer_id", [f"C{i}" for i in range(len(frame))])
    table = validate_table(frame, load_config().data, source="odd")
    assert table.schema.id_column == "customer_id"
    assert "comment" in table.schema.ignored_columns


def test_stage_keys_chain() -> None:
    base = load_config()
    keys = stage_keys("abc", base)
    assert keys == stage_keys("abc", base)
    cluster_only = stage_keys("abc", load_config(overrides=["cluster.n_clusters=4"]))
    assert [s for s in STAGES if keys[s] != cluster_only[s]] == ["cluster", "evaluate"]
    preprocess = stage_keys("abc", load_config(overrides=["preprocess.skew=log1p"]))
    assert [s for s in STAGES if keys[s] != preprocess[s]] == [
        "preprocess",
        "featurize",
        "cluster",
        "evaluate",
    ]
    other_data = stage_keys("abd", base)
    assert all(keys[s] != other_data[s] for s in STAGES)
    reseeded = stage_keys("abc", load_config(overrides=["seed=1"]))
    assert all(keys[s] != reseeded[s] for s in STAGES)


def test_library_never_imports_prefect() -> None:
    """Every module of the library, imported in a fresh process, leaves Prefect unimported."""
    import pkgutil

    import segmentation

    modules = [m.name for m in pkgutil.walk_packages(segmentation.__path__, "segmentation.")]
    assert {"segmentation.stages.load", "segmentation.contract.validator", "segmentation.bundle"} <= set(
        modules
    )
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + (
            "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
            "assert not bad, bad\n"
        )
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_library_never_imports_the_app_layer_nor_reads_the_environment() -> None:
    """Arrows point down: no module of src/ imports segmentation_workflows (the CLI and flows), and none
    reads or writes an environment variable (settings arrive as :class:`segmentation.settings.Settings`)."""
    import ast

    root = Path(__file__).parents[1] / "src" / "segmentation"
    offences = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                offences += [
                    f"{path.name}: imports {n}" for n in names if n.split(".")[0] == "segmentation_workflows"
                ]
            elif isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "putenv", "unsetenv"}:
                offences.append(f"{path.name}:{node.lineno}: os.{node.attr}")
    assert not offences, offences
