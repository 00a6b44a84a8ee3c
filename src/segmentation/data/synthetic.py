"""Synthetic customer tables with planted segments, for tests, demos and benchmarks.

The generator draws a segment per customer, then a latent Gaussian vector around that segment's
centre, and maps each latent dimension to a realistic column: right-skewed monetary amounts,
frequencies in ``[0, 1]``, counts, a flag, a sales channel and a last-activity date, plus a few pure
noise columns shared by all segments. Everything is vectorised over rows (one NumPy call per
column kind), so a million customers by a hundred features take seconds.

Example:
    >>> table, truth = make_customers(1000, 20, 4, seed=1)
    >>> list(table.columns[:3])
    ['customer_id', 'amount_00', 'amount_01']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CHANNEL_LEVELS", "REFERENCE_DATE", "SEGMENT_COLUMN", "make_customers"]

#: Name of the ground-truth label column in the ``truth`` frame.
SEGMENT_COLUMN = "segment"
#: Levels of the ``channel_*`` categorical column.
CHANNEL_LEVELS: tuple[str, ...] = ("web", "store", "app", "phone", "partner")
#: ``last_active_*`` dates lie 1 to 3650 days before this (exclusive) reference date.
REFERENCE_DATE = np.datetime64("2026-01-01", "D")

# With at least this many features every column kind appears; below it only numeric kinds do.
_MIN_FEATURES_ALL_KINDS = 8
# Column kinds cycled through for small tables (all informative and numeric).
_SMALL_PATTERN = ("amount", "freq", "amount", "count", "amount", "freq", "amount")
# Largest minimum share a segment gets (it is lowered when many segments would not fit).
_MAX_SEGMENT_FLOOR = 0.05
# Dirichlet concentration of segment sizes: unequal, rarely extreme.
_SIZE_ALPHA = 2.0
# Candidate centre layouts tried; the one whose closest pair is least close (relative) wins.
_CENTRE_CANDIDATES = 32
# Upper bound on the days-since-last-activity draw (ten years).
_MAX_DAYS = 3650


@dataclass(frozen=True)
class _Layout:
    """How many columns of each kind a table gets."""

    amount: int
    freq: int
    count: int
    flag: int
    channel: int
    date: int
    noise: int

    @property
    def latent(self) -> int:
        """Number of informative latent dimensions (one per segment-driven numeric column)."""
        return self.amount + self.freq + self.count + self.flag


def _round_half_up(value: float) -> int:
    return int(np.floor(value + 0.5))


def _layout(features: int) -> _Layout:
    """Split ``features`` into column kinds (~55 % amounts, 20 % freqs, 10 % counts, 10 % noise)."""
    if features < _MIN_FEATURES_ALL_KINDS:
        kinds = [_SMALL_PATTERN[i % len(_SMALL_PATTERN)] for i in range(features)]
        return _Layout(
            amount=kinds.count("amount"),
            freq=kinds.count("freq"),
            count=kinds.count("count"),
            flag=0,
            channel=0,
            date=0,
            noise=0,
        )
    noise = max(1, _round_half_up(0.10 * features))
    freq = max(1, _round_half_up(0.20 * features))
    count = max(1, _round_half_up(0.10 * features))
    amount = features - 3 - noise - freq - count  # >= 1 for features >= 8
    return _Layout(amount=amount, freq=freq, count=count, flag=1, channel=1, date=1, noise=noise)


def _names(prefix: str, n: int) -> list[str]:
    width = max(2, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


def _feature_names(layout: _Layout) -> list[str]:
    """Feature column names in table order."""
    return [
        *_names("amount", layout.amount),
        *_names("freq", layout.freq),
        *_names("count", layout.count),
        *(["flag_00"] * layout.flag),
        *(["channel_00"] * layout.channel),
        *(["last_active_00"] * layout.date),
        *_names("noise", layout.noise),
    ]


def _validate(
    rows: int, features: int, segments: int, *, separation: float, missing_rate: float, id_column: str
) -> None:
    if features < 1:
        raise ValueError(f"features must be >= 1, got {features}")
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    if rows < segments:
        raise ValueError(f"rows must be >= segments so every segment is present, got {rows} < {segments}")
    if not np.isfinite(separation) or separation < 0:
        raise ValueError(f"separation must be a finite number >= 0, got {separation}")
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
    if not id_column:
        raise ValueError("id_column must be a non-empty string")


def _segment_labels(rng: np.random.Generator, rows: int, segments: int) -> np.ndarray:
    """Shuffled labels with Dirichlet proportions, each segment at least ``floor`` of the rows."""
    floor = min(_MAX_SEGMENT_FLOOR, 0.5 / segments)
    shares = floor + (1.0 - segments * floor) * rng.dirichlet(np.full(segments, _SIZE_ALPHA))
    exact = shares * rows
    counts = np.floor(exact).astype(np.int64)
    # Largest remainder: hand the leftover rows to the biggest fractional parts.
    leftover = rows - int(counts.sum())
    counts[np.argsort(exact - counts, kind="stable")[::-1][:leftover]] += 1
    # Guarantee presence for tiny tables (rows >= segments is validated).
    while (counts == 0).any():
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    labels = np.repeat(np.arange(segments, dtype=np.int64), counts)
    return rng.permutation(labels)


def _centres(rng: np.random.Generator, segments: int, dims: int, separation: float) -> np.ndarray:
    """Segment centres (``segments x dims``) whose closest pair is ``separation`` RMS-per-dimension apart.

    Several Gaussian layouts are drawn and the most evenly spread one (largest ratio of closest to
    mean pairwise distance) is kept, then rescaled so that ``||c_s - c_t|| / sqrt(dims)`` is at least
    ``separation`` for every pair and equal to it for the closest pair.
    """
    if segments == 1 or dims == 0:
        return np.zeros((segments, dims))
    upper = np.triu_indices(segments, k=1)
    best, best_ratio, closest = np.zeros((segments, dims)), -1.0, 1.0
    for _ in range(_CENTRE_CANDIDATES):
        cand = rng.standard_normal((segments, dims))
        dist = np.sqrt(((cand[:, None, :] - cand[None, :, :]) ** 2).sum(-1))[upper]
        ratio = dist.min() / dist.mean()
        if ratio > best_ratio:
            best, best_ratio, closest = cand, ratio, dist.min()
    best = best - best.mean(axis=0)
    return best * (separation * np.sqrt(dims) / closest)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _id_strings(rows: int) -> pa.Array:
    width = len(str(rows))
    digits = pc.utf8_lpad(pa.array(np.arange(1, rows + 1, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise("C", digits, "")


def make_customers(
    rows: int,
    features: int,
    segments: int,
    seed: int = 0,
    *,
    separation: float = 3.0,
    missing_rate: float = 0.01,
    id_column: str = "customer_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic customer table with planted segments.

    Each customer belongs to one of ``segments`` segments (unequal sizes, each at least ~5 % of the
    rows while that is possible, i.e. up to 10 segments; ``50 / segments`` % beyond). A latent vector
    is drawn around the segment's centre with N(0, 1) noise, one dimension per informative numeric
    column; centres are placed so that every pair of segments differs by at least ``separation``
    within-segment standard deviations per informative dimension (root mean square over the
    dimensions; the closest pair sits exactly there). The latent is standardised and mapped to
    columns, in this order after the id column:

    * ``amount_XX`` (~55 %): float32 currency amounts ``exp(base + sigma * latent)`` with a random
      median between 10 and 1000 and ``sigma`` in [0.6, 1.0]; non-negative, right-skewed, rounded
      to 2 decimals; the only columns with missing values.
    * ``freq_XX`` (~20 %): float32 frequencies ``sigmoid(a * latent + b)`` in [0, 1].
    * ``count_XX`` (~10 %): int32 Poisson counts whose log-rate follows the latent.
    * ``flag_00``: bool, probability ``sigmoid`` of the latent.
    * ``channel_00``: pandas' default string dtype, one of :data:`CHANNEL_LEVELS`, drawn with
      segment-specific probabilities (not from the latent).
    * ``last_active_00``: ``datetime64[ns]`` day 1 to 3650 days before :data:`REFERENCE_DATE`;
      gamma-distributed age with a segment-specific mean between 7 and 365 days.
    * ``noise_XX`` (~10 %): float32 Gaussian columns with the same distribution in every segment.

    With fewer than 8 features only amount, freq and count columns are made (all informative).
    Rows come in random segment order; identical arguments give identical frames.

    Args:
        rows: Number of customers (must be >= ``segments``).
        features: Number of feature columns (the id column is extra), >= 1.
        segments: Number of planted segments, >= 1.
        seed: Seed for :func:`numpy.random.default_rng`; everything is derived from it.
        separation: Minimum pairwise distance between segment centres in within-segment standard
            deviations, root mean square per informative latent dimension (so the Euclidean
            distance is ``separation * sqrt(d)`` for ``d`` informative columns). ``0`` plants no
            structure. With 40 features and 6 segments, KMeans on the log/standardised numeric
            columns gets ARI ~1.0 at the default 3.0, ~0.98 at 1.0 and ~0.55 at 0.5; with very
            few features the same value is much harder.
        missing_rate: Expected fraction of NaN cells in each amount column, in ``[0, 1)``. A column
            is never left fully empty.
        id_column: Name of the customer-id column in both frames; ids are unique strings
            ``"C"`` + a 1-based number zero-padded to the width of ``rows`` (``C0000001`` for a
            million rows).

    Returns:
        ``(table, truth)``: ``table`` has ``id_column`` followed by ``features`` feature columns;
        ``truth`` has ``id_column`` and ``segment`` (int64, ``0 .. segments - 1``) in the same row
        order.

    Raises:
        ValueError: If an argument is out of range or ``id_column`` clashes with a feature name.
    """
    _validate(rows, features, segments, separation=separation, missing_rate=missing_rate, id_column=id_column)
    layout = _layout(features)
    if id_column in (*_feature_names(layout), SEGMENT_COLUMN):
        raise ValueError(f"id_column {id_column!r} clashes with a feature or the {SEGMENT_COLUMN!r} column")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
    r_labels, r_centres, r_latent, r_params, r_draws, r_channel, r_date, r_missing = streams

    labels = _segment_labels(r_labels, rows, segments)
    latent = _latent(r_centres, r_latent, labels, segments, layout.latent, separation)
    bounds = np.cumsum([layout.amount, layout.freq, layout.count])
    amount_z, freq_z, count_z, flag_z = np.split(latent, bounds)
    # The order of the draws from each stream is part of the output: identical arguments, identical frames.
    blocks = [
        _amounts(r_params, r_missing, amount_z, missing_rate),
        _frequencies(r_params, freq_z),
        _counts(r_params, r_draws, count_z),
    ]
    extra = _flag_channel_date(layout, labels, segments, flag_z, r_params, r_draws, r_channel, r_date)
    if extra:
        blocks.append(pd.DataFrame(extra))
    blocks.append(_noise(r_params, r_draws, layout.noise, rows))

    ids = pd.Series(_id_strings(rows), dtype="str", name=id_column)
    table = pd.concat([ids.to_frame(), *blocks], axis=1)
    truth = pd.DataFrame({id_column: ids, SEGMENT_COLUMN: labels})
    return table, truth


