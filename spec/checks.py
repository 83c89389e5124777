"""Scalar argument validation shared by the reference and the production implementation (SPEC S1.3).

Every check raises ``ValueError`` whose message starts with the parameter's name and states the rule it
broke, e.g. ``"lr must be finite and >= 0; got -1.0"``. Nothing here imports NumPy or torch; array checks
live with the reference (``optconform.reference._checks``), tensor checks with the implementation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

__all__ = [
    "MAX_COUNT",
    "require_real",
    "require_positive",
    "require_nonnegative",
    "require_unit_interval",
    "require_int",
    "require_count",
    "require_bool",
    "require_pair",
    "require_triple",
]

#: Largest accepted integer counter (S4): every integer up to 2**53 converts to float64 exactly.
MAX_COUNT = 2**53


def _fail(name: str, rule: str, value: object) -> None:
    raise ValueError(f"{name} must be {rule}; got {value!r}")


def require_real(name: str, value: object) -> float:
    """``value`` as a finite Python float (bool rejected), or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, "a finite real number", value)
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        _fail(name, "a finite real number", value)
    return v


def require_positive(name: str, value: object) -> float:
    """A finite real > 0."""
    v = require_real(name, value)
    if not v > 0.0:
        _fail(name, "finite and > 0", value)
    return v


def require_nonnegative(name: str, value: object) -> float:
    """A finite real >= 0."""
    v = require_real(name, value)
    if not v >= 0.0:
        _fail(name, "finite and >= 0", value)
    return v


def require_unit_interval(name: str, value: object, *, closed_right: bool = True, closed_left: bool = True) -> float:
    """A real in [0, 1], with either end optionally open."""
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


def require_count(name: str, value: object, *, minimum: int) -> int:
    """An integer counter in [minimum, 2**53] (S4: above 2**53 integers stop converting to float64 exactly)."""
    v = require_int(name, value, minimum=minimum)
    if v > MAX_COUNT:
        raise ValueError(f"{name} must be an integer in [{minimum}, 2**53]; got {value!r}")
    return v


def require_bool(name: str, value: object) -> bool:
    """A Python or NumPy bool (``1`` and ``0`` are rejected)."""
    numpy_bool = type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
    if not (isinstance(value, bool) or numpy_bool):
        _fail(name, "a bool", value)
    return bool(value)


def require_pair(name: str, value: object) -> tuple[object, object]:
    """A sequence of exactly two entries (checked one by one by the caller as ``name[0]``, ``name[1]``)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a pair ({name}[0], {name}[1]); got {value!r}")
    return value[0], value[1]


def require_triple(name: str, value: object) -> tuple[float, float, float]:
    """A sequence of exactly 3 finite reals (Newton–Schulz coefficients (a, b, c))."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a sequence of 3 finite real numbers (a, b, c); got {value!r}")
    a, b, c = (require_real(name, v) for v in value)
    return a, b, c
