"""The sections after clustering: evaluate, insights, tracking, registry, drift, verdict."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from segmentation.config.base import Strict


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


__all__ = [
    "DriftConfig",
    "EvaluateConfig",
    "InsightsConfig",
    "RegistryConfig",
    "TrackingConfig",
    "VerdictConfig",
]
