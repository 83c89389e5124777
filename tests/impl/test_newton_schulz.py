"""impl.newton_schulz (S6.2 in bf16 torch) against the float64 reference, with the NS tolerance policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from optconform.conformance import tolerances as tol
from optconform.conformance.metrics import ns_subspace_errors
from optconform.impl import newton_schulz as ns
from optconform.impl.newton_schulz import zeropower, zeropower_compiled, zeropower_eager
from optconform.reference.orthogonalize import ns_singular_value_map
from optconform.reference.orthogonalize import zeropower as ref_zeropower

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")


def _orth(rng, m, k):
    q, _ = np.linalg.qr(rng.standard_normal((m, k)))
    return q


def _with_spectrum(rng, m, n, s):
    k = len(s)
    return (_orth(rng, m, k) * s) @ _orth(rng, n, k).T


INPUTS = {
    "gauss_square": lambda r: r.standard_normal((64, 64)),
    "gauss_wide": lambda r: r.standard_normal((48, 160)),
    "gauss_tall": lambda r: r.standard_normal((160, 48)),
    "batched_tall": lambda r: r.standard_normal((2, 3, 40, 24)),
    "power_law": lambda r: _with_spectrum(r, 96, 128, 1.0 / np.arange(1, 97)),
    "cond_1e3": lambda r: _with_spectrum(r, 96, 96, np.geomspace(1.0, 1e-3, 96)),
    "cond_1e6": lambda r: _with_spectrum(r, 96, 96, np.geomspace(1.0, 1e-6, 96)),
    "rank_1": lambda r: np.outer(r.standard_normal(64), r.standard_normal(128)),
    "rank_8": lambda r: r.standard_normal((96, 8)) @ r.standard_normal((8, 96)),
    "tiny_1e-8": lambda r: (lambda g: g / np.linalg.norm(g) * 1e-8)(r.standard_normal((64, 96))),
    "huge_1e30": lambda r: (lambda g: g / np.linalg.norm(g) * 1e30)(r.standard_normal((64, 96))),
    "huge_1e36": lambda r: (lambda g: g / np.linalg.norm(g) * 1e36)(r.standard_normal((96, 64))),
}


def _assert_within_ns_bounds(y, g, steps=5):
    """The NS policy: per-direction, subspace and acted errors, and the spectral bound (tolerances.py)."""
    e = ns_subspace_errors(y, ref_zeropower(g, steps), g, threshold=tol.NS_SUBSPACE_THRESHOLD)
    assert e["n_directions"] >= 1, e
    assert e["direction"] <= tol.NS_DIRECTION_ATOL, e
    assert e["subspace"] <= tol.NS_SUBSPACE_RTOL, e
    assert e["acted"] <= tol.NS_ACTED_RTOL, e
    if steps == 5:
        assert e["spectral_max"] <= tol.NS_SPECTRAL_MAX, e
    return e


@pytest.mark.parametrize("kind", sorted(INPUTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_zeropower_matches_reference_in_acted_subspace(rng, kind, dtype):
    g = INPUTS[kind](rng)
    gt = torch.from_numpy(g).to(dtype)
    y = zeropower(gt)
    assert y.dtype == torch.bfloat16 and y.shape == gt.shape
    # compare with the reference on exactly the input the impl saw (bf16 inputs are already rounded)
    e = _assert_within_ns_bounds(y, gt.double().numpy())
    # the observed errors sit well inside the bounds: a sanity margin for this machine kind (measured
    # max 0.042 acted on cond 1e6; 0.021 per direction on 64×64; tolerances.py table)
    assert e["acted"] < 0.06 and e["direction"] < 0.04, e


def test_whole_matrix_error_is_large_on_low_rank_input_but_subspace_error_small(rng):
    """Why the policy restricts to the acted-on subspace: correct bf16 code, rank 1, whole error O(1)."""
    g = INPUTS["rank_1"](rng)
    e = _assert_within_ns_bounds(zeropower(torch.from_numpy(g)), g)
    assert e["whole"] > 0.3 and e["subspace"] < 0.01, e


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 7])
def test_zeropower_other_step_counts(rng, steps):
    g = rng.standard_normal((3, 32, 56))
    y = zeropower(torch.from_numpy(g), steps)
    _assert_within_ns_bounds(y, g, steps)
    if steps == 0:  # X = G/(‖G‖_F + 1e-7) rounded to bf16 once: relative error <= u = 2^-8 per element,
        r = ref_zeropower(g, 0)  # plus the float32 normalisation (~1e-7 relative, covered by the 1e-4 slack)
        assert np.all(np.abs(y.double().numpy() - r) <= 2.0**-8 * (1 + 1e-4) * np.abs(r))


def test_four_steps_instead_of_five_is_rejected(rng):
    """The bounds are tight enough to reject a wrong step count (measured direction >= 0.39)."""
    g = rng.standard_normal((48, 80))
    e = ns_subspace_errors(zeropower(torch.from_numpy(g), 4), ref_zeropower(g, 5), g)
    assert e["direction"] > tol.NS_DIRECTION_ATOL


def test_huge_norm_does_not_overflow(rng):
    """‖G‖_F = 1e30, 1e36 (float32) and 1e300 (float64): no overflow to zeros (the seed returns zeros)."""
    g = rng.standard_normal((40, 64))
    for scale, dtype in [(1e30, torch.float32), (1e36, torch.float32), (1e300, torch.float64)]:
        y = zeropower(torch.from_numpy(g / np.linalg.norm(g) * scale).to(dtype))
        assert torch.isfinite(y.float()).all() and y.float().norm() > 1.0
        _assert_within_ns_bounds(y, g)


def test_tiny_norm_keeps_the_additive_eps(rng):
    """‖G‖_F = 1e-8: X = G/(1e-8 + 1e-7), not G/max(‖G‖, eps) — the normalised spectrum is 11× smaller."""
    g = rng.standard_normal((32, 48))
    g *= 1e-8 / np.linalg.norm(g)
    x0 = zeropower(torch.from_numpy(g), 0).double().numpy()
    assert abs(np.linalg.norm(x0) - 1e-8 / 1.1e-7) < 2.0**-8 * 1e-8 / 1.1e-7


def test_zero_and_empty_inputs():
    z = zeropower(torch.zeros(5, 7))
    assert z.dtype == torch.bfloat16 and torch.equal(z, torch.zeros(5, 7, dtype=torch.bfloat16))
    for shape in [(0, 4), (4, 0), (0, 3, 5)]:
        e = zeropower(torch.ones(shape))
        assert e.shape == shape and e.dtype == torch.bfloat16


@pytest.mark.parametrize("steps", [0, 5])
def test_never_writes_into_or_aliases_its_input(rng, steps):
    """pytorch #194664: a bf16 input must come back untouched and not shared with the output."""
    g = torch.from_numpy(rng.standard_normal((24, 40))).bfloat16()
    before = g.clone()
    y = zeropower(g, steps)
    assert torch.equal(g, before)
    assert y.untyped_storage().data_ptr() != g.untyped_storage().data_ptr()
    y.add_(1.0)
    assert torch.equal(g, before)


