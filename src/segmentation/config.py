"""Typed, strict configuration: parsed once at the entry point.

Every section is a frozen pydantic model that forbids unknown keys. Pluggable components (featurizer,
clusterer) are discriminated unions on a ``kind`` field, so ``-S featurize=autoencoder`` switches the
component and ``-S featurize.encoding_dim=8`` sets one of its parameters. The same dotted overrides
are used by the CLI and by sweeps.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segmentation.errors import ConfigError

DEFAULTS_FILE = Path(__file__).parent / "defaults" / "params.yaml"


class Strict(BaseModel):
    """Base for every config section: immutable, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- data
def _level_key(level: str | int | float) -> str:
    """An ordinal level as text (``1`` and ``1.0`` are one level), as :mod:`contract.values` reads it."""
    if isinstance(level, float) and level.is_integer():
        return str(int(level))
    return str(level)


class ColumnOverride(Strict):
    """How one column is read, instead of what schema inference decides (``data.columns.NAME``)."""

    kind: Literal["ignore", "code", "categorical", "numeric", "ordinal", "date", "boolean"] | None = Field(
        None,
        description="ignore: not a feature; code: a group label (store, branch), read as categories; "
        "categorical, numeric, date, boolean; ordinal: ordered levels (needs order). Null: inferred.",
    )
    order: tuple[str | int | float, ...] | None = Field(
        None,
        description="The levels of an ordinal column, lowest first (e.g. ['0-20k', '20-50k', '50k+']); "
        "they become ranks 0, 1, 2... and any other value is rejected (check ordinal_level).",
    )
    weight: float = Field(
        1.0,
        ge=0,
        allow_inf_nan=False,
        description="Multiplies the column's share of the clustering space: weight 2 counts like two copies "
        "of the column (its variance doubles), 0 leaves it out of the segments (still validated).",
    )

    @model_validator(mode="after")
    def _check_order(self) -> ColumnOverride:
        if self.order is not None and self.kind != "ordinal":
            raise ValueError("order is only for kind: ordinal")
        if self.kind == "ordinal":
            levels = [_level_key(level) for level in self.order or ()]
            if len(levels) < 2:
                raise ValueError("kind: ordinal needs order: its levels, lowest first (at least two)")
            if len(set(levels)) < len(levels):
                raise ValueError(f"order lists a level twice: {levels}")
        if self.kind == "ignore" and self.weight != 1.0:
            raise ValueError("weight has no effect on a column of kind: ignore")
        return self


class DataConfig(Strict):
    """Where the customer table comes from and how its columns are read."""

    path: str | None = Field(
        None, description="CSV or Parquet file; None means the bundled CC GENERAL sample."
    )
    id_column: str | None = Field(None, description="Customer ID column; auto-detected when unambiguous.")
    schema_kind: Literal["auto", "cc_general", "inferred"] = Field(
        "auto", description="'auto' uses the CC GENERAL model when the table looks like it, else infers one."
    )
    drop_columns: tuple[str, ...] = Field((), description="Columns ignored for segmentation.")
    max_categories: int = Field(20, ge=2, le=1000, description="Most frequent levels kept per categorical.")
    reference_date: str | None = Field(
        None,
        description="ISO date for 'days since' features; default is the latest date in the training data.",
    )
    float32: bool = Field(True, description="Compute in float32 (halves memory; safe after scaling).")
    columns: dict[str, ColumnOverride] = Field(
        default_factory=dict,
        description="Per column (by name): kind, ordinal order, weight; instead of what inference decides. "
        "A name the table does not have is an error.",
    )


