"""``conformance.evidence``: the kind of a difference, at every magnitude a case produces."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance.evidence import compare, describe


@pytest.mark.parametrize("magnitude", [1e-300, 1e-109, 1.0, 1e150, 1e300])
def test_kinds_are_found_at_any_magnitude(magnitude):
    e = magnitude * np.random.default_rng(0).standard_normal(40)
    assert describe(compare(e.copy(), e)).startswith("best-fit factor 1,")
    assert describe(compare(2 * (e / 4), e / 4)) == "2× the reference (cosine 1.0000): a constant factor"
    assert describe(compare(np.zeros_like(e), e)) == "the output is all zeros"
    other = magnitude * np.random.default_rng(1).standard_normal(40)
    assert describe(compare(other, e)).startswith("a different direction: cosine ")


def test_non_finite_entries_are_counted():
    a = np.ones(10)
    a[[2, 5]] = np.nan
    assert describe(compare(a, np.ones(10))) == "2 of 10 entries are NaN or inf"
