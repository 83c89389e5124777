"""S4 schedules: the reference against the seed's own code and against closed-form properties.

Tolerance vocabulary: U = 2**-53 ≈ 1.1e-16 is the unit roundoff of float64 (half an ulp of 1.0).
Comparisons with the seed transcriptions are EXACT (==): the reference performs the same IEEE
operations in the same order, so any difference is a different formula.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from seed_code import get_muon_momentum, seed_lr_multiplier_for

from optconform.conformance import strategies as S
from optconform.reference.schedules import (
    MAX_COUNT,
    constant_lr,
    exponential_decay_lr,
    inverse_time_decay_lr,
    lr_multiplier,
    muon_momentum,
    step_decay_lr,
)

U = 2.0**-53  # float64 unit roundoff

# ---------------------------------------------------------------------------------------------------
# The seed's code, copied verbatim (seed 000 §5.6, seed 001 §6.6.3, nanochat base_train.py:148-163).
# The seed's functions read module globals; these are those globals, with the seed's values.
# The transcriptions themselves live in tests/seed_code.py.
# ---------------------------------------------------------------------------------------------------
warmup_ratio = 0.0    # ウォームアップなし
warmdown_ratio = 0.2  # 最後の20%でLRを減衰
final_lr_frac = 0.0   # 最終LRは0
num_iterations = 1000


get_lr_multiplier = seed_lr_multiplier_for(num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac)


def seed_muon_momentum_for(start, end, ramp_steps):
    """get_muon_momentum with its literals 300 / 0.85 / 0.95 made parameters (nothing else changed)."""
    def get_muon_momentum(it):
        frac = min(it / ramp_steps, 1)
        momentum = (1 - frac) * start + frac * end
        return momentum
    return get_muon_momentum


def seed_step_decay(step, initial_lr, decay_rate, decay_steps):
    lr = initial_lr * (decay_rate ** (step // decay_steps))
    return lr


def seed_exponential_decay(step, initial_lr, decay_rate):
    exp = math.exp
    lr = initial_lr * exp(-decay_rate * step)
    return lr


def seed_inverse_time_decay(step, initial_lr, decay_rate):
    lr = initial_lr / (1 + decay_rate * step)
    return lr


def call(f, args: dict):
    """Call a schedule with a strategy dict whose first key ('step' or 'it') is positional."""
    args = dict(args)
    first = "step" if "step" in args else "it"
    return f(args.pop(first), **args)


# ----------------------------------------- (a) the seed's code ----------------------------------------
def test_lr_multiplier_equals_seed_with_seed_globals():
    got = [lr_multiplier(it, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                         warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)
           for it in range(num_iterations + 1)]
    assert got == [get_lr_multiplier(it) for it in range(num_iterations + 1)]
    # and the defaults are the seed's settings
    assert [lr_multiplier(it, num_iterations=num_iterations) for it in range(num_iterations + 1)] == got


@given(S.lr_multiplier_args())
def test_lr_multiplier_equals_seed(args):
    seed = seed_lr_multiplier_for(args["num_iterations"], args["warmup_ratio"], args["warmdown_ratio"],
                                  args["final_lr_frac"])
    assert call(lr_multiplier, args) == seed(args["it"])


def test_muon_momentum_equals_seed_with_seed_literals():
    assert [muon_momentum(it) for it in range(1000)] == [get_muon_momentum(it) for it in range(1000)]


@given(S.muon_momentum_args())
def test_muon_momentum_equals_seed(args):
    seed = seed_muon_momentum_for(args["start"], args["end"], args["ramp_steps"])
    assert call(muon_momentum, args) == seed(args["it"])


@given(S.constant_lr_args())
def test_constant_lr_equals_seed(args):
    learning_rate = args["lr"]  # seed §5.6.1: the same learning_rate at every epoch
    assert call(constant_lr, args) == learning_rate


@given(S.step_decay_lr_args())
def test_step_decay_equals_seed(args):
    assert call(step_decay_lr, args) == seed_step_decay(**args)


@given(S.exponential_decay_lr_args())
def test_exponential_decay_equals_seed(args):
    assert call(exponential_decay_lr, args) == seed_exponential_decay(**args)


@given(S.inverse_time_decay_lr_args())
def test_inverse_time_decay_equals_seed(args):
    assert call(inverse_time_decay_lr, args) == seed_inverse_time_decay(**args)


# ------------------------------------- (b) lr_multiplier properties -------------------------------------
def _iters(hp):
    """warmup_iters, warmdown_iters by the seed's definition (Python round of the float64 product)."""
    n = hp["num_iterations"]
    return round(hp["warmup_ratio"] * n), round(hp["warmdown_ratio"] * n)


