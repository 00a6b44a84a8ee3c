"""What the environment decides, read once at an entry point and passed down as :class:`Settings`.

The CLI (``segmentation_workflows.cli.main``) and each flow's entry build it from the process environment
with :meth:`Settings.from_environ`; library code receives it and reads no environment variable itself.
Credentials are never held: only whether one is present, which decides W&B's default mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".segment"
"""``$SEGMENT_HOME`` when unset: a directory in the working directory."""


@dataclass(frozen=True)
class Settings:
    """Where state lives and how tracking runs, as the environment says.

    Attributes:
        home: ``$SEGMENT_HOME`` (default ``./.segment``), absolute: the stage store, Prefect results,
            the local registry, offline W&B files, sweeps and debug logs live under it.
        wandb_mode: ``$WANDB_MODE`` as set (``offline``, ``online``, ``disabled``...), or None.
        wandb_api_key_set: whether ``$WANDB_API_KEY`` is set (the key itself is left to W&B).
        wandb_dir: ``$WANDB_DIR``, where W&B writes its files when ``tracking.dir`` is not configured.
        wandb_run_group: ``$WANDB_RUN_GROUP``, the W&B group of runs started without one.
        prefect_api_url: ``$PREFECT_API_URL``; None means a temporary local Prefect API.
    """

    home: Path
    wandb_mode: str | None = None
    wandb_api_key_set: bool = False
    wandb_dir: Path | None = None
    wandb_run_group: str | None = None
    prefect_api_url: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
        """Settings from an environment mapping (the process environment, at an entry point).

        Args:
            environ: the variables.
            cwd: what relative paths are resolved against (default: the working directory).
        """
        base = cwd or Path.cwd()

        def path(name: str, default: str | None = None) -> Path | None:
            value = environ.get(name) or default
            return None if value is None else (base / value).resolve()

        return cls(
            home=path("SEGMENT_HOME", DEFAULT_HOME) or base / DEFAULT_HOME,
            wandb_mode=environ.get("WANDB_MODE") or None,
            wandb_api_key_set=bool(environ.get("WANDB_API_KEY")),
            wandb_dir=path("WANDB_DIR"),
            wandb_run_group=environ.get("WANDB_RUN_GROUP") or None,
            prefect_api_url=environ.get("PREFECT_API_URL") or None,
        )

    def registry_dir(self, configured: str | None = None) -> Path:
        """``registry.dir`` when configured, else ``home/registry``."""
        return Path(configured).resolve() if configured else self.home / "registry"

    @property
    def stages_dir(self) -> Path:
        """The training flow's stage store."""
        return self.home / "stages"

    @property
    def results_dir(self) -> Path:
        """Prefect's persisted task results (small handles into the stage store)."""
        return self.home / "results"

    @property
    def sweeps_dir(self) -> Path:
        """Offline sweeps, one directory per sweep."""
        return self.home / "sweeps"

    @property
    def logs_dir(self) -> Path:
        """Debug logs (tracebacks the terminal leaves out)."""
        return self.home / "logs"


__all__ = ["DEFAULT_HOME", "Settings"]
