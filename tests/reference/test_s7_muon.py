"""S7 Muon: muon_aspect_scale and the muon step against a NumPy transcription of the seed's Muon.step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from seed_code import seed_zeropower

from optconform.reference.muon import muon, muon_aspect_scale
from optconform.reference.orthogonalize import polar_factor, zeropower

EPS64 = np.finfo(np.float64).eps


def _torch_lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch.lerp's float formula (ATen lerp kernel): two branches around weight 0.5."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


class SeedMuon:
    """Line-by-line NumPy transcription of nanochat's Muon.step (muon.py:38-84) for one parameter."""

    def __init__(self, p, lr, momentum, nesterov, ns_steps, orth):
        self.p, self.state = p.copy(), {}
        self.group = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        self.orth = orth

    def step(self, grad):
        group, p = self.group, self.p
        g = grad.copy()  # p.grad
        state = self.state
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = np.zeros_like(g)
        buf = state["momentum_buffer"]
        buf[...] = _torch_lerp(buf, g, 1 - group["momentum"])  # buf.lerp_(g, 1 - momentum)
        g = _torch_lerp(g, buf, group["momentum"]) if group["nesterov"] else buf
        g = self.orth(g, group["ns_steps"])
        p += g * (-group["lr"] * max(1, p.shape[-2] / p.shape[-1]) ** 0.5)  # p.add_(g, alpha=...)




def _scipy_polar(u, _steps):
    """Polar factor from scipy.linalg.polar, matrix by matrix (the seed's role of an exact orthogonalizer)."""
    flat = u.reshape((-1,) + u.shape[-2:])
    return np.stack([scipy.linalg.polar(m)[0] for m in flat]).reshape(u.shape)


def _polar(u, _steps):
    return polar_factor(u)


# name -> (orthogonalizer given to the reference muon, independent one used by the seed transcription)
ORTHS = {"zeropower": (zeropower, seed_zeropower), "polar_factor": (_polar, _scipy_polar)}


@pytest.mark.parametrize("orth", ["zeropower", "polar_factor"])
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (8, 8), (2, 6, 4)])
def test_muon_trajectory_matches_seed_transcription(rng, orth, nesterov, shape):
    lr, beta, steps = 0.02, 0.95, 25
    p0 = rng.standard_normal(shape)
    ours, theirs = ORTHS[orth]
    seed = SeedMuon(p0, lr, beta, nesterov, 5, theirs)
    p, state = p0, {}
    for t in range(steps):
        g = rng.standard_normal(shape) * (0.1 + t)  # changing scales so the momentum blend matters
        seed.step(g)
        p, state = muon(p, g, state, lr=lr, momentum=beta, nesterov=nesterov, ns_steps=5, orthogonalize=ours)
        # Both evaluate lerp as torch does, so the buffers agree bit for bit.
        assert np.array_equal(state["momentum_buffer"], seed.state["momentum_buffer"])
        # The orthogonalizers differ by rounding only: NS by a few ulps of the norm amplified <= 3.9⁵ ≈ 900,
        # polar by eps times its condition number (< 1e4 for these Gaussian mixtures); the parameter adds
        # 25 such updates of size lr·scale. 1e-9 relative to the total displacement covers 900·1e4·eps.
        assert np.linalg.norm(p - seed.p) <= 1e-9 * np.linalg.norm(seed.p - p0)


@pytest.mark.parametrize(
    "shape, expected",
    [((12, 5), math.sqrt(12 / 5)), ((5, 12), 1.0), ((8, 8), 1.0), ((3, 400, 100), 2.0),
     ((7, 1), math.sqrt(7)),
     ((0, 5), 1.0), ((1, 1), 1.0)],
)
def test_muon_aspect_scale(shape, expected):
    # pow(x, 0.5) vs sqrt: at most 1 ulp apart
    assert muon_aspect_scale(shape) == pytest.approx(expected, rel=2 * EPS64, abs=0)


@pytest.mark.parametrize("bad", [(5,), (), (4, 0), (2, -1), (2.0, 3), (True, 3), "ab", 5, None])
def test_muon_aspect_scale_rejects(bad):
    with pytest.raises(ValueError, match=r"^shape "):
        muon_aspect_scale(bad)


