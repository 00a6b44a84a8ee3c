"""The ``featurize`` and ``cluster`` sections: components discriminated by ``kind``; the k search."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from segmentation.config.base import Strict


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


__all__ = [
    "AgglomerativeConfig",
    "AutoencoderConfig",
    "ClusterConfig",
    "DBSCANConfig",
    "FeaturizeConfig",
    "GMMConfig",
    "HDBSCANConfig",
    "KClustererConfig",
    "KMeansConfig",
    "KSearch",
    "MiniBatchKMeansConfig",
    "NoFeaturizerConfig",
    "PCAConfig",
]
