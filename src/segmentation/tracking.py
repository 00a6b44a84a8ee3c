"""Weights & Biases tracking of training runs, offline by default, and a reader for offline run files.

Every ``segment train`` run becomes a W&B run:

* config: the resolved configuration as flat dotted keys (``featurize.encoding_dim``), so the dashboard's
  tables and parallel-coordinates plots work, and sweep parameters are the same keys;
* summary: the verdict, warning codes, each segment's name, description and rule with its precision and
  recall (``segment.0.rule``); every number of ``metrics.json``, flattened the same way (``silhouette``,
  ``stability.ari_pairwise_mean``) — the names sweeps optimise;
* history: the autoencoder's train/validation loss per epoch;
* media: every plot as an image and ``profile.csv`` as a ``wandb.Table``;
* artifacts: the input table as a ``dataset`` artifact (by reference: W&B checksums the file, it does not
  copy it; named after the file, so a new content hash is a new version) and the bundle as a ``model``
  artifact whose metadata holds the data hash, code version, bundle digest and metrics. Online, the dataset
  is declared as the run's input (lineage) and the model is linked into the W&B Registry; offline W&B
  forbids inputs, so the dataset is logged as an output and the model's metadata names it.

Mode: ``WANDB_MODE`` if set (``disabled`` turns tracking off), else ``tracking.mode``; ``auto`` means online
when ``WANDB_API_KEY`` is set and offline otherwise. Offline runs are plain files under
``<dir>/wandb/offline-run-*``; ``wandb sync`` uploads them later. :func:`read_offline_run` reads them back.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from segmentation.bundle import SegmentationModel, bundle_digest, load_bundle
from segmentation.config import SegmentConfig, TrackingConfig, flatten
from segmentation.errors import requires_extra
from segmentation.settings import Settings

logger = logging.getLogger(__name__)

_MODES = {
    "offline": "offline",
    "dryrun": "offline",
    "online": "online",
    "run": "online",
    "disabled": "disabled",
}


def resolve_mode(config: TrackingConfig, settings: Settings) -> str:
    """``online``, ``offline`` or ``disabled`` (``WANDB_MODE`` wins, then config, then the API key)."""
    env = (settings.wandb_mode or "").strip().lower()
    if env in _MODES:
        return _MODES[env]
    if config.mode != "auto":
        return config.mode
    return "online" if settings.wandb_api_key_set else "offline"


def tracking_dir(config: TrackingConfig, settings: Settings) -> Path:
    """Where W&B writes its files: ``tracking.dir``, ``$WANDB_DIR``, else ``$SEGMENT_HOME``."""
    path = Path(config.dir).resolve() if config.dir else settings.wandb_dir or settings.home
    path.mkdir(parents=True, exist_ok=True)
    return path


def numeric_summary(metrics: dict[str, Any]) -> dict[str, float]:
    """Every number of ``metrics.json`` under its flat dotted key (booleans and text are left out)."""
    out = {}
    for key, value in flatten(metrics).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def judgement_summary(metrics: dict[str, Any], segments: list[dict[str, Any]]) -> dict[str, Any]:
    """What an analyst acts on, as summary values: the verdict, its warnings, each segment's name and rule.

    ``verdict``, ``warnings`` (the codes, comma-separated; "" when none) and, per segment ID ``s``,
    ``segment.s.name``, ``segment.s.description``, ``segment.s.rule``, ``segment.s.rule_precision`` and
    ``segment.s.rule_recall`` (keys missing from older bundles are left out).
    """
    out: dict[str, Any] = {}
    if "verdict" in metrics:
        out["verdict"] = metrics["verdict"]
        out["warnings"] = ", ".join(w["code"] for w in metrics.get("warnings") or [])
    for seg in segments:
        for key in ("name", "description", "rule", "rule_precision", "rule_recall"):
            if seg.get(key) is not None:
                out[f"segment.{seg['id']}.{key}"] = seg[key]
    return out


def _artifact_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "dataset"


@dataclass(frozen=True)
class TrackedRun:
    """Where a training run was tracked."""

    mode: str
    run_id: str
    run_path: Path
    url: str | None = None
    model_artifact: str | None = None


def track_training(
    run_dir: Path,
    *,
    config: SegmentConfig,
    data_path: str,
    model_name: str,
    paths: dict[str, str],
    settings: Settings,
    group: str | None = None,
    tags: tuple[str, ...] = (),
    summary_extra: dict[str, Any] | None = None,
) -> TrackedRun | None:
    """Log a finished training run (its directory as written by the flow) to W&B.

    Args:
        run_dir: the run directory (bundle/, metrics.json, profile.csv, plots/).
        config: the resolved configuration.
        data_path: the training table.
        model_name: the registered model name (the model artifact's name).
        paths: what the flow wrote (``plots`` and the like), for the media.
        settings: the mode and directory the environment asks for (W&B reads the key itself).
        group: W&B run group (a sweep's ID groups its trials); ``WANDB_RUN_GROUP`` otherwise.
        tags: extra run tags.
        summary_extra: more summary values (the registry version, for example).

    Returns:
        The tracked run, or None when tracking is disabled.
    """
    mode = resolve_mode(config.tracking, settings)
    if mode == "disabled":
        logger.info("W&B tracking disabled")
        return None
    with requires_extra("train", "W&B tracking (WANDB_MODE=disabled turns it off)"):
        import wandb

    model = load_bundle(run_dir / "bundle")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    data_hash = model.manifest["data"]["content_hash"]
    run = wandb.init(
        project=config.tracking.project,
        entity=config.tracking.entity,
        dir=str(tracking_dir(config.tracking, settings)),
        mode=cast(Any, mode),
        job_type="train",
        group=group or settings.wandb_run_group,
        name=run_dir.name,
        tags=["segmentation", config.featurize.kind, config.cluster.kind, *tags],
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    try:
        # Under `wandb agent` the sweep's parameters are already in run.config under the same keys and
        # values; allow_val_change covers types YAML and the agent render differently (1e-3 vs 0.001).
        run.config.update(config.flat(), allow_val_change=True)
        run.config.update({"data.content_hash": data_hash, "data.path": data_path}, allow_val_change=True)
        _log_history_and_media(run, run_dir, paths)
        run.summary.update(numeric_summary(metrics))
        run.summary.update(judgement_summary(metrics, model.segments["segments"]))
        run.summary.update({"bundle_digest": bundle_digest(model.manifest), **(summary_extra or {})})
        _log_artifacts(run, mode, model, metrics, config, data_path, model_name, run_dir)
        tracked = TrackedRun(
            mode=mode,
            run_id=run.id,
            run_path=Path(run.dir).parent,
            url=run.url if mode == "online" else None,
            model_artifact=f"{_artifact_name(model_name)}:candidate",
        )
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    return tracked


def _log_history_and_media(run: Any, run_dir: Path, paths: dict[str, str]) -> None:
    """The autoencoder's losses (one W&B step per epoch), the plots and the profile table."""
    import wandb

    history_path = run_dir / "loss_history.csv"
    if history_path.is_file():
        for record in pd.read_csv(history_path).to_dict("records"):
            losses = {f"autoencoder/{k}": float(v) for k, v in record.items() if k != "epoch"}
            run.log({"epoch": int(record["epoch"]), **losses})
    media: dict[str, Any] = {}
    plots_dir = Path(paths.get("plots", run_dir / "plots"))
    for image in sorted(plots_dir.glob("*.png")):
        media[f"plots/{image.stem}"] = wandb.Image(str(image), caption=image.stem)
    profile_path = run_dir / "profile.csv"
    if profile_path.is_file():
        media["profile"] = wandb.Table(dataframe=pd.read_csv(profile_path))
    if media:
        run.log(media)


def _log_artifacts(
    run: Any,
    mode: str,
    model: SegmentationModel,
    metrics: dict[str, Any],
    config: SegmentConfig,
    data_path: str,
    model_name: str,
    run_dir: Path,
) -> None:
    """The dataset (by reference) and the model bundle as artifacts; the bundle aliased ``candidate``.

    Online, the dataset is the run's input in W&B's lineage and the model is linked into the W&B
    Registry; offline W&B has no inputs, so the dataset is logged as an output, named in the model's
    metadata.
    """
    import wandb

    data_hash = model.manifest["data"]["content_hash"]
    dataset = wandb.Artifact(
        _artifact_name(f"dataset-{Path(data_path).stem}"),
        type="dataset",
        metadata={"sha256": data_hash, "rows": metrics.get("n_rows"), "source": data_path},
    )
    dataset.add_reference(Path(data_path).resolve().as_uri(), name=Path(data_path).name)
    if mode == "online":
        run.use_artifact(dataset)
    else:
        run.log_artifact(dataset)
    artifact = wandb.Artifact(
        _artifact_name(model_name),
        type="model",
        description=f"Customer segmentation bundle ({metrics.get('n_clusters')} segments)",
        metadata={
            "data_hash": data_hash,
            "dataset_artifact": dataset.name,
            "code_version": model.manifest.get("code_version"),
            "bundle_digest": bundle_digest(model.manifest),
            "metrics": numeric_summary(metrics),
            "config": config.flat(),
        },
    )
    artifact.add_dir(str(run_dir / "bundle"))
    run.log_artifact(artifact, aliases=["candidate"])
    if mode == "online":
        run.link_artifact(artifact, target_path=f"wandb-registry-model/{model_name}", aliases=["candidate"])


def flush() -> None:
    """Wait until W&B has written every run of this process to disk (shuts its service down).

    ``run.finish()`` returns before W&B's background service has appended the run's last records (the
    exit record among them); a process that reads its own offline runs, or hands them to ``wandb sync``,
    calls this first. A later ``wandb.init`` starts a new service.
    """
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


# ----------------------------------------------------------------------------------- offline files
_BLOCK = 32_768
_HEADER = 7  # ":W&B" + magic (2 bytes) + version (1 byte)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> list[bytes]:
    """The raw records of a ``.wandb`` transaction log (LevelDB-style log blocks of 32 KiB)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    out, pos, pending = [], _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left  # block trailer padding
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            out.append(pending + chunk)
            pending = b""
    return out


def _items_to_dict(items: Any) -> dict[str, Any]:
    out = {}
    for item in items:
        key = ".".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json)
    return out


@dataclass
class OfflineRun:
    """What an offline W&B run recorded, read back from its ``.wandb`` file."""

    run_id: str
    project: str
    group: str
    job_type: str
    tags: list[str]
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    sweep_id: str = ""


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse an ``offline-run-*`` directory with W&B's own protobuf definitions.

    Config and summary are the final values after every update; history is one dict per logged step;
    artifacts list type, name, aliases, digest, metadata and the files of their manifest.
    """
    with requires_extra("train", "reading W&B offline runs"):
        from wandb.proto import wandb_internal_pb2

    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir} has no run-*.wandb file")
    result = OfflineRun("", "", "", "", [], {}, {}, [])
    for raw in _records(files[0]):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            result.run_id, result.project, result.group = run.run_id, run.project, run.run_group
            result.job_type, result.tags, result.sweep_id = run.job_type, list(run.tags), run.sweep_id
            result.config.update({i.key: json.loads(i.value_json) for i in run.config.update})
        elif kind == "config":
            result.config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "summary":
            result.summary.update(_items_to_dict(record.summary.update))
        elif kind == "history":
            result.history.append(_items_to_dict(record.history.item))
        elif kind == "artifact":
            art = record.artifact
            result.artifacts.append(
                {
                    "type": art.type,
                    "name": art.name,
                    "aliases": list(art.aliases),
                    "digest": art.digest,
                    "metadata": json.loads(art.metadata) if art.metadata else {},
                    "files": [entry.path for entry in art.manifest.contents],
                    "references": [entry.ref for entry in art.manifest.contents if entry.ref],
                }
            )
        elif kind == "exit":
            result.exit_code = record.exit.exit_code
    result.config.pop("_wandb", None)
    return result


def offline_runs(root: str | Path) -> list[Path]:
    """Offline run directories under ``root/wandb``, oldest first."""
    return sorted((Path(root) / "wandb").glob("offline-run-*"))
