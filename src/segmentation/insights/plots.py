"""Segment plots (PNG), one consistent colour per segment across every figure.

Scatter and distribution plots draw from a seeded sample of rows (``max_points``), so plotting stays
bounded in time and memory on millions of customers. Figures are written atomically and closed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation.errors import requires_extra

# matplotlib is in the `train` extra (a serving install has none): the plots of `segment train`/`report`
# and of `segment drift`'s report need it.
with requires_extra("train", "plots (training and drift reports, matplotlib)"):
    import matplotlib as mpl

    mpl.use("Agg")  # files only, no display: must precede pyplot

    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

from segmentation.clustering import NOISE
from segmentation.data.chunks import sample_positions
from segmentation.data.io import atomic_path
from segmentation.features.pca import PCAFeaturizer
from segmentation.insights.profiles import row

NOISE_COLOUR = "#b0b0b0"


def segment_colours(segments: list[int]) -> dict[int, str]:
    """A fixed colour per segment ID (tab10, then tab20); noise is grey."""
    tab10: Any = plt.get_cmap("tab10")
    tab20: Any = plt.get_cmap("tab20")
    palette = [mpl.colors.to_hex(c) for c in (*tab10.colors, *tab20.colors[1::2])]
    return {seg: NOISE_COLOUR if seg == NOISE else palette[seg % len(palette)] for seg in segments}


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(seg: int, names: dict[int, str]) -> str:
    return f"{seg}: {names.get(seg, '')}" if seg != NOISE else "noise"


def embed_2d(x: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str, str]:
    """Two coordinates per row and the axis labels: PCA (fast, linear) or t-SNE (local structure).

    t-SNE costs O(n log n) per iteration with a large constant: callers pass a sample (a few thousand
    rows), never the full table.
    """
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(
            np.asarray(x, dtype=np.float32)
        )
        return xy, "t-SNE 1", "t-SNE 2"
    pca = PCAFeaturizer(n_components=2).fit(x)
    ratio = pca.explained_variance_ratio_
    return (
        pca.transform(x),
        f"PC1 ({ratio[0]:.0%} of variance)",
        f"PC2 ({ratio[1]:.0%} of variance)" if len(ratio) > 1 else "PC2",
    )


def plot_segments_2d(
    x: np.ndarray,
    labels: np.ndarray,
    names: dict[int, str],
    path: Path,
    *,
    method: str = "pca",
    seed: int = 0,
) -> Path:
    """Customers in 2-D (PCA of the preprocessed space, or t-SNE), coloured by segment."""
    xy, xlabel, ylabel = embed_2d(x, method, seed)
    colours = segment_colours(sorted(set(labels.tolist())))
    fig, ax = plt.subplots(figsize=(8, 6))
    for seg in sorted(colours, key=lambda s: (s == NOISE, s)):
        mask = labels == seg
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, color=colours[seg], label=_label(seg, names))
    what = "t-SNE map" if method == "tsne" else "the first two principal components"
    ax.set(title=f"Segments on {what} ({len(labels):,} customers shown)", xlabel=xlabel, ylabel=ylabel)
    ax.legend(markerscale=3, fontsize=8, loc="best")
    return _save(fig, path)


def plot_segment_card(seg: int, diffs: pd.Series, name: str, colour: str, path: Path, n: int = 10) -> Path:
    """One segment's largest effect sizes against the population (its "profile card").

    Cohen's d for numeric, boolean and date columns, Cohen's h for a categorical level: one scale.
    """
    chosen = sorted(diffs.items(), key=lambda item: (-abs(float(item[1])), str(item[0])))[:n][::-1]
    labels = [str(k) for k, _ in chosen]
    values = [float(v) for _, v in chosen]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.32 * len(chosen)))
    ax.barh(labels, values, color=[colour if v > 0 else mpl.colors.to_hex("#7f7f7f") for v in values])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set(
        title=f"Segment {seg}: {name}" if seg != NOISE else "Noise (no segment)",
        xlabel="effect size vs the population (Cohen's d; h for a categorical level)",
    )
    ax.tick_params(axis="y", labelsize=8)
    return _save(fig, path)


def plot_profile_heatmap(diffs: pd.DataFrame, names: dict[int, str], path: Path) -> Path:
    """Effect size of every feature per segment (Cohen's d or h), diverging colours centred on 0."""
    diffs = diffs.drop(index=NOISE, errors="ignore")
    limit = max(float(np.abs(diffs.to_numpy()).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * diffs.shape[1]), 1.2 + 0.55 * len(diffs)))
    image = ax.imshow(diffs.to_numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    ax.set_xticks(range(diffs.shape[1]), labels=list(diffs.columns), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(diffs)), labels=[_label(int(s), names) for s in diffs.index], fontsize=8)
    ax.set_title("Segment profiles: effect size vs the population (Cohen's d; h for categorical levels)")
    fig.colorbar(image, ax=ax, label="standard deviations from the population mean")
    return _save(fig, path)


def plot_top_features(
    raw: pd.DataFrame, labels: np.ndarray, diffs: pd.DataFrame, path: Path, n: int = 4
) -> Path:
    """Box plots of the most discriminating raw features (largest spread of segment means)."""
    columns = [c for c in diffs.columns if c in raw.columns]
    spread = diffs.drop(index=NOISE, errors="ignore")[columns].abs().max().sort_values(ascending=False)
    chosen = list(spread.index[:n])
    segments = sorted(s for s in set(labels.tolist()) if s != NOISE)
    colours = segment_colours(segments)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 4.5), squeeze=False)
    for ax, column in zip(axes[0], chosen, strict=True):
        data = [raw[column].to_numpy()[labels == s] for s in segments]
        data = [d[~np.isnan(d)] for d in data]
        boxes = ax.boxplot(data, patch_artist=True, showfliers=False, medianprops={"color": "black"})
        for patch, seg in zip(boxes["boxes"], segments, strict=True):
            patch.set_facecolor(colours[seg])
        ax.set_xticks(range(1, len(segments) + 1), labels=[str(s) for s in segments])
        ax.set(title=column, xlabel="segment")
    fig.suptitle("Most discriminating features by segment (outliers not drawn)")
    return _save(fig, path)