def _latent(
    r_centres: np.random.Generator,
    r_latent: np.random.Generator,
    labels: np.ndarray,
    segments: int,
    dims: int,
    separation: float,
) -> np.ndarray:
    """The standardised latent, dims x rows: ``(centre - mean + N(0, 1)) / sd``."""
    rows = len(labels)
    shares = np.bincount(labels, minlength=segments) / rows
    centres = _centres(r_centres, segments, dims, separation)
    mean = shares @ centres
    sd = np.sqrt(1.0 + shares @ (centres - mean) ** 2)
    latent = r_latent.standard_normal((dims, rows), dtype=np.float32)
    if dims:
        latent += ((centres - mean).T.astype(np.float32))[:, labels]
        latent *= (1.0 / sd).astype(np.float32)[:, None]
    return latent


def _amounts(
    r_params: np.random.Generator, r_missing: np.random.Generator, z: np.ndarray, missing_rate: float
) -> pd.DataFrame:
    """Monetary amounts: log-normal around a random median, rounded to cents; some missing."""
    n, rows = int(z.shape[0]), int(z.shape[1])
    log_median = r_params.uniform(np.log(10.0), np.log(1000.0), n).astype(np.float32)[:, None]
    sigma = r_params.uniform(0.6, 1.0, n).astype(np.float32)[:, None]
    amounts = z * sigma
    amounts += log_median
    np.exp(amounts, out=amounts)
    np.round(amounts, 2, out=amounts)
    if missing_rate > 0 and n:
        mask = r_missing.random((n, rows), dtype=np.float32) < missing_rate
        mask[mask.all(axis=1), 0] = False  # never a fully-empty column
        amounts[mask] = np.nan
    return pd.DataFrame(amounts.T, columns=_names("amount", n), copy=False)


