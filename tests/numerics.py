"""Float32 tolerances and label checks for tests that compare two code paths.

Why not exact: NumPy's float32 products run through OpenBLAS, whose kernel (chosen per CPU, or forced by
``OPENBLAS_CORETYPE``), block sizes and thread count decide the order in which a dot product's terms are
added; torch's CPU kernels depend on ``ATEN_CPU_CAPABILITY`` and the thread count in the same way. Two code
paths that compute the same numbers (row-major vs column-major PCA, a 32k-row block vs the whole table, a
single row vs a batch) can therefore round differently on one machine and agree on another.

Exact comparison stays right where the code guarantees it: the same function on the same input in one
process (same kernel, same thread count: the same operations in the same order), integer labels computed
from the same floats, arrays and files read back from disk, and counts.

Imported as ``from numerics import ...``: pytest puts ``tests/`` on ``sys.path`` (rootdir conftest,
no ``__init__.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FLOAT32_EPS = float(np.finfo(np.float32).eps)
"""1.19e-7: the spacing of float32 numbers at 1 (twice the unit roundoff)."""

CONFIDENCE_ATOL = 1e-5
"""How far two float32 paths may disagree on a confidence (and on any decision margin).

A centroid confidence is ``1 - d_nearest / d_second``; each distance comes from float32 products of a few
to a few dozen terms, so it carries a relative error of at most a few dozen eps (about 1e-6 in practice:
the largest difference measured across OpenBLAS kernels is 5e-7). 1e-5 leaves a factor of 20. A real bug
(a wrong centroid, squared instead of plain distances, nearest and second swapped, a missing centring)
moves confidences by 1e-2 or more.
"""

TIE_MARGIN = CONFIDENCE_ATOL
"""A row whose decision margin is at most this is a tie: two float32 paths may label it differently.

A label can only change where rounding moves the margin across zero, and rounding moves a margin by no
more than it moves a confidence (:data:`CONFIDENCE_ATOL`).
"""


def product_tolerance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise bound on the difference of two float32 evaluations of ``a @ b``.

    A float32 dot product of ``k`` terms, summed in any order (with or without FMA, in any blocking), is
    within ``k * u * sum|a_i * b_i|`` of the exact value, ``u = eps / 2`` (Higham, *Accuracy and Stability
    of Numerical Algorithms*, 3.1), so two evaluations are within ``k * eps * (|a| @ |b|)`` of each other;
    one more eps covers the final rounding. Real bugs (a missing centring, a wrong scale, a swapped column
    or component) move values by a sizeable fraction of ``|a| @ |b|``, about 1e5 times this bound.
    """
    a64 = np.abs(np.asarray(a, dtype=np.float64))
    b64 = np.abs(np.asarray(b, dtype=np.float64))
    return (a64.shape[-1] + 1) * FLOAT32_EPS * (a64 @ b64)


def assert_within(
    actual: np.ndarray, expected: np.ndarray, bound: np.ndarray | float, what: str = ""
) -> None:
    """``|actual - expected| <= bound`` elementwise; the message names the worst element."""
    actual64 = np.asarray(actual, dtype=np.float64)
    expected64 = np.asarray(expected, dtype=np.float64)
    assert actual64.shape == expected64.shape, f"{what}: shapes {actual64.shape} != {expected64.shape}"
    excess = np.abs(actual64 - expected64) - bound
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
        allowed = np.broadcast_to(bound, excess.shape)[worst]
        raise AssertionError(
            f"{what}: {int((excess > 0).sum())} of {excess.size} values differ by more than allowed; "
            f"worst at {tuple(map(int, worst))}: {actual64[worst]!r} vs {expected64[worst]!r} "
            f"(allowed {allowed:.3g})"
        )


def distance_margins(distances: np.ndarray) -> np.ndarray:
    """Relative margin of a nearest-centroid decision per row: ``1 - d_nearest / d_second``.

    The same quantity the centroid models report as confidence; 0 on a boundary.
    """
    ordered = np.sort(np.asarray(distances, dtype=np.float64), axis=1)
    if ordered.shape[1] < 2:
        return np.ones(len(ordered))
    return 1.0 - ordered[:, 0] / np.maximum(ordered[:, 1], 1e-300)


