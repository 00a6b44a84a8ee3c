"""How the training flow's stages are cached: chained keys over data, parameters and code.

Every stage task receives a ``cache_key`` from :func:`stage_keys`; its cache policy
(:data:`STAGE_CACHE`) is that key plus the task's own source, so the run id never enters the key and reruns
reuse results across processes.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from prefect.cache_policies import TASK_SOURCE, CacheKeyFnPolicy
from prefect.context import TaskRunContext

from segmentation.config import SegmentConfig
from segmentation.versioning import code_fingerprint

STAGES = ("load", "preprocess", "featurize", "cluster", "evaluate")
# Library code each stage runs. The load stage's code (validation, the contract) is part of its key and
# so, through the chain, of every stage's key.
_STAGE_CODE = {
    "load": ("segmentation.data", "segmentation.contract", "segmentation.stages.load"),
    "preprocess": ("segmentation.preprocess", "segmentation.stages.fit"),
    "featurize": ("segmentation.features",),
    "cluster": ("segmentation.clustering", "segmentation.alignment"),
    "evaluate": ("segmentation.evaluation", "segmentation.stages.evaluate", "segmentation.verdict"),
}
_STAGE_SECTIONS = {
    "load": ("data",),
    "preprocess": ("preprocess",),
    "featurize": ("featurize",),
    "cluster": ("cluster",),
    "evaluate": ("evaluate", "verdict"),
}
EXPIRY = timedelta(days=30)
"""How long a cached stage output is kept."""


def _stage_key(_context: TaskRunContext, parameters: dict[str, Any]) -> str:
    return str(parameters["cache_key"])


STAGE_CACHE = CacheKeyFnPolicy(cache_key_fn=_stage_key) + TASK_SOURCE
"""The stage tasks' cache policy: their ``cache_key`` parameter plus the task's source."""


def stage_keys(data_hash: str, config: SegmentConfig, align_digest: str | None = None) -> dict[str, str]:
    """Chained cache keys: each stage's key hashes the previous key, its own parameters and its code.

    So a rerun with nothing changed hits every stage; changing only clusterer parameters changes the
    keys of ``cluster`` and ``evaluate`` only; changing the data changes every key. The seed is part of
    every stage's parameters. ``align_digest`` (the digest of the bundle whose IDs are kept, see
    :func:`segmentation.stages.fit.align_segments`) is part of the cluster stage's key: the alignment
    happens there.
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
        if stage == "evaluate":  # the verdict's segment-share and noise warnings read these thresholds
            shares = config.insights
            digest.update(f"shares={shares.small_segment_share},{shares.large_segment_share}".encode())
            digest.update(f"noise={shares.noise_share}".encode())
        digest.update(code_fingerprint(*_STAGE_CODE[stage]).encode())
        if stage == "cluster" and align_digest:
            digest.update(f"align={align_digest}".encode())
        previous = keys[stage] = f"{stage}-{digest.hexdigest()[:32]}"
    return keys


__all__ = ["EXPIRY", "STAGES", "STAGE_CACHE", "stage_keys"]
