"""impl/clipping.py (S5.1) against the float64 reference, including tiny and huge norms and the boundary.

Tolerances: CLIP_NORM_RTOL (float64 accumulation of the float32 squares), CLIP_GRAD_RTOL_STRICT/CLIP_GRAD_ATOL
(one rounding of the coefficient and one of the product) from conformance/tolerances.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optconform.conformance.tolerances import CLIP_GRAD_ATOL, CLIP_GRAD_RTOL_STRICT, CLIP_NORM_RTOL
from optconform.impl.clipping import clip_grad_norm
from optconform.reference.clipping import clip_grad_norm as ref_clip

SHAPES = [(7,), (5, 9), (3, 4, 2), ()]


def _params_with_grads(rng, scale, dtype=torch.float32):
    ps, gs = [], []
    for s in SHAPES:
        g = (rng.standard_normal(s) * scale * 10 ** rng.uniform(-2, 2)).astype(np.float32)
        p = torch.zeros(s, dtype=dtype, requires_grad=True)
        p.grad = torch.tensor(g, dtype=dtype)
        ps.append(p)
        gs.append(p.grad.double().numpy().copy())
    return ps, gs


def _check(ps, gs, max_norm):
    total = clip_grad_norm(ps, max_norm)
    ref, ref_total = ref_clip(gs, max_norm=max_norm)
    assert isinstance(total, float)
    assert abs(total - ref_total) <= CLIP_NORM_RTOL * ref_total
    for p, r in zip(ps, ref, strict=True):
        err = np.abs(p.grad.double().numpy() - r)
        assert np.all(err <= CLIP_GRAD_RTOL_STRICT * np.abs(r) + CLIP_GRAD_ATOL)
    return total, ref_total


@pytest.mark.parametrize("scale", [1e-30, 1e-12, 1e-3, 1.0, 1e3, 1e15, 1e30])
@pytest.mark.parametrize("ratio", [1e-3, 0.5, 2.0])
def test_matches_reference_over_scales(rng, scale, ratio):
    ps, gs = _params_with_grads(rng, scale)
    ref_total = ref_clip(gs, max_norm=1.0)[1]
    _check(ps, gs, ratio * ref_total)   # ratio < 1: clipped; ratio > 1: unchanged


def test_float32_squares_do_not_overflow_or_underflow(rng):
    """torch's float32 norm returns inf at |g| ~ 1e30 and 0 at 1e-30; the float64 accumulation does not."""
    for scale in (3e37, 1e-44):
        p = torch.zeros(4, requires_grad=True)
        p.grad = torch.full((4,), scale, dtype=torch.float32)
        g = p.grad.double().numpy().copy()
        total = clip_grad_norm([p], 1e-3 if scale > 1 else 1e-50)
        assert abs(total - 2 * g[0]) <= CLIP_NORM_RTOL * 2 * g[0]


def test_extreme_coefficients_keep_their_digits(rng):
    """max_norm / total below float32's smallest normal (1.2e-38) still scales with one rounding."""
    ps, gs = _params_with_grads(rng, 1e15)
    _check(ps, gs, 1e-29)  # coef ~ 1e-45: a denormal if rounded to float32 directly


def test_boundary_total_equal_to_max_norm_is_not_clipped(rng):
    ps, gs = _params_with_grads(rng, 1.0)
    total = ref_clip(gs, max_norm=1.0)[1]
    before = [p.grad.clone() for p in ps]
    got = clip_grad_norm(ps, total)
    assert got == total or abs(got - total) <= CLIP_NORM_RTOL * total
    if got == total:  # strict >: exactly on the boundary nothing changes
        assert all(torch.equal(p.grad, b) for p, b in zip(ps, before, strict=True))
    # just above the boundary it clips, to norm max_norm
    clip_grad_norm(ps, got * (1 - 1e-6))
    assert all(not torch.equal(p.grad, b) for p, b in zip(ps, before, strict=True) if b.abs().sum() > 0)


