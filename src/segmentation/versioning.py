"""Code versions and fingerprints used in manifests and cache keys."""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import subprocess
from pathlib import Path

from segmentation import __version__


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=True
    ).stdout.strip()


@functools.cache
def code_version() -> str:
    """Package version plus the git commit (``.dirty`` when tracked files changed), when in a checkout."""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


@functools.cache
def code_fingerprint(*modules: str) -> str:
    """SHA-256 over the source of the named modules (or packages): changes when their code changes."""
    digest = hashlib.sha256()
    for name in modules:
        module = importlib.import_module(name)
        files = [Path(inspect.getfile(module))]
        if files[0].name == "__init__.py":
            files = sorted(files[0].parent.rglob("*.py"))
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
