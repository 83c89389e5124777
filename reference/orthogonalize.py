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

__all__ = ["NS_COEFFICIENTS", "polar_factor", "zeropower", "ns_singular_value_map"]

_ZP = spec.hyper("S6.2")
_MAP = spec.hyper("S6.3")


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


def zeropower(G: object, steps: int = _ZP.default("steps"), *,
              coefficients: Sequence[float] = _ZP.default("coefficients"), eps: float = _ZP.default("eps")
              ) -> np.ndarray:
    """S6.2 Newton–Schulz quintic of the seed (``zeropower_via_newtonschulz5``) in float64.

    X = G, transposed when m > n; X ← X / (‖X‖_F + eps) per matrix; then ``steps`` times
    A = X Xᵀ; B = b·A + (c·A) A; X = a·X + B X; transposed back. Each singular value σ of G
    becomes p∘…∘p(σ / (‖G‖_F + eps)) with p(s) = a s + b s³ + c s⁵ (S6.3); singular vectors are kept.
    """
    g = as_float64_array("G", G, min_ndim=2)
    h = _ZP.check(steps=steps, coefficients=coefficients, eps=eps)
    steps, (a, b, c), eps = h["steps"], h["coefficients"], h["eps"]
    if g.size == 0:
        return np.zeros(g.shape)
    transposed = g.shape[-2] > g.shape[-1]
    # A C-contiguous copy, so a tall G and its (wide) transpose take bit-identical arithmetic.
    x = np.ascontiguousarray(_mT(g)) if transposed else g
    x = x / (_frobenius_norm(x) + eps)
    for _ in range(steps):
        A = x @ _mT(x)
        B = b * A + (c * A) @ A
        x = a * x + B @ x
    return np.ascontiguousarray(_mT(x) if transposed else x)


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
