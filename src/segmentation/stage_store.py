"""A local store for stage outputs, addressed by the stage's cache key.

Orchestrators cache *references* to stage outputs and keep the outputs themselves here, one pickle
file (protocol 5: NumPy buffers are written and read without copies through base64 or JSON) per stage
key. A cache hit then costs one file read: about 0.3 s for a 1,000,000 x 100 table, where storing the
same output inside Prefect's JSON result records took 30 s to load. The store holds only what this
machine's own runs wrote; files are written to a temporary name and renamed into place. Arrays of
32 MB and more are kept as ``.npy`` files and come back memory-mapped: a 2,000,000 x 124 float32 matrix
is never copied into a pickle, and a stage that reads a few rows of it touches only those pages.

Why not ``joblib.dump``/``joblib.load(mmap_mode="r")``: joblib maps arrays inside its own file, so a stage
output that holds the preprocessed matrix (already a ``.npy`` file in this store, written by the preprocess
stage) would be copied into the pickle once per stage; here it is referenced by name, and every stage
maps the one file.

Two processes may compute the same stage at once (parallel sweep trials share every stage before the
one their parameters change). Each save names its array files uniquely, so a pickle always comes back
with the arrays written beside it, never with another process's, and no file is rewritten in place
under a process that has it mapped.
"""

from __future__ import annotations

import pickle
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segmentation.data.io import atomic_path

_MAP_BYTES = 32 * 1024 * 1024
"""Arrays at least this large are stored as ``.npy`` files beside the pickle and loaded memory-mapped."""


class _ArrayPickler(pickle.Pickler):
    """Pickles large arrays by reference to ``.npy`` files, so loading them costs no copy and no RSS.

    A memory-mapped array that already lives in the store (a stage wrote it there, e.g. the preprocessed
    matrix) is referenced as is; other large arrays are written once to ``<key>.<save>.<n>.npy``, where
    ``<save>`` is unique to this save.
    """

    def __init__(self, fh: Any, root: Path, key: str) -> None:
        super().__init__(fh, protocol=5)
        self.root, self.key = root, key
        self.save_id = uuid.uuid4().hex[:12]
        self.files: list[Path] = []

    def persistent_id(self, obj: Any) -> str | None:
        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject or obj.nbytes < _MAP_BYTES:
            return None
        mapped = _mapped_file(obj)
        if mapped is not None and mapped.parent == self.root.resolve():
            return mapped.name
        path = self.root / f"{self.key}.{self.save_id}.{len(self.files)}.npy"
        with atomic_path(path) as tmp, tmp.open("wb") as out:
            np.save(out, np.ascontiguousarray(obj), allow_pickle=False)
        self.files.append(path)
        return path.name


def _mapped_file(array: np.ndarray) -> Path | None:
    """The file behind a memory-mapped array (or a full view of one), else None."""
    base: Any = array
    while base is not None:
        if isinstance(base, np.memmap) and base.filename is not None:
            return Path(base.filename).resolve() if base.shape == array.shape else None
        base = base.base
    return None


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, root: Path) -> None:
        super().__init__(fh)
        self.root = root

    def persistent_load(self, pid: Any) -> Any:
        return np.load(self.root / str(pid), mmap_mode="r")


@dataclass(frozen=True)
class StageRef:
    """A handle to one stored stage output (small enough for any result backend to persist)."""

    root: str
    key: str

    @property
    def path(self) -> Path:
        """The file holding the output."""
        return stage_path(Path(self.root), self.key)

    def load(self) -> Any:
        """Read the stored output back (large arrays come back read-only and memory-mapped)."""
        with self.path.open("rb") as fh:
            return _ArrayUnpickler(fh, Path(self.root)).load()


def stage_path(root: Path, key: str) -> Path:
    """Where the output of stage ``key`` lives."""
    return root / f"{key}.pkl"


def stage_array_path(root: Path, key: str, name: str) -> Path:
    """Where a stage writes a large array directly (memory-mapped, e.g. the preprocessed matrix)."""
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{key}.{name}.npy"


def stage_complete(root: Path, key: str) -> bool:
    """True when the output of ``key`` has been fully written."""
    return stage_path(root, key).is_file()


def save_stage(root: Path, key: str, value: Any) -> StageRef:
    """Store a stage output atomically and return its handle.

    Array files are written first and the pickle last, so a complete pickle implies complete arrays.
    """
    path = stage_path(root, key)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        _ArrayPickler(fh, root, key).dump(value)
    return StageRef(root=str(root), key=key)
