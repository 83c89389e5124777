"""S6 orthogonalization: polar_factor, zeropower, ns_singular_value_map against independent mathematics.

Independent references used here: scipy.linalg.polar, the Moore–Penrose formula G (GᵀG)^{+1/2} via eigh,
the defining properties of the polar decomposition, the quintic evaluated in power form on singular values
from the test's own SVD, and a direct NumPy transcription of the seed's torch code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from seed_code import seed_zeropower

from optconform.reference.orthogonalize import (
    NS_COEFFICIENTS,
    ns_singular_value_map,
    polar_factor,
    zeropower,
)

EPS64 = np.finfo(np.float64).eps
A_, B_, C_ = 3.4445, -4.7750, 2.0315  # the seed's coefficients, typed out again on purpose
NS_EPS = 1e-7  # the seed's normalisation term: X / (X.norm() + 1e-7)

# Rounding amplification of the float64 Newton–Schulz loop: on [0, 1.21] (where every iterate lives, S6.3)
# |p'(s)| = |a + 3b s² + 5c s⁴| <= 3.9, so an O(n·eps) rounding error made in one step grows by at most
# 3.9 per later step: after 5 steps <= 5 · 3.9⁵ · n · eps ≈ 5 · 900 · 64 · 1.1e-16 ≈ 3e-11 in spectral norm
# for n <= 64, below 2e-10 in Frobenius norm. Measured: <= 2e-13. NS_ABS_TOL is that bound rounded up.
NS_ABS_TOL = 1e-9


def _p5_power_form(s: np.ndarray, steps: int = 5, coeffs=(A_, B_, C_)) -> np.ndarray:
    """The scalar map written in power form (the reference uses Horner): independent evaluation."""
    a, b, c = coeffs
    s = np.asarray(s, dtype=np.float64)
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return s


def _ns_via_svd(G: np.ndarray, steps: int = 5, eps: float = NS_EPS, coeffs=(A_, B_, C_)) -> np.ndarray:
    """U diag(p^k(σ / (‖G‖_F + eps))) Vᵀ per matrix, from the test's own SVD and Frobenius norm."""
    u, s, vh = np.linalg.svd(G, full_matrices=False)
    fro = np.sqrt(np.sum(s**2, axis=-1, keepdims=True))  # ‖G‖_F = sqrt(Σσ²)
    mapped = _p5_power_form(s / (fro + eps), steps, coeffs)
    return (u * mapped[..., None, :]) @ vh




