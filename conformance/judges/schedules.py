"""S4 schedules: the relative error of each value the target returns against the reference's."""

from __future__ import annotations

from optconform.conformance.tolerances import SCHEDULE_ATOL


def rel_err(actual: object, expected: float) -> float:
    """|actual − expected| / max(|expected|, SCHEDULE_ATOL)."""
    return abs(float(actual) - expected) / max(abs(expected), SCHEDULE_ATOL)
