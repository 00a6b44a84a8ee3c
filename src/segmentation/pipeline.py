"""The training stages as pure functions (nodes). Orchestration, caching and retries live in ``workflows/``.

Each node takes data and a config section and returns data; none touches global state. Cache keys
for a stage chain the key of the stage before it with the stage's own parameters and code, see
:func:`stage_keys`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from segmentation import drift
from segmentation.alignment import Alignment, align_by_centroids, align_by_overlap
from segmentation.bundle import (
    SegmentationModel,
    bundle_digest,
    find_bundle,
    load_bundle,
    save_bundle,
    segment_summary,
)
from segmentation.clustering import NOISE, ClusterResult, HDBSCANClusterer, fit_clusterer
from segmentation.config import (
    ClusterConfig,
    DataConfig,
    FeaturizeConfig,
    InsightsConfig,
    PreprocessConfig,
    SegmentConfig,
)
from segmentation.data.chunks import (
    DEFAULT_CHUNK_ROWS,
    PARQUET_ROW_GROUP,
    map_chunks,
    read_ahead,
    read_columns,
    sample_positions,
    table_info,
    take_rows,
)
from segmentation.data.io import (
    atomic_path,
    file_digest,
    is_url,
    read_table,
    require_table_file,
    reserve_space,
    table_format,
    unreadable_table,
    write_json,
    write_table,
    write_text,
)
from segmentation.data.row_validation import missing_columns, row_failures
from segmentation.data.validation import (
    CC_GENERAL_ID,
    Failure,
    SchemaScan,
    TableSchema,
    ValidationReport,
    cc_general_schema,
    detect_id_column,
    looks_like_cc_general,
    validate_frame,
)
from segmentation.errors import BundleError, ConfigError, DataValidationError
from segmentation.evaluation import bootstrap_stability, evaluate_segments
from segmentation.features import Featurizer, build_featurizer
from segmentation.insights.profiles import (
    build_profile,
    resolve_names,
    segment_names,
    standardized_differences,
)
from segmentation.preprocess import Preprocessor
from segmentation.versioning import code_fingerprint, code_version

logger = logging.getLogger(__name__)

STAGES = ("load", "preprocess", "featurize", "cluster", "evaluate")
# Library code each stage runs; this module (which holds every node) is part of the load stage's key and
# so, through the chain, of every stage's key.
_STAGE_CODE = {
    "load": ("segmentation.data", "segmentation.pipeline"),
    "preprocess": ("segmentation.preprocess",),
    "featurize": ("segmentation.features",),
    "cluster": ("segmentation.clustering", "segmentation.alignment"),
    "evaluate": ("segmentation.evaluation",),
}
_STAGE_SECTIONS = {
    "load": ("data",),
    "preprocess": ("preprocess",),
    "featurize": ("featurize",),
    "cluster": ("cluster",),
    "evaluate": ("evaluate",),
}


def stage_keys(data_hash: str, config: SegmentConfig, align_digest: str | None = None) -> dict[str, str]:
    """Chained cache keys: each stage's key hashes the previous key, its own parameters and its code.

    So a rerun with nothing changed hits every stage; changing only clusterer parameters changes the
    keys of ``cluster`` and ``evaluate`` only; changing the data changes every key. The seed is part of
    every stage's parameters. ``align_digest`` (the digest of the bundle whose IDs are kept, see
    :func:`align_segments`) is part of the cluster stage's key: the alignment happens there.
    """
    keys: dict[str, str] = {}
    previous = data_hash
    for stage in STAGES:
        digest = hashlib.sha256(previous.encode())
        digest.update(f"seed={config.seed}".encode())
        for section in _STAGE_SECTIONS[stage]:
            digest.update(config.section_json(section).encode())
        if stage == "load":  # the load stage keeps the preprocessing sample of the validated rows
            digest.update(f"sample={config.preprocess.fit_sample}".encode())
        digest.update(code_fingerprint(*_STAGE_CODE[stage]).encode())
        if stage == "cluster" and align_digest:
            digest.update(f"align={align_digest}".encode())
        previous = keys[stage] = f"{stage}-{digest.hexdigest()[:32]}"
    return keys


# --------------------------------------------------------------------------------------- validation
@dataclass
class ValidatedTable:
    """A table that passed validation, with its schema.

    Either in memory (``frame``: notebooks, tests, the bundled sample) or a Parquet file read in chunks
    (``path``: what the flow uses, so millions of rows never sit in memory as one DataFrame). Stages
    reach rows only through :meth:`chunks`, :meth:`read` and :meth:`take`, which work the same for both.
    """

    schema: TableSchema
    report: ValidationReport
    frame: pd.DataFrame | None = None
    path: str | None = None
    n_rows: int = 0
    ids: np.ndarray | None = None  # file-backed tables: the ID column, read once during validation
    sample: pd.DataFrame | None = None  # file-backed tables: seeded rows kept in memory, indexed by position

    def __post_init__(self) -> None:
        if (self.frame is None) == (self.path is None):
            raise ValueError("a ValidatedTable holds either a frame or a path")
        if self.frame is not None:
            self.n_rows = len(self.frame)

    def chunks(
        self, chunk_rows: int = DEFAULT_CHUNK_ROWS, columns: list[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        """The rows in chunks, each indexed by row position."""
        if self.frame is None:
            yield from read_ahead(str(self.path), chunk_rows=chunk_rows, columns=columns)
            return
        frame = self.frame if columns is None else self.frame[columns]
        for start in range(0, len(frame), chunk_rows):
            part = frame.iloc[start : start + chunk_rows]
            yield part.set_axis(pd.RangeIndex(start, start + len(part)))

    def read(self, columns: list[str]) -> pd.DataFrame:
        """Whole columns (a file-backed table decodes only these)."""
        if self.frame is None:
            return read_columns(str(self.path), columns)
        return self.frame[columns].reset_index(drop=True)

    def take(self, rows: np.ndarray) -> pd.DataFrame:
        """The rows at these sorted positions, indexed by position.

        A file-backed table answers from its in-memory ``sample`` when it holds every requested row (the
        preprocessing, agreement and drift-reference samples are the same seeded draw), else reads them.
        """
        if self.frame is None:
            if self.sample is not None and len(rows) and np.isin(rows, self.sample.index).all():
                return self.sample.loc[rows]
            return take_rows(str(self.path), rows)
        return self.frame.iloc[rows].set_axis(pd.Index(rows))


def validate_table(frame: pd.DataFrame, config: DataConfig, *, source: str, seed: int = 0) -> ValidatedTable:
    """Choose the ID column and schema, then validate lazily.

    Raises:
        DataValidationError: with a report naming every failing column and check.
    """
    fail = functools.partial(_one_failure, source, len(frame), frame.shape[1])
    schema, _ = _choose_schema([frame], [str(c) for c in frame.columns], config, len(frame), seed, fail)
    validated, report = validate_frame(frame, schema, source=source)
    if not report.ok:
        raise DataValidationError(report)
    _warn_ignored(schema)
    return ValidatedTable(schema=schema, report=report, frame=validated)


def _one_failure(
    source: str, n_rows: int, n_columns: int, column: str, check: str, example: str
) -> DataValidationError:
    """A validation error with one failure (table-level problems found before the checks run)."""
    failure = Failure(column=column, check=check, count=1, examples=[example])
    return DataValidationError(
        ValidationReport(source=source, n_rows=n_rows, n_columns=n_columns, failures=[failure])
    )


def _warn_ignored(schema: TableSchema) -> None:
    if schema.ignored_columns:
        logger.warning(
            "ignored columns (constant, free text or dropped): %s", ", ".join(schema.ignored_columns)
        )


def _rate(rows: int, seconds: float) -> str:
    return f"{rows:,} rows in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)"


def _merge_failures(failures: list[Failure]) -> list[Failure]:
    """One failure per (column, check) across chunks: counts added, the first five examples kept."""
    counts: dict[tuple[str, str], int] = {}
    examples: dict[tuple[str, str], list[Any]] = {}
    for failure in failures:
        key = (failure.column, failure.check)
        counts[key] = counts.get(key, 0) + failure.count
        seen = examples.setdefault(key, [])
        seen.extend(e for e in failure.examples if e not in seen and len(seen) < 5)
    return [Failure(column=c, check=k, count=n, examples=examples[(c, k)]) for (c, k), n in counts.items()]


def _chunk_failures(chunk: pd.DataFrame, schema: TableSchema, source: str) -> list[Failure]:
    """The failed checks of one chunk, per column and check (vectorised: millions of rows per second).

    The checks are pandera's (``row_failures`` implements the schema's pandera contract row by row);
    infinities are left out because training imputes them like missing values
    (:meth:`Preprocessor.raw_column`), as the whole-table pandera validation does.
    """
    _, rejects = row_failures(chunk, schema, source=source)
    rejects = rejects[rejects["check"] != "finite"]
    failures = []
    for (column, check), group in rejects.groupby(["column", "check"], sort=False):
        examples = [_example(v) for v in group["value"].unique()[:5]]
        failures.append(Failure(column=str(column), check=str(check), count=len(group), examples=examples))
    return failures


def _example(value: str) -> Any:
    """A failing value as pandera would show it: a number when it reads as one, else the text."""
    try:
        number = float(value)
    except ValueError:
        return value or None
    return int(number) if number.is_integer() else number


def stage_parquet(path: str, target: Path) -> str:
    """A local Parquet copy of a CSV (or remote) table, so later stages read it in chunks by column.

    Local Parquet files are used in place. The copy is written atomically with 256k-row row groups.
    """
    if table_format(path) == "parquet" and not is_url(path):
        return path
    if not target.is_file():
        started = time.perf_counter()
        frame = read_table(path)
        with atomic_path(target) as tmp:
            frame.to_parquet(tmp, index=False, row_group_size=PARQUET_ROW_GROUP)
        logger.info("staged %s as Parquet: %s", path, _rate(len(frame), time.perf_counter() - started))
    return str(target)


def _choose_schema(
    chunks: Iterable[pd.DataFrame],
    columns: list[str],
    config: DataConfig,
    n_rows: int,
    seed: int,
    fail: Callable[[str, str, str], DataValidationError],
) -> tuple[TableSchema, list[np.ndarray]]:
    """The ID column and schema (CC GENERAL's, or inferred from every row), and the IDs, in one pass.

    A table in memory is one chunk; a file is read chunk by chunk (:func:`validate_source`).
    """
    use_cc = config.schema_kind == "cc_general" or (
        config.schema_kind == "auto" and looks_like_cc_general(columns)
    )
    id_column = CC_GENERAL_ID if use_cc else config.id_column
    if id_column is not None and id_column not in columns and not use_cc:
        raise fail(id_column, "missing_required_column", "configured ID column not in the table")
    scan: SchemaScan | None = None
    id_parts: list[np.ndarray] = []
    for chunk in chunks:
        if not use_cc and id_column is None and scan is None:
            try:
                id_column = detect_id_column(chunk)
            except ValueError as exc:
                raise fail("<id>", "unambiguous_id_column", str(exc)) from exc
        if not use_cc:
            if scan is None:
                scan = SchemaScan(
                    id_column,
                    max_categories=config.max_categories,
                    drop_columns=config.drop_columns,
                    reference_date=config.reference_date,
                    seed=seed,
                    expected_rows=n_rows,
                )
            scan.update(chunk)
        if id_column is not None and id_column in chunk.columns:
            id_parts.append(chunk[id_column].to_numpy())
    schema = cc_general_schema() if use_cc else cast(SchemaScan, scan).schema()
    if not schema.columns:
        raise fail("<table>", "has_feature_columns", "no usable feature column (all constant, empty or text)")
    return schema, id_parts


def validate_source(
    path: str,
    config: DataConfig,
    *,
    source: str,
    seed: int = 0,
    staged: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    sample_size: int = 0,
    schema: TableSchema | None = None,
) -> ValidatedTable:
    """Validate a table file chunk by chunk; the result reads its rows from the file, never all at once.

    Two streaming passes: the first infers the schema (:class:`SchemaScan`: the rules of
    :func:`validate_table`, from every row) and reads the ID column; the second validates every chunk
    against it with the same pandera checks. Checks that span chunks (unique IDs, columns without any
    value) are made over the whole table. CSV and remote tables are first copied to a local Parquet
    file (``staged``), which later stages read by column and by row group. The validation pass also keeps
    a seeded sample of ``sample_size`` rows in memory (the rows preprocessing is fitted on), so later
    stages do not read the file again for it. With ``schema`` (a trained model's contract) nothing is
    inferred: the table is checked against it.

    Raises:
        DataValidationError: with a report naming every failing column and check (counts over all rows).
    """
    if staged is not None:
        path = stage_parquet(path, staged)
    elif table_format(path) != "parquet":
        raise ValueError("validate_source needs a Parquet file or a staging path for a CSV copy")
    started = time.perf_counter()
    require_table_file(path)
    try:
        info = table_info(path)
    except Exception as exc:  # pyarrow raises many types for a file that is not Parquet
        raise unreadable_table(path, exc) from exc
    n_rows = int(info.n_rows or 0)

    fail = functools.partial(_one_failure, source, n_rows, len(info.columns))

    if n_rows == 0:
        raise fail("<table>", "has_rows", "the table has a header but no rows")
    if len(info.columns) < 2:
        raise fail(
            "<table>",
            "has_columns",
            f"found {len(info.columns)} column(s); a customer table needs an ID and features",
        )
    if schema is not None:  # a model's contract (``segment report``): nothing to infer
        id_parts = (
            [read_columns(path, [schema.id_column])[schema.id_column].to_numpy()]
            if schema.id_column and schema.id_column in info.columns
            else []
        )
    else:
        chunks = tqdm(
            read_ahead(path, chunk_rows=chunk_rows),
            desc="scan",
            total=-(-n_rows // chunk_rows),
            disable=None,
            leave=False,
        )
        schema, id_parts = _choose_schema(chunks, info.columns, config, n_rows, seed, fail)
    scanned = time.perf_counter()
    logger.info("scanned %s: %s", source, _rate(n_rows, scanned - started))

    failures: list[Failure] = [
        Failure(column=name, check="missing_required_column", count=1, examples=[])
        for name in missing_columns(info.columns, schema)
    ]
    # The other columns are still checked, so one report lists every problem of the table.
    checked_schema = schema.model_copy(
        update={"columns": tuple(c for c in schema.columns if c.name in set(info.columns))}
    )
    ids = np.concatenate(id_parts) if id_parts else None
    if schema.id_column is not None:
        if ids is None:
            failures.append(
                Failure(column=schema.id_column, check="missing_required_column", count=1, examples=[])
            )
        else:
            id_series = pd.Series(ids)
            missing = int(id_series.isna().sum())
            if missing:
                failures.append(
                    Failure(column=schema.id_column, check="not_nullable", count=missing, examples=[None])
                )
            duplicated = id_series[id_series.duplicated(keep=False) & id_series.notna()]
            if len(duplicated):
                examples = [str(v) for v in duplicated.unique()[:5]]
                failures.append(
                    Failure(column=schema.id_column, check="unique", count=len(duplicated), examples=examples)
                )
    present = dict.fromkeys(schema.feature_names, 0)
    sample_rows = sample_positions(n_rows, sample_size, seed) if sample_size else np.empty(0, np.int64)
    sample_parts: list[pd.DataFrame] = []

    def check(chunk: pd.DataFrame) -> tuple[list[Failure], pd.DataFrame, dict[str, int]]:
        picked = sample_rows[(sample_rows >= chunk.index[0]) & (sample_rows <= chunk.index[-1])]
        counts = {name: int(chunk[name].notna().sum()) for name in present if name in chunk.columns}
        return _chunk_failures(chunk, checked_schema, source), chunk.loc[picked], counts

    checked = map_chunks(check, read_ahead(path, chunk_rows=chunk_rows))  # two chunks at a time
    for chunk_failures, sample_part, counts in tqdm(
        checked, desc="validate", total=-(-n_rows // chunk_rows), disable=None, leave=False
    ):
        failures.extend(chunk_failures)
        if len(sample_part):
            sample_parts.append(sample_part)
        for name, count in counts.items():
            present[name] += count
    failures.extend(
        Failure(column=name, check="not_entirely_empty", count=n_rows, examples=[None])
        for name, count in present.items()
        if count == 0 and name in info.columns
    )
    report = ValidationReport(
        source=source,
        n_rows=n_rows,
        n_columns=len(info.columns),
        schema_kind=schema.kind,
        failures=_merge_failures(failures),
    )
    if not report.ok:
        raise DataValidationError(report)
    logger.info("validated %s: %s", source, _rate(n_rows, time.perf_counter() - scanned))
    _warn_ignored(schema)
    sample = pd.concat(sample_parts) if sample_parts else None
    return ValidatedTable(schema=schema, report=report, path=path, n_rows=n_rows, ids=ids, sample=sample)


def customer_ids(table: ValidatedTable) -> pd.Series:
    """The ID column, or row numbers named ``row`` when the table has none."""
    if table.schema.id_column:
        if table.frame is None:
            return pd.Series(table.ids, name=table.schema.id_column)
        return table.frame[table.schema.id_column].reset_index(drop=True)
    return pd.Series(np.arange(table.n_rows), name="row")


# ------------------------------------------------------------------------------------ fitting stages
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
        _rate(n, time.perf_counter() - fitted),
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
    rows = np.arange(len(labels))
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(len(labels), sample, replace=False))
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


def evaluate(
    x: np.ndarray, z: np.ndarray, result: ClusterResult, featurizer: Featurizer, *, config: SegmentConfig
) -> dict[str, Any]:
    """All metrics of the run, for ``metrics.json``."""
    metrics = evaluate_segments(
        x,
        result.labels,
        z=z,
        silhouette_sample=config.evaluate.silhouette_sample,
        seed=config.seed,
        known_silhouette=result.score,  # the clustering stage scored these labels on the same sample
        metrics_sample=config.evaluate.metrics_sample,
    )
    metrics["k_selection"] = {
        "criterion": result.criterion,
        "space": "preprocessed",
        "fit_sample": min(getattr(config.cluster, "fit_sample", x.shape[0]), x.shape[0]),
        "scores": {str(k): v for k, v in result.k_scores.items()},
        "chosen_k": result.model.n_clusters_,
    }
    if config.evaluate.stability_resamples:
        metrics["stability"] = bootstrap_stability(
            z,
            result.labels,
            result.model,
            resamples=config.evaluate.stability_resamples,
            fraction=config.evaluate.stability_fraction,
            sample_size=config.evaluate.stability_sample,
            seed=config.seed,
        )
    if result.alignment:
        metrics["alignment"] = result.alignment
    if isinstance(result.model, HDBSCANClusterer) and hasattr(result.model, "sample_agreement_"):
        # Fitted on a sample, the rest assigned: how well the assignment rule reproduces the fit.
        metrics["clusterer_sample"] = {
            "fit_rows": int(result.model.fit_rows_),
            "rows": len(result.labels),
            "sample_agreement": float(result.model.sample_agreement_),
        }
    metrics["featurizer"] = {
        "kind": featurizer.kind,
        "output_dim": int(z.shape[1]),
        "input_dim": int(x.shape[1]),
    }
    if featurizer.history:
        metrics["featurizer"]["final_train_loss"] = featurizer.history[-1]["train_loss"]
        metrics["featurizer"]["final_val_loss"] = featurizer.history[-1]["val_loss"]
        metrics["featurizer"]["epochs"] = len(featurizer.history)
    return metrics


def assemble_model(
    table: ValidatedTable,
    pre: Preprocessor,
    featurizer: Featurizer,
    result: ClusterResult,
    x: np.ndarray,
    metrics: dict[str, Any],
    *,
    config: SegmentConfig,
    data_hash: str,
    source: str,
) -> SegmentationModel:
    """Put the fitted parts together and measure how well the bundle reproduces the training labels.

    ``assignment_agreement`` is the share of (up to ``evaluate.agreement_sample``) training rows whose
    label from the full prediction path equals the training label: 1 by construction for centroid models
    (k-means, mini-batch, agglomerative, whose training labels are defined by the nearest-centroid rule)
    and GMMs, up to a row within float32 rounding of a boundary (the sample is predicted in products of
    another shape, which some BLAS kernels sum in another order); below 1 where training labels come
    from a fit that the prediction rule approximates (HDBSCAN's approximate_predict, DBSCAN's nearest
    core point).
    """
    centroids = standardized_differences(x, result.labels, pre.feature_names_out_)
    carried = {int(k): v for k, v in ((result.alignment or {}).get("carried_names") or {}).items()}
    names, sources = resolve_names(segment_names(centroids), config.insights.names, carried)
    model = SegmentationModel(
        schema=table.schema,
        preprocessor=pre,
        featurizer=featurizer,
        clusterer=result.model,
        segments=segment_summary(centroids, result.labels, names, sources),
        manifest={
            "name": config.model_name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "data": {
                "source": source,
                "content_hash": data_hash,
                "n_rows": table.n_rows,
                "schema_kind": table.schema.kind,
            },
            "config": config.model_dump(mode="json"),
        },
    )
    n = table.n_rows
    idx = sample_positions(n, config.evaluate.agreement_sample, config.seed)
    reference_idx = sample_positions(n, config.drift.reference_sample, config.seed)
    # Both samples are seeded draws of the same rows (identical at the default sizes): read them once.
    rows = table.take(np.union1d(idx, reference_idx))
    model.reference = drift.build_reference(  # training distributions for drift monitoring
        rows.loc[reference_idx], pre, result.labels, bins=config.drift.bins
    )
    predicted = model.predict(rows.loc[idx], validate=False)
    metrics = {
        **metrics,
        "assignment_agreement": float((predicted == result.labels[idx]).mean()),
        "assignment_agreement_rows": len(idx),
    }
    model.manifest["metrics"] = metrics
    return model


def fit_model(
    frame: pd.DataFrame, config: SegmentConfig, *, source: str = "<frame>", data_hash: str = ""
) -> tuple[SegmentationModel, ClusterResult]:
    """Every stage in this process, without Prefect or caching (notebooks, tests, benchmarks).

    The flow runs the same nodes as cached tasks; this is the plain sequence, returning the assembled
    model (not yet saved) and the clustering result with its training labels.
    """
    table = validate_table(frame, config.data, source=source, seed=config.seed)
    pre, x = fit_preprocessing(table, config.preprocess, float32=config.data.float32, seed=config.seed)
    featurizer, z = fit_features(x, config.featurize, seed=config.seed)
    result = fit_segments(
        z, x, config.cluster, seed=config.seed, silhouette_sample=config.evaluate.silhouette_sample
    )
    metrics = evaluate(x, z, result, featurizer, config=config)
    model = assemble_model(
        table, pre, featurizer, result, x, metrics, config=config, data_hash=data_hash, source=source
    )
    return model, result


# ------------------------------------------------------------------------------------------ outputs
def write_run_outputs(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    featurizer: Featurizer,
) -> dict[str, str]:
    """Write the run's outputs: bundle, metrics, labels, config (and the autoencoder's losses)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"bundle": str(save_bundle(model, out_dir / "bundle"))}
    ids = customer_ids(table)
    frame = pd.DataFrame({ids.name or "id": ids.to_numpy(), "segment": labels.astype(np.int32)})
    paths["labels"] = str(write_table(frame, out_dir / "labels.parquet"))
    paths["metrics"] = str(write_json(model.manifest["metrics"], out_dir / "metrics.json"))
    paths["config"] = str(
        write_text(yaml.safe_dump(model.manifest["config"], sort_keys=False), out_dir / "config.yaml")
    )
    if featurizer.history:
        paths["loss_history"] = str(
            write_table(pd.DataFrame(featurizer.history), out_dir / "loss_history.csv")
        )
    return paths