def _orthogonal(rng, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _with_spectrum(rng, m: int, n: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """G = U diag(s) Vᵀ with Haar-like U (m×k), V (n×k); returns (G, U, V)."""
    k = len(s)
    U = _orthogonal(rng, m)[:, :k]
    V = _orthogonal(rng, n)[:, :k]
    return (U * s) @ V.T, U, V


def _rel_fro(x, y) -> float:
    return float(np.linalg.norm(x - y) / np.linalg.norm(y))


def _cond_bound(G: np.ndarray) -> float:
    """Forward-error bound for the polar factor of a backward-stable SVD: ‖ΔQ‖_F <~ 2‖ΔG‖_2/(σ_k + σ_{k−1}),
    with ‖ΔG‖ <= c·max(m,n)·eps·σ_max; c = 10 covers LAPACK's constant (measured ratio <= 0.3)."""
    s = np.linalg.svd(G, compute_uv=False)
    m, n = G.shape
    denom = s[-1] + s[-2] if len(s) > 1 else s[-1]
    return 10 * 2 * max(m, n) * EPS64 * s[0] / denom * math.sqrt(min(m, n))


# ----------------------------------------------------------------------------------------------- S6.1 polar
SHAPES = [(16, 16), (40, 12), (12, 40), (1, 7), (7, 1), (64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_polar_matches_scipy_polar(rng, shape):
    G = rng.standard_normal(shape)
    Q = polar_factor(G)
    # scipy.linalg.polar(side="right"): G = U P with U (m×n) the same factor for tall, square and wide G.
    U_sp, _ = scipy.linalg.polar(G, side="right")
    assert np.linalg.norm(Q - U_sp) <= _cond_bound(G)  # tolerance: perturbation bound, see _cond_bound


@pytest.mark.parametrize("shape", SHAPES)
def test_polar_defining_properties_full_rank(rng, shape):
    G = rng.standard_normal(shape)
    Q = polar_factor(G)
    m, n = shape
    k = min(m, n)
    tol = 50 * max(m, n) * EPS64  # orthogonality / residual of a backward-stable SVD: c·max(m,n)·eps, c = 50
    gram = Q.T @ Q if m >= n else Q @ Q.T
    assert np.max(np.abs(gram - np.eye(k))) <= tol
    H = Q.T @ G  # n×n: symmetric positive semidefinite for the polar factor
    scale = np.linalg.norm(G, 2)
    assert np.max(np.abs(H - H.T)) <= tol * scale
    assert np.linalg.eigvalsh((H + H.T) / 2).min() >= -tol * scale
    assert np.max(np.abs(Q @ H - G)) <= tol * scale  # G = Q (QᵀG)
    assert np.max(np.abs(Q @ Q.T @ Q - Q)) <= tol  # partial isometry


def _moore_penrose_polar(G: np.ndarray, rank_rel_tol: float) -> np.ndarray:
    """Q = G (GᵀG)^{+1/2}, the pseudo-inverse square root from eigh (eigenvalues below tol·λ_max dropped)."""
    lam, V = np.linalg.eigh(G.T @ G)
    keep = lam > rank_rel_tol * lam.max()
    inv_sqrt = np.zeros_like(lam)
    inv_sqrt[keep] = 1.0 / np.sqrt(lam[keep])
    return G @ ((V * inv_sqrt) @ V.T)


@pytest.mark.parametrize("rank", [1, 8])
@pytest.mark.parametrize("shape", [(32, 32), (48, 20), (20, 48)])
def test_polar_rank_deficient_is_moore_penrose_partial_isometry(rng, rank, shape):
    m, n = shape
    s = rng.uniform(1.0, 2.0, size=rank)  # nonzero singular values well separated from 0
    G, _, _ = _with_spectrum(rng, m, n, s)
    Q = polar_factor(G)
    # eigh of GᵀG: nonzero eigenvalues are >= 1, the null ones O(eps·σ_max²); 1e-8 separates them.
    expected = _moore_penrose_polar(G, 1e-8)
    # tolerance: eigenvector error eps·λ_max/gap (gap >= 1), times √n, times ‖G‖ <= 2: <= 1e-12; margin 100
    assert np.max(np.abs(Q - expected)) <= 1e-10
    assert np.sum(Q * Q) == pytest.approx(rank, abs=1e-10)  # ‖Q‖_F² = rank, exactly the kept directions
    assert np.max(np.abs(Q @ Q.T @ Q - Q)) <= 1e-12  # partial isometry; 100·max(m,n)·eps
    H = Q.T @ G
    assert np.max(np.abs(H - H.T)) <= 1e-12  # QᵀG symmetric: 100·max(m,n)·eps·‖G‖, ‖G‖ <= 2


def test_polar_rank_tolerance_is_max_dim_times_eps_times_sigma_max(rng):
    m, n = 24, 16
    thr = max(m, n) * EPS64  # relative to σ_max = 1
    for tiny, expected_rank in [(100 * thr, 3), (0.01 * thr, 2)]:
        # computed singular values carry absolute error <~ eps·σ_max, far from thr·100 and thr·0.01
        G, U, V = _with_spectrum(rng, m, n, np.array([1.0, 0.5, tiny]))
        Q = polar_factor(G)
        assert np.sum(Q * Q) == pytest.approx(expected_rank, abs=1e-8)
    # The factor is max(m, n), not min(m, n): σ₃ = 16·eps lies between 4·eps and 64·eps for a 64×4 matrix
    # (and its transpose), a factor 4 from either threshold, far above the ~eps error of computed σ's.
    for shape in [(64, 4), (4, 64)]:
        G, U, V = _with_spectrum(rng, *shape, np.array([1.0, 0.5, 16 * EPS64]))
        assert np.sum(polar_factor(G) ** 2) == pytest.approx(2.0, abs=1e-8)


@pytest.mark.parametrize("cond", [1e6, 1e12])
def test_polar_ill_conditioned(rng, cond):
    n = 16
    s = np.geomspace(1.0, 1.0 / cond, n)
    G, U, V = _with_spectrum(rng, n, n, s)
    Q = polar_factor(G)
    # Full rank: 1/cond = 1e-12 > max(m,n)·eps = 3.6e-15, so every direction is kept -> orthogonal.
    assert np.max(np.abs(Q.T @ Q - np.eye(n))) <= 50 * n * EPS64  # orthogonality of LAPACK's U, V
    H = Q.T @ G
    assert np.max(np.abs(H - H.T)) <= 50 * n * EPS64  # ‖G‖ = 1
    assert np.linalg.eigvalsh((H + H.T) / 2).min() >= -50 * n * EPS64
    # Against the construction U Vᵀ: G itself carries rounding ~n·eps, which the polar factor amplifies by
    # up to 2/(σ_n + σ_{n−1}) ~ cond; bound 10·n·eps·cond (6e-9 at 1e6, 6e-3 at 1e12).
    assert np.linalg.norm(Q - U @ V.T) <= 10 * n * EPS64 * cond


@pytest.mark.parametrize("scale", [1e-300, 1e-30, 1e30, 1e300])
def test_polar_scale_invariant_tiny_and_huge(rng, scale):
    G = rng.standard_normal((20, 30))
    # Q(cG) = Q(G) exactly; the only difference is the rounding of c·G (<= eps relative per entry) amplified
    # by the polar condition number (_cond_bound).
    assert np.linalg.norm(polar_factor(scale * G) - polar_factor(G)) <= _cond_bound(G)


def test_polar_batched_equals_per_matrix_and_rank_tolerance_is_per_matrix(rng):
    G = rng.standard_normal((3, 2, 10, 6))
    G[1, 0] *= 1e-20  # a tiny matrix beside normal ones: its own σ_max sets its own tolerance
    G[2, 1] = 0.0
    Q = polar_factor(G)
    assert Q.shape == G.shape
    for i in range(3):
        for j in range(2):
            U_sp, _ = scipy.linalg.polar(G[i, j]) if np.any(G[i, j]) else (np.zeros((10, 6)), None)
            assert np.max(np.abs(Q[i, j] - U_sp)) <= 1e-12  # scipy agreement bound as in the 2-D tests
    assert np.sum(Q[1, 0] ** 2) == pytest.approx(6.0, abs=1e-10)  # full rank, not dropped by others' σ_max


def test_polar_zero_matrix_and_empty():
    assert np.array_equal(polar_factor(np.zeros((4, 3))), np.zeros((4, 3)))
    for shape in [(0, 3), (3, 0), (0, 0), (0, 4, 4), (2, 0, 5)]:
        out = polar_factor(np.zeros(shape))
        assert out.shape == shape and out.dtype == np.float64


def test_polar_does_not_mutate_input(rng):
    G = rng.standard_normal((5, 4))
    before = G.copy()
    polar_factor(G)
    assert np.array_equal(G, before)


@pytest.mark.parametrize("bad", [np.ones(3), 1.0, [[np.nan, 1.0]], [[np.inf, 1.0]], "abc"])
def test_polar_rejects_bad_G(bad):
    with pytest.raises(ValueError, match=r"^G "):
        polar_factor(bad)


# ----------------------------------------------------------------------------------------------- S6.2 NS
@pytest.mark.parametrize(
    "shape", [(16, 16), (48, 20), (20, 48), (3, 12, 7), (2, 2, 9, 9), (64, 64), (1, 9), (9, 1)]
)
def test_zeropower_is_scalar_map_on_singular_values(rng, shape):
    G = rng.standard_normal(shape)
    Y = zeropower(G)
    assert Y.shape == G.shape and Y.dtype == np.float64
    assert np.linalg.norm(Y - _ns_via_svd(G)) <= NS_ABS_TOL


@pytest.mark.parametrize("kind", ["rank1", "rank8", "cond1e6", "cond1e12"])
def test_zeropower_low_rank_and_ill_conditioned(rng, kind):
    m, n = 40, 24
    s = {
        "rank1": np.array([3.0]),
        "rank8": rng.uniform(0.5, 2.0, 8),
        "cond1e6": np.geomspace(1.0, 1e-6, n),
        "cond1e12": np.geomspace(1.0, 1e-12, n),
    }[kind]
    G, _, _ = _with_spectrum(rng, m, n, s)
    assert np.linalg.norm(zeropower(G) - _ns_via_svd(G)) <= NS_ABS_TOL


def test_zeropower_eps_term_is_present_exactly(rng):
    G = rng.standard_normal((12, 8))
    G *= 1e-8 / np.linalg.norm(G)  # ‖G‖_F = 1e-8, comparable with eps = 1e-7
    # steps = 0: the normalised input itself, G / (1e-8 + 1e-7) = G / 1.1e-7; rounding: a few ulps.
    X0 = zeropower(G, 0)
    np.testing.assert_allclose(X0, G / (1e-8 + 1e-7), rtol=8 * EPS64, atol=0)
    assert np.linalg.norm(X0) == pytest.approx(1.0 / 11.0, rel=8 * EPS64)
    # 5 steps: the scalar map on σ / 1.1e-7 (not on σ / 1e-8, which would give singular values near 1).
    Y = zeropower(G)
    assert np.linalg.norm(Y - _ns_via_svd(G)) <= NS_ABS_TOL
    assert np.linalg.norm(Y - _ns_via_svd(G, eps=0.0)) > 0.1
    # a different eps is honoured
    np.testing.assert_allclose(zeropower(G, 0, eps=1e-8), G / 2e-8, rtol=8 * EPS64, atol=0)


@pytest.mark.parametrize("norm", [1e-300, 1e-30, 1e30, 1e300])
def test_zeropower_tiny_and_huge_norms(rng, norm):
    G = rng.standard_normal((20, 12))
    G *= norm / np.linalg.norm(G)
    Y = zeropower(G)
    assert np.all(np.isfinite(Y))
    if norm < 1.0:
        # σ/(‖G‖+1e-7) <= 1e-23: the map is linear with slope a⁵ there (S6.3), so Y = a⁵ G / (‖G‖ + 1e-7)
        # up to rounding of the map (<= 1e-12 relative, see test_ns_map_slope_at_zero).
        expected = A_**5 * G / (norm + NS_EPS)
        assert np.linalg.norm(Y - expected) <= 1e-12 * np.linalg.norm(expected)
    else:
        # ‖G‖ + 1e-7 rounds to ‖G‖: the result is the scale-free map on σ/‖G‖, i.e. the eps-free NS5 of the
        # unit-norm G/‖G‖ (expected from the test's own SVD), to the NS rounding bound.
        assert np.linalg.norm(Y - _ns_via_svd(G / norm, eps=0.0)) <= NS_ABS_TOL


def test_zeropower_steps_zero_is_normalised_input(rng):
    G = rng.standard_normal((2, 7, 5))
    expected = G / (np.linalg.norm(G, axis=(-2, -1), keepdims=True) + NS_EPS)
    np.testing.assert_allclose(zeropower(G, 0), expected, rtol=8 * EPS64, atol=0)  # norm rounding: few ulps


@pytest.mark.parametrize("shape", [(30, 11), (11, 30), (17, 17), (4, 25, 9)])
def test_zeropower_matches_seed_transcription(rng, shape):
    G = rng.standard_normal(shape)
    for steps in (1, 2, 5, 7):
        # Only the Frobenius-norm rounding differs (the reference scales by max|G| first), a few ulps,
        # amplified by <= 3.9 per step: NS_ABS_TOL covers it.
        assert np.linalg.norm(zeropower(G, steps) - seed_zeropower(G, steps)) <= NS_ABS_TOL


@pytest.mark.parametrize("shape", [(40, 25), (3, 33, 8)])
def test_zeropower_transpose_rule_is_bit_exact(rng, shape):
    # The seed transposes a tall G and iterates on the small Gram matrix. In exact arithmetic that changes
    # nothing, so it is pinned by rounding: a tall G must produce exactly the bits of its wide transpose
    # (without the transpose the tall case would build the m×m Gram matrix and round differently).
    G = rng.standard_normal(shape)
    Gt = np.ascontiguousarray(np.swapaxes(G, -1, -2))
    assert np.array_equal(zeropower(G), np.swapaxes(zeropower(Gt), -1, -2))


def test_zeropower_normalises_each_matrix_of_a_batch_separately(rng):
    G = rng.standard_normal((3, 10, 6))
    G[0] *= 1e3
    G[2] *= 1e-3
    Y = zeropower(G)
    for i in range(3):
        assert np.linalg.norm(Y[i] - _ns_via_svd(G[i])) <= NS_ABS_TOL


def test_zeropower_wrong_coefficient_is_detected(rng):
    # The SVD check is sharp: a 1e-4 change in one coefficient moves the output far beyond tolerance.
    G = rng.standard_normal((16, 16))
    assert np.linalg.norm(_ns_via_svd(G, coeffs=(3.4446, B_, C_)) - _ns_via_svd(G)) > 100 * NS_ABS_TOL
    assert np.linalg.norm(zeropower(G) - _ns_via_svd(G)) <= NS_ABS_TOL


def test_zeropower_custom_cubic_coefficients_converge_to_polar(rng):
    # Cubic Newton–Schulz (1.5, −0.5, 0) converges quadratically to the polar factor for s ∈ (0, √3):
    # a general-coefficients check against an independent limit. Singular values in [1, 2] give normalised
    # s >= 1/(2√12) ≈ 0.14; 30 steps reach the fixed point 1 to full float64 precision.
    G, U, V = _with_spectrum(rng, 12, 8, rng.uniform(1.0, 2.0, 8))
    Y = zeropower(G, 30, coefficients=(1.5, -0.5, 0.0))
    assert np.max(np.abs(Y - U @ V.T)) <= 1e-13  # converged iteration: residual rounding ~ n·eps


def test_zeropower_zero_input_gives_zero_output_and_empty_is_empty():
    for shape in [(4, 3), (3, 4), (2, 5, 5)]:
        assert np.array_equal(zeropower(np.zeros(shape)), np.zeros(shape))
    for shape in [(0, 3), (3, 0), (0, 0), (0, 4, 4)]:
        out = zeropower(np.zeros(shape))
        assert out.shape == shape


def test_zeropower_does_not_mutate_input(rng):
    G = rng.standard_normal((9, 4))
    before = G.copy()
    zeropower(G)
    assert np.array_equal(G, before)


def test_ns5_is_not_the_polar_factor(rng):
    # S6.3 numbers: relative Frobenius gap ‖NS5(G) − polar(G)‖/‖polar(G)‖. Gaussian matrices: measured
    # 0.19–0.24 (10–20 seeds × 64², 128×256, 256×128, 128×512, 512×128, 256², 768²); band allows other seeds.
    for shape in [(64, 64), (128, 256), (256, 128)]:
        G = rng.standard_normal(shape)
        gap = _rel_fro(zeropower(G), polar_factor(G))
        assert 0.15 <= gap <= 0.30
    # Geometric spectrum 1 … 1/cond on 128×128: the gap depends on the spectrum only (not on U, V), so it is
    # pinned to 1e-3: sqrt(mean((p⁵(sᵢ) − 1)²)), measured 0.3555 (cond 1e3) and 0.7194 (cond 1e6).
    for cond, gap in [(1e3, 0.3555), (1e6, 0.7194)]:
        G, U, V = _with_spectrum(rng, 128, 128, np.geomspace(1.0, 1.0 / cond, 128))
        assert _rel_fro(zeropower(G), U @ V.T) == pytest.approx(gap, abs=1e-3)
        s = np.geomspace(1.0, 1.0 / cond, 128)
        independent = np.sqrt(np.mean((_p5_power_form(s / (np.sqrt(np.sum(s**2)) + NS_EPS)) - 1.0) ** 2))
        assert independent == pytest.approx(gap, abs=1e-3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"G": np.ones(3)}, "G"),
        ({"G": 2.0}, "G"),
        ({"G": [[np.nan]]}, "G"),
        ({"steps": -1}, "steps"),
        ({"steps": 2.0}, "steps"),
        ({"steps": True}, "steps"),
        ({"coefficients": (1.0, 2.0)}, "coefficients"),
        ({"coefficients": (1.0, 2.0, np.inf)}, "coefficients"),
        ({"coefficients": "abc"}, "coefficients"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-7}, "eps"),
        ({"eps": np.nan}, "eps"),
    ],
)
def test_zeropower_rejects_invalid_arguments(kwargs, name):
    args = {"G": np.ones((3, 2))} | kwargs
    G = args.pop("G")
    with pytest.raises(ValueError, match=rf"^{name} "):
        zeropower(G, **args)