def _curve(hp):
    return [lr_multiplier(it, **hp) for it in range(hp["num_iterations"] + 1)]


# The warmdown value progress*1.0 + (1-progress)*f is mathematically in [f, 1] and affine in it; its
# evaluation rounds three times quantities <= 1 (1-progress, the product, the sum), each by <= U,
# so its error is <= 3U. TOL_WD = 4U leaves one U of margin.
TOL_WD = 4 * U


@given(S.lr_multiplier_args())
def test_lr_multiplier_range(args):
    m = call(lr_multiplier, args)
    wu, _ = _iters(args)
    f = args["final_lr_frac"]
    assert m <= 1.0  # exact: the sum p + fl(1-p) never rounds above 1 (ties-to-even at 1 - U)
    if args["it"] < wu:
        assert 1.0 / wu <= m  # warmup starts at 1/warmup_iters (exact: correctly rounded division)
    else:
        assert m >= f - TOL_WD
    if f == 0.0:
        assert m > 0.0 or args["it"] == args["num_iterations"]  # only the last iteration reaches 0


@given(S.lr_multiplier_hparams())
def test_lr_multiplier_boundaries(hp):
    n = hp["num_iterations"]
    wu, wd = _iters(hp)
    # the peak: exactly 1.0 at the last warmup iteration (or at it = 0 without warmup)
    assert lr_multiplier(max(wu - 1, 0), **hp) == 1.0
    assert lr_multiplier(0, **hp) == (1.0 / wu if wu else 1.0)
    # the last iteration: final_lr_frac exactly when there is a warmdown (progress = 0), else 1.0
    assert lr_multiplier(n, **hp) == (hp["final_lr_frac"] if wd >= 1 else 1.0)


@given(S.lr_multiplier_hparams(max_iterations=1500))
def test_lr_multiplier_shape(hp):
    """Unimodal: non-decreasing up to the peak, non-increasing after; affine in each phase."""
    n = hp["num_iterations"]
    wu, wd = _iters(hp)
    f = hp["final_lr_frac"]
    m = np.array(_curve(hp))
    peak = max(wu - 1, 0)
    # f == 0: the warmdown value is progress itself (x*1.0 + y*0.0 is exact), so monotone exactly
    tol = 0.0 if f == 0.0 else TOL_WD
    assert np.all(np.diff(m[: peak + 1]) >= 0.0)  # (it+1)/wu: correctly rounded, so exactly monotone
    assert np.all(np.diff(m[peak:]) <= tol)
    its = np.arange(n + 1)
    warm = its < wu
    np.testing.assert_array_equal(m[warm], (its[warm] + 1) / wu)  # numpy's division is also IEEE-exact
    const = ~warm & (its <= n - wd)
    assert np.all(m[const] == 1.0)
    down = ~warm & ~const
    # independent closed form of the warmdown line: f + (1 - f) (n - it) / wd, to TOL_WD (see above)
    np.testing.assert_allclose(m[down], f + (1 - f) * (n - its[down]) / max(wd, 1), rtol=0, atol=TOL_WD)


@given(S.lr_multiplier_hparams())
def test_lr_multiplier_warmdown_joins_constant_continuously(hp):
    n = hp["num_iterations"]
    wu, wd = _iters(hp)
    if wd == 0 or wu > n - wd:
        return  # no constant iteration before the warmdown to join
    f = hp["final_lr_frac"]
    assert lr_multiplier(n - wd, **hp) == 1.0  # the warmdown line is 1.0 there (progress = 1)
    step = lr_multiplier(n - wd + 1, **hp) - 1.0
    assert step == pytest.approx(-(1 - f) / wd, rel=0, abs=2 * TOL_WD)  # one ordinary warmdown step


