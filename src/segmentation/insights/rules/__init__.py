"""Rules an analyst can act on: one short condition list per segment, in the table's own units.

A shallow surrogate model explains the segment labels: for every segment ``s`` a one-vs-rest decision tree
of depth ``max_depth`` is fitted to "in ``s``" on a seeded sample of rows, and the leaf with the best F1
for ``s`` becomes the rule, a conjunction of at most ``max_depth`` conditions such as
``CASH_ADVANCE > 1,210 and PURCHASES ≤ 310``. Precision and recall are measured on held-out rows the trees
never saw, with the rule as it is displayed (rounded thresholds), and the rules together are scored by
their *fidelity*: the share of held-out rows that the rules put in the row's own segment.

Why one tree per segment rather than one multiclass tree: a depth-3 tree has at most 8 leaves, so with
more segments than that some segment gets no leaf at all, and even with fewer its splits serve the large
segments first. A one-vs-rest tree spends all of its depth on separating one segment from the rest, so
every segment gets the best single path the depth allows, whatever the number of segments.

How rows are read (:mod:`segmentation.contract.values`, as preprocessing reads them):

* numeric: as numbers; a missing value is imputed with the training median, so a row with a missing
  value satisfies a condition exactly when the median does (``Condition.missing`` records which).
* boolean: 0/1, rendered ``flag is true`` / ``flag is false``; missing values as for numbers.
* datetime: days before the schema's reference date inside the tree; rendered as ISO dates
  (``signup_date before 2023-04-01``, ``signup_date on or after 2023-04-01``), thresholds moved to a day
  boundary, which is exact for dates without a time of day.
* ordinal: the rank of the level in the schema's order (missing values as for numbers), rendered with
  the levels: ``size ≥ medium``, ``size between low and medium``.
* categorical: the schema's levels; a missing value or a level outside them is one more group,
  "missing". For each segment the groups are ordered by their share of the segment (the optimal subset
  split of a binary CART tree), so a threshold on that order is a set of levels: ``channel = web``,
  ``channel in {web, app}``, ``channel not in {store}`` (which includes missing values).

Each tree grows on at most 6,000 of the training rows (up to half of them the segment's); the chosen
leaf is then tuned on all the training rows: each threshold in turn moves to where the rule's F1 peaks
(the tree placed it for node purity, not for one leaf's F1), and conditions whose removal does not lower
the F1 are dropped. A threshold is shown as the roundest value that splits the training rows the same
way: a number with at most three significant digits (``nice_threshold``: ``1,210`` rather than
``1,213.37``; the midpoint rounded to three digits when no such number fits), a 1 January or a first of
the month for dates. Precision and recall are measured with the thresholds as shown. Conditions on one
column read as one (``1,000 < BALANCE ≤ 5,000``).

Noise (label -1, from density models) gets no rule: it is what no dense region describes. Noise rows
count as "not in the segment" for every rule, and a held-out noise row agrees with the surrogate when it
satisfies no rule.

Modules: :mod:`.conditions` (a condition and how it reads, round thresholds), :mod:`.result` (``SegmentRule``,
``RuleSet``), :mod:`.encoding` (columns as floats for the trees), :mod:`.surrogate` (the trees and
``segment_rules``).

Example:
    >>> rules = segment_rules(frame, labels, schema, max_depth=3)  # doctest: +SKIP
    >>> rules.lines()  # doctest: +SKIP
    ['segment 0: CASH_ADVANCE > 1,210 and PURCHASES ≤ 310 (precision 0.91, recall 0.84)', ...]
"""

from segmentation.insights.rules.conditions import (
    Condition,
    format_number,
    nice_threshold,
    render_conditions,
    round_significant,
)
from segmentation.insights.rules.result import RuleSet, SegmentRule
from segmentation.insights.rules.surrogate import segment_rules

__all__ = [
    "Condition",
    "RuleSet",
    "SegmentRule",
    "format_number",
    "nice_threshold",
    "render_conditions",
    "round_significant",
    "segment_rules",
]
