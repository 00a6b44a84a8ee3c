"""The model bundle: preprocessing + featurizer + clusterer + schema + metadata in one directory.

Layout::

    bundle/
      manifest.json     name, created_at, code version, data hash, resolved config, metrics, file digests
      schema.json       input contract (ID column, feature columns, kinds, ranges)
      preprocess.json   preprocess.npz     fitted preprocessing
      featurizer.json   featurizer.npz     fitted featurizer (PCA components or autoencoder weights)
      clusterer.json    clusterer.npz      fitted clusterer (+ clusterer.joblib for HDBSCAN only)
      segments.json     segment ids, names, sizes, shares, centroids in the preprocessed space, and what
                        distinguishes each segment (effect sizes, distinguishing features, a description)
      reference.json    training distributions for drift monitoring (optional: older bundles lack it)

Bundles are written to a temporary directory and renamed into place. Loading verifies every file's
SHA-256 against the manifest before reading it, and nothing is refit at prediction time.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation.clustering import NOISE, Clusterer, clusterer_from_state
from segmentation.contract.frame import validate_frame
from segmentation.contract.schema import TableSchema
from segmentation.data.io import replace_dir, staging_dir
from segmentation.errors import BundleError, DataValidationError, MissingExtraError
from segmentation.features import Featurizer, featurizer_from_state
from segmentation.insights.naming import Feature, features_of
from segmentation.preprocess import Preprocessor

BUNDLE_FORMAT = 1
_REQUIRED_FILES = frozenset(
    {
        "schema.json",
        "preprocess.json",
        "preprocess.npz",
        "featurizer.json",
        "featurizer.npz",
        "clusterer.json",
        "clusterer.npz",
        "segments.json",
    }
)


@dataclass
class SegmentationModel:
    """A fitted segmentation pipeline; the one object serving and batch scoring use."""

    schema: TableSchema
    preprocessor: Preprocessor
    featurizer: Featurizer
    clusterer: Clusterer
    segments: dict[str, Any]
    manifest: dict[str, Any]
    reference: dict[str, Any] | None = None
    """Training distributions for drift monitoring (``segmentation.drift``); None in older bundles."""

    @property
    def name(self) -> str:
        """Model name from the manifest."""
        return str(self.manifest.get("name", "segmentation"))

    @property
    def segment_names(self) -> dict[int, str]:
        """Segment ID -> name, as stored in ``segments.json``."""
        return {int(seg["id"]): str(seg["name"]) for seg in self.segments["segments"]}

    @property
    def centroids(self) -> pd.DataFrame:
        """Segment centroids in the preprocessed space (rows: segment IDs, columns: features).

        The preprocessed space is standardized on the training population, so these are each segment's
        standardized differences from the population mean.
        """
        rows = self.segments["segments"]
        return pd.DataFrame(
            [seg["centroid"] for seg in rows],
            index=pd.Index([int(seg["id"]) for seg in rows], name="segment"),
            columns=self.segments["feature_names"],
        )

    @property
    def effects(self) -> pd.DataFrame | None:
        """Effect size of every feature per segment: Cohen's d, or h for ``column=level`` (rows: segment IDs).

        See :func:`segmentation.insights.profiles.segment_effects`; None for bundles that predate it.
        """
        rows = self.segments["segments"]
        if "effect_names" not in self.segments or any("effects" not in seg for seg in rows):
            return None
        return pd.DataFrame(
            [seg["effects"] for seg in rows],
            index=pd.Index([int(seg["id"]) for seg in rows], name="segment"),
            columns=self.segments["effect_names"],
        )

    @property
    def segment_features(self) -> dict[int, list[Feature]] | None:
        """Each segment's distinguishing features, largest effect first; None for bundles that predate them.

        Each :class:`~segmentation.insights.naming.Feature` has its kind, effect (Cohen's d or h), and for a
        categorical level the segment and overall shares, ``difference_pp`` and ``lift``; ``clause`` is its
        sentence ("more often channel = web (61% vs 30%)").
        """
        rows = self.segments["segments"]
        if any("features" not in seg for seg in rows):
            return None
        return {int(seg["id"]): features_of(seg) for seg in rows}

    @property
    def segment_descriptions(self) -> dict[int, str]:
        """Segment ID -> one-sentence description ("" for bundles that predate descriptions)."""
        return {int(seg["id"]): str(seg.get("description", "")) for seg in self.segments["segments"]}

    def validate(self, frame: pd.DataFrame, source: str = "<input>") -> pd.DataFrame:
        """Validate rows against the training schema (the ID column is optional here).

        Raises:
            DataValidationError: with the full report of every failed check.
        """
        validated, report = validate_frame(frame, self.schema, source=source, require_id=False)
        if not report.ok:
            raise DataValidationError(report)
        return validated

    def transform(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed matrix and feature-space matrix of already validated rows."""
        x = self.preprocessor.transform(frame)
        return x, self.featurizer.transform(x)

    def predict(self, frame: pd.DataFrame, *, validate: bool = True) -> np.ndarray:
        """Segment of each row (-1 is noise for density clusterers)."""
        if validate:
            frame = self.validate(frame)
        return self.clusterer.predict(self.transform(frame)[1])

    def predict_details(self, frame: pd.DataFrame, *, validate: bool = True) -> pd.DataFrame:
        """ID (when present), segment and confidence per row."""
        if validate:
            frame = self.validate(frame)
        labels, confidence, _ = self.clusterer.predict_details(self.transform(frame)[1])
        out = pd.DataFrame({"segment": labels, "confidence": confidence.astype(np.float32)})
        if self.schema.id_column and self.schema.id_column in frame.columns:
            out.insert(0, self.schema.id_column, frame[self.schema.id_column].to_numpy())
        return out


def segment_summary(
    centroids: pd.DataFrame,
    labels: np.ndarray,
    names: dict[int, str],
    name_sources: dict[int, str] | None = None,
    *,
    insights: Mapping[int, Mapping[str, Any]] | None = None,
    effect_names: list[str] | None = None,
) -> dict[str, Any]:
    """Names, sizes, shares and centroids of every segment, and what distinguishes each.

    Args:
        centroids: mean of every preprocessed feature per segment (rows: segment IDs), as
            :func:`segmentation.insights.profiles.standardized_differences` returns it.
        labels: segment per training row.
        names: segment ID -> name.
        name_sources: segment ID -> ``auto`` (derived), ``user`` (``insights.names``) or ``previous``
            (a user name carried over from the model the IDs were aligned to); ``auto`` when omitted.
        insights: segment ID -> further fields of its entry:
            :meth:`segmentation.insights.profiles.SegmentEffects.summary_fields` (``effects``,
            ``effect_floor``, ``features``, ``description``).
        effect_names: the features the ``effects`` lists follow (``SegmentEffects.effects.columns``).
    """
    name_sources = name_sources or {}
    n = len(labels)
    rows = []
    for seg in centroids.index:
        size = int((labels == seg).sum())
        rows.append(
            {
                "id": int(seg),
                "name": names[int(seg)],
                "name_source": name_sources.get(int(seg), "auto"),
                "noise": bool(seg == NOISE),
                "size": size,
                "share": float(size / n),
                "centroid": [float(v) for v in centroids.loc[seg]],
                **(insights or {}).get(int(seg), {}),
            }
        )
    summary: dict[str, Any] = {
        "space": "preprocessed",
        "feature_names": [str(c) for c in centroids.columns],
        "segments": rows,
    }
    if effect_names is not None:
        summary["effect_names"] = [str(c) for c in effect_names]
    return summary


# ------------------------------------------------------------------------------------------- saving
def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return buffer.getvalue()


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def save_bundle(model: SegmentationModel, path: str | Path) -> Path:
    """Write the bundle atomically: everything goes to a temporary directory renamed onto ``path``."""
    path = Path(path)
    pre_meta, pre_arrays = model.preprocessor.get_state()
    feat_meta, feat_arrays = model.featurizer.get_state()
    clu_meta, clu_arrays, clu_blob = model.clusterer.get_state()
    files: dict[str, bytes] = {
        "schema.json": _json_bytes(model.schema.model_dump(mode="json")),
        "preprocess.json": _json_bytes(pre_meta),
        "preprocess.npz": _npz_bytes(pre_arrays),
        "featurizer.json": _json_bytes(feat_meta),
        "featurizer.npz": _npz_bytes(feat_arrays),
        "clusterer.json": _json_bytes(clu_meta),
        "clusterer.npz": _npz_bytes(clu_arrays),
        "segments.json": _json_bytes(model.segments),
    }
    if clu_blob is not None:
        files["clusterer.joblib"] = clu_blob
    if model.reference is not None:
        files["reference.json"] = _json_bytes(model.reference)
    manifest = {
        **model.manifest,
        "format": BUNDLE_FORMAT,
        "created_at": model.manifest.get("created_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    staging = staging_dir(path)
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        (staging / "manifest.json").write_bytes(_json_bytes(manifest))
        replace_dir(staging, path)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    model.manifest = manifest
    return path


def find_bundle(path: str | Path) -> Path:
    """The bundle directory for ``path``: a bundle itself, or a run directory holding ``bundle/``.

    Raises:
        BundleError: when ``path`` is neither.
    """
    path = Path(path)
    for candidate in (path, path / "bundle"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise BundleError(f"{path} is neither a model bundle nor a run directory with bundle/manifest.json")


def bundle_digest(manifest: dict[str, Any]) -> str:
    """One digest for the whole bundle: SHA-256 over the per-file digests."""
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()


def load_bundle(path: str | Path) -> SegmentationModel:
    """Load and verify a bundle.

    Raises:
        BundleError: missing files, digest mismatch, or an unknown format.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a model bundle (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: manifest.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        format_ = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path}: unsupported bundle format {format_!r}")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise BundleError(f"{path}: manifest.json has no file digests")
    unlisted = sorted(_REQUIRED_FILES - set(listed))
    if unlisted:
        raise BundleError(f"{path}: manifest.json does not list {', '.join(unlisted)}")
    blobs: dict[str, bytes] = {}
    for name, expected in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise BundleError(f"{path}: missing {name}")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise BundleError(
                f"{path}: {name} does not match its digest in manifest.json (corrupted or altered)"
            )
        blobs[name] = data

    def arrays(name: str) -> dict[str, np.ndarray]:
        with np.load(io.BytesIO(blobs[name]), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}

    try:
        schema = TableSchema.model_validate(json.loads(blobs["schema.json"]))
        preprocessor = Preprocessor.from_state(
            schema, json.loads(blobs["preprocess.json"]), arrays("preprocess.npz")
        )
        featurizer = featurizer_from_state(json.loads(blobs["featurizer.json"]), arrays("featurizer.npz"))
        clusterer = clusterer_from_state(
            json.loads(blobs["clusterer.json"]), arrays("clusterer.npz"), blobs.get("clusterer.joblib")
        )
    except MissingExtraError as exc:  # an autoencoder bundle, torch not installed: say which bundle
        raise MissingExtraError(exc.extra, f"{path}: {exc.needed_for}", exc.missing) from exc
    except (KeyError, ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise BundleError(f"{path}: inconsistent bundle contents ({type(exc).__name__}: {exc})") from exc
    return SegmentationModel(
        schema=schema,
        preprocessor=preprocessor,
        featurizer=featurizer,
        clusterer=clusterer,
        segments=json.loads(blobs["segments.json"]),
        manifest=manifest,
        reference=json.loads(blobs["reference.json"]) if "reference.json" in blobs else None,
    )
