"""Drift monitoring: how far a new customer snapshot has moved from the production model's training data.

At training time :func:`build_reference` summarises (a seeded sample of) the training rows into
``reference.json`` inside the bundle: bin edges and shares per feature and the share of every segment
(``reference``). :func:`compare` streams a snapshot in chunks through the same bins, validates it and
predicts its segments, and measures the population stability index of every distribution against the
reference (``measure``). The :class:`DriftReport` is ``alert`` when any feature or the segment shares reach
their alert threshold (``report``); :func:`write_report` writes ``drift.json``, ``drift.csv``,
``drift.png``, ``drift.md`` and ``drift.html`` (``write``). Memory is bounded by one chunk, whatever the
snapshot's size.

Modules: ``reference`` (binning, :func:`build_reference`) · ``measure`` (:func:`psi`, :func:`status_of`,
:func:`compare`) · ``report`` (:class:`DriftReport`, :class:`FeatureDrift`, :class:`DriftAlertError`) ·
``write`` (:func:`write_report`, :func:`plot_drift`). This package re-exports their public names.
"""

from segmentation.drift.measure import NoReferenceError, compare, model_info, psi, status_of
from segmentation.drift.reference import build_reference, quantile_edges
from segmentation.drift.report import DriftAlertError, DriftReport, FeatureDrift
from segmentation.drift.write import plot_drift, write_report

__all__ = [
    "DriftAlertError",
    "DriftReport",
    "FeatureDrift",
    "NoReferenceError",
    "build_reference",
    "compare",
    "model_info",
    "plot_drift",
    "psi",
    "quantile_edges",
    "status_of",
    "write_report",
]