def test_lr_multiplier_overlap_discontinuity_example():
    # num_iterations 10, warmup 6 iterations (0.6*10), warmdown 6 iterations: the phases overlap
    hp = dict(num_iterations=10, warmup_ratio=0.6, warmdown_ratio=0.6, final_lr_frac=0.0)
    got = _curve(hp)
    assert got[:6] == [(i + 1) / 6 for i in range(6)]  # warmup branch wins on it = 4, 5 ...
    assert got[5] == 1.0
    assert got[6:] == [4 / 6, 3 / 6, 2 / 6, 1 / 6, 0.0]  # ... then the warmdown line resumes
    assert got[5] - got[6] == pytest.approx(1 / 3, abs=U)  # a drop of 2 warmdown steps (1/6 each)


@given(S.lr_multiplier_hparams())
def test_lr_multiplier_overlap_jump_closed_form(hp):
    """With warmup_iters + warmdown_iters > num_iterations + 1 the multiplier falls from 1.0 at
    it = wu - 1 to f + (1-f)(n-wu)/wd at it = wu: (wu + wd - n) warmdown steps at once."""
    n = hp["num_iterations"]
    wu, wd = _iters(hp)
    if not (wu + wd > n + 1 and wu <= n):
        return
    f = hp["final_lr_frac"]
    drop = lr_multiplier(wu - 1, **hp) - lr_multiplier(wu, **hp)
    assert drop == pytest.approx((1 - f) * (wu + wd - n) / wd, rel=0, abs=2 * TOL_WD)  # 2 evaluations


@pytest.mark.parametrize(
    ("n", "ratio", "product", "iters"),
    [
        (10, 0.25, 2.5, 2),       # half-up would give 3
        (1, 0.5, 0.5, 0),         # half-up would give 1
        (7, 0.5, 3.5, 4),         # truncation would give 3
        (150, 0.07, 10.500000000000002, 11),  # float64 product, not decimal 10.5 (-> 10)
        (90, 0.35, 31.499999999999996, 31),   # float64 product, not decimal 31.5 (-> 32)
    ],
)
def test_lr_multiplier_warmdown_rounding_half_to_even(n, ratio, product, iters):
    assert ratio * n == product  # the float64 product really is this number
    got = _curve(dict(num_iterations=n, warmdown_ratio=ratio, final_lr_frac=0.0))
    # independently: 1.0 through n - iters, then (n - it) / iters
    assert got == [1.0] * (n - iters + 1) + [(n - it) / iters for it in range(n - iters + 1, n + 1)]


def test_lr_multiplier_rounding_examples_explicit():
    assert lr_multiplier(8, num_iterations=10, warmdown_ratio=0.25) == 1.0  # wd = 2 (half-up: 2/3)
    assert lr_multiplier(9, num_iterations=10, warmdown_ratio=0.25) == 0.5
    assert lr_multiplier(1, num_iterations=1, warmdown_ratio=0.5) == 1.0  # wd = 0 (half-up: 0.0)
    assert lr_multiplier(4, num_iterations=7, warmdown_ratio=0.5) == 0.75  # wd = 4
    # warmup 0.25 * 10 = 2.5 -> 2 iterations: 0.5, 1.0 (half-up: 1/3, 2/3, 1.0)
    assert [lr_multiplier(i, num_iterations=10, warmup_ratio=0.25, warmdown_ratio=0.0)
            for i in range(3)] == [0.5, 1.0, 1.0]


