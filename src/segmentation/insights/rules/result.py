"""A segment's rule and the rule set, with their scores on held-out rows (JSON round trip)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segmentation.insights.rules.conditions import Condition


# -------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SegmentRule:
    """The rule of one segment and how well it matches the segment on held-out rows.

    ``precision``: share of the held-out rows matching the rule that are in the segment; ``recall``: share
    of the segment's held-out rows that match the rule (``None`` without held-out rows of the segment, or
    none matching). ``support``: held-out rows matching the rule; ``segment_rows``: held-out rows of the
    segment.
    """

    segment: int
    text: str
    conditions: tuple[Condition, ...]
    precision: float | None
    recall: float | None
    support: int
    segment_rows: int

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall on the held-out rows."""
        if self.precision is None or self.recall is None or self.precision + self.recall == 0:
            return None
        return 2 * self.precision * self.recall / (self.precision + self.recall)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "segment": self.segment,
            "text": self.text,
            "conditions": [c.to_dict() for c in self.conditions],
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "segment_rows": self.segment_rows,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentRule:
        """Inverse of :meth:`to_dict`."""
        return cls(
            segment=int(data["segment"]),
            text=str(data["text"]),
            conditions=tuple(Condition.from_dict(c) for c in data["conditions"]),
            precision=data["precision"],
            recall=data["recall"],
            support=int(data["support"]),
            segment_rows=int(data["segment_rows"]),
        )


@dataclass(frozen=True)
class RuleSet:
    """One rule per segment (noise has none) and the surrogate's fidelity on held-out rows.

    ``fidelity``: share of held-out rows whose surrogate label equals their segment. The surrogate label
    of a row is the segment whose rule it satisfies (the one with the most precise rule on the training
    rows when it satisfies several), or noise when it satisfies none. ``unmatched``: share of held-out
    rows that satisfy no rule.
    """

    rules: tuple[SegmentRule, ...]
    fidelity: float | None
    unmatched: float | None
    max_depth: int
    train_rows: int
    holdout_rows: int
    noise_rows: int = 0
    seed: int = 0
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def rule(self, segment: int) -> SegmentRule | None:
        """The rule of one segment (``None`` for noise or an unknown segment)."""
        return next((r for r in self.rules if r.segment == segment), None)

    def texts(self) -> dict[int, str]:
        """Segment ID -> rule text (a ``profile.csv`` column)."""
        return {r.segment: r.text for r in self.rules}

    def lines(self, names: Mapping[int, str] | None = None) -> list[str]:
        """One line per segment for the report: ``<name>: <rule> (precision 0.91, recall 0.84)``.

        Args:
            names: segment ID -> name; without it (or for a missing ID) "segment N".
        """
        out = []
        for r in self.rules:
            label = (names or {}).get(r.segment, f"segment {r.segment}")
            out.append(
                f"{label}: {r.text} ({_score('precision', r.precision)}, {_score('recall', r.recall)})"
            )
        return out

    def summary(self) -> dict[str, Any]:
        """Flat numbers for metrics and the W&B summary: fidelity, depth, rows, mean precision/recall."""
        precision = [r.precision for r in self.rules if r.precision is not None]
        recall = [r.recall for r in self.rules if r.recall is not None]
        return {
            "rules_fidelity": self.fidelity,
            "rules_unmatched": self.unmatched,
            "rules_max_depth": self.max_depth,
            "rules_train_rows": self.train_rows,
            "rules_holdout_rows": self.holdout_rows,
            "rules_mean_precision": float(np.mean(precision)) if precision else None,
            "rules_mean_recall": float(np.mean(recall)) if recall else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``segments.json``, metrics and W&B)."""
        return {
            "fidelity": self.fidelity,
            "unmatched": self.unmatched,
            "max_depth": self.max_depth,
            "train_rows": self.train_rows,
            "holdout_rows": self.holdout_rows,
            "noise_rows": self.noise_rows,
            "seed": self.seed,
            "levels": {k: list(v) for k, v in self.levels.items()},
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        """Inverse of :meth:`to_dict`."""
        return cls(
            rules=tuple(SegmentRule.from_dict(r) for r in data["rules"]),
            fidelity=data["fidelity"],
            unmatched=data["unmatched"],
            max_depth=int(data["max_depth"]),
            train_rows=int(data["train_rows"]),
            holdout_rows=int(data["holdout_rows"]),
            noise_rows=int(data.get("noise_rows", 0)),
            seed=int(data.get("seed", 0)),
            levels={k: tuple(v) for k, v in (data.get("levels") or {}).items()},
        )


def _score(name: str, value: float | None) -> str:
    return f"{name} {value:.2f}" if value is not None else f"{name} n/a"
