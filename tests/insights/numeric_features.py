"""Segment features from a frame of standardized differences, for tests that have only those."""

from __future__ import annotations

import pandas as pd

from segmentation.insights.naming import MIN_EFFECT, Feature, rank


def numeric_ranking(diffs: pd.DataFrame) -> dict[int, list[Feature]]:
    """Every column as a numeric feature (its value as Cohen's d), ranked, from Cohen's small effect up."""
    return {
        int(str(seg)): rank(
            [Feature(str(c), "numeric", float(v)) for c, v in values.items() if abs(float(v)) >= MIN_EFFECT]
        )
        for seg, values in diffs.iterrows()
    }
