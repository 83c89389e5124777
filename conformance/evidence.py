"""What kind of difference a failing check found, in words a person can act on.

A size alone (``acted = 0.998 exceeds 0.255``) does not say whether the output was all zeros, twice the
reference, pointing elsewhere, or NaN. :func:`compare` measures the kind (non-finite entries, an all-zero
output, the best-fit factor c minimising ‖actual − c·expected‖ and the cosine between the two) and
:func:`describe` turns it into one phrase for the failing check's report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import to_float64

__all__ = ["Difference", "compare", "describe", "nonfinite_at"]

#: |cosine| above this and a factor away from 1 by more than FACTOR_TOL: "a constant factor"
PARALLEL = 0.999
FACTOR_TOL = 1e-3


@dataclass(frozen=True)
class Difference:
    nonfinite: int  # entries of ``actual`` that are NaN or ±inf
    size: int
    all_zero: bool  # ``actual`` is exactly zero while ``expected`` is not
    scale: float  # best-fit c in actual ≈ c·expected (nan when expected is zero)
    cosine: float  # <actual, expected> / (‖actual‖‖expected‖) (nan when either is zero)


def _flat(x) -> np.ndarray:
    if isinstance(x, (list, tuple)):
        parts = [to_float64(a).ravel() for a in x]
        return np.concatenate(parts) if parts else np.zeros(0)
    return to_float64(x).ravel()


def compare(actual, expected) -> Difference:
    """The kind of difference between ``actual`` and ``expected`` (arrays, or lists of arrays, of one shape)."""
    a, e = _flat(actual), _flat(expected)
    bad = int(np.sum(~np.isfinite(a)))
    if bad or a.shape != e.shape:
        return Difference(bad, a.size, False, math.nan, math.nan)
    m = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(e), initial=0.0)))
    if m > 0.0:  # 1e-109 or 1e300 entries: no square under- or overflows
        a, e = a / m, e / m
    ee, aa, ae = float(e @ e), float(a @ a), float(a @ e)
    zero = aa == 0.0 and ee > 0.0
    scale = ae / ee if ee > 0 else math.nan
    cosine = ae / (math.sqrt(aa) * math.sqrt(ee)) if aa > 0 and ee > 0 else math.nan
    return Difference(0, a.size, zero, scale, cosine)


def describe(d: Difference) -> str:
    """One phrase: what kind of difference ``d`` is."""
    if d.nonfinite:
        return f"{d.nonfinite} of {d.size} entries are NaN or inf"
    if d.all_zero:
        return "the output is all zeros"
    if math.isnan(d.cosine):
        return "the reference is zero here"
    if abs(d.cosine) >= PARALLEL and abs(d.scale - 1.0) > FACTOR_TOL:
        return f"{d.scale:.4g}× the reference (cosine {d.cosine:.4f}): a constant factor"
    if d.cosine < PARALLEL:
        return f"a different direction: cosine {d.cosine:.4f} with the reference, best-fit factor {d.scale:.4g}"
    return f"best-fit factor {d.scale:.6g}, cosine {d.cosine:.6f}"


def nonfinite_at(arrays: Sequence[Sequence[np.ndarray]]) -> tuple[int, int] | None:
    """The first (step, parameter) whose array holds a NaN or inf, in ``arrays[step][param]``; None if all finite."""
    for t, row in enumerate(arrays):
        for i, a in enumerate(row):
            if not np.all(np.isfinite(a)):
                return t, i
    return None
