"""S5.1 clipping: the returned total and the clipped gradients against the live reference and the goldens."""

from __future__ import annotations

import numpy as np

from optconform import spec
from optconform.conformance.case import Case
from optconform.conformance.evidence import compare, describe
from optconform.conformance.metrics import scaled_norm
from optconform.conformance.stepping import case_dtype
from optconform.conformance.tolerances import (
    CLIP_GRAD_ATOL,
    CLIP_GRAD_RTOL,
    CLIP_GRAD_RTOL_STRICT,
    CLIP_TOTAL_RTOL,
    CLIP_TOTAL_RTOL_STRICT,
    F32_U,
)
from optconform.reference.clipping import clip_grad_norm as ref_clip


def _run(case: Case, grads, max_norm):
    import torch

    clip = case.require("clip_grad_norm")
    dtype = case_dtype(grads)
    case.supports_dtype(dtype)
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros(np.shape(g), dtype=dtype, device=case.device))
        p.grad = torch.as_tensor(g, dtype=dtype, device=case.device).clone()
        params.append(p)
    given = [p.grad.detach().cpu().double().numpy().copy() for p in params]
    case.verdict.regime(spec.clause("S5.1").regime(scaled_norm(given)))
    total = case.call(clip, params, max_norm, **case.target_options("clip_grad_norm"))
    return float(total), given, [p.grad.detach().cpu().double().numpy() for p in params]


def _grad_err(actual, expected) -> float:
    """max over elements of |a − e| / (|e| + atol/rtol-floor): compared with the rtol below."""
    worst = 0.0
    for a, e in zip(actual, expected, strict=True):
        if a.size:
            worst = max(worst, float(np.max(np.abs(a - e) / (np.abs(e) + CLIP_GRAD_ATOL / F32_U))))
    return worst


def judge_clip(case: Case, grads, max_norm: float, label: str, golden=None) -> None:
    """The returned total (relative error) and every clipped gradient (elementwise) vs the reference; the
    case's level is the regime of its total gradient norm (S5.1's regimes)."""
    v, strict = case.verdict, case.strict
    total, given, clipped = _run(case, grads, max_norm)
    ref_clipped, ref_total = ref_clip(given, max_norm=max_norm, **case.reference_options("S5.1"))
    denom = ref_total if ref_total > 0 else 1.0
    v.check("total rel err", abs(total - ref_total) / denom, CLIP_TOTAL_RTOL_STRICT if strict else CLIP_TOTAL_RTOL,
            case=label, evidence=f"returned total {total:.6g}, reference {ref_total:.6g} (max_norm {max_norm:.3g})")
    rtol = CLIP_GRAD_RTOL_STRICT if strict else CLIP_GRAD_RTOL
    v.check("clipped grad rel err (live reference)", _grad_err(clipped, ref_clipped), rtol, case=label,
            evidence="the clipped gradients are " + describe(compare(clipped, ref_clipped)))
    if golden is not None:  # the goldens were made from the unrounded float64 gradients: one more rounding (u)
        v.check("clipped grad rel err (golden)", _grad_err(clipped, golden), rtol + F32_U, case=label,
                evidence="the clipped gradients are " + describe(compare(clipped, golden)))
