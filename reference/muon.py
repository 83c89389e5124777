"""S7 Muon: momentum, Nesterov blend, orthogonalisation and aspect-ratio scale of the seed's ``Muon.step``."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_same_shape
from .orthogonalize import equilibrate_rows, zeropower

__all__ = ["muon_aspect_scale", "muon_momentum_step", "normuon", "muon_plus", "muon_weight_decay", "muon"]

_H = spec.hyper("S7.2")
_OPTIONS = tuple(h.name for h in _H if h.name not in ("lr", "momentum", "nesterov", "ns_steps"))
_NS_OPTIONS = ("rows", "row_cut", "normalisation", "safety")
#: S7.4 / S7.5 floors (nanochat master's clamp_min values)
NORMUON_FLOOR, NORMUON_NORM_FLOOR, MUON_PLUS_FLOOR = 1e-10, 1e-10, 1e-6


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """start + weight·(end − start), rounded the way torch.lerp evaluates it (exact at weight 0 and 1)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1.0 - weight)


def muon_aspect_scale(shape: Sequence[int], lr_scale: str = _H.default("lr_scale")) -> float:
    """S7.1 The shape factor of the update: ``"original"`` sqrt(max(1, rows/cols)) (seed: ``max(1, r/c)**0.5``);
    ``"match_rms_adamw"`` 0.2·sqrt(max(rows, cols)) (torch.optim.Muon's option, Moonlight), rows, cols =
    shape[-2], shape[-1].

    ``shape`` needs at least two non-negative integer entries and ``shape[-1] >= 1``.
    """
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) < 2:
        raise ValueError(f"shape must be a sequence of at least 2 non-negative integers; got {shape!r}")
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"shape must be a sequence of at least 2 non-negative integers; got {shape!r}")
    lr_scale = _H["lr_scale"].check(lr_scale)
    rows, cols = int(shape[-2]), int(shape[-1])
    if cols < 1:
        raise ValueError(f"shape must have shape[-1] >= 1 (rows/cols is undefined otherwise); got {shape!r}")
    if lr_scale == "match_rms_adamw":
        return 0.2 * max(rows, cols) ** 0.5
    return max(1.0, rows / cols) ** 0.5


