"""Autoencoder featurizer: a PyTorch Lightning MLP whose bottleneck is the feature space.

Training is reproducible: with the same seed and data, two fits on CPU give bit-identical weights on the
same machine and thread count (seeded row sample and split, seeded shuffling, ``deterministic=True``, no
worker processes). Another CPU capability (``ATEN_CPU_CAPABILITY``) or thread count may sum in another
order: weights then agree to float32 rounding, not to the bit.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from pytorch_lightning.callbacks import EarlyStopping
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from segmentation.config import AutoencoderConfig
from segmentation.features.base import Featurizer

logger = logging.getLogger(__name__)

_ENCODE_BATCH = 65_536  # rows encoded per forward pass in ``transform``
_VAL_BATCH = 8_192  # rows per validation batch (no gradients, so larger than the training batch)
_LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


def _mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers through ``widths`` with ``activation`` between them and a linear last layer."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class AutoencoderModule(pl.LightningModule):
    """Symmetric MLP autoencoder.

    The encoder maps ``n_features`` through ``config.hidden_sizes`` to ``config.encoding_dim`` (linear
    bottleneck); the decoder mirrors it back to ``n_features`` (linear output).

    Args:
        n_features: input (and reconstruction) width.
        config: architecture and optimisation settings.
    """

    def __init__(self, n_features: int, config: AutoencoderConfig) -> None:
        super().__init__()
        self.n_features = n_features
        self.config = config
        widths = [n_features, *config.hidden_sizes, config.encoding_dim]
        self.encoder = _mlp(widths, config.activation)
        self.decoder = _mlp(widths[::-1], config.activation)
        self.history: list[dict[str, Any]] = []
        self.best_val_loss = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self._train_sum = torch.zeros(())
        self._train_count = 0
        self._val_sum = torch.zeros(())
        self._val_count = 0
        self._last_val_loss = math.nan

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map rows to the bottleneck."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruct the rows."""
        return self.decoder(self.encoder(x))

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction = self(x)
        if self.config.loss == "huber":
            return F.huber_loss(reconstruction, x)
        return F.mse_loss(reconstruction, x)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:  # noqa: ARG002
        """Reconstruction loss of one batch; accumulated for the epoch mean."""
        (x,) = batch
        loss = self._loss(x)
        self._train_sum = self._train_sum.to(loss.device) + loss.detach() * len(x)
        self._train_count += len(x)
        return loss

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:  # noqa: ARG002
        """Accumulate the validation reconstruction loss."""
        (x,) = batch
        loss = self._loss(x)
        self._val_sum = self._val_sum.to(loss.device) + loss.detach() * len(x)
        self._val_count += len(x)

    def on_train_epoch_start(self) -> None:
        """Reset the training-loss accumulator and start the epoch's clock."""
        self._train_sum = torch.zeros((), device=self.device)
        self._train_count = 0
        self._epoch_started = time.perf_counter()

    def on_validation_epoch_start(self) -> None:
        """Reset the validation-loss accumulator."""
        self._val_sum = torch.zeros((), device=self.device)
        self._val_count = 0

    def on_validation_epoch_end(self) -> None:
        """Log the row-weighted mean validation loss and remember the best weights."""
        val_loss = float(self._val_sum) / max(self._val_count, 1)
        self._last_val_loss = val_loss
        self.log("val_loss", val_loss, prog_bar=False)
        if val_loss < self.best_val_loss:  # NaN never compares smaller
            self.best_val_loss = val_loss
            self.best_state = {k: v.detach().clone() for k, v in self.state_dict().items()}

    def on_train_epoch_end(self) -> None:
        """Record the epoch (validation has already run for it) and log one progress line."""
        record = {
            "epoch": len(self.history) + 1,
            "train_loss": float(self._train_sum) / max(self._train_count, 1),
            "val_loss": self._last_val_loss,
        }
        self.history.append(record)
        seconds = time.perf_counter() - getattr(self, "_epoch_started", time.perf_counter())
        logger.info(
            "autoencoder epoch %d/%d: train_loss=%.5f val_loss=%.5f, %d rows in %.1f s (%s rows/s)",
            record["epoch"],
            self.config.max_epochs,
            record["train_loss"],
            record["val_loss"],
            self._train_count,
            seconds,
            f"{self._train_count / max(seconds, 1e-9):,.0f}",
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam, AdamW or SGD with momentum 0.9, with the configured learning rate and weight decay."""
        lr, wd = self.config.learning_rate, self.config.weight_decay
        if self.config.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=wd)
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=wd)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's info logs and its advisory warnings for the duration of a fit."""
    saved = {name: logging.getLogger(name).level for name in _LIGHTNING_LOGGERS}
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # e.g. "does not have many workers", "smaller than the logging interval": deliberate here.
            warnings.filterwarnings("ignore", message=r".*(num_workers|many workers|logging interval).*")
            # torch >= 2.10 deprecates LeafSpec, which Lightning's own pytree helper still builds.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


class RowStream(IterableDataset[list[torch.Tensor]]):
    """Mini-batches of chosen rows of a matrix, read a block of rows at a time.

    Each pass visits the rows (sorted positions, so a block is a near-sequential read of a memory-mapped
    file) in blocks of ``block_rows``; with ``shuffle`` the block order and the rows within each block are
    permuted anew every epoch from ``seed`` and the epoch number. Only one block is ever in memory.

    Args:
        x: the matrix (rows x features); any array-like NumPy can index, e.g. ``np.memmap``.
        rows: sorted row positions to stream.
        batch_size: rows per mini-batch.
        shuffle: permute blocks and rows within blocks each epoch.
        seed: seed of the permutations.
        block_rows: rows read at once.
    """

    def __init__(
        self,
        x: np.ndarray,
        rows: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        block_rows: int = 65_536,
    ) -> None:
        self.x, self.rows, self.batch_size = x, rows, batch_size
        self.shuffle, self.seed, self.block_rows = shuffle, seed, max(block_rows, batch_size)
        self.epoch = 0

    def __len__(self) -> int:
        blocks = [min(self.block_rows, len(self.rows) - s) for s in range(0, len(self.rows), self.block_rows)]
        return sum(-(-size // self.batch_size) for size in blocks)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        starts = np.arange(0, len(self.rows), self.block_rows)
        for start in rng.permutation(starts) if self.shuffle else starts:
            block = np.asarray(self.x[self.rows[start : start + self.block_rows]], dtype=np.float32)
            if self.shuffle:
                block = block[rng.permutation(len(block))]
            tensor = torch.from_numpy(block)
            for offset in range(0, len(tensor), self.batch_size):
                yield [tensor[offset : offset + self.batch_size]]


class AutoencoderFeaturizer(Featurizer):
    """MLP autoencoder trained with PyTorch Lightning; ``transform`` returns the bottleneck codes.

    Args:
        config: architecture, optimisation and early-stopping settings.
        seed: seeds the row sample, the train/validation split, weight init and shuffling.

    Attributes:
        n_features_in_: input width seen in ``fit``.
        module_: the trained :class:`AutoencoderModule` (on CPU, in eval mode).
        history_: per-epoch ``{"epoch", "train_loss", "val_loss"}`` (epochs numbered from 1).
        stopped_epoch_: number of epochs trained (smaller than ``max_epochs`` when stopped early).
        best_val_loss_: lowest validation loss; the weights from that epoch are kept.
    """

    kind = "autoencoder"

    def __init__(self, config: AutoencoderConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed

    # ------------------------------------------------------------------------------------------ fit
    def _split(self, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Seeded sample of at most ``max_train_rows`` row indices, split into train and validation."""
        rng = np.random.default_rng(self.seed)
        n_sample = min(n_rows, self.config.max_train_rows)
        order = rng.permutation(n_rows)[:n_sample]
        n_val = min(max(1, round(n_sample * self.config.val_fraction)), n_sample - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def fit(self, x: np.ndarray) -> Self:
        """Train the autoencoder on a seeded sample of ``x``.

        Args:
            x: preprocessed matrix (rows x features); converted to float32.

        Returns:
            The fitted featurizer.

        Raises:
            ValueError: if ``x`` is not 2-D or has fewer than two rows.
        """
        if not isinstance(x, np.ndarray):
            x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"autoencoder needs a 2-D matrix with at least 2 rows, got shape {x.shape}")
        cfg = self.config
        train_idx, val_idx = self._split(len(x))

        with _quiet_lightning():
            pl.seed_everything(self.seed, workers=True, verbose=False)
            module = AutoencoderModule(int(x.shape[1]), cfg)
            # Streaming loaders: rows are read from ``x`` (a memory-mapped matrix in the flow) one block
            # at a time, so training on millions of rows never copies the training set into memory.
            train_loader = DataLoader(
                RowStream(x, train_idx, min(cfg.batch_size, len(train_idx)), shuffle=True, seed=self.seed),
                batch_size=None,
                num_workers=0,
            )
            val_loader = DataLoader(
                RowStream(x, val_idx, _VAL_BATCH, shuffle=False, seed=self.seed),
                batch_size=None,
                num_workers=0,
            )
            trainer = pl.Trainer(
                max_epochs=cfg.max_epochs,
                accelerator=cfg.accelerator,
                devices=1,
                deterministic=True,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                enable_progress_bar=False,
                num_sanity_val_steps=0,
                callbacks=[EarlyStopping(monitor="val_loss", patience=cfg.patience, mode="min")],
            )
            trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)

        if module.best_state is not None:
            module.load_state_dict(module.best_state)
        module.best_state = None
        module.to("cpu").eval()
        self.module_ = module
        self.n_features_in_ = int(x.shape[1])
        self.history_ = list(module.history)
        self.stopped_epoch_ = len(self.history_)
        self.best_val_loss_ = float(module.best_val_loss)
        last = self.history_[-1] if self.history_ else {"train_loss": math.nan, "val_loss": math.nan}
        logger.info(
            "autoencoder trained %d/%d epochs on %d rows (%d validation): train_loss=%.5f val_loss=%.5f "
            "best_val_loss=%.5f",
            self.stopped_epoch_,
            cfg.max_epochs,
            len(train_idx),
            len(val_idx),
            last["train_loss"],
            last["val_loss"],
            self.best_val_loss_,
        )
        return self

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-epoch mean train and validation loss (empty before ``fit``)."""
        return getattr(self, "history_", [])

    # ------------------------------------------------------------------------------------ transform
    def transform(self, x: np.ndarray) -> np.ndarray:
        """Encode rows to the bottleneck (deterministic, on CPU, in batches of 65,536 rows).

        Args:
            x: preprocessed matrix with ``n_features_in_`` columns.

        Returns:
            float32 array of shape ``(n_rows, encoding_dim)``.

        Raises:
            RuntimeError: if the featurizer is not fitted.
            ValueError: if the column count differs from the one seen in ``fit``.
        """
        if not hasattr(self, "module_"):
            raise RuntimeError("AutoencoderFeaturizer is not fitted; call fit() first")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected a matrix with {self.n_features_in_} columns, got shape {x.shape}")
        module = self.module_.to("cpu").eval()
        out = np.empty((len(x), self.config.encoding_dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(x), _ENCODE_BATCH):
                # A writable, row-major copy of the rows: x may be a read-only memory map (torch cannot wrap
                # one) or column-major (batch scoring), and the codes must not depend on the layout.
                rows = np.array(x[start : start + _ENCODE_BATCH], dtype=np.float32, order="C")
                chunk = torch.from_numpy(rows)
                out[start : start + len(chunk)] = module.encode(chunk).numpy()
        return out

    # -------------------------------------------------------------------------------------- state
    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return the config, seed and training history as meta and the weights as arrays.

        Returns:
            ``(meta, arrays)``: JSON-able meta; arrays keyed by the module's state-dict names.
        """
        meta = {
            "kind": self.kind,
            "n_features_in": self.n_features_in_,
            "config": self.config.model_dump(mode="json"),
            "seed": self.seed,
            "history": [dict(row) for row in self.history_],
            "stopped_epoch": self.stopped_epoch_,
            "best_val_loss": self.best_val_loss_,
        }
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Rebuild the fitted featurizer from :meth:`get_state` output.

        Args:
            meta: the JSON-able meta dict.
            arrays: the state-dict arrays.

        Returns:
            A featurizer whose ``transform`` matches the original exactly.
        """
        config = AutoencoderConfig.model_validate(meta["config"])
        obj = cls(config=config, seed=int(meta.get("seed", 0)))
        n_features = int(meta["n_features_in"])
        module = AutoencoderModule(n_features, config)
        module.load_state_dict({k: torch.from_numpy(np.array(v, copy=True)) for k, v in arrays.items()})
        obj.module_ = module.eval()
        obj.n_features_in_ = n_features
        obj.history_ = [dict(row) for row in meta.get("history", [])]
        obj.stopped_epoch_ = int(meta.get("stopped_epoch", len(obj.history_)))
        obj.best_val_loss_ = float(meta.get("best_val_loss", math.nan))
        return obj
