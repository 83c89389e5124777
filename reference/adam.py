"""Adam and AdamW, float64 reference (SPEC S8).

State dict: ``{}`` before the first step, then ``{"step": t, "exp_avg": m, "exp_avg_sq": v}`` with
``t`` the number of steps taken (a Python int) and ``m``, ``v`` float64 arrays shaped like the parameter.
Bias corrections ``1 − βᵗ`` are Python float64 numbers; ε is added AFTER bias correction (textbook form,
the one torch.optim.Adam/AdamW compute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_int, require_same_shape

__all__ = ["adam", "adamw", "adam_denominator", "NANOCHAT_ADAMW"]

_ADAM = spec.hyper("S8.1")
_ADAMW = spec.hyper("S8.2")
_DENOM = spec.hyper("S8.3")

#: The AdamW hyperparameters nanochat's ``setup_optimizers`` passes (gpt.py; weight_decay from base_train):
#: S8.2's defaults.
NANOCHAT_ADAMW: dict[str, Any] = {k: _ADAMW.default(k) for k in ("betas", "eps", "weight_decay")}

_STATE_KEYS = frozenset({"step", "exp_avg", "exp_avg_sq"})


def _check_state(state: object, param: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Validate a state dict; return (step, exp_avg, exp_avg_sq) as copies (zeros for ``{}``)."""
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a dict; got {type(state).__name__}")
    if len(state) == 0:
        return 0, np.zeros_like(param), np.zeros_like(param)
    if set(state.keys()) != _STATE_KEYS:
        raise ValueError(f"state must be empty or have exactly the keys {sorted(_STATE_KEYS)}; "
                         f"got {sorted(map(str, state.keys()))}")
    step = require_int("state['step']", state["step"], minimum=0)
    m = as_float64_array("state['exp_avg']", state["exp_avg"])
    v = as_float64_array("state['exp_avg_sq']", state["exp_avg_sq"])
    require_same_shape("state['exp_avg']", m, "param", param)
    require_same_shape("state['exp_avg_sq']", v, "param", param)
    if np.any(v < 0.0):
        raise ValueError("state['exp_avg_sq'] must be >= 0 elementwise")
    return step, m, v


def adam_denominator(v_hat: Any, *, eps: float = _DENOM.default("eps"), bias_correction2: float = 1.0,
                     eps_placement: str = _DENOM.default("eps_placement"),
                     eps_root: float = _DENOM.default("eps_root")) -> np.ndarray:
    """S8.3 The denominator of Adam's step m̂/denominator, with v̂ = v/(1 − β₂ᵗ) and bc2 = ``bias_correction2``:
    ``"after"`` (torch, textbook) √(v̂ + eps_root) + ε; ``"before"`` (the seed's DistAdamW, Moonlight: ε added to
    √v, then the step is rescaled by √bc2) √(v̂ + eps_root) + ε/√bc2. eps_root (optax) defaults to 0."""
    h = _DENOM.check(eps=eps, eps_placement=eps_placement, eps_root=eps_root)
    root = np.sqrt(v_hat + h["eps_root"]) if h["eps_root"] else np.sqrt(v_hat)
    return root + (h["eps"] if h["eps_placement"] == "after" else h["eps"] / np.sqrt(bias_correction2))


def _adam_direction(grad: np.ndarray, state: Mapping, param: np.ndarray, b1: float, b2: float,
                    eps: float, eps_placement: str = "after", eps_root: float = 0.0) -> tuple[np.ndarray, dict]:
    """Moment update shared by S8.1/S8.2: return (m̂/denominator (S8.3), new state)."""
    step, m, v = _check_state(state, param)
    t = step + 1
    m = np.asarray(b1 * m + (1.0 - b1) * grad)
    with np.errstate(over="ignore"):
        v = np.asarray(b2 * v + (1.0 - b2) * (grad * grad))
    if not np.all(np.isfinite(v)):
        raise ValueError("grad must satisfy |grad| < ~1.3e154 so that grad**2 (and exp_avg_sq) stays finite")
    bc1 = 1.0 - b1**t  # Python float64 power
    bc2 = 1.0 - b2**t
    if eps_placement == "after" and eps_root == 0.0:
        direction = np.asarray((m / bc1) / (np.sqrt(v / bc2) + eps))
    else:
        direction = np.asarray((m / bc1) / adam_denominator(v / bc2, eps=eps, bias_correction2=bc2,
                                                             eps_placement=eps_placement, eps_root=eps_root))
    return direction, {"step": t, "exp_avg": m, "exp_avg_sq": v}


