"""The fitting stages: preprocessing, featurizer and clusterer fitted on the validated table.

Each takes data and a config section and returns the fitted part with its output; none touches global
state. :func:`align_segments` renumbers a new clustering to keep a previous model's segment IDs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from segmentation.alignment import Alignment, align_by_centroids, align_by_overlap
from segmentation.bundle import SegmentationModel, bundle_digest, find_bundle, load_bundle
from segmentation.clustering import NOISE, ClusterResult, fit_clusterer
from segmentation.config import ClusterConfig, FeaturizeConfig, PreprocessConfig
from segmentation.data.chunks import DEFAULT_CHUNK_ROWS, map_chunks, sample_positions
from segmentation.data.io import atomic_path, reserve_space
from segmentation.errors import BundleError, ConfigError, DataValidationError
from segmentation.features import Featurizer, build_featurizer
from segmentation.insights.profiles import standardized_differences
from segmentation.preprocess import Preprocessor
from segmentation.stages.load import ValidatedTable, rate

logger = logging.getLogger(__name__)


def fit_preprocessing(
    table: ValidatedTable,
    config: PreprocessConfig,
    *,
    float32: bool,
    seed: int,
    out: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[Preprocessor, np.ndarray]:
    """Fit preprocessing on the training table; return it with the preprocessed matrix.

    Parameters are estimated on a seeded sample of ``config.fit_sample`` rows (read by position from a
    file-backed table); then every row is transformed chunk by chunk, two chunks at a time, into the
    matrix. With ``out`` the matrix is a memory-mapped ``.npy`` file there (a 2,000,000 x 124 float32
    matrix is 1 GB that then needs no heap), otherwise an in-memory array.
    """
    started = time.perf_counter()
    pre = Preprocessor(table.schema, config, float32=float32, seed=seed)
    n = table.n_rows
    rows = sample_positions(n, config.fit_sample, seed)  # the same rows Preprocessor.fit draws from a table
    pre.fit(table.frame if table.frame is not None and len(rows) == n else table.take(rows))
    fitted = time.perf_counter()
    x = transform_table(pre, table, out=out, chunk_rows=chunk_rows)
    logger.info(
        "preprocessing: fitted on %d rows in %.1f s; transformed %s",
        len(rows),
        fitted - started,
        rate(n, time.perf_counter() - fitted),
    )
    return pre, x


def transform_table(
    pre: Preprocessor, table: ValidatedTable, *, out: Path | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> np.ndarray:
    """Every row of the table through a fitted preprocessor, chunk by chunk, two chunks at a time.

    With ``out`` the matrix is a read-only memory-mapped ``.npy`` file there, otherwise an in-memory
    array. The file is filled under a temporary name and renamed into place: another process (a parallel
    sweep trial computing the same stage) may have the previous file mapped, and truncating a mapped
    file in place kills its reader with SIGBUS or silently zeroes its matrix.
    """
    n = table.n_rows
    shape = (n, len(pre.feature_names_out_))
    dtype = np.float32 if pre.float32 else np.float64
    if out is None:
        x = np.empty(shape, dtype)
        _fill_transformed(pre, table, x, chunk_rows)
        return x
    with atomic_path(out) as tmp:
        mapped = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        reserve_space(tmp)  # a full disk: an OSError now, not SIGBUS in the middle of the writes
        _fill_transformed(pre, table, mapped, chunk_rows)
        mapped.flush()
        del mapped  # unmapped before the rename
    return cast(np.ndarray, np.load(out, mmap_mode="r"))


def _fill_transformed(pre: Preprocessor, table: ValidatedTable, x: np.ndarray, chunk_rows: int) -> None:
    """Write the preprocessed rows of ``table`` into ``x``, chunk by chunk, two chunks at a time."""

    def transform(chunk: pd.DataFrame) -> tuple[int, np.ndarray]:
        return int(chunk.index[0]), pre.transform(chunk)

    chunks = table.chunks(chunk_rows, columns=table.schema.feature_names)  # the ID is not needed here
    progress = tqdm(
        map_chunks(transform, chunks),
        desc="preprocess",
        total=-(-table.n_rows // chunk_rows),
        disable=None,
        leave=False,
    )
    for start, block in progress:
        x[start : start + len(block)] = block


def fit_features(x: np.ndarray, config: FeaturizeConfig, *, seed: int) -> tuple[Featurizer, np.ndarray]:
    """Fit the featurizer; return it with the feature-space matrix."""
    featurizer = build_featurizer(config, seed=seed)
    return featurizer, featurizer.fit_transform(x)


def fit_segments(
    z: np.ndarray, x: np.ndarray, config: ClusterConfig, *, seed: int, silhouette_sample: int
) -> ClusterResult:
    """Fit the clusterer (choosing k when asked) and keep the winner with its labels and score."""
    return fit_clusterer(z, x, config, seed=seed, silhouette_sample=silhouette_sample)


def previous_model(align_to: str) -> tuple[SegmentationModel, str]:
    """Load the bundle named by ``insights.align_to`` and its digest.

    Raises:
        ConfigError: the path is not a run directory or bundle, or the bundle fails verification.
    """
    try:
        model = load_bundle(find_bundle(align_to))
    except BundleError as exc:
        raise ConfigError(f"insights.align_to: {exc}") from exc
    return model, bundle_digest(model.manifest)


def align_segments(
    result: ClusterResult,
    table: ValidatedTable,
    x: np.ndarray,
    feature_names: list[str],
    previous: SegmentationModel,
    *,
    reference: str,
    sample: int = 100_000,
    seed: int = 0,
) -> ClusterResult:
    """Renumber the new segments so that they keep the previous model's IDs (and user names).

    The previous bundle scores (a seeded sample of) the training table and IDs are matched by customer
    overlap (:func:`segmentation.alignment.align_by_overlap`). If the previous model cannot score the
    table (its columns changed), centroids are matched on the features both share instead.

    Returns:
        A result whose model, labels and ``alignment`` record reflect the new IDs.
    """
    labels = result.labels
    rows = sample_positions(len(labels), sample, seed)
    n_clusters = result.model.n_clusters_
    alignment: Alignment
    try:
        before = previous.predict(table.take(rows))
        alignment = align_by_overlap(before, labels[rows], n_clusters)
    except DataValidationError as exc:
        logger.warning("the previous model cannot score this table (%s); matching centroids instead", exc)
        current = standardized_differences(x, labels, feature_names)
        try:
            alignment = align_by_centroids(previous.centroids, current)
        except ValueError as err:
            raise ConfigError(f"insights.align_to: {err}") from err
    result.model.relabel(alignment.mapping)
    aligned = np.where(labels >= 0, alignment.mapping[np.maximum(labels, 0)], NOISE)
    carried = {
        seg["id"]: seg["name"]
        for seg in previous.segments["segments"]
        if seg.get("name_source", "auto") != "auto" and (seg["id"] == NOISE or seg["id"] in alignment.matched)
    }
    record = {
        **alignment.to_dict(),
        "reference": reference,
        "previous_model": previous.name,
        "previous_digest": bundle_digest(previous.manifest) if "files" in previous.manifest else None,
        "carried_names": {str(k): v for k, v in carried.items()},
    }
    logger.info(
        "segment IDs aligned to %s (%s): new->aligned %s, agreement %s",
        reference,
        alignment.method,
        record["mapping"],
        "n/a" if alignment.agreement is None else f"{alignment.agreement:.3f}",
    )
    return dataclasses.replace(result, labels=aligned.astype(labels.dtype), alignment=record)


__all__ = [
    "align_segments",
    "fit_features",
    "fit_preprocessing",
    "fit_segments",
    "previous_model",
    "transform_table",
]