class Spy:
    """An orthogonalizer that records its input and returns a fixed known matrix."""

    def __init__(self, out):
        self.out, self.calls = out, []

    def __call__(self, u, steps):
        self.calls.append((u.copy(), steps))
        return self.out


@pytest.mark.parametrize("shape", [(12, 5), (5, 12), (8, 8)])
def test_muon_update_uses_aspect_scale_rows_over_cols(rng, shape):
    p, g, O = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)
    new, _ = muon(p, g, {}, lr=0.3, orthogonalize=Spy(O))
    scale = math.sqrt(max(1.0, shape[0] / shape[1]))  # tall matrices scaled up, wide ones not
    np.testing.assert_allclose(new, p - 0.3 * scale * O, rtol=0, atol=8 * EPS64 * (np.abs(p).max() + 2))


def test_muon_first_steps_closed_form(rng):
    beta, shape = 0.9, (6, 4)
    g1, g2 = rng.standard_normal(shape), rng.standard_normal(shape)
    for nesterov in (True, False):
        spy = Spy(np.zeros(shape))
        p1, s1 = muon(rng.standard_normal(shape), g1, {}, lr=0.1, momentum=beta, nesterov=nesterov,
                      ns_steps=3, orthogonalize=spy)
        # first step: buf = (1 − β) g (buf starts at zeros)
        np.testing.assert_allclose(s1["momentum_buffer"], (1 - beta) * g1, rtol=4 * EPS64, atol=0)
        muon(p1, g2, s1, lr=0.1, momentum=beta, nesterov=nesterov, ns_steps=3, orthogonalize=spy)
        buf2 = beta * (1 - beta) * g1 + (1 - beta) * g2
        u1 = (1 - beta**2) * g1 if nesterov else (1 - beta) * g1  # g + β(buf − g) with buf = (1 − β) g
        u2 = (1 - beta) * g2 + beta * buf2 if nesterov else buf2
        # a few ulps of cancellation in the lerp forms; 1e-14 relative to the largest entry
        for (u, steps), expected in zip(spy.calls, [u1, u2], strict=True):
            assert steps == 3
            np.testing.assert_allclose(u, expected, rtol=0, atol=1e-14 * np.abs(expected).max())


def test_muon_lr_scales_update_linearly(rng):
    shape = (10, 4)
    p, g = rng.standard_normal(shape), rng.standard_normal(shape)
    zero = np.zeros(shape)
    d1 = muon(zero, g, {}, lr=0.01)[0]
    d3 = muon(zero, g, {}, lr=0.03)[0]
    # from a zero parameter the result is −(lr·scale)·O: only the rounding of lr·scale (1 ulp) differs
    np.testing.assert_allclose(d3, 3 * d1, rtol=4 * EPS64, atol=0)
    # lr = 0 is allowed (schedules reach 0): parameter unchanged, the buffer still advances
    p0, s0 = muon(p, g, {}, lr=0.0, momentum=0.5)
    assert np.array_equal(p0, p)
    np.testing.assert_allclose(s0["momentum_buffer"], 0.5 * g, rtol=2 * EPS64, atol=0)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_momentum_zero_is_orthogonalized_gradient(rng, nesterov):
    shape = (9, 6)
    p, g = rng.standard_normal(shape), rng.standard_normal(shape)
    state = {"momentum_buffer": rng.standard_normal(shape)}  # forgotten completely when β = 0
    new, s = muon(p, g, state, lr=0.05, momentum=0.0, nesterov=nesterov)
    # torch.lerp at weight 1 (buf ← lerp(buf, g, 1)) and 0 (u ← lerp(g, buf, 0)) returns g exactly
    assert np.array_equal(s["momentum_buffer"], g)
    expected = p - 0.05 * math.sqrt(9 / 6) * zeropower(g, 5)
    # same operations as the reference on the same u = g; only lr·scale vs 0.05·sqrt(1.5) rounding: 1e-15
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-15)


def test_muon_ns_steps_zero_applies_normalised_momentum(rng):
    shape = (4, 7)
    p, g = rng.standard_normal(shape), rng.standard_normal(shape)
    new, _ = muon(p, g, {}, lr=1.0, momentum=0.0, ns_steps=0)
    # steps = 0 leaves u / (‖u‖_F + 1e-7); rounding of the norm: a few ulps
    np.testing.assert_allclose(new, p - g / (np.linalg.norm(g) + 1e-7), rtol=0, atol=1e-14)


