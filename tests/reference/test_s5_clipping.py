"""S5 clipping: the reference against an independent norm, closed forms, and torch's own function.

Tolerance vocabulary: U = 2**-53 ≈ 1.1e-16 (float64 unit roundoff).
NORM_RTOL: the strategies draw at most 5 * 6**3 = 1080 elements. A sum of n squares has relative
error <= n*U (worst case, any summation order) = 1.2e-13, the norm half of that; the reference and
np.linalg.norm each carry it, so they agree to 1.2e-13. 1e-12 leaves an 8x margin and still fails
for any other norm (a sum of per-array norms, a missing square root, a max) by orders of magnitude.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform.conformance.strategies import float64_arrays, grad_lists
from optconform.reference.clipping import TORCH_CLIP_EPS, clip_grad_norm, clip_grad_norm_torch

U = 2.0**-53
NORM_RTOL = 1e-12  # see the module docstring
# The clipped arrays are g * coef: one extra rounding per element (U) on top of the norm's error.
CLIP_RTOL = 1e-12


def _concat(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(0)


def _ref_norm(arrays) -> float:
    """Independent: one 2-norm over the concatenation of every element, by Python's math.hypot.

    math.hypot scales internally (exact for any finite magnitudes, documented error < 1 ulp), unlike
    np.linalg.norm, which squares the entries and so loses entries below ~1e-154 and overflows
    above ~1e154 -- hypothesis draws such entries. np.linalg.norm is compared where it is valid.
    """
    return math.hypot(*_concat(arrays).tolist())


def _random_grads(rng, scale=1.0):
    shapes = [(3, 4), (5,), (), (2, 3, 2), (0, 4), (7, 1)]
    return [np.asarray(rng.standard_normal(s) * scale) for s in shapes]


@st.composite
def grads_and_max_norm(draw):
    """Gradients (scale 1e-30..1e30) and a max_norm within 1e-3..1e3 of their norm (or arbitrary)."""
    grads = draw(grad_lists())
    total = _ref_norm(grads)
    if total > 0.0 and draw(st.booleans()):
        max_norm = total * 10.0 ** draw(st.floats(-3.0, 3.0))
    else:
        max_norm = 10.0 ** draw(st.floats(-35.0, 35.0))
    return grads, max_norm


# -------------------------------------------- the total norm --------------------------------------------
@given(grads_and_max_norm())
def test_total_norm_matches_independent_norm(gm):
    grads, max_norm = gm
    for f in (clip_grad_norm, clip_grad_norm_torch):
        _, total = f(grads, max_norm=max_norm)
        assert total == pytest.approx(_ref_norm(grads), rel=NORM_RTOL, abs=0)


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1.0, 1e8, 1e30])
def test_total_norm_matches_numpy_linalg_norm(rng, scale):
    grads = _random_grads(rng, scale)
    for f in (clip_grad_norm, clip_grad_norm_torch):
        _, total = f(grads, max_norm=1.0)
        assert total == pytest.approx(float(np.linalg.norm(_concat(grads))), rel=NORM_RTOL)


def test_total_norm_is_not_the_sum_of_norms():
    _, total = clip_grad_norm([np.array([3.0]), np.array([[4.0]]), np.array(12.0)], max_norm=100.0)
    assert total == 13.0  # sqrt(9 + 16 + 144), exact in float64 (sum of norms would be 19)


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-30, 1e30, 1e200, 1e300])
def test_total_norm_at_extreme_scales(rng, scale):
    # beyond ~1e±154 np.linalg.norm under/overflows; math.hypot (_ref_norm) does not
    grads = _random_grads(rng, scale)
    expected = _ref_norm(grads)
    _, total = clip_grad_norm(grads, max_norm=1.0)
    assert total == pytest.approx(expected, rel=NORM_RTOL)


def test_total_norm_overflow_raises():
    with pytest.raises(ValueError, match="^grads must have a total 2-norm representable"):
        clip_grad_norm([np.full(4, 1e308)], max_norm=1.0)  # true norm 2e308 > max float64
    _, total = clip_grad_norm([np.full(3, 1e308)], max_norm=1.0)  # sqrt(3) * 1e308 still fits
    assert total == pytest.approx(math.sqrt(3) * 1e308, rel=4 * U)


# ------------------------------------------ S5.1 clip_grad_norm ------------------------------------------
@given(grads_and_max_norm())
def test_clip_grad_norm_rule(gm):
    grads, max_norm = gm
    before = [g.copy() for g in grads]
    clipped, total = clip_grad_norm(grads, max_norm=max_norm)
    for g, b in zip(grads, before, strict=True):
        np.testing.assert_array_equal(g, b)  # inputs untouched
    assert [c.shape for c in clipped] == [g.shape for g in grads]
    assert all(c.dtype == np.float64 for c in clipped)
    ref = _ref_norm(grads)
    if total > max_norm:
        # the clipped gradients have norm max_norm, and are the input scaled by max_norm / ‖g‖
        assert _ref_norm(clipped) == pytest.approx(max_norm, rel=NORM_RTOL + CLIP_RTOL)
        np.testing.assert_allclose(_concat(clipped), _concat(grads) * (max_norm / ref),
                                   rtol=NORM_RTOL + CLIP_RTOL, atol=0)
        for c, g in zip(clipped, grads, strict=True):  # given the total: g * (max_norm / total), bit for bit
            np.testing.assert_array_equal(c, g * (max_norm / total))
    else:
        for c, g in zip(clipped, grads, strict=True):
            np.testing.assert_array_equal(c, g)  # bit-identical below the threshold


def test_clip_grad_norm_direction_and_norm(rng):
    grads = _random_grads(rng, 3.0)
    ref = _ref_norm(grads)
    clipped, total = clip_grad_norm(grads, max_norm=0.5)
    assert total == pytest.approx(ref, rel=NORM_RTOL)
    c, g = _concat(clipped), _concat(grads)
    assert np.linalg.norm(c) == pytest.approx(0.5, rel=NORM_RTOL + CLIP_RTOL)
    cos = float(c @ g) / (np.linalg.norm(c) * np.linalg.norm(g))
    assert cos == pytest.approx(1.0, abs=1e-14)  # a dot product of ~50 terms: error <= 50U relative
    assert np.all(np.sign(c) == np.sign(g))


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_clip_grad_norm_tiny_and_huge(rng, scale):
    grads = _random_grads(rng)
    norm1 = _ref_norm(grads)
    grads = [g * (scale / norm1) for g in grads]  # total norm = scale (to rounding)
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    assert total == pytest.approx(scale, rel=NORM_RTOL)
    if scale < 1.0:
        for c, g in zip(clipped, grads, strict=True):
            np.testing.assert_array_equal(c, g)
    else:
        assert _ref_norm(clipped) == pytest.approx(1.0, rel=NORM_RTOL + CLIP_RTOL)
    # and a tiny max_norm clips an ordinary gradient down to it
    clipped, _ = clip_grad_norm(grads, max_norm=1e-30)
    assert _ref_norm(clipped) == pytest.approx(1e-30, rel=NORM_RTOL + CLIP_RTOL)


def test_clip_grad_norm_boundary_is_not_clipped():
    # (at total == max_norm the coefficient max_norm / total would be exactly 1.0, so '>' and '>='
    # give identical results: the strict comparison is unobservable and the output is bit-identical)
    g = [np.array([3.0, 4.0])]  # norm exactly 5
    clipped, total = clip_grad_norm(g, max_norm=5.0)
    assert total == 5.0
    np.testing.assert_array_equal(clipped[0], g[0])  # strict '>': total == max_norm is left alone
    clipped, _ = clip_grad_norm(g, max_norm=np.nextafter(5.0, 0.0))
    assert np.all(clipped[0] < g[0])  # one ulp below: clipped


def test_clip_grad_norm_returns_new_arrays():
    g = [np.array([0.1, 0.2])]
    clipped, _ = clip_grad_norm(g, max_norm=1.0)
    clipped[0][0] = 99.0
    assert g[0][0] == 0.1


@given(st.lists(float64_arrays(max_side=5), max_size=4))
def test_clip_grad_norm_accepts_any_shapes(grads):
    clipped, total = clip_grad_norm(grads, max_norm=1.0)
    assert [c.shape for c in clipped] == [g.shape for g in grads]
    assert total == pytest.approx(_ref_norm(grads), rel=NORM_RTOL, abs=0)


def test_empty_inputs():
    for f in (clip_grad_norm, clip_grad_norm_torch):
        assert f([], max_norm=1.0) == ([], 0.0)
        clipped, total = f([np.zeros((0, 3)), np.zeros(0)], max_norm=1.0)
        assert total == 0.0 and [c.shape for c in clipped] == [(0, 3), (0,)]
        clipped, total = f((np.zeros(3), [1.0, 2.0]), max_norm=10.0)  # tuple, list, zeros
        assert total == pytest.approx(math.sqrt(5), rel=2 * U)
        np.testing.assert_array_equal(clipped[1], [1.0, 2.0])


# ---------------------------------------- S5.2 clip_grad_norm_torch ----------------------------------------
@given(grads_and_max_norm())
def test_clip_grad_norm_torch_rule(gm):
    grads, max_norm = gm
    clipped, total = clip_grad_norm_torch(grads, max_norm=max_norm)
    ref = _ref_norm(grads)
    coef = max_norm / (ref + 1e-6)  # torch: clip_coef = max_norm / (total_norm + 1e-6), clamped at 1
    if abs(coef - 1.0) < 1e-9:
        return  # within the norms' rounding of the decision boundary: pinned by the explicit tests
    expected = _concat(grads) * min(coef, 1.0)
    np.testing.assert_allclose(_concat(clipped), expected, rtol=NORM_RTOL + CLIP_RTOL, atol=0)
    exact_coef = max_norm / (total + 1e-6)  # given the total, the rule is exact
    for c, g in zip(clipped, grads, strict=True):
        np.testing.assert_array_equal(c, g * exact_coef if exact_coef < 1.0 else g)
    if coef < 1.0:
        # clipped norm: max_norm * total / (total + 1e-6), strictly below max_norm
        assert _ref_norm(clipped) == pytest.approx(max_norm * ref / (ref + 1e-6), rel=NORM_RTOL + CLIP_RTOL)
        if ref < 1e4:  # the shortfall 1e-6/(total+1e-6) >= 1e-10 then dwarfs the rounding (<= 2e-12)
            assert _ref_norm(clipped) < max_norm


def test_boundary_total_equal_to_max_norm_differs():
    g = [np.array([3.0, 4.0])]
    a, _ = clip_grad_norm(g, max_norm=5.0)
    b, total = clip_grad_norm_torch(g, max_norm=5.0)
    assert total == 5.0
    np.testing.assert_array_equal(a[0], g[0])  # S5.1: not clipped
    np.testing.assert_array_equal(b[0], g[0] * (5.0 / (5.0 + 1e-6)))  # S5.2: clipped, bit for bit
    assert np.linalg.norm(b[0]) == pytest.approx(25.0 / (5.0 + 1e-6), rel=2 * U)  # = 5 - 1e-6 + O(1e-13)


def test_torch_clips_within_1e_6_below_max_norm():
    # total = max_norm - 0.5e-6: S5.1 leaves it, S5.2 scales by max_norm / (total + 1e-6) < 1
    g = [np.array([1.0 - 0.5e-6])]
    a, _ = clip_grad_norm(g, max_norm=1.0)
    b, _ = clip_grad_norm_torch(g, max_norm=1.0)
    assert a[0][0] == g[0][0]
    assert b[0][0] == pytest.approx(g[0][0] / (1.0 + 0.5e-6), rel=4 * U)
    # and 2e-6 below: neither clips
    g = [np.array([1.0 - 2e-6])]
    assert clip_grad_norm_torch(g, max_norm=1.0)[0][0][0] == g[0][0]


@pytest.mark.parametrize("ratio", [1.0 + 1e-9, 1.5, 10.0, 1e6])
def test_torch_vs_exact_rule_difference_quantified(rng, ratio):
    # above the threshold both clip; S5.2 = S5.1 * total / (total + 1e-6): the relative shortfall
    # 1e-6 / (total + 1e-6) of the clipped norm below max_norm
    grads = _random_grads(rng)
    total = _ref_norm(grads)
    max_norm = total / ratio
    a, _ = clip_grad_norm(grads, max_norm=max_norm)
    b, _ = clip_grad_norm_torch(grads, max_norm=max_norm)
    np.testing.assert_allclose(_concat(b), _concat(a) * (total / (total + 1e-6)), rtol=4 * NORM_RTOL, atol=0)
    shortfall = 1.0 - _ref_norm(b) / max_norm
    assert shortfall == pytest.approx(1e-6 / (total + 1e-6), rel=1e-6)  # shortfall ~1e-7 known to 1e-13


def test_torch_shortfall_vanishes_in_rounding_for_large_totals(rng):
    # total = 1e11: 1e11 + 1e-6 rounds to 1e11 (ulp 1.5e-5), so both rules compute the same coefficient
    g = [np.array([6e10, -8e10]), rng.standard_normal(3) * 1e-3]
    a, total = clip_grad_norm(g, max_norm=10.0)
    b, _ = clip_grad_norm_torch(g, max_norm=10.0)
    assert total + 1e-6 == total
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_torch_rescales_everything_when_max_norm_below_1e_6(rng):
    g = [rng.standard_normal(5) * 1e-30]
    total = _ref_norm(g)
    a, _ = clip_grad_norm(g, max_norm=1e-7)
    b, _ = clip_grad_norm_torch(g, max_norm=1e-7)
    np.testing.assert_array_equal(a[0], g[0])  # far below max_norm: S5.1 leaves it
    np.testing.assert_allclose(b[0], g[0] * (1e-7 / (total + 1e-6)), rtol=CLIP_RTOL)  # ~0.1x
    assert np.linalg.norm(b[0]) < 0.11 * total
    b, t = clip_grad_norm_torch([np.zeros(3)], max_norm=1e-7)  # zeros stay zeros
    assert t == 0.0 and np.all(b[0] == 0.0)
    assert TORCH_CLIP_EPS == 1e-6


def test_torch_rule_matches_torch(rng):
    torch = pytest.importorskip("torch")
    cases = [
        ([np.array([3.0, 4.0])], 5.0),  # boundary: torch clips
        ([np.array([1.0 - 0.5e-6])], 1.0),  # inside the 1e-6 band
        (_random_grads(rng, 10.0), 1.0),
        (_random_grads(rng, 1e-3), 1.0),  # below threshold
        ([rng.standard_normal(4) * 1e-30], 1e-7),  # max_norm < 1e-6
        (_random_grads(rng, 1e20), 0.5),
    ]
    for grads, max_norm in cases:
        params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for p, g in zip(params, grads, strict=True):
            p.grad = torch.from_numpy(g.copy())
        t_total = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        clipped, total = clip_grad_norm_torch(grads, max_norm=max_norm)
        # torch's float64 norm sums in another order: NORM_RTOL; the decision must agree exactly
        assert total == pytest.approx(t_total, rel=NORM_RTOL)
        for c, p in zip(clipped, params, strict=True):
            np.testing.assert_allclose(c, p.grad.numpy(), rtol=NORM_RTOL + CLIP_RTOL, atol=0)


# -------------------------------------------- invalid arguments --------------------------------------------
@pytest.mark.parametrize("f", [clip_grad_norm, clip_grad_norm_torch])
@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True, "1.0", None])
def test_invalid_max_norm(f, bad):
    with pytest.raises(ValueError, match="^max_norm must be"):
        f([np.ones(2)], max_norm=bad)


@pytest.mark.parametrize("f", [clip_grad_norm, clip_grad_norm_torch])
@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (np.ones(3), r"^grads must be a list or tuple"),  # a bare array is not a list of grads
        (3.0, r"^grads must be a list or tuple"),
        ("abc", r"^grads must be a list or tuple"),
        (None, r"^grads must be a list or tuple"),
        ([np.ones(2), np.array([1.0, np.nan])], r"^grads\[1\] must contain only finite"),
        ([np.array([np.inf])], r"^grads\[0\] must contain only finite"),
        ([[[1.0, 2.0], [3.0]]], r"^grads\[0\] must be a real numeric array"),  # a ragged array
        (["x"], r"^grads\[0\] must be a real numeric array"),
    ],
)
def test_invalid_grads(f, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        f(bad, max_norm=1.0)


def test_clip_rule_torch_is_s5_2(rng):
    """The S5.1 option ``clip_rule="torch"`` computes S5.2 (torch.nn.utils.clip_grad_norm_'s rule)."""
    from optconform.reference.clipping import clip_grad_norm, clip_grad_norm_torch

    grads = [rng.standard_normal((3, 4)) * 1e-8, rng.standard_normal(5) * 1e-8]
    a, ta = clip_grad_norm(grads, max_norm=1e-7, clip_rule="torch")
    b, tb = clip_grad_norm_torch(grads, max_norm=1e-7)
    c, _ = clip_grad_norm(grads, max_norm=1e-7)
    assert ta == tb
    for x, y, z, g in zip(a, b, c, grads, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(z, g)  # exact rule: total < max_norm, untouched
    assert not np.allclose(a[0], grads[0])  # torch's rule rescales it
    with pytest.raises(ValueError, match="^clip_rule"):
        clip_grad_norm(grads, max_norm=1.0, clip_rule="soft")
