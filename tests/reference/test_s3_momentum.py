"""S3 Momentum: the reference against independent mathematics.

Independent sources used here: hand transcriptions of the seed's loops and of torch.optim.SGD's
documented algorithm in plain Python, and on a quadratic f = ½θᵀHθ the exact linear recurrences
[θ; v]_{k+1} = M [θ; v]_k evaluated with np.linalg.matrix_power.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optconform.reference.descent import gd_step
from optconform.reference.momentum import (
    heavy_ball,
    lookahead_to_torch,
    nesterov_lookahead,
    nesterov_torch,
    sgd,
    torch_to_lookahead,
)

EPS = np.finfo(np.float64).eps
BETAS = [0.0, 0.5, 0.9, 0.99]


def _spd(rng, d, cond):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.geomspace(1.0, cond, d)
    return (q * lam) @ q.T, lam


def _heavy_ball_matrix(h, lr, beta):
    """v' = βv + Hθ; θ' = θ − ηv' = (I − ηH)θ − ηβv."""
    d = h.shape[0]
    i = np.eye(d)
    return np.block([[i - lr * h, -lr * beta * i], [h, beta * i]])


def _nesterov_torch_matrix(h, lr, beta):
    """g = Hφ; b' = βb + g; φ' = φ − η(g + βb') = (I − η(1+β)H)φ − ηβ²b."""
    d = h.shape[0]
    i = np.eye(d)
    return np.block([[i - lr * (1 + beta) * h, -lr * beta**2 * i], [h, beta * i]])


def _check_closed_form(traj, m, z0, checkpoints):
    """Compare trajectory states z_k = [θ_k; v_k] with M^k z0.

    Rounding bound: step j commits a local error δ_j ≤ c·eps·(‖M‖‖z_j‖ + ‖z_{j+1}‖) (a matvec of
    length d plus a few axpys, c = 4d) which later steps carry forward multiplied by M^{k−1−j}; so
    |z_k − M^k z0| ≤ Σ_j ‖M^{k−1−j}‖₂ δ_j, evaluated exactly for this M. The matrix power of the
    prediction adds the same order again: factor 2. It is a worst case (‖M^j‖₂ is inflated by the
    v-block being in gradient units, ~λ_max·θ); measured errors are 1e-18 .. 4e-14, 2-6 orders below it.
    """
    d = m.shape[0] // 2
    m_norm = np.linalg.norm(m, 2)
    powers = [np.eye(2 * d)]
    for _ in range(max(checkpoints)):
        powers.append(powers[-1] @ m)
    pow_norms = [np.linalg.norm(p, 2) for p in powers]
    local = [4 * d * EPS * (m_norm * np.linalg.norm(traj[j]) + np.linalg.norm(traj[j + 1]))
             for j in range(max(checkpoints))]
    for k in checkpoints:
        pred = np.linalg.matrix_power(m, k) @ z0
        tol = 2 * sum(pow_norms[k - 1 - j] * local[j] for j in range(k))
        np.testing.assert_allclose(traj[k], pred, rtol=0, atol=tol)


# --------------------------------------------------------------------------------------------- S3.1


def test_heavy_ball_matches_seed_loop(rng):
    theta0, v0 = rng.standard_normal(6), rng.standard_normal(6)
    grads = rng.standard_normal((5, 6))
    lr, beta = 0.05, 0.9
    theta, v = theta0, v0
    for g in grads:
        theta, v = heavy_ball(theta, v, g, lr=lr, beta=beta)
    # seed 5.7.1, element by element in Python floats: v = beta * v + grad; theta = theta - lr * v
    for j in range(6):
        t, vv = float(theta0[j]), float(v0[j])
        for g in grads:
            vv = beta * vv + float(g[j])
            t = t - lr * vv
        assert theta[j] == t and v[j] == vv  # the same two roundings per step: bitwise