# ----------------------------------------------------------------------------------------------- S6.3 map
def test_ns_map_matches_power_form_iteration():
    s = np.concatenate([np.geomspace(1e-12, 1.0, 5001), np.linspace(0.0, 1.2, 5001), -np.linspace(0, 1, 11)])
    # Horner vs power form differ by a few ulps per step, amplified by <= 3.9 per step: <= 1e-12 absolute.
    np.testing.assert_allclose(ns_singular_value_map(s), _p5_power_form(s), rtol=0, atol=1e-12)
    for steps in (0, 1, 3):
        expected = _p5_power_form(s, steps)
        np.testing.assert_allclose(ns_singular_value_map(s, steps), expected, rtol=0, atol=1e-12)
    assert np.array_equal(ns_singular_value_map(s, 0), s)
    assert NS_COEFFICIENTS == (A_, B_, C_)


def test_normalised_singular_values_lie_in_unit_interval(rng):
    # σ_max <= ‖G‖_F, so s = σ/(‖G‖_F + eps) ∈ [0, 1]: the domain on which S6.3's band is stated.
    for G in (rng.standard_normal((9, 9)), np.outer(rng.standard_normal(7), rng.standard_normal(5))):
        s = np.linalg.svd(G, compute_uv=False) / (np.linalg.norm(G) + NS_EPS)
        assert s.min() >= 0.0 and s.max() <= 1.0


