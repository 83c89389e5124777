"""S5.1 `clip_grad_norm`: global-norm clipping, exact rule (no +1e-6), against goldens and the live reference.

The target is called as ``clip_grad_norm(params, max_norm)`` on parameters whose ``.grad`` the suite set;
it must return the total norm before clipping and clip the gradients in place. A case's level is the regime
of its total gradient norm: totals above 1e15 or below 1e-15 (where a plain float32 or float64 sum of squares
overflows or underflows) are ``hardening``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform.conformance import strategies as S
from optconform.conformance.judges.clipping import judge_clip
from optconform.golden import store


@pytest.mark.clause("S5.1")
@pytest.mark.parametrize("case_id", store.case_ids("S5.1"))
def test_clip_grad_norm_golden(case, case_id):
    c = case.golden("S5.1", case_id)
    n = len([k for k in c.inputs if k.startswith("grads.")])
    grads = [c.inputs[f"grads.{i}"] for i in range(n)]
    golden = [c.outputs[f"clipped.{i}"] for i in range(n)]
    judge_clip(case, grads, float(c.hyper["max_norm"]), case_id, golden)


@pytest.mark.clause("S5.1")
@given(grads=S.grad_lists(max_len=4, min_exponent=-12, max_exponent=12),
       factor=st.sampled_from([0.5, 2.0, 1 - 1e-6, 1 + 1e-6, 1e-3]))
def test_clip_grad_norm_fuzz(case, grads, factor):
    """Random gradient lists (mixed shapes, scales 1e-12..1e12) with max_norm just above, at and below the total."""
    total = float(np.sqrt(sum(float(np.sum(np.asarray(g, np.float32).astype(np.float64) ** 2)) for g in grads)))
    judge_clip(case, grads, total * factor if total > 0 else 1.0, "fuzz")


@pytest.mark.clause("S5.1")
@pytest.mark.parametrize("total", [1e-8, 1e-5, 1e-3])
def test_clip_grad_norm_small_totals(case, total):
    """Totals below 2, where an added 1e-6 in the denominator (torch's rule) changes the result by > 5e-7."""
    grads = [case.rng.standard_normal((6, 5)), case.rng.standard_normal(9)]
    norm = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    grads = [g * (total / norm) for g in grads]
    for max_norm in (total * 0.5, total * 1.5):
        judge_clip(case, grads, max_norm, f"total {total:g}, max_norm {max_norm:g}")
