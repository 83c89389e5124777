"""Gradient-norm clipping over a list of gradients (SPEC S5), float64.

``grads`` is a list (or tuple) of float64-convertible arrays of any shapes, empty arrays and an
empty list included. Inputs are never modified: the clipped gradients are new arrays.

Both functions compute ``total = sqrt(sum_i ||g_i||_2^2)`` (every element of every array) and
differ only in the clipping rule:

* S5.1 ``clip_grad_norm``: clip iff ``total > max_norm``, coefficient ``max_norm / total``; a
  clipped result has norm ``max_norm`` (to rounding).
* S5.2 ``clip_grad_norm_torch`` (``torch.nn.utils.clip_grad_norm_``): ``coef = max_norm / (total + 1e-6)``,
  applied iff ``coef < 1``, i.e. iff ``total > max_norm - 1e-6``; a clipped result has norm
  ``max_norm * total / (total + 1e-6)``, below ``max_norm`` by the relative amount
  ``1e-6 / (total + 1e-6)`` (lost in rounding once ``total`` exceeds about 1e10). For
  ``max_norm <= 1e-6`` torch therefore rescales every gradient, however small.

At ``total == max_norm`` S5.1's coefficient would be exactly 1.0, so S5.1 returns its input unchanged
either way, while S5.2 scales it by ``max_norm / (max_norm + 1e-6)``. Non-finite entries raise
``ValueError`` (torch would propagate them), as does a total norm that overflows float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from optconform import spec

from ._checks import as_float64_array

__all__ = ["TORCH_CLIP_EPS", "clip_grad_norm", "clip_grad_norm_torch"]

TORCH_CLIP_EPS = spec.TORCH_CLIP_EPS  # the constant torch.nn.utils.clip_grad_norm_ adds to the total (S5.2)


_EXACT, _TORCH = spec.hyper("S5.1"), spec.hyper("S5.2")


def _validated(grads: object) -> list[np.ndarray]:
    if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence) or isinstance(grads, (str, bytes)):
        raise ValueError(f"grads must be a list or tuple of arrays; got {type(grads).__name__}")
    return [as_float64_array(f"grads[{i}]", g) for i, g in enumerate(grads)]


def _total_norm(arrays: list[np.ndarray]) -> float:
    """sqrt(sum of squares of every element), scaled by a power of two so it never over/underflows early."""
    amax = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    if amax == 0.0:
        return 0.0
    _, e = math.frexp(amax)  # amax = m * 2**e with m in [0.5, 1): scaling by 2**-e is exact
    sumsq = 0.0
    for a in arrays:
        if a.size:
            x = np.ldexp(a.ravel(), -e)
            sumsq += float(np.dot(x, x))
    try:
        return math.ldexp(math.sqrt(sumsq), e)
    except OverflowError:
        raise ValueError("grads must have a total 2-norm representable in float64 (< 1.8e308)") from None


def clip_grad_norm(grads: Sequence[np.ndarray], *, max_norm: float,
                   clip_rule: str = _EXACT.default("clip_rule")) -> tuple[list[np.ndarray], float]:
    """S5.1: ``total = sqrt(sum ||g||^2)``; if ``total > max_norm``: ``g <- g * (max_norm / total)``.

    Returns ``(clipped, total)`` with ``total`` the norm before clipping. ``max_norm`` finite and > 0.
    ``total == max_norm`` is not clipped (strict ``>``, as the seed). Option ``clip_rule="torch"``: S5.2's rule.
    """
    h = _EXACT.check(max_norm=max_norm, clip_rule=clip_rule)
    if h["clip_rule"] == "torch":
        return clip_grad_norm_torch(grads, max_norm=max_norm)
    max_norm = h["max_norm"]
    arrays = _validated(grads)
    total = _total_norm(arrays)
    if total > max_norm:
        coef = max_norm / total
        arrays = [a * coef for a in arrays]
    return arrays, total


def clip_grad_norm_torch(grads: Sequence[np.ndarray], *, max_norm: float) -> tuple[list[np.ndarray], float]:
    """S5.2: torch's rule: ``coef = max_norm / (total + 1e-6)``; ``g <- g * coef`` iff ``coef < 1``.

    Returns ``(clipped, total)`` with ``total`` the norm before clipping. ``max_norm`` finite and > 0.
    """
    max_norm = _TORCH.check(max_norm=max_norm)["max_norm"]
    arrays = _validated(grads)
    total = _total_norm(arrays)
    coef = max_norm / (total + TORCH_CLIP_EPS)
    if coef < 1.0:
        arrays = [a * coef for a in arrays]
    return arrays, total