def test_muon_batched_equals_per_matrix(rng):
    shape = (3, 6, 4)
    p, state = rng.standard_normal(shape), {}
    per = [(p[i], {}) for i in range(3)]
    for _ in range(4):
        g = rng.standard_normal(shape)
        p, state = muon(p, g, state, lr=0.02)
        per = [muon(pi, g[i], si, lr=0.02) for i, (pi, si) in enumerate(per)]
    for i in range(3):
        # batched and 2-D matmuls may round differently: NS bound 900·n·eps per step, 1e-11 with margin
        np.testing.assert_allclose(p[i], per[i][0], rtol=0, atol=1e-11)
        np.testing.assert_allclose(state["momentum_buffer"][i], per[i][1]["momentum_buffer"], rtol=0, atol=0)


def test_muon_does_not_mutate_inputs_and_returns_fresh_arrays(rng):
    shape = (5, 3)
    p, g = rng.standard_normal(shape), rng.standard_normal(shape)
    buf = rng.standard_normal(shape)
    state = {"momentum_buffer": buf}
    copies = (p.copy(), g.copy(), buf.copy())
    for nesterov in (True, False):
        new, s = muon(p, g, state, lr=0.1, nesterov=nesterov)
        assert all(np.array_equal(x, y) for x, y in zip((p, g, buf), copies, strict=True))
        assert set(state) == {"momentum_buffer"} and state["momentum_buffer"] is buf
        assert not np.shares_memory(new, p) and not np.shares_memory(s["momentum_buffer"], buf)
        assert set(s) == {"momentum_buffer"}


def test_muon_orthogonalizer_cannot_alias_the_buffer(rng):
    # non-Nesterov: u is the buffer's value; an orthogonalizer writing into its input must not corrupt state
    def scribbler(u, steps):
        out = zeropower(u, steps)
        u[...] = 0.0
        return out

    g = rng.standard_normal((4, 4))
    _, s = muon(np.zeros((4, 4)), g, {}, lr=0.1, momentum=0.5, nesterov=False, orthogonalize=scribbler)
    np.testing.assert_allclose(s["momentum_buffer"], 0.5 * g, rtol=2 * EPS64, atol=0)


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (2, 0, 3)])
def test_muon_empty_parameter_is_a_no_op(shape):
    p, s = muon(np.zeros(shape), np.zeros(shape), {}, lr=0.1)
    assert p.shape == shape and s["momentum_buffer"].shape == shape


def _ok():
    return dict(param=np.ones((3, 2)), grad=np.ones((3, 2)), state={}, lr=0.02)


@pytest.mark.parametrize(
    "change, name",
    [
        ({"param": np.ones(3), "grad": np.ones(3)}, "param"),
        ({"param": 1.0, "grad": 1.0}, "param"),
        ({"param": [[np.nan, 1.0]], "grad": [[1.0, 1.0]]}, "param"),
        ({"grad": np.ones((2, 3))}, "grad"),
        ({"grad": np.ones((3, 2, 1))}, "grad"),
        ({"grad": [[np.inf, 1.0]] * 3}, "grad"),
        ({"lr": -0.1}, "lr"),
        ({"lr": np.nan}, "lr"),
        ({"lr": np.inf}, "lr"),
        ({"lr": True}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": 1.5}, "momentum"),
        ({"nesterov": 1}, "nesterov"),
        ({"ns_steps": -1}, "ns_steps"),
        ({"ns_steps": 2.5}, "ns_steps"),
        ({"ns_steps": True}, "ns_steps"),
        ({"orthogonalize": "zeropower"}, "orthogonalize"),
        ({"orthogonalize": lambda u, k: u[:1]}, "orthogonalize"),
        ({"state": None}, "state"),
        ({"state": {"step": 1}}, "state"),
        ({"state": {"momentum_buffer": np.ones((2, 3))}}, r"state\['momentum_buffer'\]"),
        ({"state": {"momentum_buffer": [[np.nan] * 2] * 3}}, r"state\['momentum_buffer'\]"),
    ],
)
def test_muon_rejects_invalid_arguments(change, name):
    kw = _ok() | change
    with pytest.raises(ValueError, match=rf"^{name} "):
        muon(kw.pop("param"), kw.pop("grad"), kw.pop("state"), **kw)