def adam(param: Any, grad: Any, state: Mapping, *, lr: float = _ADAM.default("lr"),
         betas: Sequence[float] = _ADAM.default("betas"), eps: float = _ADAM.default("eps"),
         weight_decay: float = _ADAM.default("weight_decay")) -> tuple[np.ndarray, dict]:
    """S8.1 Adam with optional coupled L2 weight decay (torch.optim.Adam form).

    g ← g + wd·θ; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²; t ← t + 1;
    θ ← θ − lr · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).

    Valid: lr >= 0, betas in [0, 1), eps > 0, weight_decay >= 0, grad shaped like param, finite inputs.
    Returns (new param, new state); inputs are not modified.
    """
    h = _ADAM.check(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    lr, (b1, b2), eps, wd = h["lr"], h["betas"], h["eps"], h["weight_decay"]
    p = as_float64_array("param", param)
    g = as_float64_array("grad", grad)
    require_same_shape("grad", g, "param", p)
    if wd != 0.0:
        g = np.asarray(g + wd * p)
    direction, new_state = _adam_direction(g, state, p, b1, b2, eps)
    return np.asarray(p - lr * direction), new_state


def adamw(param: Any, grad: Any, state: Mapping, *, lr: float = _ADAMW.default("lr"),
          betas: Sequence[float] = _ADAMW.default("betas"), eps: float = _ADAMW.default("eps"),
          weight_decay: float = _ADAMW.default("weight_decay"), lr_mul: float = _ADAMW.default("lr_mul"),
          wd_mul: float = _ADAMW.default("wd_mul"), eps_placement: str = _ADAMW.default("eps_placement"),
          eps_root: float = _ADAMW.default("eps_root"), param_muls: str = _ADAMW.default("param_muls")
          ) -> tuple[np.ndarray, dict]:
    """S8.2 AdamW with decoupled weight decay and nanochat's per-parameter lr_mul / wd_mul.

    η = lr·lr_mul; θ ← θ·(1 − η·wd·wd_mul) (before the moment update); m ← β1·m + (1−β1)·g;
    v ← β2·v + (1−β2)·g²; t ← t + 1; θ ← θ − η · (m/(1−β1ᵗ)) / (√(v/(1−β2ᵗ)) + ε).
    Options: the denominator per S8.3 (``eps_placement``, ``eps_root``); ``param_muls="ignore"`` takes lr_mul =
    wd_mul = 1 whatever the parameter carries (torch.optim.AdamW, nanochat master).

    Valid: lr, weight_decay, lr_mul, wd_mul >= 0; betas in [0, 1); eps > 0; grad shaped like param.
    Returns (new param, new state); inputs are not modified.
    """
    h = _ADAMW.check(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lr_mul=lr_mul, wd_mul=wd_mul,
                     eps_placement=eps_placement, eps_root=eps_root, param_muls=param_muls)
    lr, (b1, b2), eps, wd, lr_mul, wd_mul = (h[k] for k in ("lr", "betas", "eps", "weight_decay", "lr_mul", "wd_mul"))
    if h["param_muls"] == "ignore":
        lr_mul = wd_mul = 1.0
    p = as_float64_array("param", param)
    g = as_float64_array("grad", grad)
    require_same_shape("grad", g, "param", p)
    eta = lr * lr_mul
    if wd != 0.0:
        p = np.asarray(p * (1.0 - eta * wd * wd_mul))
    direction, new_state = _adam_direction(g, state, p, b1, b2, eps, h["eps_placement"], h["eps_root"])
    return np.asarray(p - eta * direction), new_state