# --------------------------------------------------------------------------------------- preprocess
class PreprocessConfig(Strict):
    """Preprocessing fitted on training data only."""

    impute: Literal["median", "mean"] = "median"
    skew: Literal["none", "log1p", "yeo-johnson"] = "yeo-johnson"
    skew_threshold: float = Field(
        0.75, ge=0, description="Only columns whose absolute skewness exceeds this are transformed."
    )
    clip_quantiles: tuple[float, float] | None = Field(
        (0.005, 0.995), description="Clip every numeric column at these training quantiles; null disables."
    )
    scale: Literal["standard", "robust", "none"] = "standard"
    fit_sample: int = Field(
        100_000,
        ge=1000,
        description="Rows sampled for medians, quantiles and scales (Yeo-Johnson lambdas: 25,000 of them).",
    )

    @field_validator("clip_quantiles")
    @classmethod
    def _check_quantiles(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0.0 <= value[0] < value[1] <= 1.0:
            raise ValueError("clip_quantiles must satisfy 0 <= low < high <= 1")
        return value


# --------------------------------------------------------------------------------------- featurize
class NoFeaturizerConfig(Strict):
    """Cluster directly in the preprocessed space."""

    kind: Literal["none"] = "none"


class PCAConfig(Strict):
    """Principal components: a fixed number, or enough to reach an explained-variance target."""

    kind: Literal["pca"] = "pca"
    n_components: int | None = Field(
        None, ge=1, description="Fixed number of components (wins over variance)."
    )
    variance: float = Field(
        0.9, gt=0, le=1, description="Explained-variance target when n_components is null."
    )
    whiten: bool = False


class AutoencoderConfig(Strict):
    """A PyTorch Lightning MLP autoencoder; the bottleneck is the feature space."""

    kind: Literal["autoencoder"] = "autoencoder"
    hidden_sizes: tuple[int, ...] = Field((64, 32), description="Encoder widths; the decoder mirrors them.")
    encoding_dim: int = Field(8, ge=1)
    activation: Literal["relu", "gelu", "tanh", "elu", "leaky_relu"] = "relu"
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    loss: Literal["mse", "huber"] = "mse"
    batch_size: int = Field(256, ge=1)
    max_epochs: int = Field(50, ge=1)
    patience: int = Field(5, ge=1, description="Early-stopping patience in epochs, on the validation loss.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    max_train_rows: int = Field(
        200_000, ge=100, description="Rows sampled for training; all rows are encoded."
    )
    accelerator: Literal["cpu", "auto", "gpu"] = "cpu"


FeaturizeConfig = Annotated[NoFeaturizerConfig | PCAConfig | AutoencoderConfig, Field(discriminator="kind")]


# ----------------------------------------------------------------------------------------- cluster
class KSearch(Strict):
    """How the number of clusters is chosen when it is not fixed.

    Every k in ``k_min..k_max`` is fitted and gets two numbers: its silhouette (on a sample, in the
    preprocessed input space) and its stability (the candidate refitted on ``stability_resamples``
    subsamples of ``stability_fraction`` of at most ``stability_rows`` rows of the search sample; the mean
    adjusted Rand index between every pair of refits on the rows both contain). The rule: among the k whose
    stability is at least ``stability_threshold``, the best silhouette (ties: the smaller k); when none
    reaches it, the most stable k, with a warning. ``stability_resamples: 0`` ranks by silhouette alone.
    """

    k_min: int = Field(2, ge=2)
    k_max: int = Field(10, ge=2)
    criterion: Literal["silhouette"] = Field(
        "silhouette", description="Silhouette on a sample, in the preprocessed input space."
    )
    max_iter: int = Field(
        100,
        ge=1,
        description="Iteration cap per candidate when candidates are fitted on a sample (tables larger "
        "than fit_sample); the chosen model is then refined on all rows with the model's own max_iter.",
    )
    stability_threshold: float = Field(
        0.8,
        ge=-1,
        le=1,
        description="A k is eligible when its mean pairwise ARI between subsample refits reaches this.",
    )
    stability_resamples: int = Field(
        5,
        ge=0,
        le=50,
        description="Subsample refits per k (at least 2; 0 switches per-k stability off: silhouette only).",
    )
    stability_fraction: float = Field(0.8, gt=0.1, lt=1.0, description="Share of rows in each subsample.")
    stability_rows: int = Field(
        5_000,
        ge=100,
        description="Rows of the search sample (seeded, drawn once) the per-k refits draw from: bounds the "
        "cost to k_max - k_min + 1 times stability_resamples fits on stability_fraction of this many rows.",
    )

    @model_validator(mode="after")
    def _check_range(self) -> KSearch:
        if self.k_max < self.k_min:
            raise ValueError("k_max must be >= k_min")
        if self.stability_resamples == 1:
            raise ValueError("stability_resamples must be 0 (off) or at least 2 (refits are compared)")
        return self


class KClustererConfig(Strict):
    """What the clusterers that take a number of segments share: k (fixed or searched), the fit sample."""

    n_clusters: int | None = Field(None, ge=2, description="Fixed k; null searches k_min..k_max.")
    search: KSearch = KSearch()
    fit_sample: int = Field(
        100_000,
        ge=1000,
        description="On larger tables every candidate k is fitted on a seeded sample of this many rows; "
        "the chosen model is then refined on all rows, starting from the sample's solution.",
    )


class KMeansConfig(KClustererConfig):
    """Lloyd k-means (k-means++ init, several restarts)."""

    kind: Literal["kmeans"] = "kmeans"
    n_init: int = Field(4, ge=1)
    max_iter: int = Field(300, ge=1)


class MiniBatchKMeansConfig(KClustererConfig):
    """Mini-batch k-means for very large tables."""

    kind: Literal["minibatch_kmeans"] = "minibatch_kmeans"
    n_init: int = Field(3, ge=1)
    batch_size: int = Field(4096, ge=16)


class GMMConfig(KClustererConfig):
    """Gaussian mixture; gives membership probabilities."""

    kind: Literal["gmm"] = "gmm"
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    n_init: int = Field(2, ge=1)
    max_iter: int = Field(200, ge=1)


class HDBSCANConfig(Strict):
    """Density clustering with noise (-1); new customers via approximate_predict."""

    kind: Literal["hdbscan"] = "hdbscan"
    min_cluster_size: int = Field(100, ge=2)
    min_samples: int | None = Field(None, ge=1)
    cluster_selection_method: Literal["eom", "leaf"] = "eom"
    max_fit_rows: int = Field(
        50_000, ge=100, description="Fit on a sample this large; the rest are predicted."
    )


class AgglomerativeConfig(KClustererConfig):
    """Agglomerative clustering (quadratic: fitted on a sample); new customers join the nearest centroid."""

    kind: Literal["agglomerative"] = "agglomerative"
    linkage: Literal["ward", "average", "complete"] = "ward"
    max_fit_rows: int = Field(15_000, ge=100)


class DBSCANConfig(Strict):
    """DBSCAN (fitted on a sample); new customers join the cluster of the nearest core point within eps."""

    kind: Literal["dbscan"] = "dbscan"
    eps: float = Field(1.5, gt=0)
    min_samples: int = Field(20, ge=1)
    max_fit_rows: int = Field(30_000, ge=100)


ClusterConfig = Annotated[
    KMeansConfig | MiniBatchKMeansConfig | GMMConfig | HDBSCANConfig | AgglomerativeConfig | DBSCANConfig,
    Field(discriminator="kind"),
]


# -------------------------------------------------------------------------------------- evaluation
class EvaluateConfig(Strict):
    """Metrics are computed in the preprocessed input space so featurizers are comparable."""

    silhouette_sample: int = Field(10_000, ge=100, description="Rows sampled for the silhouette score.")
    agreement_sample: int = Field(100_000, ge=100, description="Rows re-predicted through the saved bundle.")
    stability_resamples: int = Field(
        10, ge=0, le=200, description="Subsample refits for the stability estimate; 0 disables it."
    )
    stability_fraction: float = Field(0.8, gt=0.1, lt=1.0, description="Share of rows in each subsample.")
    stability_sample: int = Field(
        20_000, ge=100, description="Rows (sampled once) that the stability refits draw from."
    )
    metrics_sample: int = Field(
        200_000,
        ge=1000,
        description="Rows (seeded sample) for Davies-Bouldin and Calinski-Harabasz on larger tables; "
        "segment sizes and shares always count every row.",
    )


# ---------------------------------------------------------------------------------------- insights
class InsightsConfig(Strict):
    """Segment names and IDs, plots and the report (none of it changes the fitted model's geometry)."""

    names: dict[int, str] = Field(
        default_factory=dict,
        description="Segment ID -> name, replacing the derived name; stored in the bundle (-1 is noise).",
    )
    align_to: str | None = Field(
        None,
        description="Previous run directory or bundle: segment IDs are matched to its segments so the "
        "same customers keep the same IDs (and user names) across retrains.",
    )
    embedding: Literal["pca", "tsne"] = Field(
        "pca", description="2-D map of the segments: PCA of the preprocessed space, or t-SNE on a sample."
    )
    embedding_sample: int = Field(5_000, ge=100, le=50_000, description="Rows t-SNE embeds.")
    max_points: int = Field(20_000, ge=100, description="Rows drawn in scatter and box plots.")
    top_features: int = Field(3, ge=1, le=10, description="Distinguishing features listed per segment.")
    small_segment_share: float = Field(0.02, ge=0, le=1, description="Warn about segments below this share.")
    large_segment_share: float = Field(0.60, ge=0, le=1, description="Warn about a segment above this share.")
    noise_share: float = Field(0.10, ge=0, le=1, description="Warn when more customers than this are noise.")
    rule_depth: int = Field(
        3, ge=1, le=5, description="Most conditions in a segment's rule (depth of its surrogate tree)."
    )
    rule_sample: int = Field(
        20_000, ge=500, description="Rows (seeded sample) the segment rules are fitted and measured on."
    )

    @field_validator("names")
    @classmethod
    def _names_are_usable(cls, names: dict[int, str]) -> dict[int, str]:
        cleaned = {int(seg): str(name).strip() for seg, name in names.items()}
        for seg, name in cleaned.items():
            if seg < -1:
                raise ValueError(f"segment {seg}: IDs are 0, 1, ... (and -1 for noise)")
            if not name:
                raise ValueError(f"segment {seg}: the name is empty")
        repeated = sorted({n for n in cleaned.values() if list(cleaned.values()).count(n) > 1})
        if repeated:
            raise ValueError(f"names must be unique; repeated: {repeated}")
        return cleaned


# ------------------------------------------------------------------------------- tracking, registry
class TrackingConfig(Strict):
    """Weights & Biases tracking. ``auto``: online when ``WANDB_API_KEY`` is set, else offline files.

    ``WANDB_MODE`` in the environment (``offline``, ``online``, ``disabled``) wins over ``mode``.
    """

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str = Field("customer-segmentation", min_length=1)
    entity: str | None = None
    dir: str | None = Field(None, description="Where W&B writes run files; default $SEGMENT_HOME.")
    log_dataset: bool = Field(True, description="Log the input table as a dataset artifact (by reference).")


class RegistryConfig(Strict):
    """The model registry and the gate a candidate must pass to become ``production``."""

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Registered model name; default model_name.",
    )
    dir: str | None = Field(None, description="Local registry directory; default $SEGMENT_HOME/registry.")
    auto_register: bool = Field(True, description="Register every trained bundle as a new version.")
    metric: str = Field("silhouette", description="metrics.json key (dotted for nested) the gate compares.")
    goal: Literal["maximize", "minimize"] = "maximize"
    min_improvement: float = Field(0.0, ge=0, description="How much the candidate must beat production by.")
    min_stability: float | None = Field(
        0.8, ge=-1, le=1, description="Floor on stability.ari_pairwise_mean; None skips the check."
    )
    min_segment_share: float = Field(0.02, ge=0, le=1, description="No segment may be smaller than this.")


