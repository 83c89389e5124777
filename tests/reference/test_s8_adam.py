"""S8 Adam / AdamW reference against closed forms and direct transcriptions (not against itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optconform.reference.adam import NANOCHAT_ADAMW, adam, adamw

# Tolerance used throughout for "same float64 formula, different arrangement": each step rounds a
# handful of operations (≈ 10 ulp relative on the update) and errors add up over ≤ 40 steps, so
# 40 · 10 · 2⁻⁵³ ≈ 4.4e-14; 1e-12 leaves headroom and is still ~1e4 below any formula change tested here.
RTOL = 1e-12


def textbook_adamw(theta, grads, *, lr, b1, b2, eps, wd=0.0, coupled=False, lr_mul=1.0, wd_mul=1.0):
    """Direct transcription of the textbook pseudo-code (torch.optim.AdamW arrangement):
    denom = √v / √(1−β2ᵗ) + ε ; step = η / (1−β1ᵗ)."""
    theta = np.array(theta, dtype=np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    eta = lr * lr_mul
    out = []
    for t, g in enumerate(grads, start=1):
        g = np.array(g, dtype=np.float64)
        if coupled:
            g = g + wd * theta
        else:
            theta = theta * (1 - eta * wd * wd_mul)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / math.sqrt(1 - b2**t) + eps
        theta = theta - (eta / (1 - b1**t)) * m / denom
        out.append((theta.copy(), m.copy(), v.copy()))
    return out


def seed_dist_adamw(theta, grads, *, lr, b1, b2, eps, wd=0.0):
    """Transcription of the seed's DistAdamW update math (nanochat/adamw.py), bias corrections in float64
    so that only the ε placement differs: denom = √v + ε ; step_size = lr·√(1−β2ᵗ)/(1−β1ᵗ)."""
    theta = np.array(theta, dtype=np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if wd != 0:
            theta = theta * (1 - lr * wd)
        m = m * b1 + g * (1 - b1)
        v = v * b2 + g * g * (1 - b2)
        bias1 = 1 - b1**t
        bias2 = 1 - b2**t
        denom = np.sqrt(v) + eps
        step_size = lr * (math.sqrt(bias2) / bias1)
        theta = theta - (m / denom) * step_size
    return theta


def run(fn, theta, grads, **kw):
    state: dict = {}
    for g in grads:
        theta, state = fn(theta, g, state, **kw)
    return theta, state


# ---------------------------------------------------------------- closed forms, constant gradient


@pytest.mark.parametrize("fn,betas,eps", [(adam, (0.9, 0.999), 1e-8), (adamw, (0.8, 0.95), 1e-10),
                                          (adamw, (0.0, 0.0), 1e-3), (adam, (0.5, 0.99), 0.3)])
def test_constant_gradient_closed_form(rng, fn, betas, eps):
    # constant g: m_t = g(1−β1ᵗ), v_t = g²(1−β2ᵗ), so m̂ = g, v̂ = g² and every step moves lr·g/(|g|+ε)
    theta0 = rng.normal(size=(4, 5))
    g = rng.normal(size=(4, 5)) * np.logspace(-12, 3, 5)  # columns from |g| ≪ ε to |g| ≫ ε
    lr, T = 0.03, 25
    theta, state = theta0, {}
    b1, b2 = betas
    for t in range(1, T + 1):
        theta, state = fn(theta, g, state, lr=lr, betas=betas, eps=eps)
        expected = theta0 - t * lr * g / (np.abs(g) + eps)
        np.testing.assert_allclose(theta, expected, rtol=RTOL, atol=RTOL * lr * t)
        assert state["step"] == t and isinstance(state["step"], int)
        np.testing.assert_allclose(state["exp_avg"], g * (1 - b1**t), rtol=RTOL, atol=0)
        np.testing.assert_allclose(state["exp_avg_sq"], g * g * (1 - b2**t), rtol=RTOL, atol=0)


def test_adamw_weight_decay_constant_gradient_closed_form(rng):
    # θ_t = a·θ_{t−1} − u with a = 1 − η·wd·wd_mul, u = η·g/(|g|+ε), η = lr·lr_mul
    # ⇒ θ_t = aᵗ·θ_0 − u·(1 − aᵗ)/(1 − a)
    theta0 = rng.normal(size=7) * 3
    g = rng.normal(size=7)
    lr, wd, lr_mul, wd_mul, eps = 0.05, 0.3, 0.7, 1.5, 1e-10
    eta = lr * lr_mul
    a = 1 - eta * wd * wd_mul
    u = eta * g / (np.abs(g) + eps)
    theta, state = theta0, {}
    for t in range(1, 31):
        theta, state = adamw(theta, g, state, lr=lr, eps=eps, weight_decay=wd, lr_mul=lr_mul, wd_mul=wd_mul)
        expected = a**t * theta0 - u * (1 - a**t) / (1 - a)
        np.testing.assert_allclose(theta, expected, rtol=RTOL, atol=RTOL * 3)


def test_first_step_closed_forms_adamw_vs_adam_l2(rng):
    # t = 1: m̂ = g, v̂ = g². AdamW: θ(1−lr·wd) − lr·g/(|g|+ε). Adam+L2: g' = g + wd·θ, θ − lr·g'/(|g'|+ε).
    theta = rng.normal(size=(3, 3))
    g = rng.normal(size=(3, 3))
    lr, wd, eps = 0.1, 0.5, 1e-8
    pw, _ = adamw(theta, g, {}, lr=lr, weight_decay=wd, eps=eps)
    pa, _ = adam(theta, g, {}, lr=lr, weight_decay=wd, eps=eps)
    np.testing.assert_allclose(pw, theta * (1 - lr * wd) - lr * g / (np.abs(g) + eps), rtol=RTOL)
    gp = g + wd * theta
    np.testing.assert_allclose(pa, theta - lr * gp / (np.abs(gp) + eps), rtol=RTOL)
    assert np.max(np.abs(pw - pa)) > 1e-3  # decoupled ≠ coupled


# ---------------------------------------------------------------- trajectories vs transcriptions


def _grads(rng, shape, T):
    # per-step scales from tiny (near ε) to huge, plus a low-rank and an exact-zero step
    scales = np.logspace(-11, 60, T)
    rng.shuffle(scales)
    gs = [rng.normal(size=shape) * s for s in scales]
    gs[3] = np.outer(rng.normal(size=shape[0]), rng.normal(size=shape[1])) if len(shape) == 2 else gs[3]
    gs[5] = np.zeros(shape)
    return gs


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("betas,eps", [((0.8, 0.95), 1e-10), ((0.9, 0.999), 1e-8), ((0.0, 0.5), 1e-6)])
def test_adamw_trajectory_matches_textbook(rng, wd, betas, eps):
    theta0 = rng.normal(size=(6, 4))
    grads = _grads(rng, (6, 4), 24)
    kw = dict(lr=0.01, b1=betas[0], b2=betas[1], eps=eps, wd=wd, lr_mul=1.3, wd_mul=0.6)
    ref = textbook_adamw(theta0, grads, **kw)
    theta, state = theta0, {}
    for t, g in enumerate(grads):
        theta, state = adamw(theta, g, state, lr=0.01, betas=betas, eps=eps, weight_decay=wd,
                             lr_mul=1.3, wd_mul=0.6)
        th, m, v = ref[t]
        np.testing.assert_allclose(theta, th, rtol=RTOL, atol=RTOL * 0.013 * (t + 1))
        np.testing.assert_allclose(state["exp_avg"], m, rtol=RTOL, atol=0)
        np.testing.assert_allclose(state["exp_avg_sq"], v, rtol=RTOL, atol=0)


@pytest.mark.parametrize("wd", [0.0, 0.2])
def test_adam_trajectory_matches_textbook(rng, wd):
    theta0 = rng.normal(size=(5, 5))
    grads = _grads(rng, (5, 5), 22)
    ref = textbook_adamw(theta0, grads, lr=0.02, b1=0.9, b2=0.999, eps=1e-8, wd=wd, coupled=True)
    theta, state = theta0, {}
    for t, g in enumerate(grads):
        theta, state = adam(theta, g, state, lr=0.02, weight_decay=wd)
        np.testing.assert_allclose(theta, ref[t][0], rtol=RTOL, atol=RTOL * 0.02 * (t + 1))


def test_scalar_param_matches_python_float_recurrence(rng):
    # 0-D parameter against a pure-Python-float scalar recurrence
    theta, state = np.float64(rng.normal()), {}
    th, m, v = float(theta), 0.0, 0.0
    b1, b2, eps, lr, wd = 0.8, 0.95, 1e-10, 0.1, 0.05
    for t in range(1, 21):
        g = float(rng.normal())
        theta, state = adamw(theta, g, state, lr=lr, weight_decay=wd)
        th *= 1 - lr * wd
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        th -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
        assert theta.shape == ()
        assert theta == pytest.approx(th, rel=RTOL)


def test_adamw_and_adam_l2_trajectories_differ(rng):
    theta0 = rng.normal(size=10)
    grads = [rng.normal(size=10) for _ in range(20)]
    pw, _ = run(adamw, theta0, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.5)
    pa, _ = run(adam, theta0, grads, lr=0.01, weight_decay=0.5)
    assert np.max(np.abs(pw - pa)) > 1e-3
    p0, _ = run(adamw, theta0, grads, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    q0, _ = run(adam, theta0, grads, lr=0.01)
    np.testing.assert_allclose(p0, q0, rtol=RTOL)  # identical when weight_decay = 0


# ---------------------------------------------------------------- seed DistAdamW ε placement (#304)


def test_seed_dist_adamw_differs_only_near_eps(rng):
    theta0 = rng.normal(size=(8, 8))
    kw = dict(lr=0.02, b1=0.8, b2=0.95, eps=1e-10, wd=0.1)
    # |g| ~ 1: the seed's ε-before-bias-correction changes the update by ~ε/|g|·(1/√(1−β2ᵗ)) ≲ 1e-9 relative
    big = [rng.normal(size=(8, 8)) + np.sign(rng.normal(size=(8, 8))) for _ in range(20)]
    spec, _ = run(adamw, theta0, big, lr=0.02, eps=1e-10, weight_decay=0.1)
    np.testing.assert_allclose(spec, seed_dist_adamw(theta0, big, **kw), rtol=1e-7)
    # |g| ≈ 1e-10 (= nanochat ε): m̂/(√v̂ + ε) ≈ 1/2 in the spec, ≈ 0.18 at t=1 in the seed → O(1) difference
    tiny = [g * 1e-10 for g in big]
    spec_t, _ = run(adamw, theta0, tiny, lr=0.02, eps=1e-10, weight_decay=0.1)
    seed_t = seed_dist_adamw(theta0, tiny, **kw)
    moved_spec = np.abs(spec_t - theta0 * (1 - 0.002) ** 20)
    moved_seed = np.abs(seed_t - theta0 * (1 - 0.002) ** 20)
    assert np.median(moved_seed / moved_spec) < 0.8


def test_seed_equals_spec_with_inflated_eps(rng):
    # the seed's step is the spec's step with ε replaced by ε_t = ε/√(1−β2ᵗ) (exact identity:
    # lr·√(1−β2ᵗ)/(1−β1ᵗ)·m/(√v+ε) = lr·m̂/(√v̂ + ε/√(1−β2ᵗ))), checked over 20 steps with |g| ~ ε
    theta0 = rng.normal(size=6)
    grads = [rng.normal(size=6) * 1e-10 for _ in range(20)]
    eps, b2 = 1e-10, 0.95
    seed = seed_dist_adamw(theta0, grads, lr=0.1, b1=0.8, b2=b2, eps=eps, wd=0.3)
    theta, state = theta0, {}
    for t, g in enumerate(grads, start=1):
        theta, state = adamw(theta, g, state, lr=0.1, eps=eps / math.sqrt(1 - b2**t), weight_decay=0.3)
    np.testing.assert_allclose(seed, theta, rtol=RTOL)
    spec, _ = run(adamw, theta0, grads, lr=0.1, eps=eps, weight_decay=0.3)
    assert np.max(np.abs(spec - seed)) > 1e-2


# ---------------------------------------------------------------- ε regime, multipliers, invariance


def test_eps_regime(rng):
    theta = rng.normal(size=5)
    # g = 0 from empty state: m = v = 0 and 0/(0 + ε) = 0, the parameter does not move
    p, s = adamw(theta, np.zeros(5), {}, lr=0.1)
    np.testing.assert_array_equal(p, theta)
    assert s["step"] == 1
    # |g| ≪ ε: update ≈ lr·g/ε (linear in g), relative error ≤ |g|/ε = 1e-6
    g = rng.normal(size=5) * 1e-16
    p, _ = adamw(theta, g, {}, lr=0.1, eps=1e-10)
    np.testing.assert_allclose(theta - p, 0.1 * g / 1e-10, rtol=2e-6)
    # |g| ≫ ε: update ≈ lr·sign(g), relative error ≤ ε/|g| ≈ 1e-9
    g = rng.normal(size=5) + np.sign(rng.normal(size=5))
    p, _ = adamw(theta, g, {}, lr=0.1, eps=1e-10)
    np.testing.assert_allclose(theta - p, 0.1 * np.sign(g), rtol=1e-8)


def test_scale_invariance_away_from_eps(rng):
    theta0 = rng.normal(size=(4, 4))
    # |g| >= 1 elementwise, so √v̂ >= 1 (a weighted mean of g² >= 1)
    grads = [rng.normal(size=(4, 4)) + np.sign(rng.normal(size=(4, 4))) for _ in range(20)]
    base, _ = run(adamw, theta0, grads, lr=0.01)
    for c in (1e-2, 7.0, 1e50):
        scaled, _ = run(adamw, theta0, [c * g for g in grads], lr=0.01)
        # the update changes only through ε/(c·√v̂) <= 1e-8 relative per step: 20 steps · lr · 1e-8 = 2e-9
        np.testing.assert_allclose(scaled, base, rtol=0, atol=5e-9)
    near_eps, _ = run(adamw, theta0, [1e-10 * g for g in grads], lr=0.01)
    assert np.max(np.abs(near_eps - base)) > 1e-3  # not invariant when |g| ~ ε


def test_lr_mul_and_wd_mul(rng):
    theta = rng.normal(size=(3, 4))
    g = rng.normal(size=(3, 4))
    lr, wd, eps = 0.1, 0.2, 1e-10
    for lr_mul, wd_mul in [(1.0, 1.0), (0.5, 1.0), (2.0, 0.0), (1.0, 3.0), (0.25, 4.0)]:
        p, _ = adamw(theta, g, {}, lr=lr, weight_decay=wd, eps=eps, lr_mul=lr_mul, wd_mul=wd_mul)
        expected = theta * (1 - lr * lr_mul * wd * wd_mul) - lr * lr_mul * g / (np.abs(g) + eps)
        np.testing.assert_allclose(p, expected, rtol=RTOL)
    p, s = adamw(theta, g, {}, lr=lr, weight_decay=wd, lr_mul=0.0)  # frozen, state still advances
    np.testing.assert_array_equal(p, theta)
    assert s["step"] == 1


def test_lr_zero_keeps_param_and_advances_state(rng):
    theta, g = rng.normal(size=3), rng.normal(size=3)
    p, s = adam(theta, g, {}, lr=0.0, weight_decay=0.3)
    np.testing.assert_array_equal(p, theta)
    np.testing.assert_allclose(s["exp_avg"], 0.1 * (g + 0.3 * theta), rtol=RTOL)


def test_bias_correction_is_float64(rng):
    # float64 β^t vs float32 β^t (what the seed's int64 step tensor gives) differ by ~1e-8 relative at t=1;
    # the reference must match the float64 transcription far closer than that.
    theta, g = rng.normal(size=4), rng.normal(size=4) * 1e-10
    p, _ = adamw(theta, g, {}, lr=1.0)
    bc2_64 = 1 - 0.95
    bc2_32 = float(np.float32(1) - np.float32(0.95))
    e64 = theta - g / (np.sqrt(g * g * 0.05 / bc2_64) + 1e-10)  # t = 1: m̂ = g, v̂ = g²·0.05/bc2
    e32 = theta - g / (np.sqrt(g * g * 0.05 / bc2_32) + 1e-10)  # same with the float32 bc2
    np.testing.assert_allclose(p, e64, rtol=1e-14)
    assert np.max(np.abs(p - e32) / np.abs(theta - p)) > 1e-9


def test_nanochat_defaults():
    assert NANOCHAT_ADAMW == {"betas": (0.8, 0.95), "eps": 1e-10, "weight_decay": 0.0}
    theta = np.array([1.0, -2.0])
    g = np.array([3e-10, -1.0])
    p, _ = adamw(theta, g, {}, lr=0.5, **NANOCHAT_ADAMW)
    np.testing.assert_allclose(p, theta - 0.5 * g / (np.abs(g) + 1e-10), rtol=RTOL)


# ---------------------------------------------------------------- purity and validation


@pytest.mark.parametrize("fn", [adam, adamw])
def test_inputs_not_modified(rng, fn):
    theta, g = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    _, state = fn(theta, g, {}, lr=0.1, weight_decay=0.1)
    snap = (theta.copy(), g.copy(), state["exp_avg"].copy(), state["exp_avg_sq"].copy())
    p, s2 = fn(theta, g, state, lr=0.1, weight_decay=0.1)
    for a, b in zip(snap, (theta, g, state["exp_avg"], state["exp_avg_sq"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert state["step"] == 1 and s2["step"] == 2
    assert p.dtype == np.float64 and s2["exp_avg"].dtype == np.float64


@pytest.mark.parametrize("fn", [adam, adamw])
@pytest.mark.parametrize("kw,name", [
    (dict(lr=-0.1), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(betas=(1.0, 0.9)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(betas=(0.9, 1.0)), r"betas\[1\]"), (dict(betas=(0.9,)), "betas"), (dict(betas="ab"), "betas"),
    (dict(eps=0.0), "eps"), (dict(eps=-1e-8), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
])
def test_invalid_hyperparameters(rng, fn, kw, name):
    kw = {"lr": 0.1, **kw}
    with pytest.raises(ValueError, match=f"^{name}"):
        fn(rng.normal(size=3), rng.normal(size=3), {}, **kw)


@pytest.mark.parametrize("kw,name", [(dict(lr_mul=-1.0), "lr_mul"), (dict(wd_mul=float("inf")), "wd_mul")])
def test_invalid_multipliers(rng, kw, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        adamw(rng.normal(size=3), rng.normal(size=3), {}, lr=0.1, **kw)


@pytest.mark.parametrize("fn", [adam, adamw])
def test_invalid_arrays_and_state(rng, fn):
    p, g = rng.normal(size=3), rng.normal(size=3)
    with pytest.raises(ValueError, match="^grad"):
        fn(p, rng.normal(size=4), {}, lr=0.1)
    with pytest.raises(ValueError, match="^param"):
        fn(np.array([1.0, np.nan, 0.0]), g, {}, lr=0.1)
    with pytest.raises(ValueError, match="^grad"):  # g² overflows float64
        fn(p, np.array([1e200, 1.0, 1.0]), {}, lr=0.1)
    good = {"step": 2, "exp_avg": rng.normal(size=3), "exp_avg_sq": rng.random(3)}
    with pytest.raises(ValueError, match="^state"):
        fn(p, g, {"step": 1}, lr=0.1)
    with pytest.raises(ValueError, match="^state"):
        fn(p, g, [1, 2], lr=0.1)
    with pytest.raises(ValueError, match=r"^state\['step'\]"):
        fn(p, g, {**good, "step": -1}, lr=0.1)
    with pytest.raises(ValueError, match=r"^state\['step'\]"):
        fn(p, g, {**good, "step": 1.5}, lr=0.1)
    with pytest.raises(ValueError, match=r"^state\['exp_avg'\]"):
        fn(p, g, {**good, "exp_avg": np.zeros(4)}, lr=0.1)
    with pytest.raises(ValueError, match=r"^state\['exp_avg_sq'\]"):
        fn(p, g, {**good, "exp_avg_sq": -good["exp_avg_sq"]}, lr=0.1)
