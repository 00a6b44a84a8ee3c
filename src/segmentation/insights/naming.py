"""Segment names and one-sentence descriptions, in the words of the table's own columns.

Both are built from a segment's distinguishing features (:class:`Feature`, ranked by
:func:`segmentation.insights.profiles.segment_effects`), so the same model always gets the same names.

How a feature reads:

* Column names keep their own spelling. In names, underscores become spaces and nothing else changes
  (case, camelCase and punctuation stay: ``CASH_ADVANCE`` -> "CASH ADVANCE", ``MntWines`` -> "MntWines");
  descriptions quote the column exactly as it is spelled in the table.
* Numeric columns: "high X" / "low X" ("much higher X (+1.4 SD)" in a description).
* Boolean columns: "more often X" / "less often X".
* Date columns are encoded as days before the reference date, so a *positive* effect means *longer ago*:
  "earlier X" / "recent X" ("more recent X (by 0.8 SD)").
* Categorical levels, as words: "mostly Female" (over half of the segment, more than overall), "often
  web" (more than overall, under half), "rarely web" (at most half the overall share), "less often web".
  A level that appears in several columns, has no letter or is one or two characters long is qualified
  by its column ("mostly channel 1"). Columns whose levels are all yes/no words (yes/no, y/n, true/false,
  t/f, 1/0, any case) read as "with card" / "without card" (or "more often with card" / "less often with
  card" when the segment is not mostly one way). In a description: "more often channel = web (61% vs
  30%)".
* Adverbs follow Cohen's conventions for |d| and |h| alike: "much" from 0.8 (large), none from 0.5
  (medium), "slightly" below.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from segmentation.clustering import NOISE

#: Features in a name to start with; colliding names get more, up to :data:`MAX_NAME_FEATURES`.
NAME_FEATURES = 2
#: The most features a name lists before two colliding segments fall back to "(segment N)".
MAX_NAME_FEATURES = 4
#: Features quoted in a segment's description.
DESCRIPTION_FEATURES = 3
#: The name of a segment with no distinguishing feature.
TYPICAL = "typical customers"
#: Cohen's conventional "large" and "medium" effects (the same for d and h): "much ...", plain.
LARGE_EFFECT, MEDIUM_EFFECT = 0.8, 0.5
#: Level words read as "yes" and as "no" (lower-cased) in a yes/no style categorical column.
YES_WORDS = frozenset({"yes", "y", "true", "t", "1", "1.0"})
NO_WORDS = frozenset({"no", "n", "false", "f", "0", "0.0"})
#: Cohen's "small" effect, the least |d| or |h| ever called distinguishing (see ``profiles.effect_floor``).
MIN_EFFECT = 0.2
_MOSTLY = 0.5  # a level held by at least this share of the segment is what it "mostly" is
_RARELY = 0.5  # a segment share at most this fraction of the overall share is "rarely"


@dataclass(frozen=True)
class Feature:
    """How one feature of a segment differs from the whole population, as a standardized effect size.

    ``effect`` is Cohen's d for numeric, boolean and date columns: the segment mean minus the population
    mean, over the population standard deviation, in the preprocessed space (after imputation, clipping
    and unskewing; dates as days before the reference date, so positive is longer ago). For a categorical
    level it is Cohen's h, ``2 asin(sqrt(p_segment)) - 2 asin(sqrt(p_overall))`` of the level's share in
    the segment and overall, from the original values. Both are unit-free and read on one scale (0.2
    small, 0.5 medium, 0.8 large), so one ranking holds both kinds.

    Attributes:
        column: the table's column.
        kind: ``numeric``, ``ordinal`` (its ranks), ``boolean``, ``datetime`` or ``categorical``.
        effect: Cohen's d or h (see above); positive means higher / more often.
        level: the categorical level (None for other kinds).
        segment_share: the level's share of the segment's customers (categorical only).
        overall_share: the level's share of all customers (categorical only).
        yes_no: the column's levels are all yes/no words (categorical only).
        qualified: the level is named with its column in names (ambiguous or uninformative alone).
    """

    column: str
    kind: str
    effect: float
    level: str | None = None
    segment_share: float | None = None
    overall_share: float | None = None
    yes_no: bool = False
    qualified: bool = False

    @property
    def name(self) -> str:
        """The feature's name in the preprocessed space: ``column`` or ``column=level``."""
        return self.column if self.level is None else f"{self.column}={self.level}"

    @property
    def measure(self) -> str:
        """``d`` (Cohen's d) or ``h`` (Cohen's h, categorical levels)."""
        return "h" if self.kind == "categorical" else "d"

    @property
    def difference_pp(self) -> float | None:
        """Segment share minus overall share, in percentage points (categorical only)."""
        if self.segment_share is None or self.overall_share is None:
            return None
        return 100.0 * (self.segment_share - self.overall_share)

    @property
    def lift(self) -> float | None:
        """Segment share over overall share (categorical only; None when the level is absent overall)."""
        if self.segment_share is None or not self.overall_share:
            return None
        return self.segment_share / self.overall_share

    @property
    def label(self) -> str:
        """The feature as a name part ("high CASH ADVANCE", "mostly Female", "with card")."""
        return _label(self)

    @property
    def clause(self) -> str:
        """The feature as a description clause ("much higher CASH_ADVANCE (+1.4 SD)")."""
        return _clause(self)

    @property
    def summary(self) -> str:
        """Short form for tables: ``name +0.65 h (61% vs 30%)`` or ``name +1.40 d``."""
        text = f"{self.name} {self.effect:+.2f} {self.measure}"
        if self.segment_share is not None and self.overall_share is not None:
            text += f" ({percent(self.segment_share)} vs {percent(self.overall_share)})"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, plus the derived ones the report shows (measure, pp difference, lift, text)."""
        return asdict(self) | {
            "feature": self.name,
            "measure": self.measure,
            "difference_pp": self.difference_pp,
            "lift": self.lift,
            "text": self.clause,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Feature:
        """Read back :meth:`to_dict` (derived fields are recomputed, not read)."""
        share, overall = data.get("segment_share"), data.get("overall_share")
        return cls(
            column=str(data["column"]),
            kind=str(data["kind"]),
            effect=float(data["effect"]),
            level=None if data.get("level") is None else str(data["level"]),
            segment_share=None if share is None else float(share),
            overall_share=None if overall is None else float(overall),
            yes_no=bool(data.get("yes_no", False)),
            qualified=bool(data.get("qualified", False)),
        )


def features_of(segment: Mapping[str, Any]) -> list[Feature]:
    """The distinguishing features of one ``segments.json`` entry (empty for bundles that predate them)."""
    return [Feature.from_dict(item) for item in segment.get("features") or []]


def readable(text: str) -> str:
    """A column or level for a name: underscores become spaces; case and everything else is kept."""
    return re.sub(r"[_\s]+", " ", text).strip()


def percent(share: float) -> str:
    """A share as a percentage: one decimal under 10% (and above 0), none otherwise."""
    return f"{share:.1%}" if 0 < share < 0.1 else f"{share:.0%}"


def is_yes_no(levels: Sequence[str]) -> bool:
    """Whether every level is a yes/no word (and both sides occur), so levels read as with/without."""
    words = {str(level).strip().lower() for level in levels}
    return (
        bool(words) and words <= YES_WORDS | NO_WORDS and bool(words & YES_WORDS) and bool(words & NO_WORDS)
    )


def needs_column(level: str, all_levels: Sequence[str]) -> bool:
    """Whether a level must be named with its column: shared by several columns, no letter, or too short."""
    word = level.strip().lower()
    shared = sum(1 for other in all_levels if other.strip().lower() == word) > 1
    return shared or len(word) <= 2 or not re.search(r"[^\W\d_]", word)


def _adverb(effect: float) -> str:
    size = abs(effect)
    return "much " if size >= LARGE_EFFECT else "" if size >= MEDIUM_EFFECT else "slightly "


def _yes_share(feature: Feature) -> float:
    """Share of the segment on the "yes" side of a yes/no column, from one of its levels."""
    share = float(feature.segment_share or 0.0)
    return share if str(feature.level).strip().lower() in YES_WORDS else 1.0 - share


def _label(feature: Feature) -> str:
    column, up = readable(feature.column), feature.effect > 0
    if feature.kind in ("numeric", "ordinal"):  # an ordinal's effect is on its ranks: higher bands
        return f"{'high' if up else 'low'} {column}"
    if feature.kind == "boolean":
        return f"{'more' if up else 'less'} often {column}"
    if feature.kind == "datetime":  # days before the reference date: higher is longer ago
        return f"{'earlier' if up else 'recent'} {column}"
    level, share = readable(str(feature.level)), float(feature.segment_share or 0.0)
    if feature.yes_no:
        more_yes = up == (str(feature.level).strip().lower() in YES_WORDS)
        yes = _yes_share(feature)
        if more_yes:
            return f"with {column}" if yes >= _MOSTLY else f"more often with {column}"
        return f"without {column}" if yes < _MOSTLY else f"less often with {column}"
    words = f"{column} {level}" if feature.qualified else level
    if up:
        return f"{'mostly' if share >= _MOSTLY else 'often'} {words}"
    overall = float(feature.overall_share or 0.0)
    return f"{'rarely' if share <= _RARELY * overall else 'less often'} {words}"


def _clause(feature: Feature) -> str:
    adverb, up, column = _adverb(feature.effect), feature.effect > 0, feature.column
    if feature.kind == "numeric":
        return f"{adverb}{'higher' if up else 'lower'} {column} ({feature.effect:+.1f} SD)"
    if feature.kind == "ordinal":
        return f"{adverb}{'higher' if up else 'lower'} {column} ({feature.effect:+.1f} SD, in ranks)"
    if feature.kind == "boolean":
        return f"{adverb}{'more' if up else 'less'} often {column} ({feature.effect:+.1f} SD)"
    if feature.kind == "datetime":
        return f"{adverb}{'earlier' if up else 'more recent'} {column} (by {abs(feature.effect):.1f} SD)"
    shares = (
        f"{percent(float(feature.segment_share or 0.0))} vs {percent(float(feature.overall_share or 0.0))}"
    )
    return f"{adverb}{'more' if up else 'less'} often {column} = {feature.level} ({shares})"


def _family(feature: Feature) -> str:
    words = readable(feature.column).lower().split()
    return words[0] if words else ""


def name_parts(features: Sequence[Feature], width: int) -> list[Feature]:
    """The features a name or description uses: in rank order, one per column, at most ``width``.

    A feature whose column starts with the same word as one already chosen, of the same kind and in the
    same direction, is skipped too ("amount 01" after "amount 00"): columns of one family are strongly
    correlated, so a second adds length, not meaning.
    """
    chosen: list[Feature] = []
    for feature in features:
        if any(
            f.column == feature.column
            or (
                f.kind == feature.kind
                and _family(f) == _family(feature)
                and (f.effect > 0) == (feature.effect > 0)
            )
            for f in chosen
        ):
            continue
        chosen.append(feature)
        if len(chosen) == width:
            break
    return chosen


def rank(features: Sequence[Feature]) -> list[Feature]:
    """Largest |effect| first, deterministically.

    At equal size (to 1e-9: the two levels of a binary column) the positive one comes first, then by name.
    """
    return sorted(features, key=lambda f: (-round(abs(f.effect), 9), f.effect < 0, f.name))


def segment_names(ranking: Mapping[int, Sequence[Feature]]) -> dict[int, str]:
    """A short, deterministic, unique name per segment from its distinguishing features.

    Args:
        ranking: each segment's distinguishing features, ranked (:meth:`SegmentEffects.distinguishing`
            of every segment, or the bundle's ``SegmentationModel.segment_features``).

    Each name lists the two top features (:func:`name_parts`, joined by ", "); segments whose names would
    collide get further features (up to four), then " (segment N)". A segment with no distinguishing
    feature is "typical customers"; noise is "noise".
    """
    features = {int(seg): list(found) for seg, found in ranking.items()}
    width = dict.fromkeys(features, NAME_FEATURES)

    def render(seg: int) -> str:
        return ", ".join(f.label for f in name_parts(features[seg], width[seg])) or TYPICAL

    names = {seg: "noise" if seg == NOISE else render(seg) for seg in features}
    for _ in range(MAX_NAME_FEATURES - NAME_FEATURES):
        values = list(names.values())
        clashes = {n for n in values if values.count(n) > 1}
        if not clashes:
            break
        for seg, name in list(names.items()):
            if name in clashes and seg != NOISE:
                width[seg] += 1
                names[seg] = render(seg)
    counts = pd.Series(list(names.values())).value_counts()
    return {seg: (f"{name} (segment {seg})" if counts[name] > 1 else name) for seg, name in names.items()}


def describe_segment(seg: int, share: float, features: Sequence[Feature], floor: float) -> str:
    """One sentence: the segment's share of customers and its top distinguishing features.

    "22% of customers; much higher CASH_ADVANCE (+1.4 SD), more often channel = web (61% vs 30%)".
    Features as in names (:func:`name_parts`), at most :data:`DESCRIPTION_FEATURES`.
    """
    head = f"{percent(share)} of customers"
    if seg == NOISE:
        return f"{head}, in no segment (noise)"
    chosen = name_parts(features, DESCRIPTION_FEATURES)
    if not chosen:
        return f"{head}; close to the population on every feature (no effect size of {floor:.2f} or more)"
    return f"{head}; " + ", ".join(f.clause for f in chosen)


__all__ = [
    "DESCRIPTION_FEATURES",
    "MAX_NAME_FEATURES",
    "MIN_EFFECT",
    "NAME_FEATURES",
    "TYPICAL",
    "Feature",
    "describe_segment",
    "features_of",
    "is_yes_no",
    "name_parts",
    "needs_column",
    "rank",
    "readable",
    "segment_names",
]