class DriftConfig(Strict):
    """Drift monitoring: the reference stored in the bundle at training, and the PSI thresholds.

    ``bins`` and ``reference_sample`` act at training time (they shape ``reference.json``); the
    thresholds act when a snapshot is compared (``segment drift``, the ``monitor-drift`` flow).
    """

    bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric, boolean or date feature.")
    reference_sample: int = Field(
        100_000, ge=1000, description="Training rows (seeded sample) the bin edges and shares come from."
    )
    warn: float = Field(0.1, gt=0, description="A feature's PSI at or above this is 'warn'.")
    alert: float = Field(
        0.25, gt=0, description="A feature's PSI at or above this is 'alert' (non-zero exit)."
    )
    segment_warn: float = Field(0.1, gt=0, description="PSI of the segment shares at or above this warns.")
    segment_alert: float = Field(0.25, gt=0, description="PSI of the segment shares at or above this alerts.")
    epsilon: float = Field(
        1e-4, gt=0, lt=0.01, description="Floor on every bin share, so an empty bin has a finite PSI term."
    )
    chunk_rows: int = Field(262_144, ge=1000, description="Snapshot rows read and scored at a time.")

    @model_validator(mode="after")
    def _check_thresholds(self) -> DriftConfig:
        if self.alert < self.warn or self.segment_alert < self.segment_warn:
            raise ValueError("alert thresholds must be >= warn thresholds")
        return self


