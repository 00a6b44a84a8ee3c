from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numeric_features import numeric_ranking
from PIL import Image
from sklearn.metrics import silhouette_score

from segmentation.insights.plots import embed_2d, make_plots, segment_colours
from segmentation.insights.profiles import segment_names, standardized_differences


def test_make_plots_writes_every_png_from_a_bounded_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, -1], [3000, 2000, 900, 100])
    x = rng.normal(size=(len(labels), 5)).astype(np.float32) + labels[:, None]
    raw = pd.DataFrame(np.exp(x), columns=[f"f{i}" for i in range(5)])
    diffs = standardized_differences(x, labels, list(raw.columns))
    paths = make_plots(
        tmp_path / "plots",
        x=x,
        labels=labels,
        raw=raw,
        diffs=diffs,
        names=segment_names(numeric_ranking(diffs)),
        k_scores={"2": 0.3, "3": 0.5, "4": 0.4},
        chosen_k=3,
        history=[
            {"epoch": 1, "train_loss": 1.0, "val_loss": 1.1},
            {"epoch": 2, "train_loss": 0.5, "val_loss": 0.6},
        ],
        max_points=1000,
    )
    assert set(paths) == {
        "segments_2d",
        "profile_heatmap",
        "top_features",
        "sizes",
        "k_selection",
        "loss_history",
        "segment_0",
        "segment_1",
        "segment_2",
        "segment_noise",
    }
    for path in paths.values():
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] > 300
    assert not list((tmp_path / "plots").glob(".*"))  # atomic writes leave no temporary files


def test_colours_are_fixed_per_segment_and_noise_is_grey() -> None:
    assert segment_colours([0, 1, 2]) == {k: v for k, v in segment_colours([2, 1, 0, -1]).items() if k != -1}
    assert segment_colours([-1])[-1] == "#b0b0b0"


def test_tsne_embedding_draws_at_most_its_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], [1500, 1500])
    x = rng.normal(size=(len(labels), 4)).astype(np.float32) + 4 * labels[:, None]
    every_tenth = np.arange(0, len(labels), 10)
    xy, xlabel, _ = embed_2d(x[every_tenth], "tsne", seed=0)
    assert xy.shape == (300, 2)
    assert xlabel == "t-SNE 1"
    # The two planted groups stay apart on the map: t-SNE keeps neighbourhoods.
    assert silhouette_score(xy, labels[every_tenth]) > 0.5
    raw = pd.DataFrame(x, columns=[f"f{i}" for i in range(4)])
    diffs = standardized_differences(x, labels, list(raw.columns))
    paths = make_plots(
        tmp_path / "plots",
        x=x,
        labels=labels,
        raw=raw,
        diffs=diffs,
        names=segment_names(numeric_ranking(diffs)),
        k_scores={},
        chosen_k=2,
        history=[],
        embedding="tsne",
        embedding_sample=400,
    )
    with Image.open(paths["segments_2d"]) as image:
        assert image.format == "PNG"