def _dense_grid(lo: float) -> np.ndarray:
    # 2·10⁶ points, log- and linearly spaced: near an extremum the grid misses at most ½|f''|h² <~ 1e-8.
    return np.concatenate([np.geomspace(lo, 1.0, 1_000_001), np.linspace(lo, 1.0, 1_000_001)])


@pytest.mark.parametrize(
    "lo, band, extremes",
    [(1e-2, (0.6818, 1.1344), (0.681831, 1.134357)), (1e-3, (0.4705, 1.2024), (0.470544, 1.202369))],
)
def test_ns_map_output_band(lo, band, extremes):
    # S6.3: for normalised singular values in [lo, 1] the 5-step output lies in `band` (rounded outward to
    # 4 decimals), and the band is tight: the extremes (6 decimals; grid error <~ 1e-8) are reached.
    y = _p5_power_form(_dense_grid(lo))
    assert band[0] <= y.min() and y.max() <= band[1]
    assert y.min() == pytest.approx(extremes[0], abs=1e-6) and y.max() == pytest.approx(extremes[1], abs=1e-6)
    y_ref = ns_singular_value_map(_dense_grid(lo))
    assert band[0] <= y_ref.min() and y_ref.max() <= band[1]


def test_ns_map_whole_unit_interval_and_values():
    s = np.concatenate([np.geomspace(1e-300, 1.0, 200_001), np.linspace(0, 1, 200_001)[1:]])
    y = ns_singular_value_map(s)
    assert np.all(y > 0.0) and y.max() <= 1.2024  # 0 < p⁵(s) <= 1.2024 for every s in (0, 1]
    # pinned values (S6.3); power form evaluated independently, 1e-12 as above
    assert _p5_power_form(1.0, 1) == pytest.approx(0.701, abs=1e-12)  # p(1) = a + b + c
    assert float(ns_singular_value_map(1.0)) == pytest.approx(0.696436, abs=1e-6)
    assert float(ns_singular_value_map(1e-3)) == pytest.approx(0.470544, abs=1e-6)
    assert float(ns_singular_value_map(1e-2)) == pytest.approx(0.698917, abs=1e-6)