def insights_config(model: SegmentationModel) -> InsightsConfig:
    """The insights settings the model was trained with (defaults for bundles that predate them)."""
    return InsightsConfig.model_validate(model.manifest.get("config", {}).get("insights", {}))


def _raw_columns(
    table: ValidatedTable, pre: Preprocessor, batch: int = 16
) -> Iterator[tuple[str, np.ndarray]]:
    """Dense columns in original units, read ``batch`` columns at a time (bounded memory, few reads)."""
    names = pre.dense_columns
    for start in range(0, len(names), batch):
        part = table.read(names[start : start + batch])
        for name in names[start : start + batch]:
            yield name, pre.raw_column(part, name)


def write_insights(
    out_dir: Path,
    model: SegmentationModel,
    table: ValidatedTable,
    labels: np.ndarray,
    x: np.ndarray,
    history: list[dict[str, float]],
    *,
    seed: int,
) -> dict[str, str]:
    """The visualize stage: ``profile.csv``, plots in ``DIR/plots/``, ``report.html`` and ``report.md``.

    Everything is read from the saved bundle (names, centroids, metrics, settings) plus the training
    rows and labels, so ``segment report DIR`` regenerates exactly what the flow wrote. Plots sample
    rows and the profile reads one column at a time, so the cost is bounded on millions of customers.
    """
    from segmentation.insights.plots import make_plots  # matplotlib is only needed here
    from segmentation.insights.report import ReportContext, Thresholds, write_report

    settings = insights_config(model)
    pre = model.preprocessor
    categorical_columns = [c.name for c in model.schema.columns if c.kind == "categorical"]
    profile = build_profile(
        _raw_columns(table, pre),  # a few columns at a time
        model.centroids,
        labels,
        model.segment_names,
        n_top=settings.top_features,
        categorical=table.read(categorical_columns) if categorical_columns else None,
    )
    paths = {"profile": str(write_table(profile, out_dir / "profile.csv"))}
    metrics = model.manifest["metrics"]
    plots = make_plots(
        out_dir / "plots",
        x=x,
        labels=labels,
        raw=lambda rows: pre.raw_frame(table.take(rows)),
        diffs=model.centroids,
        names=model.segment_names,
        k_scores=metrics["k_selection"]["scores"],
        chosen_k=int(metrics["k_selection"]["chosen_k"]),
        history=history,
        max_points=settings.max_points,
        embedding=settings.embedding,
        embedding_sample=settings.embedding_sample,
        seed=seed,
    )
    paths["plots"] = str(out_dir / "plots")
    context = ReportContext(
        manifest=model.manifest,
        segments=model.segments["segments"],
        centroids=model.centroids,
        profile=profile,
        plots=plots,
        thresholds=Thresholds(
            small_segment=settings.small_segment_share,
            large_segment=settings.large_segment_share,
            noise=settings.noise_share,
        ),
        feature_count=len(model.schema.columns),
    )
    return paths | write_report(context, out_dir)