def test_batched_equals_per_matrix(rng):
    g = torch.from_numpy(rng.standard_normal((2, 3, 56, 40))).float()
    yb = zeropower(g)
    ys = torch.stack([torch.stack([zeropower(m) for m in row]) for row in g])
    # bitwise equal on this CPU build (addmm and baddbmm round alike); allow one bf16 rounding for backends
    # whose batched and unbatched GEMMs block differently
    assert (yb.float() - ys.float()).abs().max() <= 2.0**-8 * ys.float().abs().max()


@pytest.mark.parametrize("bad", [np.zeros(4), 3.0, [[1.0, 2.0]]])
def test_rejects_non_matrix_input(bad):
    g = torch.as_tensor(bad) if isinstance(bad, np.ndarray) else bad
    with pytest.raises(ValueError, match=r"^G must"):
        zeropower(g)


def test_rejects_bad_dtype_and_steps():
    with pytest.raises(ValueError, match=r"^G must have a real floating dtype"):
        zeropower(torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"^G must"):
        zeropower(torch.ones(3, 3, dtype=torch.complex64))
    for steps in (-1, 2.0, True, "5"):
        with pytest.raises(ValueError, match=r"^steps must be"):
            zeropower(torch.ones(3, 3), steps)


def _scalar_sensitivities(s: float) -> np.ndarray:
    """∂p⁵/∂εⱼ for the 16 roundings of the fused kernel (normalisation; A, B, X per step), central diff."""
    a, b, c = ns.NS_COEFFICIENTS

    def f(e):
        x = s * (1 + e[0])
        for k in range(5):
            A = x * x * (1 + e[1 + 3 * k])
            B = (b * A + c * A * A) * (1 + e[2 + 3 * k])
            x = (a * x + B * x) * (1 + e[3 + 3 * k])
        return x

    h = 1e-7
    out = np.empty(16)
    for j in range(16):
        e = np.zeros(16)
        e[j] = h
        fp = f(e)
        e[j] = -h
        out[j] = (fp - f(e)) / (2 * h)
    return out


