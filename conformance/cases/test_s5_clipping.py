"""S5.1 `clip_grad_norm`: global-norm clipping, exact rule (no +1e-6), against goldens and the live reference.

The target is called as ``clip_grad_norm(params, max_norm)`` on parameters whose ``.grad`` the suite set;
it must return the total norm before clipping and clip the gradients in place.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform.conformance import strategies as S
from optconform.conformance.replay import case_dtype
from optconform.conformance.tolerances import (
    CLIP_GRAD_ATOL,
    CLIP_GRAD_RTOL,
    CLIP_GRAD_RTOL_STRICT,
    CLIP_TOTAL_RTOL,
    CLIP_TOTAL_RTOL_STRICT,
    F32_U,
)
from optconform.golden import store
from optconform.reference.clipping import clip_grad_norm as ref_clip

GOLDEN = [c.id for c in store.iter_cases("S5.1")]


def _run(target, grads, max_norm, device):
    import torch

    clip = target.require("clip_grad_norm")
    dtype = case_dtype(grads)
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(np.shape(g), dtype=dtype, device=device))
        p.grad = torch.as_tensor(g, dtype=dtype, device=device).clone()
        params.append(p)
    given_grads = [p.grad.detach().cpu().double().numpy().copy() for p in params]
    total = clip(params, max_norm)
    return float(total), given_grads, [p.grad.detach().cpu().double().numpy() for p in params]


def _grad_err(actual, expected) -> float:
    """max over elements of |a − e| / (|e| + atol/rtol-floor): compared with the rtol below."""
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - e) / (np.abs(e) + CLIP_GRAD_ATOL / F32_U))))
    return worst


def _judge(target, verdict, grads, max_norm, device, strict, case, golden=None):
    total, given_grads, clipped = _run(target, grads, max_norm, device)
    ref_clipped, ref_total = ref_clip(given_grads, max_norm=max_norm)
    denom = ref_total if ref_total > 0 else 1.0
    verdict.check("total rel err", abs(total - ref_total) / denom,
                  CLIP_TOTAL_RTOL_STRICT if strict else CLIP_TOTAL_RTOL, case=case)
    rtol = CLIP_GRAD_RTOL_STRICT if strict else CLIP_GRAD_RTOL
    verdict.check("clipped grad rel err (live reference)", _grad_err(clipped, ref_clipped), rtol, case=case)
    if golden is not None:  # the goldens were made from the unrounded float64 gradients: one more rounding (u)
        verdict.check("clipped grad rel err (golden)", _grad_err(clipped, golden), rtol + F32_U, case=case)


@pytest.mark.clause("S5.1", "clip_grad_norm")
@pytest.mark.parametrize("case_id", GOLDEN)
def test_clip_grad_norm_golden(target, verdict, device, strict, case_id):
    c = store.load_case(case_id)
    n = len([k for k in c.inputs if k.startswith("grads.")])
    grads = [c.inputs[f"grads.{i}"] for i in range(n)]
    golden = [c.outputs[f"clipped.{i}"] for i in range(n)]
    _judge(target, verdict, grads, float(c.hyper["max_norm"]), device, strict, case_id, golden)


@pytest.mark.clause("S5.1", "clip_grad_norm")
@given(grads=S.grad_lists(max_len=4, min_exponent=-12, max_exponent=12),
       factor=st.sampled_from([0.5, 2.0, 1 - 1e-6, 1 + 1e-6, 1e-3]))
def test_clip_grad_norm_fuzz(target, verdict, device, strict, grads, factor):
    """Random gradient lists (mixed shapes, scales 1e-12..1e12) with max_norm just above, at and below the total."""
    total = float(np.sqrt(sum(float(np.sum(np.asarray(g, np.float32).astype(np.float64) ** 2)) for g in grads)))
    max_norm = total * factor if total > 0 else 1.0
    _judge(target, verdict, grads, max_norm, device, strict, "fuzz")


@pytest.mark.clause("S5.1", "clip_grad_norm")
@pytest.mark.parametrize("total", [1e-8, 1e-5, 1e-3])
def test_clip_grad_norm_small_totals(target, verdict, device, strict, total, live_rng):
    """Totals below 2, where an added 1e-6 in the denominator (torch's rule) changes the result by > 5e-7."""
    grads = [live_rng.standard_normal((6, 5)), live_rng.standard_normal(9)]
    norm = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
    grads = [g * (total / norm) for g in grads]
    for max_norm in (total * 0.5, total * 1.5):
        _judge(target, verdict, grads, max_norm, device, strict, f"total {total:g}, max_norm {max_norm:g}")
