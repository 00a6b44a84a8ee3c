from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from segmentation.stage_store import StageRef, save_stage, stage_array_path, stage_complete


def test_round_trip_and_atomicity(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert not stage_complete(tmp_path, "preprocess-abc")
    ref = save_stage(tmp_path, "preprocess-abc", ("fitted", x))
    assert ref == StageRef(root=str(tmp_path), key="preprocess-abc")
    assert stage_complete(tmp_path, "preprocess-abc")
    name, loaded = ref.load()
    assert name == "fitted"
    assert np.array_equal(loaded, x)
    assert loaded.dtype == np.float32
    assert [p.name for p in tmp_path.iterdir()] == ["preprocess-abc.pkl"]  # no temporary files left


def test_large_arrays_are_stored_beside_the_pickle_and_come_back_memory_mapped(tmp_path: Path) -> None:
    big = np.random.default_rng(0).standard_normal((300_000, 16)).astype(np.float32)  # 19 MB -> 38 MB below
    big = np.hstack([big, big])
    ref = save_stage(tmp_path, "featurize-k", {"z": big, "small": np.ones(3)})
    loaded = ref.load()
    assert isinstance(loaded["z"], np.memmap)
    assert not loaded["z"].flags.writeable
    assert np.array_equal(loaded["z"], big)
    arrays = sorted(p.name for p in tmp_path.glob("*.npy"))
    assert len(arrays) == 1
    assert re.fullmatch(r"featurize-k\.[0-9a-f]{12}\.0\.npy", arrays[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [arrays[0], "featurize-k.pkl"]


def test_saving_a_stage_again_never_touches_the_arrays_of_the_previous_save(tmp_path: Path) -> None:
    """Two processes computing the same stage (parallel sweep trials) each get their own array files.

    Their saves can interleave: A writes its arrays, B writes its arrays and its pickle, then A's pickle
    lands last. A pickle must still load with the arrays saved beside it, and a reader that mapped the
    first save's arrays keeps its values.
    """
    first = np.full((600_000, 16), 1.0, dtype=np.float32)
    second = np.full((600_000, 16), 2.0, dtype=np.float32)  # a fit that came out differently
    ref = save_stage(tmp_path, "featurize-k", ("model-a", first))
    pickle_a = ref.path.read_bytes()
    _, mapped = ref.load()
    save_stage(tmp_path, "featurize-k", ("model-b", second))
    name, loaded = ref.load()
    assert (name, float(loaded[0, 0])) == ("model-b", 2.0)
    ref.path.write_bytes(pickle_a)  # A's pickle renamed into place after B's save
    name, loaded = ref.load()
    assert (name, float(loaded[0, 0])) == ("model-a", 1.0)
    assert float(mapped[0, 0]) == 1.0


def test_a_memmap_already_in_the_store_is_referenced_not_copied(tmp_path: Path) -> None:
    path = stage_array_path(tmp_path, "preprocess-k", "x")
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(600_000, 16))
    x[:] = 1.5
    x.flush()
    ref = save_stage(tmp_path, "preprocess-k", ("pre", x))
    _, loaded = ref.load()
    assert Path(loaded.filename).resolve() == path.resolve()
    assert float(loaded[-1, -1]) == 1.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preprocess-k.pkl", "preprocess-k.x.npy"]