def test_differs_from_torch_rule_below_1e6(rng):
    """S5.2 vs S5.1: torch clips a total of 1e-7 to max_norm 1e-7 by 1e-7/(1e-7 + 1e-6); S5.1 leaves it."""
    p = torch.zeros(3, requires_grad=True)
    q = torch.zeros(3, requires_grad=True)
    g = torch.tensor(rng.standard_normal(3), dtype=torch.float32)
    g = g / g.norm() * 1e-7
    p.grad, q.grad = g.clone(), g.clone()
    total = clip_grad_norm([p], 1e-7)
    torch.nn.utils.clip_grad_norm_([q], 1e-7)
    assert abs(total - 1e-7) < 1e-12
    assert not torch.equal(p.grad, q.grad)


def test_none_grads_skipped_and_no_grads_gives_zero(rng):
    ps, gs = _params_with_grads(rng, 1.0)
    extra = torch.zeros(3, requires_grad=True)
    unclipped = clip_grad_norm(ps, 1e30)  # max_norm above the total: a pure norm computation
    total = clip_grad_norm(ps + [extra], 0.1)
    assert extra.grad is None and total == unclipped  # the None grad contributes nothing
    assert abs(total - ref_clip(gs, max_norm=0.1)[1]) <= CLIP_NORM_RTOL * total
    assert clip_grad_norm([torch.zeros(2, requires_grad=True)], 1.0) == 0.0
    t = torch.zeros(2, requires_grad=True)
    t.grad = torch.tensor([3.0, 4.0])
    assert clip_grad_norm(t, 1.0) == 5.0  # a single tensor is accepted


def test_bf16_and_float64_grads(rng):
    for dtype in (torch.bfloat16, torch.float64):
        ps, gs = _params_with_grads(rng, 1.0, dtype=dtype)
        total = clip_grad_norm(ps, 0.1)
        ref, ref_total = ref_clip(gs, max_norm=0.1)
        assert abs(total - ref_total) <= CLIP_NORM_RTOL * ref_total
        # bf16: one rounding of the product to bf16 (unit roundoff 2^-8; the coefficient is applied in float32);
        # float64: the coefficient inherits the total's CLIP_NORM_RTOL, plus one rounding of the product
        rtol = 2.0**-8 + 2.0**-24 if dtype == torch.bfloat16 else CLIP_NORM_RTOL + 2.0**-53
        for p, r in zip(ps, ref, strict=True):
            assert np.all(np.abs(p.grad.double().numpy() - r) <= rtol * np.abs(r) + 1e-300)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_total_raises_and_leaves_grads(rng, bad):
    ps, _ = _params_with_grads(rng, 1.0)
    ps[1].grad[0, 0] = bad
    before = [p.grad.clone() for p in ps]
    with pytest.raises(RuntimeError, match="total_norm"):
        clip_grad_norm(ps, 1.0)
    assert all(torch.equal(p.grad, b) or bool(torch.isnan(b).any()) for p, b in zip(ps, before, strict=True))


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), float("inf"), "1"])
def test_invalid_max_norm(max_norm):
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    with pytest.raises(ValueError, match="^max_norm"):
        clip_grad_norm([p], max_norm)


@pytest.mark.parametrize("scale", [1e-160, 1e-300, 1e150, 1e300])
def test_float64_grads_at_extreme_scales_do_not_underflow_or_overflow(scale, rng):
    """Float64 squares underflow below ~1e-154 and overflow above ~1e154: the impl pre-scales by max |g|."""
    import torch

    from optconform.reference.clipping import clip_grad_norm as ref_clip

    grads = [scale * rng.standard_normal((5, 4)), scale * rng.standard_normal(3)]
    params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.from_numpy(g.copy())
    _, ref_total = ref_clip(grads, max_norm=scale)
    total = clip_grad_norm(params, scale)
    # float64 scaled summation: a few ulps (2^-52 each) on 23 elements
    assert abs(total - ref_total) <= 1e-14 * ref_total
