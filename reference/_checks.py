"""Input validation shared by every reference function (SPEC S1.3).

Every check raises ``ValueError`` whose message starts with the parameter's
name and states the rule it broke, e.g. ``"lr must be finite and > 0; got -1.0"``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_float64_array",
    "require_real",
    "require_positive",
    "require_nonnegative",
    "require_unit_interval",
    "require_int",
    "require_bool",
    "require_same_shape",
]


def _fail(name: str, rule: str, value: object) -> None:
    raise ValueError(f"{name} must be {rule}; got {value!r}")


def require_real(name: str, value: object) -> float:
    """Return ``value`` as a finite Python float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, "a finite real number", value)
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        _fail(name, "a finite real number", value)
    return v


def require_positive(name: str, value: object) -> float:
    v = require_real(name, value)
    if not v > 0.0:
        _fail(name, "finite and > 0", value)
    return v


def require_nonnegative(name: str, value: object) -> float:
    v = require_real(name, value)
    if not v >= 0.0:
        _fail(name, "finite and >= 0", value)
    return v


def require_unit_interval(name: str, value: object, *, closed_right: bool = True, closed_left: bool = True) -> float:
    """``value`` in [0, 1], with either end optionally open."""
    v = require_real(name, value)
    lo_ok = v >= 0.0 if closed_left else v > 0.0
    hi_ok = v <= 1.0 if closed_right else v < 1.0
    if not (lo_ok and hi_ok):
        lb = "[" if closed_left else "("
        rb = "]" if closed_right else ")"
        _fail(name, f"in {lb}0, 1{rb}", value)
    return v


def require_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) that is >= ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(name, "an integer", value)
    v = int(value)  # type: ignore[arg-type]
    if minimum is not None and v < minimum:
        _fail(name, f"an integer >= {minimum}", value)
    return v


def require_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(name, "a bool", value)
    return bool(value)


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