@pytest.mark.parametrize("beta", BETAS)
def test_heavy_ball_quadratic_closed_form(rng, beta):
    d = 5
    h, lam = _spd(rng, d, cond=50.0)
    lr = 1.0 / lam[-1]  # stable for every β in [0, 1): needs 0 < ηλ < 2(1 + β)
    theta, v = rng.standard_normal(d), rng.standard_normal(d)
    z0 = np.concatenate([theta, v])
    traj = [z0]
    for _ in range(200):
        theta, v = heavy_ball(theta, v, h @ theta, lr=lr, beta=beta)
        traj.append(np.concatenate([theta, v]))
    m = _heavy_ball_matrix(h, lr, beta)
    _check_closed_form(traj, m, z0, [1, 2, 10, 50, 200])
    # and the iterates go where the spectrum says: ‖z_200‖ ≤ C·ρ(M)^200 with ρ from the eigenvalues
    if beta < 0.99:
        rho = max(abs(np.linalg.eigvals(m)))
        assert np.linalg.norm(traj[-1]) <= 1e3 * (rho + 1e-3) ** 200 * np.linalg.norm(z0)


def test_heavy_ball_beta_zero_is_gd(rng):
    theta, v, g = rng.standard_normal((3, 4))
    t1, v1 = heavy_ball(theta, v, g, lr=0.3, beta=0.0)
    np.testing.assert_array_equal(t1, gd_step(theta, g, lr=0.3))
    np.testing.assert_array_equal(v1, g)


# --------------------------------------------------------------------------------------------- S3.2


def test_nesterov_lookahead_matches_seed_loop(rng):
    a = rng.standard_normal((4, 4))
    grad_fn_points = []

    def grad_fn(p):
        grad_fn_points.append(p.copy())
        return np.tanh(a @ p) + p**3  # any smooth non-linear gradient field

    lr, beta = 0.1, 0.9
    theta0, v0 = rng.standard_normal(4), rng.standard_normal(4)
    theta, v = theta0, v0
    for _ in range(5):
        theta, v = nesterov_lookahead(theta, v, grad_fn, lr=lr, beta=beta)
    # seed 5.7.2 transcribed: theta_lookahead = theta - lr*beta*v; grad at it; v = beta*v + grad; ...
    t, vv = theta0.copy(), v0.copy()
    for k in range(5):
        look = t - lr * beta * vv
        np.testing.assert_array_equal(grad_fn_points[k], look)  # gradient taken at the look-ahead point
        vv = beta * vv + (np.tanh(a @ look) + look**3)
        t = t - lr * vv
    np.testing.assert_array_equal(theta, t)
    np.testing.assert_array_equal(v, vv)
    assert len(grad_fn_points) == 5  # one gradient evaluation per step


def test_nesterov_lookahead_quadratic_closed_form(rng):
    # on f = ½θᵀHθ: v' = βv + H(θ − ηβv); θ' = θ − ηv' — the matrix derived by hand:
    d, lr, beta = 4, 0.02, 0.9
    h, _ = _spd(rng, d, cond=20.0)
    i = np.eye(d)
    m = np.block([[i - lr * h, -lr * beta * (i - lr * h)], [h, beta * (i - lr * h)]])
    theta, v = rng.standard_normal(d), rng.standard_normal(d)
    z0 = np.concatenate([theta, v])
    traj = [z0]
    for _ in range(60):
        theta, v = nesterov_lookahead(theta, v, lambda p: h @ p, lr=lr, beta=beta)
        traj.append(np.concatenate([theta, v]))
    _check_closed_form(traj, m, z0, [1, 3, 60])


# --------------------------------------------------------------------------------------------- S3.3