def test_lr_multiplier_degenerate_settings():
    assert lr_multiplier(0, num_iterations=0) == 1.0  # no iterations: the single step is constant
    assert lr_multiplier(0, num_iterations=0, warmup_ratio=1.0, warmdown_ratio=1.0) == 1.0
    assert _curve(dict(num_iterations=5, warmdown_ratio=0.0, final_lr_frac=0.3)) == [1.0] * 6
    # warmdown over everything: 1.0 at it = 0, then linear to final_lr_frac
    assert _curve(dict(num_iterations=4, warmdown_ratio=1.0, final_lr_frac=0.0)) == [1.0, 0.75, 0.5, 0.25, 0.0]
    # warmup over everything: ramps to 1.0 at the last warmup iteration, then no warmdown
    assert _curve(dict(num_iterations=4, warmup_ratio=1.0, warmdown_ratio=0.0)) == [0.25, 0.5, 0.75, 1.0, 1.0]
    # warmup over everything with a warmdown: the last iteration drops to final_lr_frac
    assert _curve(dict(num_iterations=4, warmup_ratio=1.0, warmdown_ratio=0.5, final_lr_frac=0.1)) == [
        0.25, 0.5, 0.75, 1.0, 0.1]
    # the seed's schedule with final_lr_frac = 0.1 at 80 %, 90 %, 100 % of 1000 iterations
    assert lr_multiplier(800, num_iterations=1000, final_lr_frac=0.1) == 1.0
    assert lr_multiplier(900, num_iterations=1000, final_lr_frac=0.1) == pytest.approx(0.55, abs=TOL_WD)
    assert lr_multiplier(1000, num_iterations=1000, final_lr_frac=0.1) == 0.1


def test_lr_multiplier_accepts_numpy_scalars():
    a = lr_multiplier(np.int64(7), num_iterations=np.int64(10), warmup_ratio=np.float64(0.3),
                      warmdown_ratio=np.float32(0.5), final_lr_frac=np.float64(0.25))
    assert a == lr_multiplier(7, num_iterations=10, warmup_ratio=0.3, warmdown_ratio=float(np.float32(0.5)),
                              final_lr_frac=0.25)


def test_lr_multiplier_rejects_extrapolation_beyond_the_last_iteration():
    # where the seed would give a value below final_lr_frac, or divide by zero (warmdown_iters == 0)
    assert get_lr_multiplier(1001) == -0.005  # the seed extrapolates: (1000 - 1001) / 200, exact
    with pytest.raises(ValueError, match=r"^it must be <= num_iterations \(1000\)"):
        lr_multiplier(1001, num_iterations=1000)
    with pytest.raises(ValueError, match="^it"):
        lr_multiplier(11, num_iterations=10, warmdown_ratio=0.0)


# ------------------------------------------ muon_momentum ----------------------------------------------
def test_muon_momentum_values():
    assert muon_momentum(0) == 0.85  # frac = 0: 1.0*0.85 + 0.0*0.95 is exact
    assert muon_momentum(150) == pytest.approx(0.90, rel=0, abs=2 * U)  # two products and a sum, each <= U/2·1
    assert muon_momentum(300) == 0.95  # frac = 1: 0*0.85 + 1*0.95 is exact
    assert all(muon_momentum(it) == 0.95 for it in (301, 1000, 10**9, MAX_COUNT))


def test_muon_momentum_monotone_linear_then_constant():
    m = np.array([muon_momentum(it) for it in range(700)])
    assert np.all(np.diff(m) >= -2 * U)  # exact line is increasing by 1/3000 per step; rounding <= 2U
    assert np.all(np.diff(m[:301]) > 0)  # increments 3.3e-4 >> rounding
    assert np.all(m[300:] == 0.95)
    # independent closed form 0.85 + 0.1 * it / 300 (rounding <= 2U in either evaluation)
    np.testing.assert_allclose(m[:301], 0.85 + 0.1 * np.arange(301) / 300, rtol=0, atol=4 * U)


@given(S.muon_momentum_args())
def test_muon_momentum_linear_interpolation(args):
    m = call(muon_momentum, args)
    s, e = args["start"], args["end"]
    frac = min(args["it"] / args["ramp_steps"], 1.0)
    assert min(s, e) - 2 * U <= m <= max(s, e) + 2 * U  # a convex combination, two roundings
    assert m == pytest.approx(s + frac * (e - s), rel=0, abs=4 * U)  # two evaluations of <= 2U each
    if args["it"] >= args["ramp_steps"]:
        assert m == e


