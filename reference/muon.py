"""S7 Muon: momentum, Nesterov blend, orthogonalisation and aspect-ratio scale of the seed's ``Muon.step``."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_same_shape
from .orthogonalize import zeropower

__all__ = ["muon_aspect_scale", "muon"]

_H = spec.hyper("S7.2")


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """start + weight·(end − start), rounded the way torch.lerp evaluates it (exact at weight 0 and 1)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def muon_aspect_scale(shape: Sequence[int]) -> float:
    """S7.1 sqrt(max(1, rows / cols)) with rows, cols = shape[-2], shape[-1] (seed: ``max(1, r/c)**0.5``).

    ``shape`` needs at least two non-negative integer entries and ``shape[-1] >= 1``.
    """
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) < 2:
        raise ValueError(f"shape must be a sequence of at least 2 non-negative integers; got {shape!r}")
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"shape must be a sequence of at least 2 non-negative integers; got {shape!r}")
    rows, cols = int(shape[-2]), int(shape[-1])
    if cols < 1:
        raise ValueError(f"shape must have shape[-1] >= 1 (rows/cols is undefined otherwise); got {shape!r}")
    return max(1.0, rows / cols) ** 0.5


def muon(param: object, grad: object, state: Mapping[str, object], *, lr: float = _H.default("lr"),
         momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov"),
         ns_steps: int = _H.default("ns_steps"),
         orthogonalize: Callable[[np.ndarray, int], np.ndarray] = zeropower) -> tuple[np.ndarray, dict]:
    """S7.2 One Muon step on a ``(..., rows, cols)`` parameter (leading dimensions are a batch).

    buf ← lerp(buf, g, 1 − β) = buf + (1 − β)(g − buf)   (buf starts at zeros);
    u = lerp(g, buf, β) if nesterov else buf;   O = orthogonalize(u, ns_steps);
    θ ← θ − lr · sqrt(max(1, rows/cols)) · O.
    ``state`` is ``{}`` before the first step and ``{"momentum_buffer": buf}`` after; inputs are not modified.
    """
    p = as_float64_array("param", param, min_ndim=2)
    g = as_float64_array("grad", grad)
    require_same_shape("grad", g, "param", p)
    h = _H.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
    lr, beta, nesterov, ns_steps = h["lr"], h["momentum"], h["nesterov"], h["ns_steps"]
    if not callable(orthogonalize):
        raise ValueError(f"orthogonalize must be a callable (matrix, steps) -> matrix; got {orthogonalize!r}")
    if not isinstance(state, Mapping) or set(state) - {"momentum_buffer"}:
        raise ValueError(f"state must be a mapping with no key other than 'momentum_buffer'; got {state!r}")
    if "momentum_buffer" in state:
        buf = as_float64_array("state['momentum_buffer']", state["momentum_buffer"])
        require_same_shape("state['momentum_buffer']", buf, "param", p)
    else:
        buf = np.zeros(p.shape)

    buf = _lerp(buf, g, 1.0 - beta)
    u = _lerp(g, buf, beta) if nesterov else buf.copy()
    if p.size == 0:  # nothing to update; the aspect scale of a (.., r, 0) matrix is undefined
        return p, {"momentum_buffer": buf}
    o = np.asarray(orthogonalize(u, ns_steps), dtype=np.float64)
    if o.shape != p.shape:
        raise ValueError(f"orthogonalize must return an array of shape {p.shape}; got {o.shape}")
    return p - (lr * muon_aspect_scale(p.shape)) * o, {"momentum_buffer": buf}
