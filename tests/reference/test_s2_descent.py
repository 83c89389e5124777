"""S2 Gradient descent: the reference against independent mathematics.

Independent sources used here: hand transcriptions of the seed's loops in plain Python scalars,
central finite differences, the least-squares solution (np.linalg.lstsq) and the exact linear
recurrence e_{k+1} = (I − ηH) e_k that gradient descent follows on a quadratic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optconform.reference.descent import (
    batch_gd,
    converged,
    gd_step,
    gradient_descent,
    linear_regression_grad,
    linear_regression_loss,
    minibatch_epoch,
    sgd_epoch,
)

EPS = np.finfo(np.float64).eps


def _problem(rng, n=40, d=5, scale=1.0, col_scales=None):
    x = rng.standard_normal((n, d))
    if col_scales is not None:
        x = x * col_scales
    w_true = rng.standard_normal(d)
    y = x @ w_true + 0.3 + 0.1 * rng.standard_normal(n)
    # x, y, b scaled by `scale`, w not: residuals scale like `scale`, the loss like scale²
    return rng.standard_normal(d), scale * 0.7, scale * x, scale * y


# ------------------------------------------------------------------ hand transcriptions of the seed


def _hand_residual(w, b, xi, yi):
    pred = b
    for j in range(len(w)):
        pred += float(xi[j]) * float(w[j])
    return float(yi) - pred


def _hand_loss(w, b, x, y):
    """L = (1/n) Σ (yᵢ − ŷᵢ)², a scalar Python loop."""
    total = 0.0
    for i in range(len(y)):
        r = _hand_residual(w, b, x[i], y[i])
        total += r * r
    return total / len(y)


def _hand_sample_grad(w, b, xi, yi):
    """d/dw (y − x·w − b)² = −2 r x, d/db = −2 r (differentiated by hand)."""
    r = _hand_residual(w, b, xi, yi)
    return [-2.0 * r * float(xi[j]) for j in range(len(w))], -2.0 * r


def _hand_mean_grad(w, b, x, y, rows, divisor):
    """Seed 5.5.1/5.5.3: total_grad accumulated sample by sample, then divided by `divisor`."""
    tw, tb = [0.0] * len(w), 0.0
    for i in rows:
        gw, gb = _hand_sample_grad(w, b, x[i], y[i])
        tw = [a + c for a, c in zip(tw, gw, strict=True)]
        tb += gb
    return [a / divisor for a in tw], tb / divisor


def _hand_minibatch(w, b, x, y, lr, order, batch_size, divide_by_nominal=False, drop_last=False):
    w, b = [float(t) for t in w], float(b)
    for start in range(0, len(order), batch_size):
        rows = list(order[start:start + batch_size])
        if drop_last and len(rows) < batch_size:
            break
        gw, gb = _hand_mean_grad(w, b, x, y, rows, batch_size if divide_by_nominal else len(rows))
        w = [wj - lr * gj for wj, gj in zip(w, gw, strict=True)]
        b = b - lr * gb
    return np.array(w), b


# --------------------------------------------------------------------------------------------- S2.1


def test_gd_step_seed_numbers():
    # seed 5.4.2: theta = 10, grad = 4; lr 0.01 -> 9.96, lr 0.5 -> 8.0 (10 - 0.04 rounds to 9.96's double)
    assert gd_step(10.0, 4.0, lr=0.01) == 10.0 - 0.01 * 4.0
    assert float(gd_step(10.0, 4.0, lr=0.01)) == pytest.approx(9.96, rel=1e-15)  # one rounding
    assert float(gd_step(10.0, 4.0, lr=0.5)) == 8.0  # exact in binary


def test_gd_step_elementwise_and_pure(rng):
    theta = rng.standard_normal((3, 4, 2)) * 10.0 ** rng.uniform(-100, 100, (3, 4, 2))
    grad = rng.standard_normal((3, 4, 2))
    theta0, grad0 = theta.copy(), grad.copy()
    lr = 0.37
    out = gd_step(theta, grad, lr=lr)
    expected = np.array([t - lr * g for t, g in zip(theta.ravel(), grad.ravel(), strict=True)]).reshape(3, 4, 2)
    np.testing.assert_array_equal(out, expected)  # same single mul+sub per element: bitwise
    np.testing.assert_array_equal(theta, theta0)
    np.testing.assert_array_equal(grad, grad0)
    out0 = gd_step(theta, grad, lr=0.0)
    np.testing.assert_array_equal(out0, theta)
    assert out0 is not theta


# --------------------------------------------------------------------------------------------- S2.2


@pytest.mark.parametrize("scale", [1e-100, 1.0, 1e100])
def test_loss_and_grad_match_seed_loops(rng, scale):
    w, b, x, y = _problem(rng, n=17, d=4, scale=scale)
    # dot products of length d+1 and sums of n terms in different orders: a few n·eps relative
    tol = 50 * 17 * EPS
    loss = linear_regression_loss(w, b, x, y)
    assert math.isfinite(loss) and loss > 0.0
    assert loss == pytest.approx(_hand_loss(w, b, x, y), rel=tol)
    gw, gb = linear_regression_grad(w, b, x, y)
    hw, hb = _hand_mean_grad(w, b, x, y, range(len(y)), len(y))
    np.testing.assert_allclose(gw, hw, rtol=tol, atol=tol * np.max(np.abs(hw)))
    assert gb == pytest.approx(hb, rel=tol)


def test_grad_matches_central_differences(rng):
    w, b, x, y = _problem(rng, n=30, d=6)
    gw, gb = linear_regression_grad(w, b, x, y)
    h = 1e-3
    # L is quadratic, so the central difference has no truncation error; what is left is rounding,
    # about eps·L/h ≈ 1e-13·L. 1e-9 relative to max|g| leaves a wide margin.
    fd_w = np.empty_like(w)
    for j in range(w.size):
        e = np.zeros_like(w)
        e[j] = h
        fd_w[j] = (linear_regression_loss(w + e, b, x, y) - linear_regression_loss(w - e, b, x, y)) / (2 * h)
    fd_b = (linear_regression_loss(w, b + h, x, y) - linear_regression_loss(w, b - h, x, y)) / (2 * h)
    scale = max(np.max(np.abs(gw)), abs(gb))
    np.testing.assert_allclose(gw, fd_w, rtol=0, atol=1e-9 * scale)
    assert abs(gb - fd_b) <= 1e-9 * scale


def test_grad_vanishes_at_least_squares_solution(rng):
    _, _, x, y = _problem(rng, n=50, d=4)
    xt = np.column_stack([x, np.ones(len(y))])
    sol = np.linalg.lstsq(xt, y, rcond=None)[0]
    gw, gb = linear_regression_grad(sol[:-1], sol[-1], x, y)
    # normal equations X̃ᵀr = 0 hold to ~cond(X̃)·eps·‖X̃‖‖y‖; cond here is O(1), 1e-12 is ample
    bound = 1e-12 * np.linalg.norm(xt) * np.linalg.norm(y)
    assert np.max(np.abs(gw)) <= bound and abs(gb) <= bound
    # and it is not zero anywhere else: the gradient is linear in (w, b) with Hessian (2/n)X̃ᵀX̃
    gw2, gb2 = linear_regression_grad(sol[:-1] + 1.0, sol[-1], x, y)
    h = (2 / len(y)) * xt.T @ xt
    np.testing.assert_allclose(np.append(gw2, gb2), h @ np.append(np.ones(4), 0.0), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------- S2.3


@pytest.mark.parametrize("kind", ["well", "ill", "lowrank"])
def test_batch_gd_follows_closed_form(rng, kind):
    col_scales = np.array([1.0, 3.0, 10.0, 30.0]) if kind == "ill" else None
    w0, b0, x, y = _problem(rng, n=60, d=4, col_scales=col_scales)
    if kind == "lowrank":
        # rank-deficient X̃: the null-space component of the error never moves ((1 − η·0)^k = 1),
        # and the recurrence holds about any minimiser θ*, here lstsq's minimum-norm one
        x[:, 3] = x[:, 0] - 2.0 * x[:, 1]
    n = len(y)
    xt = np.column_stack([x, np.ones(n)])
    hess = (2.0 / n) * xt.T @ xt
    lam, q = np.linalg.eigh(hess)
    lr = 1.0 / lam[-1]
    star = np.linalg.lstsq(xt, y, rcond=None)[0]
    e0 = np.append(w0, b0) - star
    steps = 150
    w, b, losses = batch_gd(w0, b0, x, y, lr=lr, num_epochs=steps)
    e_k = np.append(w, b) - star
    # exact for a quadratic: e_k = (I − ηH)^k e0, i.e. each eigen-component decays by (1 − ηλᵢ)^k
    pred_eig = (1.0 - lr * lam) ** steps * (q.T @ e0)
    pred_pow = np.linalg.matrix_power(np.eye(5) - lr * hess, steps) @ e0
    # rounding: θ* carries cond(X̃)·eps·‖θ*‖ and each contracting step adds ~eps·‖θ‖; measured
    # ≤ 2e-14 absolute (scale ~3) over seeds 0-2 and all three kinds: 1e-12 of the scale is a 50x margin
    atol = 1e-12 * (np.linalg.norm(star) + np.linalg.norm(e0))
    np.testing.assert_allclose(q.T @ e_k, pred_eig, rtol=0, atol=atol)
    np.testing.assert_allclose(e_k, pred_pow, rtol=0, atol=atol)
    if kind == "lowrank":
        assert lam[0] < 1e-12 * lam[-1]  # a true null direction, up to rounding in forming H
        assert abs(q[:, 0] @ e0) > 1e-3  # which the start has a component along ...
        assert abs(q[:, 0] @ e_k - q[:, 0] @ e0) <= atol  # ... that GD never changes
    # the loss is L* + ½ eᵀHe: losses[k] is taken at θ_k, before epoch k's update
    l_star = np.mean((y - xt @ star) ** 2)
    for k in (0, 1, 7, steps - 1):
        ek = np.linalg.matrix_power(np.eye(5) - lr * hess, k) @ e0
        assert losses[k] == pytest.approx(l_star + 0.5 * ek @ hess @ ek, rel=1e-11)  # n·eps sums + θ* error: ≪1e-11
    assert losses.shape == (steps,)


def test_batch_gd_reaches_lstsq(rng):
    w0, b0, x, y = _problem(rng, n=80, d=3)
    xt = np.column_stack([x, np.ones(len(y))])
    lam = np.linalg.eigvalsh((2.0 / len(y)) * xt.T @ xt)
    lr = 2.0 / (lam[0] + lam[-1])  # optimal fixed step: contraction (κ−1)/(κ+1)
    rate = (lam[-1] - lam[0]) / (lam[-1] + lam[0])
    steps = int(np.ceil(np.log(1e-13) / np.log(rate)))  # predicted steps to shrink the error by 1e13
    w, b, _ = batch_gd(w0, b0, x, y, lr=lr, num_epochs=steps)
    star = np.linalg.lstsq(xt, y, rcond=None)[0]
    e0 = np.linalg.norm(np.append(w0, b0) - star)
    # error ≤ rate^steps·e0 ≤ 1e-13·e0, plus rounding ~eps·‖θ*‖·cond; 1e-12 allows both
    assert np.linalg.norm(np.append(w, b) - star) <= 1e-13 * e0 + 1e-12 * np.linalg.norm(star)
    # and it is not there much earlier: after a third of the steps the error is still above rate^(steps/3)
    w3, b3, _ = batch_gd(w0, b0, x, y, lr=lr, num_epochs=steps // 3)
    assert np.linalg.norm(np.append(w3, b3) - star) > 1e-13 * e0 * 10


def test_batch_gd_zero_epochs_and_purity(rng):
    w0, b0, x, y = _problem(rng)
    copies = [a.copy() for a in (w0, x, y)]
    w, b, losses = batch_gd(w0, b0, x, y, lr=0.1, num_epochs=0)
    np.testing.assert_array_equal(w, w0)
    assert b == b0 and losses.shape == (0,)
    batch_gd(w0, b0, x, y, lr=0.1, num_epochs=3)
    for a, c in zip((w0, x, y), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------------------------- S2.4


@pytest.mark.parametrize("kind", ["permutation", "with_repeats"])
def test_sgd_epoch_matches_hand_loop(rng, kind):
    w0, b0, x, y = _problem(rng, n=25, d=3)
    order = rng.permutation(25) if kind == "permutation" else rng.integers(0, 25, size=40)
    w, b = sgd_epoch(w0, b0, x, y, lr=0.01, order=order)
    hw, hb = _hand_minibatch(w0, b0, x, y, 0.01, order, 1)
    # per-update rounding ~(d+1)·eps in different summation orders, over ≤40 contracting updates
    np.testing.assert_allclose(w, hw, rtol=1e-13)
    assert b == pytest.approx(hb, rel=1e-13)


def test_sgd_epoch_order_matters_and_empty_is_noop(rng):
    w0, b0, x, y = _problem(rng, n=10, d=2)
    wa, _ = sgd_epoch(w0, b0, x, y, lr=0.05, order=np.arange(10))
    wb, _ = sgd_epoch(w0, b0, x, y, lr=0.05, order=np.arange(10)[::-1])
    assert np.max(np.abs(wa - wb)) > 1e-6  # a formula ignoring `order` would give equal results
    w, b = sgd_epoch(w0, b0, x, y, lr=0.05, order=[])
    np.testing.assert_array_equal(w, w0)
    assert b == b0


# --------------------------------------------------------------------------------------------- S2.5


def test_minibatch_full_batch_equals_batch_gd(rng):
    w0, b0, x, y = _problem(rng, n=24, d=3)
    wb, bb, _ = batch_gd(w0, b0, x, y, lr=0.05, num_epochs=1)
    w, b = minibatch_epoch(w0, b0, x, y, lr=0.05, order=np.arange(24), batch_size=24)
    np.testing.assert_array_equal(w, wb)  # same rows, same order, same arithmetic
    assert b == bb
    # any permutation, and any batch_size >= n (one short batch): only the summation order changes
    for bs in (24, 100):
        w, b = minibatch_epoch(w0, b0, x, y, lr=0.05, order=rng.permutation(24), batch_size=bs)
        np.testing.assert_allclose(w, wb, rtol=1e-13)  # n·eps reordering of a 24-term sum
        assert b == pytest.approx(bb, rel=1e-13)


def test_minibatch_size_one_equals_sgd(rng):
    w0, b0, x, y = _problem(rng, n=19, d=4)
    order = rng.permutation(19)
    ws, bs = sgd_epoch(w0, b0, x, y, lr=0.02, order=order)
    w, b = minibatch_epoch(w0, b0, x, y, lr=0.02, order=order, batch_size=1)
    np.testing.assert_allclose(w, ws, rtol=4 * EPS)  # identical arithmetic; 4 eps for safety
    assert b == pytest.approx(bs, rel=4 * EPS)


@pytest.mark.parametrize("batch_size", [3, 4, 7])
def test_minibatch_matches_hand_loop_with_short_last_batch(rng, batch_size):
    n = 23  # not a multiple of 3, 4 or 7: the last batch is short
    w0, b0, x, y = _problem(rng, n=n, d=3)
    order = rng.permutation(n)
    lr = 0.03
    w, b = minibatch_epoch(w0, b0, x, y, lr=lr, order=order, batch_size=batch_size)
    hw, hb = _hand_minibatch(w0, b0, x, y, lr, order, batch_size)
    # summation order differs inside each batch: ~B·eps per update over ≤ 8 contracting updates
    np.testing.assert_allclose(w, hw, rtol=1e-13)
    assert b == pytest.approx(hb, rel=1e-13)
    # the seed's listing divides by the nominal batch_size; that is the same as the mean except that
    # the short last batch (m rows) takes a step m/B times as long
    m = n % batch_size
    sw, sb = _hand_minibatch(w0, b0, x, y, lr, order, batch_size, divide_by_nominal=True)
    assert np.max(np.abs(sw - w)) > 1e-8  # the two conventions really differ here
    full = n - m
    pw, pb = _hand_minibatch(w0, b0, x, y, lr, order[:full], batch_size, divide_by_nominal=True)
    tw, tb = _hand_minibatch(pw, pb, x, y, lr * m / batch_size, order[full:], batch_size)
    np.testing.assert_allclose(sw, tw, rtol=1e-13)  # same rounding budget as above
    assert sb == pytest.approx(tb, rel=1e-13)


def test_minibatch_drop_last(rng):
    n, bs = 23, 5
    w0, b0, x, y = _problem(rng, n=n, d=3)
    order = rng.permutation(n)
    w, b = minibatch_epoch(w0, b0, x, y, lr=0.03, order=order, batch_size=bs, drop_last=True)
    wt, bt = minibatch_epoch(w0, b0, x, y, lr=0.03, order=order[:20], batch_size=bs)
    np.testing.assert_array_equal(w, wt)
    assert b == bt
    wk, _ = minibatch_epoch(w0, b0, x, y, lr=0.03, order=order, batch_size=bs)
    assert np.max(np.abs(wk - w)) > 1e-8  # keeping the short batch changes the result
    # no short batch: drop_last has no effect
    w1, _ = minibatch_epoch(w0, b0, x, y, lr=0.03, order=order[:20], batch_size=bs, drop_last=True)
    np.testing.assert_array_equal(w1, wt)
    # batch_size > len(order) with drop_last: nothing is left, a no-op
    w2, b2 = minibatch_epoch(w0, b0, x, y, lr=0.03, order=order, batch_size=n + 1, drop_last=True)
    np.testing.assert_array_equal(w2, w0)
    assert b2 == b0


# --------------------------------------------------------------------------------------------- S2.6


def _bowl(calls=None):
    """L(θ) = ½‖θ‖², ∇L = θ. With θ0 = [3, 4] and η = ½: θ_k = [3, 4]/2^k, ‖g_k‖ = 5/2^k,
    L_k = 12.5/4^k and |L_k − L_{k−1}| = 37.5/4^k, all exact in binary floating point."""

    def f(theta):
        if calls is not None:
            calls.append(theta.copy())
        return 0.5 * float(theta @ theta), theta.copy()

    return f


THETA0 = np.array([3.0, 4.0])


def test_max_iterations_only():
    calls = []
    theta, its, reason = gradient_descent(_bowl(calls), THETA0, lr=0.5, max_iterations=6)
    assert (its, reason) == (6, "max_iterations")
    np.testing.assert_array_equal(theta, THETA0 / 2**6)  # exactly 6 updates of θ ← θ/2
    assert len(calls) == 7  # one evaluation per check, the last at θ_6
    theta, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=0)
    assert (its, reason) == (0, "max_iterations")
    np.testing.assert_array_equal(theta, THETA0)


@pytest.mark.parametrize("k", [0, 1, 3, 10])
def test_grad_norm_strict_boundary(k):
    tol = 5.0 / 2**k  # ‖g_k‖ exactly
    theta, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=100, grad_tol=tol)
    assert (its, reason) == (k + 1, "grad_norm")  # ‖g_k‖ == tol does not stop; ‖g_{k+1}‖ < tol does
    np.testing.assert_array_equal(theta, THETA0 / 2 ** (k + 1))  # checked before the update
    theta, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=100,
                                          grad_tol=np.nextafter(tol, np.inf))
    assert (its, reason) == (k, "grad_norm")
    np.testing.assert_array_equal(theta, THETA0 / 2**k)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_loss_change_strict_boundary(k):
    tol = 37.5 / 4**k  # |L_k − L_{k−1}| exactly
    theta, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=100, loss_tol=tol)
    assert (its, reason) == (k + 1, "loss_change")
    np.testing.assert_array_equal(theta, THETA0 / 2 ** (k + 1))
    _, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=100,
                                      loss_tol=np.nextafter(tol, np.inf))
    assert (its, reason) == (k, "loss_change")


def test_loss_change_never_at_iteration_zero():
    # at k = 0 there is no previous loss: a huge tolerance first triggers at k = 1
    _, its, reason = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=100, loss_tol=1e300)
    assert (its, reason) == (1, "loss_change")
    assert converged(iteration=0, max_iterations=5, loss=1.0, prev_loss=None, loss_tol=1e300) is None


def test_precedence_in_gradient_descent():
    # tolerances 1.0: ‖g_k‖ = 5/2^k and |ΔL_k| = 37.5/4^k first drop below 1 at k = 3, where the
    # budget max_iterations = 3 is also spent: all three rules hold and grad_norm wins
    res = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=3, grad_tol=1.0, loss_tol=1.0)
    assert res[1:] == (3, "grad_norm")
    np.testing.assert_array_equal(res[0], THETA0 / 8)
    # loss change and budget at k = 3: loss_change wins over max_iterations
    res = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=3, grad_tol=5.0 / 8, loss_tol=1.0)
    assert res[1:] == (3, "loss_change")
    # neither tolerance holds at k = 3 (both sit exactly at their boundary one step later): budget
    res = gradient_descent(_bowl(), THETA0, lr=0.5, max_iterations=3, grad_tol=5.0 / 16, loss_tol=37.5 / 256)
    assert res[1:] == (3, "max_iterations")


def test_converged_truth_table():
    base = dict(iteration=4, max_iterations=4, grad_norm=0.1, grad_tol=0.2, loss=1.0, prev_loss=1.05,
                loss_tol=0.1)
    assert converged(**base) == "grad_norm"
    assert converged(**{**base, "grad_norm": 0.2}) == "loss_change"  # equal: not below
    # |1.0 − 1.1| rounds to 0.10000000000000009, not below 0.1: only the budget rule holds
    assert converged(**{**base, "grad_norm": 0.2, "prev_loss": 1.1}) == "max_iterations"
    assert converged(**{**base, "grad_norm": 0.3, "prev_loss": 0.5, "iteration": 3}) is None
    assert converged(**{**base, "grad_norm": 0.3, "prev_loss": 0.5, "iteration": 5}) == "max_iterations"
    # loss rising counts too: the rule is on |loss − prev_loss|
    assert converged(iteration=0, max_iterations=9, loss=1.0, prev_loss=0.95, loss_tol=0.1) == "loss_change"
    # values given without their tolerance are ignored
    assert converged(iteration=0, max_iterations=9, grad_norm=0.0, loss=1.0, prev_loss=1.0) is None


def test_gradient_descent_diverging_raises():
    # L = ½θ², η = 3: θ ← −2θ, overflows after ~1024 steps
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="^loss_and_grad"):
        gradient_descent(lambda t: (0.5 * float(t @ t), t), np.array([1.0]), lr=3.0, max_iterations=5000)


def test_gradient_descent_huge_and_tiny_gradients():
    # ‖g‖ is computed without overflow/underflow: [3, 4]·1e300 has norm 5e300 (naive Σg² overflows)
    for s in (1e300, 1e-300):
        _, its, reason = gradient_descent(lambda t, s=s: (0.0, np.array([3.0, 4.0]) * s), np.zeros(2), lr=0.0,
                                          max_iterations=2, grad_tol=np.nextafter(5.0 * s, np.inf))
        assert (its, reason) == (0, "grad_norm")
        _, its, reason = gradient_descent(lambda t, s=s: (0.0, np.array([3.0, 4.0]) * s), np.zeros(2), lr=0.0,
                                          max_iterations=2, grad_tol=5.0 * s * (1 - 1e-12))
        assert (its, reason) == (2, "max_iterations")
    assert math.isfinite(5e300)


# ------------------------------------------------------------------------------------------ errors

_W, _B, _X, _Y = np.ones(2), 0.5, np.arange(6.0).reshape(3, 2), np.array([1.0, -2.0, 0.5])


def _reg(**over):
    return {"w": _W, "b": _B, "x": _X, "y": _Y, **over}


@pytest.mark.parametrize(
    ("func", "kwargs", "name"),
    [
        (gd_step, dict(theta=np.ones(2), grad=np.ones(2), lr=-0.1), "lr"),
        (gd_step, dict(theta=np.ones(2), grad=np.ones(2), lr=math.nan), "lr"),
        (gd_step, dict(theta=np.ones(2), grad=np.ones(2), lr=math.inf), "lr"),
        (gd_step, dict(theta=np.ones(2), grad=np.ones(3), lr=0.1), "grad"),
        (gd_step, dict(theta=[1.0, math.nan], grad=np.ones(2), lr=0.1), "theta"),
        (linear_regression_loss, _reg(x=np.ones(3)), "x"),
        (linear_regression_loss, _reg(x=np.ones((0, 2)), y=np.ones(0)), "x"),
        (linear_regression_loss, _reg(y=np.ones(4)), "y"),
        (linear_regression_loss, _reg(w=np.ones(3)), "w"),
        (linear_regression_loss, _reg(b=math.inf), "b"),
        (linear_regression_grad, _reg(b=np.ones(2)), "b"),
        (linear_regression_grad, _reg(y=np.ones((3, 1))), "y"),
        (batch_gd, dict(**_reg(), lr=0.1, num_epochs=-1), "num_epochs"),
        (batch_gd, dict(**_reg(), lr=0.1, num_epochs=2.0), "num_epochs"),
        (batch_gd, dict(**_reg(), lr=-1.0, num_epochs=2), "lr"),
        (sgd_epoch, dict(**_reg(), lr=0.1, order=[0, 3]), "order"),
        (sgd_epoch, dict(**_reg(), lr=0.1, order=[-1]), "order"),
        (sgd_epoch, dict(**_reg(), lr=0.1, order=[0.0, 1.0]), "order"),
        (sgd_epoch, dict(**_reg(), lr=0.1, order=[[0, 1]]), "order"),
        (sgd_epoch, dict(**_reg(), lr=0.1, order=[True, False]), "order"),
        (sgd_epoch, dict(**_reg(), lr=math.nan, order=[0]), "lr"),
        (minibatch_epoch, dict(**_reg(), lr=0.1, order=[0, 1], batch_size=0), "batch_size"),
        (minibatch_epoch, dict(**_reg(), lr=0.1, order=[0, 1], batch_size=1.5), "batch_size"),
        (minibatch_epoch, dict(**_reg(), lr=0.1, order=[0, 1], batch_size=2, drop_last=1), "drop_last"),
        (minibatch_epoch, dict(**_reg(), lr=0.1, order=[5], batch_size=2), "order"),
        (converged, dict(iteration=-1, max_iterations=3), "iteration"),
        (converged, dict(iteration=0, max_iterations=-3), "max_iterations"),
        (converged, dict(iteration=0, max_iterations=3, grad_tol=0.0, grad_norm=1.0), "grad_tol"),
        (converged, dict(iteration=0, max_iterations=3, grad_tol=0.1), "grad_norm"),
        (converged, dict(iteration=0, max_iterations=3, grad_tol=0.1, grad_norm=-1.0), "grad_norm"),
        (converged, dict(iteration=0, max_iterations=3, grad_tol=0.1, grad_norm=math.inf), "grad_norm"),
        (converged, dict(iteration=0, max_iterations=3, loss_tol=-0.1, loss=1.0), "loss_tol"),
        (converged, dict(iteration=0, max_iterations=3, loss_tol=0.1), "loss"),
        (converged, dict(iteration=0, max_iterations=3, loss_tol=0.1, loss=math.nan), "loss"),
        (converged, dict(iteration=0, max_iterations=3, loss_tol=0.1, loss=1.0, prev_loss=math.inf), "prev_loss"),
        (gradient_descent, dict(loss_and_grad=None, theta0=np.ones(2), lr=0.1, max_iterations=3), "loss_and_grad"),
        (gradient_descent, dict(loss_and_grad=_bowl(), theta0=np.ones(2), lr=-0.1, max_iterations=3), "lr"),
        (gradient_descent, dict(loss_and_grad=_bowl(), theta0=np.ones(2), lr=0.1, max_iterations=-1),
         "max_iterations"),
        (gradient_descent, dict(loss_and_grad=_bowl(), theta0=np.ones(2), lr=0.1, max_iterations=3, grad_tol=0),
         "grad_tol"),
        (gradient_descent, dict(loss_and_grad=_bowl(), theta0=np.ones(2), lr=0.1, max_iterations=3,
                                loss_tol=-1.0), "loss_tol"),
        (gradient_descent, dict(loss_and_grad=_bowl(), theta0=[math.inf], lr=0.1, max_iterations=3), "theta0"),
        (gradient_descent, dict(loss_and_grad=lambda t: (0.0, np.ones(3)), theta0=np.ones(2), lr=0.1,
                                max_iterations=3), "loss_and_grad"),
        (gradient_descent, dict(loss_and_grad=lambda t: 1.0, theta0=np.ones(2), lr=0.1,
                                max_iterations=3), "loss_and_grad"),
    ],
)
def test_invalid_arguments_raise(func, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        func(**kwargs)