def rename_segments(model: SegmentationModel, names: dict[int, str], bundle_dir: Path) -> SegmentationModel:
    """Store user names in a finished run's bundle (no refit); other segments keep their names.

    Raises:
        ConfigError: a name for a segment the model does not have, or duplicate names.
    """
    validated = InsightsConfig(names=names).names
    sources = {int(seg["id"]): seg.get("name_source", "auto") for seg in model.segments["segments"]}
    current = model.segment_names
    kept = {src: {s: current[s] for s in current if sources[s] == src} for src in ("user", "previous")}
    final, final_sources = resolve_names(
        segment_names(model.centroids), {**kept["user"], **validated}, kept["previous"]
    )
    for seg in model.segments["segments"]:
        seg["name"], seg["name_source"] = final[int(seg["id"])], final_sources[int(seg["id"])]
    insights = model.manifest.setdefault("config", {}).setdefault("insights", {})
    insights["names"] = {str(k): v for k, v in final.items() if final_sources[k] == "user"}
    save_bundle(model, bundle_dir)
    return model


def rebuild_insights(
    run_dir: Path, *, data: str | None = None, names: dict[int, str] | None = None
) -> dict[str, str]:
    """``segment report DIR``: profile, plots and report of a finished run, without retraining.

    The training table is read again (``data`` or the path in the bundle's manifest) and must be the
    same file: its content hash is checked, so labels and rows line up. The saved bundle transforms it
    (nothing is refit); labels come from ``labels.parquet``.

    Raises:
        BundleError: ``run_dir`` holds no valid bundle.
        ConfigError: the data file is missing or differs from the training data, or bad ``names``.
    """
    bundle_dir = find_bundle(run_dir)
    model = load_bundle(bundle_dir)
    source = data or str(model.manifest["data"]["source"])
    if not Path(source).is_file():
        raise ConfigError(
            f"training data {source} not found; pass --data with the file the model was trained on"
        )
    expected = model.manifest["data"]["content_hash"]
    if file_digest(source) != expected:
        raise ConfigError(
            f"{source} is not the training data of this run (sha256 differs from {expected[:12]}...); "
            "pass --data with the exact file the model was trained on"
        )
    if names:
        model = rename_segments(model, names, bundle_dir)
    if table_format(source) == "parquet":
        # Read in chunks against the model's own schema: a table of millions of rows never sits in memory.
        table = validate_source(source, DataConfig(), source=source, schema=model.schema)
    else:
        frame = model.validate(read_table(source), source=source)
        table = ValidatedTable(
            schema=model.schema,
            report=ValidationReport(source=source, n_rows=len(frame), n_columns=frame.shape[1]),
            frame=frame,
        )
    labels_path = run_dir / "labels.parquet"
    if not labels_path.is_file():
        raise BundleError(f"{run_dir}: labels.parquet is missing; cannot rebuild the report")
    labels = pd.read_parquet(labels_path)["segment"].to_numpy().astype(np.int64)
    if len(labels) != table.n_rows:
        raise BundleError(f"{labels_path} has {len(labels)} rows, the training data {table.n_rows}")
    history_path = run_dir / "loss_history.csv"
    history: list[dict[str, float]] = (
        [{str(k): float(v) for k, v in r.items()} for r in pd.read_csv(history_path).to_dict("records")]
        if history_path.is_file()
        else []
    )
    x = transform_table(model.preprocessor, table)
    seed = int(model.manifest.get("config", {}).get("seed", 0))
    paths = write_insights(run_dir, model, table, labels, x, history, seed=seed)
    if names:
        paths["bundle"] = str(bundle_dir)
    return paths


def write_validation_report(out_dir: Path, report: ValidationReport) -> list[Path]:
    """Write ``validation_report.json`` and ``validation_report.txt`` next to the run."""
    return [
        write_json(report.to_dict(), out_dir / "validation_report.json"),
        write_text(report.to_text() + "\n", out_dir / "validation_report.txt"),
    ]


__all__ = [
    "CC_GENERAL_ID",
    "STAGES",
    "ValidatedTable",
    "align_segments",
    "assemble_model",
    "customer_ids",
    "evaluate",
    "fit_features",
    "fit_model",
    "fit_preprocessing",
    "fit_segments",
    "previous_model",
    "rebuild_insights",
    "stage_keys",
    "transform_table",
    "validate_source",
    "validate_table",
    "write_insights",
    "write_run_outputs",
    "write_validation_report",
]
