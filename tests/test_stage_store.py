from __future__ import annotations

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["featurize-k.0.npy", "featurize-k.pkl"]


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
