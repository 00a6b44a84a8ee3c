"""Uninformative columns do not move the segments: a noise flag, a 150-level category, a store number.

A planted table (:func:`make_customers`) gets columns that carry no segment: a yes/no flag, a category with
150 levels and an integer store ID. With the default training the segments still match the planted ones
(ARI >= 0.95): the store ID is read as a code (never a size), the 150 levels as free text; forced into the
clustering space (``data.columns``) each weighs like one numeric column and the segments hold as well.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation.config import load_config
from segmentation.data.synthetic import SEGMENT_COLUMN, make_customers
from segmentation.stages.assemble import fit_model


def _with_noise(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    table, truth = make_customers(rows, 12, 4, seed=seed)
    rng = np.random.default_rng(seed + 100)
    levels = np.array([f"L{i:03d}" for i in range(150)])
    noisy = table.assign(
        noise_flag=rng.random(rows) < 0.5,
        noise_category=levels[rng.integers(0, 150, rows)],
        store_id=rng.integers(100, 400, rows),
    )
    return noisy, truth[SEGMENT_COLUMN].to_numpy()


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data.columns.noise_category.kind=categorical", "data.columns.store_id.kind=code"],
    ],
    ids=["default", "forced-in"],
)
def test_uninformative_columns_keep_the_planted_segments(overrides: list[str]) -> None:
    table, truth = _with_noise(6000, seed=1)
    model, result = fit_model(table, load_config(overrides=overrides))
    assert adjusted_rand_score(truth, result.labels) >= 0.95
    notes = {n.name: n for n in model.schema.columns_read}
    if not overrides:
        assert (notes["store_id"].kind, notes["store_id"].used) == ("code", False)
        assert (notes["noise_category"].kind, notes["noise_category"].used) == ("text", False)
    else:
        names = model.preprocessor.feature_names_out_
        assert sum(n.startswith("noise_category=") for n in names) == 20  # the 20 most frequent levels
        assert sum(n.startswith("store_id=") for n in names) == 20