def _frequencies(r_params: np.random.Generator, z: np.ndarray) -> pd.DataFrame:
    """Frequencies in [0, 1]: a sigmoid of the latent."""
    n = len(z)
    slope = r_params.uniform(1.2, 2.0, n).astype(np.float32)[:, None]
    shift = r_params.normal(-0.3, 0.7, n).astype(np.float32)[:, None]
    freqs = _sigmoid(z * slope + shift).astype(np.float32, copy=False)
    return pd.DataFrame(freqs.T, columns=_names("freq", n), copy=False)


def _counts(r_params: np.random.Generator, r_draws: np.random.Generator, z: np.ndarray) -> pd.DataFrame:
    """Counts: Poisson with a log-rate that follows the latent."""
    n = len(z)
    log_rate = r_params.uniform(np.log(1.0), np.log(30.0), n).astype(np.float32)[:, None]
    rate = np.exp(z * np.float32(0.7) + log_rate)
    counts = r_draws.poisson(rate).astype(np.int32)
    return pd.DataFrame(counts.T, columns=_names("count", n), copy=False)


def _flag_channel_date(
    layout: _Layout,
    labels: np.ndarray,
    segments: int,
    flag_z: np.ndarray,
    r_params: np.random.Generator,
    r_draws: np.random.Generator,
    r_channel: np.random.Generator,
    r_date: np.random.Generator,
) -> dict[str, pd.Series | np.ndarray]:
    """The boolean flag (from the latent), the channel and the last-active date (segment-specific)."""
    rows = len(labels)
    extra: dict[str, pd.Series | np.ndarray] = {}
    if layout.flag:
        flag_shift = np.float32(r_params.normal(0.0, 0.5))
        prob = _sigmoid(flag_z[0] * np.float32(2.0) + flag_shift)
        extra["flag_00"] = r_draws.random(rows, dtype=np.float32) < prob
    if layout.channel:
        n_levels = len(CHANNEL_LEVELS)
        probs = 0.9 * r_channel.dirichlet(np.ones(n_levels), segments) + 0.1 / n_levels
        cum = np.cumsum(probs, axis=1)[:, :-1].astype(np.float32)  # segments x (levels - 1)
        draw = r_channel.random(rows, dtype=np.float32)
        codes = (draw[:, None] >= cum[labels]).sum(axis=1)
        extra["channel_00"] = pd.Series(pa.array(CHANNEL_LEVELS).take(pa.array(codes)), dtype="str")
    if layout.date:
        mean_days = np.exp(r_date.uniform(np.log(7.0), np.log(365.0), segments))
        shape = 2.0
        days = r_date.standard_gamma(shape, rows, dtype=np.float32) * (mean_days / shape)[labels]
        days = np.minimum(np.floor(days) + 1, _MAX_DAYS).astype("timedelta64[D]")  # 1 .. _MAX_DAYS
        extra["last_active_00"] = (REFERENCE_DATE - days).astype("datetime64[ns]")
    return extra


def _noise(r_params: np.random.Generator, r_draws: np.random.Generator, n: int, rows: int) -> pd.DataFrame:
    """Pure noise: the same Gaussian distribution in every segment."""
    loc = r_params.normal(0.0, 10.0, n).astype(np.float32)
    scale = r_params.uniform(0.5, 5.0, n).astype(np.float32)
    noise = r_draws.standard_normal((n, rows), dtype=np.float32)
    noise *= scale[:, None]
    noise += loc[:, None]
    return pd.DataFrame(noise.T, columns=_names("noise", n), copy=False)