# ------------------------------------------ decay schedules --------------------------------------------
def test_constant_lr_values():
    assert [constant_lr(s, lr=0.01) for s in (0, 1, 10**6, MAX_COUNT)] == [0.01] * 4


@given(S.step_decay_lr_args())
def test_step_decay_plateaus_closed_form(args):
    d = args["decay_steps"]
    k = args["step"] // d
    lo = dict(args, step=k * d)
    hi = dict(args, step=k * d + d - 1)
    v = call(step_decay_lr, args)
    assert call(step_decay_lr, lo) == v == call(step_decay_lr, hi)  # constant on each plateau
    nxt = call(step_decay_lr, dict(args, step=(k + 1) * d))
    assert nxt <= v  # non-increasing
    r, lr0 = args["decay_rate"], args["initial_lr"]
    # independent: the scalar recurrence lr_{j} = lr_{j-1} * rate; j+1 roundings vs pow's ≤ 1 ulp
    if k <= 200:
        ref = lr0
        for _ in range(k):
            ref *= r
        if ref > 1e-290:  # away from the subnormal range where relative error is unbounded
            assert v == pytest.approx(ref, rel=(k + 4) * 2 * U)


def test_step_decay_values():
    f = lambda s: step_decay_lr(s, initial_lr=0.1, decay_rate=0.5, decay_steps=1000)  # seed's settings
    assert [f(0), f(999), f(1000), f(1999), f(2000), f(2500)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]
    assert step_decay_lr(10**6, initial_lr=1.0, decay_rate=1.0, decay_steps=1) == 1.0


@given(S.exponential_decay_lr_args())
def test_exponential_decay_ratio_closed_form(args):
    s, r = args["step"], args["decay_rate"]
    a = call(exponential_decay_lr, args)
    b = call(exponential_decay_lr, dict(args, step=s + 1))
    assert b <= a  # non-increasing
    if b > 1e-290:  # away from underflow
        # b/a = exp(-r): the exponents -r*s, -r*(s+1) are rounded (relative U each, i.e. absolute
        # r*(s+1)*U in the result's log), exp and the final product add <= 1 ulp each, twice
        assert b / a == pytest.approx(math.exp(-r), rel=(2 * r * (s + 1) + 8) * U)


def test_exponential_decay_values():
    assert exponential_decay_lr(0, initial_lr=0.3, decay_rate=5.0) == 0.3
    assert exponential_decay_lr(10, initial_lr=1.0, decay_rate=0.1) == pytest.approx(1 / math.e, rel=4 * U)
    assert exponential_decay_lr(7, initial_lr=0.2, decay_rate=0.0) == 0.2
    assert exponential_decay_lr(10**6, initial_lr=1.0, decay_rate=1.0) == 0.0  # underflows to 0.0


@given(S.inverse_time_decay_lr_args(), st.integers(1, 1000), st.integers(1, 1000))
def test_inverse_time_decay_reciprocal_is_linear(args, d1, d2):
    s0, r, lr0 = args["step"], args["decay_rate"], args["initial_lr"]
    inv = [1.0 / call(inverse_time_decay_lr, dict(args, step=s)) for s in (s0, s0 + d1, s0 + d1 + d2)]
    assert inv[0] >= 1.0 / lr0 * (1 - 4 * U)
    assert inv[0] <= inv[1] <= inv[2]  # non-increasing lr
    # 1/lr(s) = (1 + r s) / lr0: slope r / lr0 between any two steps; each 1/lr carries <= 3 roundings
    # (product, sum, quotient, reciprocal: 4U relative); the slope error divides 8U*inv[2] by d
    slope = r / lr0
    assert (inv[1] - inv[0]) / d1 == pytest.approx(slope, rel=0, abs=8 * U * inv[2] / d1)
    assert (inv[2] - inv[1]) / d2 == pytest.approx(slope, rel=0, abs=8 * U * inv[2] / d2)