def plot_sizes(labels: np.ndarray, names: dict[int, str], path: Path) -> Path:
    """Customers per segment, with shares."""
    segments, counts = np.unique(labels, return_counts=True)
    colours = segment_colours(segments.tolist())
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.5 * len(segments)))
    ax.barh([_label(int(s), names) for s in segments], counts, color=[colours[int(s)] for s in segments])
    for i, count in enumerate(counts):
        ax.text(count, i, f" {count:,} ({count / counts.sum():.1%})", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set(title="Segment sizes", xlabel="customers")
    ax.margins(x=0.25)
    return _save(fig, path)


def plot_k_selection(
    scores: dict[str, float | None],
    chosen: int,
    path: Path,
    stability: dict[str, float | None] | None = None,
    threshold: float | None = None,
) -> Path:
    """Silhouette of every k tried, with its stability and threshold when measured; the chosen k marked."""
    ks = sorted(int(k) for k, v in scores.items() if v is not None)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ks, [float(scores[str(k)] or 0.0) for k in ks], marker="o", label="silhouette")
    chosen_score = scores.get(str(chosen))
    if chosen_score is not None:
        ax.scatter([chosen], [chosen_score], s=150, facecolors="none", edgecolors="red", label="chosen")
    ax.set(
        title="Choosing k: silhouette among stable k", xlabel="k", ylabel="silhouette (preprocessed space)"
    )
    measured = {int(k): v for k, v in (stability or {}).items() if v is not None}
    if measured:
        right = ax.twinx()
        right.plot(sorted(measured), [measured[k] for k in sorted(measured)], marker="s", color="grey")
        right.set_ylabel("stability (mean pairwise ARI)", color="grey")
        if threshold is not None:
            right.axhline(threshold, color="grey", linestyle=":", linewidth=1)
    ax.legend(loc="lower left")
    return _save(fig, path)


def plot_loss_history(history: list[dict[str, float]], path: Path) -> Path:
    """Autoencoder train and validation loss per epoch."""
    frame = pd.DataFrame(history)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(frame["epoch"], frame["train_loss"], label="train")
    ax.plot(frame["epoch"], frame["val_loss"], label="validation")
    ax.set(title="Autoencoder reconstruction loss", xlabel="epoch", ylabel="loss")
    ax.legend()
    return _save(fig, path)


def make_plots(
    plots_dir: Path,
    *,
    x: np.ndarray,
    labels: np.ndarray,
    raw: pd.DataFrame | Callable[[np.ndarray], pd.DataFrame],
    diffs: pd.DataFrame,
    names: dict[int, str],
    k_scores: dict[str, float | None],
    chosen_k: int,
    history: list[dict[str, float]],
    k_stability: dict[str, float | None] | None = None,
    stability_threshold: float | None = None,
    max_points: int = 20_000,
    embedding: str = "pca",
    embedding_sample: int = 5_000,
    seed: int = 0,
) -> dict[str, str]:
    """Write every plot of a run into ``plots_dir``.

    Scatter and box plots use at most ``max_points`` rows (t-SNE at most ``embedding_sample``), so the
    cost is bounded whatever the number of customers; the other plots read per-segment summaries.
    ``raw`` (original units, for the box plots) may be a function returning the given rows, so only the
    sampled rows are ever converted.

    Returns:
        Plot name -> path; per-segment profile cards are ``segment_<id>``.
    """
    plots_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    limit = min(max_points, embedding_sample) if embedding == "tsne" else max_points
    rows = np.arange(len(labels))
    if len(rows) > limit:
        rows = np.sort(rng.choice(len(labels), limit, replace=False))
    box_rows = sample_positions(len(labels), max_points, seed)
    sample_raw = (raw.iloc[box_rows] if isinstance(raw, pd.DataFrame) else raw(box_rows)).reset_index(
        drop=True
    )
    out = {
        "segments_2d": plot_segments_2d(
            x[rows], labels[rows], names, plots_dir / "segments_2d.png", method=embedding, seed=seed
        ),
        "profile_heatmap": plot_profile_heatmap(diffs, names, plots_dir / "profile_heatmap.png"),
        "top_features": plot_top_features(
            sample_raw, labels[box_rows], diffs, plots_dir / "top_features.png"
        ),
        "sizes": plot_sizes(labels, names, plots_dir / "sizes.png"),
    }
    if len(k_scores) > 1:
        out["k_selection"] = plot_k_selection(
            k_scores, chosen_k, plots_dir / "k_selection.png", k_stability, stability_threshold
        )
    if history:
        out["loss_history"] = plot_loss_history(history, plots_dir / "loss_history.png")
    colours = segment_colours([int(s) for s in diffs.index])
    for seg in (int(s) for s in diffs.index):
        card = "segment_noise" if seg == NOISE else f"segment_{seg}"
        out[card] = plot_segment_card(
            seg, row(diffs, seg), names.get(seg, ""), colours[seg], plots_dir / f"{card}.png"
        )
    return {name: str(path) for name, path in out.items()}
