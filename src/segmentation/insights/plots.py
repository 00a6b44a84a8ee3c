"""Segment plots (PNG), one consistent colour per segment across every figure.

Scatter and distribution plots draw from a seeded sample of rows (``max_points``), so plotting stays
bounded in time and memory on millions of customers. Figures are written atomically and closed.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # files only, no display: must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from segmentation.clustering import NOISE
from segmentation.data.io import atomic_path
from segmentation.features.pca import PCAFeaturizer

NOISE_COLOUR = "#b0b0b0"


def segment_colours(segments: list[int]) -> dict[int, str]:
    """A fixed colour per segment ID (tab10, then tab20); noise is grey."""
    palette = [
        mpl.colors.to_hex(c) for c in (*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2])
    ]
    return {seg: NOISE_COLOUR if seg == NOISE else palette[seg % len(palette)] for seg in segments}


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(seg: int, names: dict[int, str]) -> str:
    return f"{seg}: {names.get(seg, '')}" if seg != NOISE else "noise"


def plot_segments_2d(x: np.ndarray, labels: np.ndarray, names: dict[int, str], path: Path) -> Path:
    """Customers on the first two principal components of the preprocessed space, coloured by segment."""
    pca = PCAFeaturizer(n_components=2).fit(x)
    xy = pca.transform(x)
    colours = segment_colours(sorted(set(labels.tolist())))
    fig, ax = plt.subplots(figsize=(8, 6))
    for seg in sorted(colours, key=lambda s: (s == NOISE, s)):
        mask = labels == seg
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.6, color=colours[seg], label=_label(seg, names))
    ratio = pca.explained_variance_ratio_
    ax.set(
        title=f"Segments on the first two principal components ({len(labels):,} customers shown)",
        xlabel=f"PC1 ({ratio[0]:.0%} of variance)",
        ylabel=f"PC2 ({ratio[1]:.0%} of variance)" if len(ratio) > 1 else "PC2",
    )
    ax.legend(markerscale=3, fontsize=8, loc="best")
    return _save(fig, path)


def plot_profile_heatmap(diffs: pd.DataFrame, names: dict[int, str], path: Path) -> Path:
    """Standardized mean of every feature per segment, diverging colours centred on the population."""
    diffs = diffs.drop(index=NOISE, errors="ignore")
    limit = max(float(np.abs(diffs.to_numpy()).max()), 1e-6)
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * diffs.shape[1]), 1.2 + 0.55 * len(diffs)))
    image = ax.imshow(diffs.to_numpy(), cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    ax.set_xticks(range(diffs.shape[1]), labels=list(diffs.columns), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(diffs)), labels=[_label(int(s), names) for s in diffs.index], fontsize=8)
    ax.set_title("Segment profiles: standardized difference from the population mean")
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


def plot_k_selection(scores: dict[str, float | None], chosen: int, path: Path) -> Path:
    """The criterion for every k tried, the chosen k marked."""
    ks = sorted(int(k) for k, v in scores.items() if v is not None)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ks, [scores[str(k)] for k in ks], marker="o")
    if str(chosen) in scores and scores[str(chosen)] is not None:
        ax.scatter(
            [chosen], [scores[str(chosen)]], s=150, facecolors="none", edgecolors="red", label="chosen"
        )
        ax.legend()
    ax.set(title="Choosing k: silhouette (preprocessed space, sampled)", xlabel="k", ylabel="silhouette")
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
    raw: pd.DataFrame,
    diffs: pd.DataFrame,
    names: dict[int, str],
    k_scores: dict[str, float | None],
    chosen_k: int,
    history: list[dict[str, float]],
    max_points: int = 20_000,
    seed: int = 0,
) -> dict[str, str]:
    """Write every plot of a run into ``plots_dir``; scatter and box plots use at most ``max_points`` rows."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(labels))
    if len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(labels), max_points, replace=False))
    sample_x, sample_labels, sample_raw = x[rows], labels[rows], raw.iloc[rows].reset_index(drop=True)
    out = {
        "segments_2d": plot_segments_2d(sample_x, sample_labels, names, plots_dir / "segments_2d.png"),
        "profile_heatmap": plot_profile_heatmap(diffs, names, plots_dir / "profile_heatmap.png"),
        "top_features": plot_top_features(sample_raw, sample_labels, diffs, plots_dir / "top_features.png"),
        "sizes": plot_sizes(labels, names, plots_dir / "sizes.png"),
    }
    if len(k_scores) > 1:
        out["k_selection"] = plot_k_selection(k_scores, chosen_k, plots_dir / "k_selection.png")
    if history:
        out["loss_history"] = plot_loss_history(history, plots_dir / "loss_history.png")
    return {name: str(path) for name, path in out.items()}
