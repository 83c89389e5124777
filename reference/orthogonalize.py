"""S6 Orthogonalization: the exact polar factor and the Newton–Schulz quintic Muon uses instead.

All three functions work in float64, never modify their inputs, and treat every leading
dimension of a ``(..., m, n)`` array as a batch of independent matrices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optconform import spec
from optconform.spec import NS_COEFFICIENTS

from ._checks import as_float64_array

__all__ = ["NS_COEFFICIENTS", "polar_factor", "zeropower", "ns_singular_value_map", "ns_row_list",
           "equilibrate_rows"]

_ZP = spec.hyper("S6.2")
_MAP = spec.hyper("S6.3")
#: S6.4's floor on a row norm (nanochat master's ``clamp_min(1e-6)``)
EQUILIBRATE_FLOOR = 1e-6


def _mT(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def polar_factor(G: object) -> np.ndarray:
    """S6.1 The orthogonal polar factor Q = U_r V_rᵀ of each matrix G = U Σ Vᵀ in ``(..., m, n)``.

    Only singular values σ > max(m, n)·eps64·σ_max (per matrix) count, so a rank-deficient G gives
    the partial isometry Q = G (GᵀG)^{+1/2}; the zero matrix gives zeros; empty input gives an
    empty array of the same shape. Q is the same for G and c·G for every c > 0.
    """
    g = as_float64_array("G", G, min_ndim=2)
    if g.size == 0:
        return np.zeros(g.shape)
    m, n = g.shape[-2:]
    u, s, vh = np.linalg.svd(g, full_matrices=False)
    tol = max(m, n) * np.finfo(np.float64).eps * s[..., :1]
    keep = (s > tol).astype(np.float64)
    return (u * keep[..., None, :]) @ vh


def _frobenius_norm(x: np.ndarray) -> np.ndarray:
    """‖X‖_F over the last two axes (keepdims), scaled by max|X| so it cannot overflow or underflow."""
    scale = np.max(np.abs(x), axis=(-2, -1), keepdims=True)
    safe = np.where(scale > 0.0, scale, 1.0)
    return scale * np.sqrt(np.sum((x / safe) ** 2, axis=(-2, -1), keepdims=True))


def ns_row_list(steps: int, coefficients: Sequence[float] = _ZP.default("coefficients"), *,
                rows: str | None = _ZP.default("rows"), row_cut: str = _ZP.default("row_cut")
                ) -> tuple[tuple[float, float, float], ...]:
    """S6.2 The (a, b, c) row of each iteration: ``coefficients`` every iteration, or the named ``rows``
    (``spec.NS_ROWS``) in order; past their end the last row again (``row_cut="repeat_last"``) or no further
    iteration (``"truncate"``, nanochat master's ``rows[:ns_steps]``)."""
    h = _ZP.check(steps=steps, coefficients=coefficients, rows=rows, row_cut=row_cut)
    if h["rows"] is None:
        return (h["coefficients"],) * h["steps"]
    named = spec.NS_ROWS[h["rows"]]
    if h["row_cut"] == "truncate":
        return named[:h["steps"]]
    return tuple(named[min(k, len(named) - 1)] for k in range(h["steps"]))


def zeropower(G: object, steps: int = _ZP.default("steps"), *,
              coefficients: Sequence[float] = _ZP.default("coefficients"), eps: float = _ZP.default("eps"),
              rows: str | None = _ZP.default("rows"), row_cut: str = _ZP.default("row_cut"),
              normalisation: str = _ZP.default("normalisation"), safety: float = _ZP.default("safety")
              ) -> np.ndarray:
    """S6.2 Newton–Schulz quintic of the seed (``zeropower_via_newtonschulz5``) in float64.

    X = G, transposed when m > n; X ← X / (safety·‖X‖_F + eps) per matrix (``normalisation="clamp"``:
    X / max(‖X‖_F, eps)); then for each row (a, b, c) of ``ns_row_list`` A = X Xᵀ; B = b·A + (c·A) A;
    X = a·X + B X; transposed back. Each singular value σ of G becomes p_k∘…∘p_1(σ / (safety·‖G‖_F + eps)) with
    p(s) = a s + b s³ + c s⁵ (S6.3); singular vectors are kept. Defaults: the seed's.
    """
    g = as_float64_array("G", G, min_ndim=2)
    h = _ZP.check(steps=steps, coefficients=coefficients, eps=eps, normalisation=normalisation, safety=safety)
    row_list = ns_row_list(steps, coefficients, rows=rows, row_cut=row_cut)
    eps, safety = h["eps"], h["safety"]
    if g.size == 0:
        return np.zeros(g.shape)
    transposed = g.shape[-2] > g.shape[-1]
    # A C-contiguous copy, so a tall G and its (wide) transpose take bit-identical arithmetic.
    x = np.ascontiguousarray(_mT(g)) if transposed else g
    norm = _frobenius_norm(x)
    if h["normalisation"] == "clamp":
        x = x / np.maximum(norm, eps)
    else:
        x = x / ((safety * norm if safety != 1.0 else norm) + eps)
    for a, b, c in row_list:
        A = x @ _mT(x)
        B = b * A + (c * A) @ A
        x = a * x + B @ x
    return np.ascontiguousarray(_mT(x) if transposed else x)


def equilibrate_rows(G: object) -> np.ndarray:
    """S6.4 MuonEq: every row of each matrix rescaled to the mean row norm, X_i ← X_i·(‖X‖_F/√rows)/max(‖X_i‖, 1e-6).

    A zero row stays zero; ‖X‖_F is unchanged where no row norm is below the floor. (nanochat master applies it to
    the Nesterov input before Newton–Schulz's normalisation.)"""
    g = as_float64_array("G", G, min_ndim=2)
    if g.size == 0:
        return np.zeros(g.shape)
    target = _frobenius_norm(g) / np.sqrt(g.shape[-2])
    scale = np.max(np.abs(g), axis=-1, keepdims=True)
    safe = np.where(scale > 0.0, scale, 1.0)
    row = scale * np.sqrt(np.sum((g / safe) ** 2, axis=-1, keepdims=True))
    return g * (target / np.maximum(row, EQUILIBRATE_FLOOR))


def ns_singular_value_map(s: object, steps: int = _MAP.default("steps"), *,
                          coefficients: Sequence[float] = _MAP.default("coefficients")) -> np.ndarray:
    """S6.3 The scalar map p∘…∘p (``steps`` times), p(s) = a s + b s³ + c s⁵, elementwise on ``s``.

    This is what ``zeropower`` does to each normalised singular value s = σ / (‖G‖_F + eps).
    """
    x = as_float64_array("s", s)
    h = _MAP.check(steps=steps, coefficients=coefficients)
    steps, (a, b, c) = h["steps"], h["coefficients"]
    for _ in range(steps):
        x2 = x * x
        x = x * (a + x2 * (b + c * x2))
    return x