def decision_margins(details: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]) -> np.ndarray:
    """Margin of every row's decision, from a clusterer's ``predict_details`` output.

    Nearest-centroid models: the relative distance margin (their confidence). GMM: the largest posterior
    minus the second largest. Density models (HDBSCAN, DBSCAN) look labels up rather than compare scores:
    infinite margin, so their labels must agree exactly.
    """
    labels, confidence, extra = details
    if "probabilities" in extra:
        ordered = np.sort(extra["probabilities"], axis=1)
        return ordered[:, -1] - ordered[:, -2] if ordered.shape[1] > 1 else np.ones(len(labels))
    if "distances" in extra:
        return np.asarray(confidence, dtype=np.float64)
    return np.full(len(labels), np.inf)


def max_ties(n_rows: int) -> int:
    """How many rows of ``n_rows`` may change label at ties: one per 1,000, at least one.

    Ties are rare: in the tables of these tests at most one row in several thousand has a margin below
    1e-4, ten times :data:`TIE_MARGIN`. A bug that only moves rows near a boundary still moves many.
    """
    return max(1, n_rows // 1000)


def assert_labels_equal_except_ties(
    actual: np.ndarray,
    expected: np.ndarray,
    margin: np.ndarray,
    *,
    tol: float | np.ndarray = TIE_MARGIN,
    max_disagreements: int | None = None,
) -> None:
    """Labels from two code paths agree on every row except at ties.

    A row is a tie when its decision margin (``margin``, from either path: :func:`decision_margins`, or
    the expected path's confidence for centroid models) is at most ``tol``; float32 rounding may send such
    a row either way, including an exact tie, which each path breaks towards its own first candidate.
    Every row with a larger margin must get the same label, and the disagreements must be few: at most
    ``max_disagreements`` (default :func:`max_ties`). Noise (-1) is a label like any other.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    margin = np.asarray(margin, dtype=np.float64)
    assert actual.shape == expected.shape == margin.shape, (actual.shape, expected.shape, margin.shape)
    differ = np.flatnonzero(actual != expected)
    if not len(differ):
        return
    limit = max_ties(len(actual)) if max_disagreements is None else max_disagreements
    tols = np.broadcast_to(np.asarray(tol, dtype=np.float64), margin.shape)
    clear = differ[~(np.abs(margin[differ]) <= tols[differ])]
    assert not len(clear), (
        f"{len(clear)} rows with a clear margin changed label, e.g. row {int(clear[0])}: "
        f"{actual[clear[0]]} vs {expected[clear[0]]} (margin {margin[clear[0]]:.3g}, tie tolerance "
        f"{tols[clear[0]]:.3g})"
    )
    assert len(differ) <= limit, f"{len(differ)} rows changed label at ties, more than {limit}"


def assert_scores_match(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Two batch-scoring outputs hold the same rows, segments (up to ties) and confidences.

    Every column but ``segment``, ``segment_name`` and ``confidence`` (IDs or row numbers, model version)
    must be identical, in the same order; segments may differ only at ties of ``expected``'s confidence,
    names follow segments, and confidences agree to :data:`CONFIDENCE_ATOL`.
    """
    assert list(actual.columns) == list(expected.columns)
    assert actual.dtypes.to_dict() == expected.dtypes.to_dict()
    assert len(actual) == len(expected)
    decided = {"segment", "segment_name", "confidence"}
    exact = [c for c in actual.columns if c not in decided]
    pd.testing.assert_frame_equal(
        actual[exact].reset_index(drop=True), expected[exact].reset_index(drop=True), check_exact=True
    )
    segment, reference = actual["segment"].to_numpy(), expected["segment"].to_numpy()
    confidence = expected["confidence"].to_numpy()
    assert_labels_equal_except_ties(segment, reference, confidence)
    same = segment == reference
    names = actual["segment_name"].to_numpy()[same], expected["segment_name"].to_numpy()[same]
    assert names[0].tolist() == names[1].tolist()
    assert_within(actual["confidence"], confidence, CONFIDENCE_ATOL, "confidence")
