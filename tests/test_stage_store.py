from __future__ import annotations

from pathlib import Path

import numpy as np

from segmentation.stage_store import StageRef, save_stage, stage_complete


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