def test_nesterov_torch_matches_torch_documented_algorithm(rng):
    # torch.optim.SGD docs (dampening 0, wd 0, nesterov): b_t = μ b_{t−1} + g_t; g_t ← g_t + μ b_t;
    # θ_t = θ_{t−1} − γ g_t. Transcribed in Python floats per element.
    c = rng.standard_normal(3)
    grad_fn = lambda p: np.sin(p) + c
    lr, beta = 0.07, 0.8
    phi0, b0 = rng.standard_normal(3), rng.standard_normal(3)
    phi, b = phi0, b0
    for _ in range(4):
        phi, b = nesterov_torch(phi, b, grad_fn, lr=lr, beta=beta)
    for j in range(3):
        p, bb = float(phi0[j]), float(b0[j])
        for _ in range(4):
            g = math.sin(p) + float(c[j])
            bb = beta * bb + g
            g = g + beta * bb
            p = p - lr * g
        # np.sin and math.sin may differ by an ulp; four steps of |∂/∂p| ≤ ~2 growth
        assert phi[j] == pytest.approx(p, rel=1e-14, abs=1e-14)
        assert b[j] == pytest.approx(bb, rel=1e-14, abs=1e-14)


@pytest.mark.parametrize("beta", BETAS)
def test_nesterov_torch_quadratic_closed_form(rng, beta):
    d = 5
    h, lam = _spd(rng, d, cond=30.0)
    lr = 0.5 / lam[-1]
    phi, b = rng.standard_normal(d), rng.standard_normal(d)
    z0 = np.concatenate([phi, b])
    traj = [z0]
    for _ in range(100):
        phi, b = nesterov_torch(phi, b, lambda p: h @ p, lr=lr, beta=beta)
        traj.append(np.concatenate([phi, b]))
    _check_closed_form(traj, _nesterov_torch_matrix(h, lr, beta), z0, [1, 2, 10, 100])


# --------------------------------------------------------------------------------------------- S3.4


def _logistic(rng, n=60, d=5):
    a = rng.standard_normal((n, d))
    labels = np.where(rng.standard_normal(n) > 0, 1.0, -1.0)

    def grad(theta):
        z = labels * (a @ theta)
        return -(a.T @ (labels / (1.0 + np.exp(z)))) / n  # ∇ mean log(1 + exp(−y·aᵀθ))

    return grad


def _quartic(rng, d=5):
    c = rng.standard_normal(d)
    h, _ = _spd(rng, d, cond=10.0)
    return lambda theta: theta**3 + h @ theta - c  # ∇(¼Σθ⁴ + ½θᵀHθ − cᵀθ)


@pytest.mark.parametrize("problem", [_logistic, _quartic])
@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_lookahead_and_torch_trajectories_correspond(rng, problem, beta):
    grad_fn = problem(rng)
    lr = 0.05
    theta, v = rng.standard_normal(5), 0.5 * rng.standard_normal(5)  # non-zero initial velocity
    phi, b = lookahead_to_torch(theta, v, lr=lr, beta=beta)
    worst, v_scale = 0.0, np.linalg.norm(v)
    for _ in range(80):
        theta, v = nesterov_lookahead(theta, v, grad_fn, lr=lr, beta=beta)
        phi, b = nesterov_torch(phi, b, grad_fn, lr=lr, beta=beta)
        t2, v2 = torch_to_lookahead(phi, b, lr=lr, beta=beta)
        v_scale = max(v_scale, np.linalg.norm(v))
        # v → 0 at the minimum, so its error is measured against the largest velocity of the run
        worst = max(worst, np.linalg.norm(t2 - theta) / np.linalg.norm(theta),
                    np.linalg.norm(v2 - v) / v_scale)
    # the forms round differently (a few eps per step) and the dynamics contract: measured worst
    # 1e-16 .. 1e-15 over seeds 0-4 and these β; the bound 1e-12 leaves a 1000x margin
    assert worst <= 1e-12