def muon_momentum_step(buf: np.ndarray, grad: np.ndarray, *, momentum: float = _H.default("momentum"),
                       nesterov: bool = _H.default("nesterov"), momentum_form: str = _H.default("momentum_form"),
                       step: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
    """S7.3 The momentum buffer and the Newton–Schulz input u of step ``step`` (1, 2, …), β = ``momentum``:

    ``"ema"`` (seed)            buf ← lerp(buf, g, 1 − β);  u = lerp(g, buf, β) if nesterov else buf;
    ``"sum"`` (Moonlight)       buf ← β·buf + g;            u = g + β·buf if nesterov else buf;
    ``"bias_corrected"`` (optax) buf ← β·buf + (1 − β)·g;   u = β·buf/(1 − β^(t+1)) + (1 − β)·g/(1 − βᵗ)
                                 if nesterov else buf/(1 − βᵗ).
    Returns (buf, u); the inputs are not modified."""
    h = _H.check(momentum=momentum, nesterov=nesterov, momentum_form=momentum_form)
    beta, nesterov, form = h["momentum"], h["nesterov"], h["momentum_form"]
    if form == "sum":
        buf = beta * buf + grad
        return buf, (grad + beta * buf if nesterov else buf.copy())
    if form == "bias_corrected":
        buf = beta * buf + (1.0 - beta) * grad
        if nesterov:
            return buf, beta * buf / (1.0 - beta ** (step + 1)) + (1.0 - beta) * grad / (1.0 - beta**step)
        return buf, buf / (1.0 - beta**step)
    buf = _lerp(buf, grad, 1.0 - beta)
    return buf, (_lerp(grad, buf, beta) if nesterov else buf.copy())


def _fro(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(x * x, axis=(-2, -1), keepdims=True))


def normuon(O: np.ndarray, v: np.ndarray | None, *, normuon_beta2: float | None = _H.default("normuon_beta2")
            ) -> tuple[np.ndarray, np.ndarray]:
    """S7.4 NorMuon: per-row (rows >= cols) or per-column (rows < cols) mean square q of O;
    v ← lerp(v, q, 1 − β₂) (v = 0 before the first step); D = O/sqrt(max(v, 1e-10)), rescaled so ‖D‖_F = ‖O‖_F
    (divided by max(‖O/sqrt(v)‖_F, 1e-10)). Returns (D, v)."""
    beta2 = _H["normuon_beta2"].check(normuon_beta2)
    if beta2 is None:
        raise ValueError("normuon_beta2 must be a number in (0, 1) for NorMuon; got None")
    axis = -1 if O.shape[-2] >= O.shape[-1] else -2
    q = np.mean(O * O, axis=axis, keepdims=True)
    v = np.zeros(q.shape) if v is None else v
    v = _lerp(v, q, 1.0 - beta2)
    step = 1.0 / np.sqrt(np.maximum(v, NORMUON_FLOOR))
    scaled = O * step
    return scaled * (_fro(O) / np.maximum(_fro(scaled), NORMUON_NORM_FLOOR)), v


def muon_plus(O: np.ndarray) -> np.ndarray:
    """S7.5 Muon+: O·sqrt(min(rows, cols))/max(‖O‖_F, 1e-6) per matrix (the Frobenius norm of a semi-orthogonal
    matrix)."""
    return O * (min(O.shape[-2], O.shape[-1]) ** 0.5 / np.maximum(_fro(O), MUON_PLUS_FLOOR))


_muon_plus = muon_plus  # S7.5 under a name the option ``muon_plus`` of ``muon`` does not shadow


def muon_weight_decay(param: np.ndarray, update: np.ndarray, *, lr: float,
                      weight_decay: float = _H.default("weight_decay"),
                      weight_decay_mode: str = _H.default("weight_decay_mode")) -> np.ndarray:
    """S7.6 The decayed parameter θ − η·λ·θ·m: m = 1 (``"decoupled"``) or m = [update·θ >= 0] elementwise
    (``"cautious"``), θ the parameter before the step, η the decay's lr (S7.2 says which)."""
    h = _H.check(lr=lr, weight_decay=weight_decay, weight_decay_mode=weight_decay_mode)
    if h["weight_decay"] == 0.0:
        return param
    mask = 1.0 if h["weight_decay_mode"] == "decoupled" else (update * param >= 0.0).astype(np.float64)
    return param - h["lr"] * h["weight_decay"] * param * mask


def muon(param: object, grad: object, state: Mapping[str, object], *, lr: float = _H.default("lr"),
         momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov"),
         ns_steps: int = _H.default("ns_steps"),
         orthogonalize: Callable[[np.ndarray, int], np.ndarray] | None = None,
         ns_eps: float = _H.default("ns_eps"), rows: str | None = _H.default("rows"),
         row_cut: str = _H.default("row_cut"), normalisation: str = _H.default("normalisation"),
         safety: float = _H.default("safety"), momentum_form: str = _H.default("momentum_form"),
         muoneq: bool = _H.default("muoneq"), muon_plus: bool = _H.default("muon_plus"),
         normuon_beta2: float | None = _H.default("normuon_beta2"), lr_scale: str = _H.default("lr_scale"),
         weight_decay: float = _H.default("weight_decay"), weight_decay_lr: str = _H.default("weight_decay_lr"),
         weight_decay_mode: str = _H.default("weight_decay_mode")) -> tuple[np.ndarray, dict]:
    """S7.2 One Muon step on a ``(..., rows, cols)`` parameter (leading dimensions are a batch), composed of the
    variant clauses; ``options`` (SPEC "Variant options") default to the seed's, where it reads:

    buf ← lerp(buf, g, 1 − β)   (buf starts at zeros);   u = lerp(g, buf, β) if nesterov else buf;
    O = orthogonalize(u, ns_steps);   θ ← θ − lr · sqrt(max(1, rows/cols)) · O.

    In general: (buf, u) = S7.3; u ← S6.4(u) if muoneq; O = S6.2 zeropower(u, ns_steps, eps=ns_eps, rows, row_cut,
    normalisation, safety) (or ``orthogonalize(u, ns_steps)``); O ← S7.5(O) if muon_plus; O ← S7.4(O) if
    normuon_beta2; s = S7.1(shape, lr_scale); θ ← S7.6(θ, O, lr·(s if weight_decay_lr == "adjusted" else 1)) − lr·s·O.
    ``state``: ``{}`` before the first step, then ``momentum_buffer`` (plus ``step`` for ``bias_corrected``, and
    ``second_momentum_buffer`` for NorMuon); inputs are not modified.
    """
    p = as_float64_array("param", param, min_ndim=2)
    g = as_float64_array("grad", grad)
    require_same_shape("grad", g, "param", p)
    h = _H.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                 row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                 muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                 weight_decay=weight_decay, weight_decay_lr=weight_decay_lr, weight_decay_mode=weight_decay_mode)
    o_ = {k: h[k] for k in _OPTIONS}
    lr, beta, nesterov, ns_steps = h["lr"], h["momentum"], h["nesterov"], h["ns_steps"]
    if orthogonalize is not None and not callable(orthogonalize):
        raise ValueError(f"orthogonalize must be a callable (matrix, steps) -> matrix; got {orthogonalize!r}")
    keys = {"momentum_buffer"} | ({"step"} if o_["momentum_form"] == "bias_corrected" else set()) | (
        {"second_momentum_buffer"} if o_["normuon_beta2"] is not None else set())
    if not isinstance(state, Mapping) or set(state) - keys:
        raise ValueError(f"state must be a mapping with no key other than {sorted(keys)}; got {state!r}")
    if "momentum_buffer" in state:
        buf = as_float64_array("state['momentum_buffer']", state["momentum_buffer"])
        require_same_shape("state['momentum_buffer']", buf, "param", p)
    else:
        buf = np.zeros(p.shape)
    step = int(state.get("step", 0)) + 1
    buf, u = muon_momentum_step(buf, g, momentum=beta, nesterov=nesterov, momentum_form=o_["momentum_form"],
                                step=step)
    new_state: dict = {"momentum_buffer": buf}
    if o_["momentum_form"] == "bias_corrected":
        new_state["step"] = step
    if p.size == 0:  # nothing to update; the aspect scale of a (.., r, 0) matrix is undefined
        return p, new_state
    if o_["muoneq"]:
        u = equilibrate_rows(u)
    if orthogonalize is None:
        o = zeropower(u, ns_steps, eps=o_["ns_eps"], **{k: o_[k] for k in _NS_OPTIONS})
    else:
        o = np.asarray(orthogonalize(u, ns_steps), dtype=np.float64)
    if o.shape != p.shape:
        raise ValueError(f"orthogonalize must return an array of shape {p.shape}; got {o.shape}")
    if o_["muon_plus"]:
        o = _muon_plus(o)
    if o_["normuon_beta2"] is not None:
        o, new_state["second_momentum_buffer"] = normuon(o, state.get("second_momentum_buffer"),
                                                         normuon_beta2=o_["normuon_beta2"])
    scale = muon_aspect_scale(p.shape, o_["lr_scale"])
    if o_["weight_decay"] != 0.0:
        decay_lr = lr * scale if o_["weight_decay_lr"] == "adjusted" else lr
        p = muon_weight_decay(p, o, lr=decay_lr, weight_decay=o_["weight_decay"],
                              weight_decay_mode=o_["weight_decay_mode"])
    return p - (lr * scale) * o, new_state
