"""Typed, strict configuration: parsed once at the entry point.

Every section is a frozen pydantic model that forbids unknown keys. Pluggable components (featurizer,
clusterer) are discriminated unions on a ``kind`` field, so ``-S featurize=autoencoder`` switches the
component and ``-S featurize.encoding_dim=8`` sets one of its parameters. The same dotted overrides
are used by the CLI and by sweeps.

The sections live in :mod:`.data` (``data``, ``preprocess``), :mod:`.components` (``featurize``,
``cluster``) and :mod:`.outputs` (``evaluate``, ``insights``, ``tracking``, ``registry``, ``drift``,
``verdict``); this module holds the whole (:class:`SegmentConfig`) and the parsing of YAML and overrides.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from segmentation.config.base import Strict
from segmentation.config.components import (
    AgglomerativeConfig,
    AutoencoderConfig,
    ClusterConfig,
    DBSCANConfig,
    FeaturizeConfig,
    GMMConfig,
    HDBSCANConfig,
    KClustererConfig,
    KMeansConfig,
    KSearch,
    MiniBatchKMeansConfig,
    NoFeaturizerConfig,
    PCAConfig,
)
from segmentation.config.data import (
    ColumnOverride,
    DataConfig,
    PreprocessConfig,
)
from segmentation.config.outputs import (
    DriftConfig,
    EvaluateConfig,
    InsightsConfig,
    RegistryConfig,
    TrackingConfig,
    VerdictConfig,
)
from segmentation.errors import ConfigError

DEFAULTS_FILE = Path(__file__).parent.parent / "defaults" / "params.yaml"


class SegmentConfig(Strict):
    """The whole, resolved configuration of a training run."""

    seed: int = 42
    model_name: str = Field("customer-segments", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    featurize: FeaturizeConfig = PCAConfig()
    cluster: ClusterConfig = KMeansConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    insights: InsightsConfig = InsightsConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    drift: DriftConfig = DriftConfig()
    verdict: VerdictConfig = VerdictConfig()

    def section_json(self, name: str) -> str:
        """Canonical JSON of one section (used in cache keys)."""
        return json.dumps(getattr(self, name).model_dump(mode="json"), sort_keys=True)

    def flat(self) -> dict[str, Any]:
        """Flat dotted keys (``featurize.encoding_dim``), as dashboards and sweeps expect."""
        return flatten(self.model_dump(mode="json"))


# ----------------------------------------------------------------------------------------- parsing
def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is read as YAML (``8`` -> int, ``[2, 6]`` -> list, ``null``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. featurize.encoding_dim=8)")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {key}: cannot read value {raw!r}: {exc}") from exc
    return key, value


_UNION_SECTIONS = {"featurize", "cluster"}


def apply_overrides(tree: dict[str, Any], overrides: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Apply dotted overrides to a raw config tree (a deep copy is returned).

    Setting a component section to a bare name (``featurize=autoencoder``, or equivalently
    ``featurize.kind=autoencoder`` as sweeps send it) switches its ``kind`` and resets its parameters
    to that component's defaults, unless the kind is unchanged. Switches are applied before parameter
    overrides so the order on the command line does not matter.
    """
    out = copy.deepcopy(tree)
    items = [
        (k.removesuffix(".kind"), v) if k.removesuffix(".kind") in _UNION_SECTIONS else (k, v)
        for k, v in overrides
    ]

    def is_switch(key: str, value: Any) -> bool:
        return key in _UNION_SECTIONS and isinstance(value, str)

    for key, value in [(k, v) for k, v in items if is_switch(k, v)]:
        current = out.get(key)
        if not (isinstance(current, dict) and current.get("kind") == value):
            out[key] = {"kind": value}
    others = [(k, v) for k, v in items if not is_switch(k, v)]
    for key, value in others:
        parts = key.split(".")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{'.'.join(parts[: depth + 1])} is a value, not a section; cannot set {key}"
                )
            node = child
        node[parts[-1]] = value
    return out


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        # Drop the union tag pydantic puts in locations: featurize.pca.n_components -> featurize.n_components.
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in _KIND_TAGS))
        if err["type"] == "extra_forbidden":
            lines.append(f"  {loc}: unknown key")
        elif err["type"] == "union_tag_invalid":
            ctx = err["ctx"]
            lines.append(f"  {loc}: unknown kind {ctx['tag']!r}; allowed: {ctx['expected_tags']}")
        else:
            lines.append(f"  {loc}: {err['msg']} (got {err['input']!r})")
    return "invalid configuration:\n" + "\n".join(lines)


_KIND_TAGS = {
    "none",
    "pca",
    "autoencoder",
    "kmeans",
    "minibatch_kmeans",
    "gmm",
    "hdbscan",
    "agglomerative",
    "dbscan",
}


def default_tree() -> dict[str, Any]:
    """The project's default configuration (the one ``make demo`` uses), as a raw tree."""
    with DEFAULTS_FILE.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def load_config(
    path: str | Path | None = None, overrides: Iterable[str | tuple[str, Any]] = ()
) -> SegmentConfig:
    """Build the resolved, validated configuration.

    Args:
        path: YAML file replacing the packaged defaults; None uses the defaults.
        overrides: ``key=value`` strings (or parsed pairs), applied in order.

    Returns:
        The frozen, validated configuration.

    Raises:
        ConfigError: on unreadable files, unknown keys or bad values; the message names the key.
    """
    if path is None:
        tree = default_tree()
    else:
        try:
            tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    pairs = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    tree = apply_overrides(tree, pairs)
    try:
        return SegmentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from exc


__all__ = [
    "DEFAULTS_FILE",
    "AgglomerativeConfig",
    "AutoencoderConfig",
    "ClusterConfig",
    "ColumnOverride",
    "DBSCANConfig",
    "DataConfig",
    "DriftConfig",
    "EvaluateConfig",
    "FeaturizeConfig",
    "GMMConfig",
    "HDBSCANConfig",
    "InsightsConfig",
    "KClustererConfig",
    "KMeansConfig",
    "KSearch",
    "MiniBatchKMeansConfig",
    "NoFeaturizerConfig",
    "PCAConfig",
    "PreprocessConfig",
    "RegistryConfig",
    "SegmentConfig",
    "Strict",
    "TrackingConfig",
    "VerdictConfig",
    "apply_overrides",
    "default_tree",
    "flatten",
    "load_config",
    "parse_override",
]
