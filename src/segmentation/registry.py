"""The local model registry: immutable, digest-checked versions of a named model, with aliases.

Layout (one directory per registered model)::

    <root>/<name>/
      versions/v0001/bundle/...     a copy of the bundle, read-only
      versions/v0001/version.json   digest, metrics, data hash, code version, source run, created_at
      aliases.json                  {"production": 3, "previous": 2, "candidate": 4, "latest": 4}
      events.jsonl                  every registration, promotion and rollback, appended
      .lock                         an fcntl lock held by whoever changes aliases or adds a version

Versions are never changed after registration; loading one re-verifies every file of the bundle against its
manifest and the bundle digest against ``version.json``. Alias moves happen under the lock and are written
atomically (temp file + rename), so two concurrent promoters serialise: the second is gated against the
production the first left. ``production`` only ever moves through :meth:`LocalRegistry.promote` (gated) or
:meth:`LocalRegistry.rollback`; nothing resolves to the latest version implicitly.

With W&B online, the tracker also links each model artifact into the W&B Registry; this local registry stays
the cache and the fallback.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segmentation.bundle import SegmentationModel, bundle_digest, find_bundle, load_bundle
from segmentation.config import RegistryConfig
from segmentation.data.io import replace_dir, staging_dir, write_json
from segmentation.errors import BundleError, SegmentationError

PRODUCTION, PREVIOUS, CANDIDATE, LATEST = "production", "previous", "candidate", "latest"


class RegistryError(SegmentationError):
    """Unknown model, version or alias, or a registry in an inconsistent state (exit code 3)."""

    exit_code = 3


class PromotionRefusedError(SegmentationError):
    """The candidate failed the promotion gate; the message lists every reason (exit code 4)."""

    exit_code = 4

    def __init__(self, version: int, reasons: list[str]) -> None:
        super().__init__(f"v{version} not promoted: " + "; ".join(reasons))
        self.version = version
        self.reasons = reasons


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """A metric by dotted name (``stability.ari_pairwise_mean``); None when absent or not a number."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


@dataclass(frozen=True)
class ModelVersion:
    """One registered version."""

    name: str
    version: int
    path: Path
    digest: str
    created_at: str
    metrics: dict[str, Any]
    data_hash: str
    code_version: str
    source: str | None
    aliases: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        """``v3``."""
        return f"v{self.version}"

    @property
    def bundle_path(self) -> Path:
        """The registered (read-only) bundle."""
        return self.path / "bundle"


def gate_reasons(
    candidate: dict[str, Any], production: dict[str, Any] | None, gate: RegistryConfig
) -> list[str]:
    """Why ``candidate`` may not replace ``production`` (empty: it may).

    Checks: the gate metric is present and beats production's by ``min_improvement`` (when there is a
    production); the stability (mean pairwise ARI) is at least ``min_stability``; no segment is smaller
    than ``min_segment_share``.
    """
    reasons = []
    value = metric_value(candidate, gate.metric)
    if value is None:
        reasons.append(f"{gate.metric} is missing from the candidate's metrics")
    elif production is not None:
        current = metric_value(production, gate.metric)
        if current is not None:
            better = (
                value > current + gate.min_improvement
                if gate.goal == "maximize"
                else value < current - gate.min_improvement
            )
            if not better:
                word = "above" if gate.goal == "maximize" else "below"
                margin = f" by more than {gate.min_improvement:g}" if gate.min_improvement else ""
                reasons.append(
                    f"{gate.metric} {value:.4f} is not {word} production's {current:.4f}{margin} "
                    f"(goal: {gate.goal})"
                )
    if gate.min_stability is not None:
        stability = metric_value(candidate, "stability.ari_pairwise_mean")
        if stability is None:
            reasons.append("stability was not measured (evaluate.stability_resamples = 0)")
        elif stability < gate.min_stability:
            reasons.append(f"stability (mean pairwise ARI) {stability:.3f} is below {gate.min_stability:g}")
    smallest = metric_value(candidate, "min_segment_share")
    if smallest is not None and smallest < gate.min_segment_share:
        reasons.append(
            f"smallest segment holds {smallest:.1%} of customers, under {gate.min_segment_share:.1%}"
        )
    return reasons


def _set_writable(tree: Path, writable: bool) -> None:
    """Make a directory tree read-only (registered versions) or owner-writable again (exports, clean-up)."""
    for path in [*tree.rglob("*"), tree]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