def test_ns_map_slope_at_zero():
    a5 = A_**5
    assert a5 == pytest.approx(484.876, abs=1e-3)
    s = np.geomspace(1e-300, 1e-4, 10_001)
    ratio = ns_singular_value_map(s) / (a5 * s)
    # For s <= 1e-4 the output is a⁵·s to within 0.03 % (measured 0.99970); the cubic term is ~b/a·(a⁴s)².
    assert ratio.min() >= 1 - 3e-4 and ratio.max() <= 1 + 1e-14  # upper: rounding of 5 products, < 1e-14
    assert float(ns_singular_value_map(1e-20) / 1e-20) == pytest.approx(a5, rel=1e-14)


def test_ns_map_is_odd_and_zero_at_zero():
    s = np.linspace(-1.2, 1.2, 1001)
    assert np.array_equal(ns_singular_value_map(-s), -ns_singular_value_map(s))
    assert ns_singular_value_map(0.0) == 0.0 and ns_singular_value_map(0.0).shape == ()  # scalar -> 0-d array
    assert ns_singular_value_map(np.zeros((2, 3))).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"s": [np.nan]}, "s"), ({"s": "x"}, "s"), ({"steps": -1}, "steps"), ({"steps": 1.5}, "steps"),
     ({"coefficients": (1.0,)}, "coefficients")],
)
def test_ns_map_rejects_invalid_arguments(kwargs, name):
    args = {"s": [0.5]} | kwargs
    s = args.pop("s")
    with pytest.raises(ValueError, match=rf"^{name} "):
        ns_singular_value_map(s, **args)