def test_amplification_constants_are_recomputed():
    """The factors in tolerances.py: max over ŝ in [threshold, 1] of Σ|∂p⁵/∂ε| and sqrt(Σ(∂p⁵/∂ε)²)."""
    grid = np.geomspace(tol.NS_SUBSPACE_THRESHOLD, 1.0, 4000)
    sens = np.array([_scalar_sensitivities(s) for s in grid])
    worst, rms = np.abs(sens).sum(1).max(), np.sqrt((sens**2).sum(1)).max()
    assert worst <= tol.NS_AMPLIFICATION_WORST <= 1.01 * worst
    assert rms <= tol.NS_AMPLIFICATION_RMS <= 1.01 * rms
    p5 = ns_singular_value_map(np.linspace(0.0, 1.0, 200001))
    assert p5.max() <= tol.NS_P5_SUP <= p5.max() + 1e-5
    # below the threshold the map has not acted: response < 0.48 and slope approaching a⁵ ≈ 485
    assert ns_singular_value_map(np.array([tol.NS_SUBSPACE_THRESHOLD]))[0] < 0.48


# --- path choice: eager / torch.compile -------------------------------------------------------------


def test_compile_mode_env(monkeypatch):
    monkeypatch.delenv(ns.COMPILE_ENV_VAR, raising=False)
    assert ns.compile_mode() == "auto"
    monkeypatch.setenv(ns.COMPILE_ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match=ns.COMPILE_ENV_VAR):
        zeropower(torch.ones(2, 2))


def test_cpu_default_is_eager(monkeypatch, rng):
    monkeypatch.delenv(ns.COMPILE_ENV_VAR, raising=False)
    called = []
    monkeypatch.setattr(ns, "zeropower_compiled", lambda *a: called.append(1))
    g = torch.from_numpy(rng.standard_normal((8, 12)))
    assert torch.equal(zeropower(g), zeropower_eager(g)) and not called


def test_compiled_path_agrees_with_eager_on_cpu(monkeypatch, rng):
    """torch.compile (inductor, CPU) of the same kernel: ~20 s to compile here, then identical results."""
    g = torch.from_numpy(rng.standard_normal((2, 40, 24))).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a compile failure would fall back: make it fail
        yc = zeropower_compiled(g)
    ye = zeropower_eager(g)
    assert (yc.float() - ye.float()).abs().max() <= 2.0**-8 * ye.float().abs().max()
    _assert_within_ns_bounds(yc, g.double().numpy())
    monkeypatch.setenv(ns.COMPILE_ENV_VAR, "always")
    assert torch.equal(zeropower(g), yc)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch, rng):
    def broken(G, steps):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(ns, "_compiled", broken)
    monkeypatch.setattr(ns, "_compile_failed", False)
    g = torch.from_numpy(rng.standard_normal((6, 9)))
    with pytest.warns(RuntimeWarning, match="torch.compile of zeropower failed"):
        y = zeropower_compiled(g)
    assert torch.equal(y, zeropower_eager(g)) and ns._compile_failed


# --- CUDA (run on a lent GPU) ------------------------------------------------------------------------


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_cuda_zeropower_matches_reference(rng, kind):
    g = INPUTS[kind](rng)
    y = zeropower(torch.from_numpy(g).float().cuda())
    assert y.is_cuda and y.dtype == torch.bfloat16
    _assert_within_ns_bounds(y.cpu(), g)


@needs_cuda
@pytest.mark.cuda
def test_cuda_compiled_agrees_with_eager(rng):
    g = torch.from_numpy(rng.standard_normal((4, 96, 160))).float().cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yc = zeropower_compiled(g)
    ye = zeropower_eager(g)
    # inductor may fuse differently from eager cuBLAS: one bf16 rounding of the output apart, and both
    # inside the NS bounds
    assert (yc.float() - ye.float()).abs().max() <= 2.0**-7 * ye.float().abs().max()
    for y in (yc, ye):
        _assert_within_ns_bounds(y.cpu(), g.double().cpu().numpy())
