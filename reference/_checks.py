"""Input validation of the reference functions (SPEC S1.3).

Array checks live here; the scalar checks are the neutral ``optconform.spec.checks`` (shared with the
production implementation) and are re-exported. Every check raises ``ValueError`` whose message starts
with the parameter's name and states the rule it broke, e.g. ``"lr must be finite and > 0; got -1.0"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optconform.spec.checks import (
    require_bool,
    require_count,
    require_int,
    require_nonnegative,
    require_positive,
    require_real,
    require_unit_interval,
)

__all__ = [
    "as_float64_array",
    "require_real",
    "require_positive",
    "require_nonnegative",
    "require_unit_interval",
    "require_int",
    "require_count",
    "require_bool",
    "require_same_shape",
]


def as_float64_array(name: str, value: object, *, min_ndim: int = 0, ndim: int | None = None,
                     allow_empty: bool = True) -> np.ndarray:
    """Convert to a finite float64 ndarray (a copy), checking dimensionality.

    Raises ``ValueError`` naming ``name`` when the value is not numeric, has the wrong
    number of dimensions, is empty when that is not allowed, or holds NaN/inf.
    """
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real numeric array; got {type(value).__name__}") from exc
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have exactly {ndim} dimension(s); got shape {arr.shape}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s); got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def require_same_shape(name: str, arr: np.ndarray, like_name: str, like: np.ndarray | Sequence[int]) -> None:
    shape = tuple(like.shape) if isinstance(like, np.ndarray) else tuple(like)
    if tuple(arr.shape) != shape:
        raise ValueError(f"{name} must have the same shape as {like_name} {shape}; got {tuple(arr.shape)}")