# ----------------------------------------------------------------------------------------- verdict
class VerdictConfig(Strict):
    """When ``metrics.json`` warns, and the verdict (``strong`` / ``usable`` / ``weak``) it gives.

    The rule: ``weak`` when a warning of severity ``weak`` fires (stability below ``min_stability``, or
    separation below ``min_silhouette``); ``usable`` when any other warning fires; ``strong`` otherwise.
    Segment sizes and noise are judged by the report's thresholds (``insights.small_segment_share``,
    ``insights.large_segment_share``, ``insights.noise_share``); a k chosen at an end of the search range
    warns too (except k_min = 2: no smaller k can be tried).
    """

    min_stability: float = Field(
        0.8,
        ge=-1,
        le=1,
        description="Weak below this mean pairwise ARI between subsample refits (stability."
        "ari_pairwise_mean; the chosen k's search stability when evaluate.stability_resamples is 0). "
        "0.8 is also the registry's promotion floor.",
    )
    min_segment_jaccard: float = Field(
        0.75,
        ge=0,
        le=1,
        description="Warn about a segment whose mean best Jaccard overlap with the refits' clusters is "
        "below this (Hennig: above 0.75 stable; 0.5-0.75 a pattern, not a fixed group; below 0.5 dissolves).",
    )
    min_silhouette: float = Field(
        0.1,
        ge=-1,
        le=1,
        description="Weak below this silhouette (preprocessed space): customers are about as close to "
        "another segment as to their own.",
    )
    good_silhouette: float = Field(
        0.25,
        ge=-1,
        le=1,
        description="Warn below this silhouette: segments are regions of a continuum rather than distinct "
        "groups (Kaufman & Rousseeuw: under 0.25, no substantial structure).",
    )
    max_column_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Warn when one input column (a categorical's one-hot columns together) holds more than "
        "this share of the between-segment sum of squares: the segments are mostly cuts of that column.",
    )

    @model_validator(mode="after")
    def _check_order(self) -> VerdictConfig:
        if self.good_silhouette < self.min_silhouette:
            raise ValueError("good_silhouette must be >= min_silhouette")
        return self


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