def test_correspondence_needs_the_same_constant_lr(rng):
    # the map φ = θ − ηβv uses one η: with η changing between steps the trajectories drift apart
    grad_fn = _quartic(rng)
    beta = 0.9
    theta, v = rng.standard_normal(5), rng.standard_normal(5)
    phi, b = lookahead_to_torch(theta, v, lr=0.05, beta=beta)
    for k in range(20):
        lr = 0.05 if k % 2 == 0 else 0.02
        theta, v = nesterov_lookahead(theta, v, grad_fn, lr=lr, beta=beta)
        phi, b = nesterov_torch(phi, b, grad_fn, lr=lr, beta=beta)
    for lr_map in (0.05, 0.02):
        t2, _ = torch_to_lookahead(phi, b, lr=lr_map, beta=beta)
        assert np.linalg.norm(t2 - theta) > 1e-6 * np.linalg.norm(theta)


def test_maps_formulas_and_roundtrip(rng):
    theta = rng.standard_normal((3, 2)) * 1e5
    v = rng.standard_normal((3, 2)) * 1e-5
    lr, beta = 0.3, 0.7
    phi, b = lookahead_to_torch(theta, v, lr=lr, beta=beta)
    np.testing.assert_array_equal(phi, theta - lr * beta * v)
    np.testing.assert_array_equal(b, v)
    assert b is not v
    t2, v2 = torch_to_lookahead(phi, b, lr=lr, beta=beta)
    np.testing.assert_array_equal(v2, v)
    assert v2 is not b
    # θ − c + c with c = ηβv: one rounding each way, ≤ 2 ulp of max(|θ|, |c|)
    np.testing.assert_allclose(t2, theta, rtol=0, atol=2 * EPS * np.max(np.abs(theta)))
    # with v = 0 (the usual start) φ = θ: the two forms start at the same point
    phi0, b0 = lookahead_to_torch(theta, np.zeros_like(theta), lr=lr, beta=beta)
    np.testing.assert_array_equal(phi0, theta)
    np.testing.assert_array_equal(b0, 0.0)


# --------------------------------------------------------------------------------------------- S3.5


def test_sgd_plain_is_gd_and_keeps_state(rng):
    p, g = rng.standard_normal((2, 3, 4))
    out, st = sgd(p, g, {}, lr=0.1)
    np.testing.assert_array_equal(out, p - 0.1 * g)
    assert st == {}
    buf = rng.standard_normal((3, 4))
    state = {"momentum_buffer": buf}
    out, st = sgd(p, g, state, lr=0.1, momentum=0.0)
    np.testing.assert_array_equal(out, p - 0.1 * g)  # a stored buffer is not used
    np.testing.assert_array_equal(st["momentum_buffer"], buf)  # nor updated
    assert st is not state and st["momentum_buffer"] is not buf


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_first_step_buffer_is_grad(rng, nesterov):
    p, g = rng.standard_normal((2, 5))
    mu = 0.9
    out, st = sgd(p, g, {}, lr=0.1, momentum=mu, nesterov=nesterov)
    np.testing.assert_array_equal(st["momentum_buffer"], g)  # buf = g, not (1 − μ)g nor μ·0 + (1 − μ)g
    expected = p - 0.1 * (g + mu * g) if nesterov else p - 0.1 * g
    np.testing.assert_array_equal(out, expected)
    # {"momentum_buffer": None} counts as no buffer
    out2, st2 = sgd(p, g, {"momentum_buffer": None}, lr=0.1, momentum=mu, nesterov=nesterov)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(st2["momentum_buffer"], g)


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_quadratic_closed_form(rng, beta, nesterov):
    d = 4
    h, lam = _spd(rng, d, cond=40.0)
    lr = 0.5 / lam[-1]
    p0 = rng.standard_normal(d)
    p, state = p0, {}
    traj = [np.concatenate([p0, np.zeros(d)])]  # first step buf = g is the recurrence from buf = 0
    for _ in range(120):
        p, state = sgd(p, h @ p, state, lr=lr, momentum=beta, nesterov=nesterov)
        traj.append(np.concatenate([p, state["momentum_buffer"]]))
    m = _nesterov_torch_matrix(h, lr, beta) if nesterov else _heavy_ball_matrix(h, lr, beta)
    _check_closed_form(traj, m, traj[0], [1, 2, 15, 120])