def test_inverse_time_decay_values():
    assert inverse_time_decay_lr(0, initial_lr=0.1, decay_rate=3.0) == 0.1
    assert inverse_time_decay_lr(2, initial_lr=0.1, decay_rate=0.5) == 0.05
    assert inverse_time_decay_lr(3, initial_lr=1.0, decay_rate=1.0) == 0.25
    assert inverse_time_decay_lr(9, initial_lr=2.0, decay_rate=0.0) == 2.0


# ------------------------------------------ invalid arguments ------------------------------------------
NAN, INF = float("nan"), float("inf")
BAD_COUNTS = [-1, 1.0, 2.5, True, "3", None, MAX_COUNT + 1]
BAD_POSITIVE = [0.0, -0.1, NAN, INF, -INF, True, "0.1", None]
BAD_NONNEGATIVE = [-1e-12, -1.0, NAN, INF, True, "0.1", None]
BAD_UNIT = [-1e-12, 1.0 + 2e-16, 2.0, NAN, INF, True, "0.5", None]

CASES = [
    (constant_lr, dict(step=3, lr=0.1), "step", BAD_COUNTS),
    (constant_lr, dict(step=3, lr=0.1), "lr", BAD_POSITIVE),
    (step_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5, decay_steps=2), "step", BAD_COUNTS),
    (step_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5, decay_steps=2), "initial_lr", BAD_POSITIVE),
    (step_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5, decay_steps=2), "decay_rate",
     [0.0, -0.5, 1.5, NAN, INF, True, None]),
    (step_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5, decay_steps=2), "decay_steps",
     [0, -1, 2.0, True, None, MAX_COUNT + 1]),
    (exponential_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "step", BAD_COUNTS),
    (exponential_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "initial_lr", BAD_POSITIVE),
    (exponential_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "decay_rate", BAD_NONNEGATIVE),
    (inverse_time_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "step", BAD_COUNTS),
    (inverse_time_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "initial_lr", BAD_POSITIVE),
    (inverse_time_decay_lr, dict(step=3, initial_lr=0.1, decay_rate=0.5), "decay_rate", BAD_NONNEGATIVE),
    (lr_multiplier, dict(it=3, num_iterations=10), "it", BAD_COUNTS[:-1] + [11]),
    (lr_multiplier, dict(it=3, num_iterations=10), "num_iterations", BAD_COUNTS),
    (lr_multiplier, dict(it=3, num_iterations=10), "warmup_ratio", BAD_UNIT),
    (lr_multiplier, dict(it=3, num_iterations=10), "warmdown_ratio", BAD_UNIT),
    (lr_multiplier, dict(it=3, num_iterations=10), "final_lr_frac", BAD_UNIT),
    (muon_momentum, dict(it=3), "it", BAD_COUNTS),
    (muon_momentum, dict(it=3), "start", [-1e-12, 1.0, 1.5, NAN, INF, True, None]),
    (muon_momentum, dict(it=3), "end", [-1e-12, 1.0, 1.5, NAN, INF, True, None]),
    (muon_momentum, dict(it=3), "ramp_steps", [0, -300, 300.0, True, None, MAX_COUNT + 1]),
]


@pytest.mark.parametrize(
    ("f", "good", "name", "bad"),
    [pytest.param(f, good, name, bad, id=f"{f.__name__}-{name}-{bad!r}")
     for f, good, name, bads in CASES for bad in bads],
)
def test_invalid_arguments_raise_value_error_naming_the_parameter(f, good, name, bad):
    args = dict(good, **{name: bad})
    first = "step" if "step" in args else "it"
    pos = args.pop(first)
    f(good[first], **{k: v for k, v in good.items() if k != first})  # the valid call works
    with pytest.raises(ValueError, match=f"^{name} must be"):
        f(pos, **args)


def test_max_count_is_accepted():
    assert step_decay_lr(MAX_COUNT, initial_lr=1.0, decay_rate=0.5, decay_steps=MAX_COUNT) == 0.5
    assert lr_multiplier(MAX_COUNT, num_iterations=MAX_COUNT, warmdown_ratio=0.5, final_lr_frac=0.25) == 0.25