class LocalRegistry:
    """Versions and aliases of one named model under ``root/name``."""

    def __init__(self, root: str | Path, name: str) -> None:
        self.name = name
        self.path = Path(root) / name
        self.versions_dir = self.path / "versions"

    # ----------------------------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with (self.path / ".lock").open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if we crash
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _aliases(self) -> dict[str, int]:
        path = self.path / "aliases.json"
        if not path.is_file():
            return {}
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
        except (ValueError, AttributeError) as exc:
            raise RegistryError(f"{path} is corrupt ({exc})") from exc

    def _write_aliases(self, aliases: dict[str, int]) -> None:
        write_json(dict(sorted(aliases.items())), self.path / "aliases.json")

    def _event(self, **event: Any) -> None:
        record = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **event}
        with (self.path / "events.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _entry(self, directory: Path, aliases: dict[str, int]) -> ModelVersion:
        meta = json.loads((directory / "version.json").read_text(encoding="utf-8"))
        version = int(meta["version"])
        return ModelVersion(
            name=self.name,
            version=version,
            path=directory,
            digest=meta["digest"],
            created_at=meta["created_at"],
            metrics=meta.get("metrics", {}),
            data_hash=meta.get("data_hash", ""),
            code_version=meta.get("code_version", ""),
            source=meta.get("source"),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            extra=meta.get("extra", {}),
        )

    # ------------------------------------------------------------------------------------ reading
    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first, with its aliases."""
        if not self.versions_dir.is_dir():
            return []
        aliases = self._aliases()
        dirs = sorted(d for d in self.versions_dir.iterdir() if d.is_dir() and d.name.startswith("v"))
        return [self._entry(d, aliases) for d in dirs if (d / "version.json").is_file()]

    def aliases(self) -> dict[str, int]:
        """Alias -> version number."""
        return self._aliases()

    def get(self, ref: str | int) -> ModelVersion:
        """A version by number (``3``, ``"v3"``) or alias (``"production"``).

        Raises:
            RegistryError: unknown version or alias.
        """
        versions = {v.version: v for v in self.versions()}
        text = str(ref).strip()
        number: int | None = None
        if text.lower().startswith("v") and text[1:].isdigit():
            number = int(text[1:])
        elif text.isdigit():
            number = int(text)
        else:
            aliases = self._aliases()
            if text not in aliases:
                known = ", ".join(sorted(aliases)) or "none"
                raise RegistryError(f"model {self.name!r} has no alias {text!r} (aliases: {known})")
            number = aliases[text]
        if number not in versions:
            raise RegistryError(f"model {self.name!r} has no version v{number}")
        return versions[number]

    def load(self, ref: str | int) -> SegmentationModel:
        """Load a version's bundle, verifying its files and its digest against the registry entry.

        Raises:
            RegistryError: the bundle's digest differs from the one registered (it was altered).
        """
        entry = self.get(ref)
        try:
            model = load_bundle(entry.bundle_path)
        except BundleError as exc:
            raise RegistryError(f"{self.name} {entry.tag}: {exc}") from exc
        if bundle_digest(model.manifest) != entry.digest:
            raise RegistryError(f"{self.name} {entry.tag}: bundle digest differs from the registered one")
        return model

    # ------------------------------------------------------------------------------------ writing
    def register(
        self, bundle: str | Path, *, source: str | None = None, extra: dict[str, Any] | None = None
    ) -> ModelVersion:
        """Add a bundle as the next version (``candidate`` and ``latest`` point at it).

        The same bundle (same digest) registered again returns its existing version.
        """
        source_dir = find_bundle(bundle)
        model = load_bundle(source_dir)  # verifies every file before anything is copied
        digest = bundle_digest(model.manifest)
        with self._locked():
            for existing in self.versions():
                if existing.digest == digest:
                    return existing
            number = max((v.version for v in self.versions()), default=0) + 1
            target = self.versions_dir / f"v{number:04d}"
            staging = self.versions_dir / f".staging-v{number:04d}-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                shutil.copytree(source_dir, staging / "bundle")
                meta = {
                    "name": self.name,
                    "version": number,
                    "digest": digest,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "trained_at": model.manifest.get("created_at"),
                    "metrics": model.manifest.get("metrics", {}),
                    "data_hash": model.manifest.get("data", {}).get("content_hash", ""),
                    "code_version": model.manifest.get("code_version", ""),
                    "source": source,
                    "extra": extra or {},
                }
                write_json(meta, staging / "version.json")
                _set_writable(staging, writable=False)
                staging.rename(target)
            except BaseException:
                if staging.exists():
                    _set_writable(staging, writable=True)
                    shutil.rmtree(staging, ignore_errors=True)
                raise
            aliases = self._aliases()
            aliases[CANDIDATE] = aliases[LATEST] = number
            self._write_aliases(aliases)
            self._event(action="register", version=number, digest=digest, source=source)
            return self._entry(target, aliases)

    def promote(self, ref: str | int, gate: RegistryConfig, *, force: bool = False) -> ModelVersion:
        """Make a version ``production`` if it passes the gate; the old production becomes ``previous``.

        Raises:
            PromotionRefusedError: with every reason, when the gate refuses (nothing changes).
        """
        with self._locked():
            candidate = self.get(ref)
            aliases = self._aliases()
            current = aliases.get(PRODUCTION)
            if current == candidate.version:
                return candidate
            production = self.get(current).metrics if current is not None else None
            reasons = gate_reasons(candidate.metrics, production, gate)
            if reasons and not force:
                self._event(action="refused", version=candidate.version, reasons=reasons)
                raise PromotionRefusedError(candidate.version, reasons)
            if current is not None:
                aliases[PREVIOUS] = current
            aliases[PRODUCTION] = candidate.version
            self._write_aliases(aliases)
            self._event(action="promote", version=candidate.version, previous=current, forced=bool(reasons))
            return self.get(candidate.version)

    def export(self, ref: str | int, dest: str | Path) -> ModelVersion:
        """Copy a version's bundle to ``dest`` (replaced atomically), writable, verified on both sides.

        Raises:
            RegistryError: unknown version, or the registered bundle fails verification.
        """
        entry = self.get(ref)
        self.load(entry.version)  # the registered copy matches its digest before it is handed out
        dest = Path(dest)
        staging = staging_dir(dest)
        shutil.copytree(entry.bundle_path, staging, dirs_exist_ok=True)
        _set_writable(staging, writable=True)  # registered copies are read-only; exports are not
        replace_dir(staging, dest)
        load_bundle(dest)
        return entry

    def rollback(self) -> ModelVersion:
        """Swap ``production`` and ``previous`` (a second rollback undoes the first).

        Raises:
            RegistryError: when there is no previous production.
        """
        with self._locked():
            aliases = self._aliases()
            if PREVIOUS not in aliases or PRODUCTION not in aliases:
                raise RegistryError(f"model {self.name!r} has no previous production to roll back to")
            aliases[PRODUCTION], aliases[PREVIOUS] = aliases[PREVIOUS], aliases[PRODUCTION]
            self._write_aliases(aliases)
            self._event(action="rollback", version=aliases[PRODUCTION], previous=aliases[PREVIOUS])
            return self.get(aliases[PRODUCTION])

    def best(self, metric: str, goal: str = "maximize") -> ModelVersion:
        """The version with the best value of ``metric`` (ties: the newest).

        Raises:
            RegistryError: no version has that metric.
        """
        scored: list[tuple[float, ModelVersion]] = []
        for entry in self.versions():
            value = metric_value(entry.metrics, metric)
            if value is not None:
                scored.append((value, entry))
        if not scored:
            raise RegistryError(f"no version of {self.name!r} has a metric {metric!r}")
        sign = 1 if goal == "maximize" else -1
        return max(scored, key=lambda item: (sign * item[0], item[1].version))[1]


def list_models(root: Path) -> list[str]:
    """Names of the models in a registry directory."""
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if (d / "versions").is_dir())


@dataclass(frozen=True)
class ModelSource:
    """Where a consumer's model comes from: a bundle path, or ``registry/name`` at an alias or version.

    Serving (``segment serve``) and batch scoring (``segment score``) resolve ``--model`` / ``--bundle``
    through this one class.
    """

    bundle: str | None = None
    registry_root: str | None = None
    name: str | None = None
    alias: str | None = None

    def resolve(self) -> tuple[Path, dict[str, Any]]:
        """The bundle directory to load now, and what to report about it (name, version, alias)."""
        if self.bundle:
            path = find_bundle(self.bundle)
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            return path, {"name": manifest.get("name"), "version": None, "alias": None, "source": str(path)}
        registry = LocalRegistry(str(self.registry_root), str(self.name))
        entry = registry.get(str(self.alias))
        return entry.bundle_path, {
            "name": registry.name,
            "version": entry.tag,
            "alias": self.alias,
            "source": str(entry.bundle_path),
        }

    def load(self) -> tuple[SegmentationModel, dict[str, Any]]:
        """Resolve and load the model, verified (a registry version also against its registered digest).

        Returns:
            The model and what :meth:`resolve` reports, plus ``bundle_path``.

        Raises:
            BundleError: the bundle is missing or fails its digest check.
            RegistryError: unknown alias or version, or a registered bundle that was altered.
        """
        path, meta = self.resolve()
        if self.bundle:
            model = load_bundle(path)
        else:
            model = LocalRegistry(str(self.registry_root), str(self.name)).load(str(meta["version"]))
        return model, {**meta, "bundle_path": str(path)}

    def aliases_file(self) -> Path | None:
        """The file whose change may move the alias (None for a fixed bundle)."""
        if self.bundle:
            return None
        return Path(str(self.registry_root)) / str(self.name) / "aliases.json"