def test_sgd_nesterov_tracks_seed_lookahead_from_rest(rng):
    # from v0 = 0 the seed's look-ahead Nesterov and SGD(nesterov=True) start at the same point
    # (φ0 = θ0) and stay mapped by θ = φ + ηβ·buf (S3.4)
    grad_fn = _logistic(rng)
    lr, mu = 0.2, 0.9
    theta0 = rng.standard_normal(5)
    theta, v = theta0, np.zeros(5)
    p, state = theta0, {}
    for _ in range(60):
        theta, v = nesterov_lookahead(theta, v, grad_fn, lr=lr, beta=mu)
        p, state = sgd(p, grad_fn(p), state, lr=lr, momentum=mu, nesterov=True)
    # same rounding budget as test_lookahead_and_torch_trajectories_correspond
    np.testing.assert_allclose(p + lr * mu * state["momentum_buffer"], theta, rtol=1e-12,
                               atol=1e-12 * np.linalg.norm(theta))
    np.testing.assert_allclose(state["momentum_buffer"], v, rtol=1e-12, atol=1e-12 * np.max(np.abs(v)))
    assert np.linalg.norm(p - theta) > 1e-6  # the parameters themselves are the shifted point φ


def test_sgd_matches_heavy_ball_and_nesterov_torch_step_by_step(rng):
    p, g1, g2 = rng.standard_normal((3, 7))
    mu, lr = 0.8, 0.05
    q, st = sgd(p, g1, {}, lr=lr, momentum=mu)
    q, st = sgd(q, g2, st, lr=lr, momentum=mu)
    t, v = heavy_ball(p, np.zeros(7), g1, lr=lr, beta=mu)
    t, v = heavy_ball(t, v, g2, lr=lr, beta=mu)
    np.testing.assert_array_equal(q, t)  # identical operations
    np.testing.assert_array_equal(st["momentum_buffer"], v)
    grads = iter([g1, g2])
    q, st = sgd(p, g1, {}, lr=lr, momentum=mu, nesterov=True)
    q, st = sgd(q, g2, st, lr=lr, momentum=mu, nesterov=True)
    t, b = nesterov_torch(p, np.zeros(7), lambda _: next(grads), lr=lr, beta=mu)
    t, b = nesterov_torch(t, b, lambda _: next(grads), lr=lr, beta=mu)
    np.testing.assert_array_equal(q, t)
    np.testing.assert_array_equal(st["momentum_buffer"], b)


def test_inputs_not_mutated(rng):
    p, g, buf, v = rng.standard_normal((4, 3))
    copies = [a.copy() for a in (p, g, buf, v)]
    sgd(p, g, {"momentum_buffer": buf}, lr=0.1, momentum=0.9, nesterov=True)
    heavy_ball(p, v, g, lr=0.1, beta=0.9)
    nesterov_lookahead(p, v, lambda x: x, lr=0.1, beta=0.9)
    nesterov_torch(p, v, lambda x: x, lr=0.1, beta=0.9)

    def vandal(x):
        x[:] = 1e9  # a grad_fn that writes into its argument must not reach the caller's arrays
        return np.ones(3)

    nesterov_lookahead(p, v, vandal, lr=0.1, beta=0.9)
    nesterov_torch(p, v, vandal, lr=0.1, beta=0.9)
    for a, c in zip((p, g, buf, v), copies, strict=True):
        np.testing.assert_array_equal(a, c)


# ------------------------------------------------------------------------------------------ errors

_T, _V = np.ones(3), np.full(3, 0.5)
_ID = lambda x: x


@pytest.mark.parametrize(
    ("func", "kwargs", "name"),
    [
        (heavy_ball, dict(theta=_T, v=_V, grad=_T, lr=-0.1, beta=0.9), "lr"),
        (heavy_ball, dict(theta=_T, v=_V, grad=_T, lr=math.inf, beta=0.9), "lr"),
        (heavy_ball, dict(theta=_T, v=_V, grad=_T, lr=0.1, beta=1.0), "beta"),
        (heavy_ball, dict(theta=_T, v=_V, grad=_T, lr=0.1, beta=-0.1), "beta"),
        (heavy_ball, dict(theta=_T, v=_V, grad=_T, lr=0.1, beta=math.nan), "beta"),
        (heavy_ball, dict(theta=_T, v=np.ones(2), grad=_T, lr=0.1, beta=0.9), "v"),
        (heavy_ball, dict(theta=_T, v=_V, grad=np.ones((3, 1)), lr=0.1, beta=0.9), "grad"),
        (heavy_ball, dict(theta=[np.nan, 1, 1], v=_V, grad=_T, lr=0.1, beta=0.9), "theta"),
        (nesterov_lookahead, dict(theta=_T, v=_V, grad_fn=None, lr=0.1, beta=0.9), "grad_fn"),
        (nesterov_lookahead, dict(theta=_T, v=_V, grad_fn=lambda x: x[:2], lr=0.1, beta=0.9), "grad_fn"),
        (nesterov_lookahead, dict(theta=_T, v=_V, grad_fn=lambda x: x * np.inf, lr=0.1, beta=0.9), "grad_fn"),
        (nesterov_lookahead, dict(theta=_T, v=_V, grad_fn=_ID, lr=0.1, beta=1.5), "beta"),
        (nesterov_lookahead, dict(theta=_T, v=np.ones(4), grad_fn=_ID, lr=0.1, beta=0.5), "v"),
        (nesterov_torch, dict(theta=_T, b=_V, grad_fn=_ID, lr=-1.0, beta=0.9), "lr"),
        (nesterov_torch, dict(theta=_T, b=np.ones(4), grad_fn=_ID, lr=0.1, beta=0.9), "b"),
        (nesterov_torch, dict(theta=_T, b=_V, grad_fn="f", lr=0.1, beta=0.9), "grad_fn"),
        (nesterov_torch, dict(theta=_T, b=_V, grad_fn=lambda x: np.ones(2), lr=0.1, beta=0.9), "grad_fn"),
        (lookahead_to_torch, dict(theta=_T, v=np.ones(2), lr=0.1, beta=0.9), "v"),
        (lookahead_to_torch, dict(theta=_T, v=_V, lr=0.1, beta=1.0), "beta"),
        (torch_to_lookahead, dict(phi=_T, b=np.ones(2), lr=0.1, beta=0.9), "b"),
        (torch_to_lookahead, dict(phi=_T, b=_V, lr=math.nan, beta=0.9), "lr"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=-0.1), "lr"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=math.inf), "lr"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=0.1, momentum=1.0), "momentum"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=0.1, momentum=-0.5), "momentum"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=0.1, nesterov=True), "nesterov"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=0.1, momentum=0.0, nesterov=True), "nesterov"),
        (sgd, dict(param=_T, grad=_T, state={}, lr=0.1, momentum=0.9, nesterov=1), "nesterov"),
        (sgd, dict(param=_T, grad=np.ones(2), state={}, lr=0.1), "grad"),
        (sgd, dict(param=_T, grad=_T, state=None, lr=0.1), "state"),
        (sgd, dict(param=_T, grad=_T, state={"step": 1}, lr=0.1, momentum=0.9), "state"),
        (sgd, dict(param=_T, grad=_T, state={"momentum_buffer": np.ones(2)}, lr=0.1, momentum=0.9), "state"),
        (sgd, dict(param=_T, grad=_T, state={"momentum_buffer": [np.inf] * 3}, lr=0.1, momentum=0.9), "state"),
    ],
)
def test_invalid_arguments_raise(func, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        func(**kwargs)
