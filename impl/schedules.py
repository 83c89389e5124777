"""Learning-rate and momentum schedules (S4) for a training loop: plain Python floats.

Same signatures, domains and ValueErrors as ``optconform.reference.schedules``. A schedule value is a
scalar computed once per step, so these are float64 Python arithmetic (no tensors): assign the result
to ``group["lr"]`` / ``group["momentum"]``. Integer counters must lie in ``[minimum, 2**53]``.
"""

from __future__ import annotations

import math

from optconform import spec

__all__ = [
    "constant_lr",
    "step_decay_lr",
    "exponential_decay_lr",
    "inverse_time_decay_lr",
    "lr_multiplier",
    "muon_momentum",
]

_CONSTANT, _STEP_DECAY, _EXP_DECAY, _INV_DECAY, _LR_MULT, _MUON_MOM = (
    spec.hyper(c) for c in ("S4.1", "S4.2", "S4.3", "S4.4", "S4.5", "S4.6"))


def constant_lr(step: int, *, lr: float) -> float:
    """S4.1: ``lr`` for every step >= 0 (lr > 0)."""
    return _CONSTANT.check(step=step, lr=lr)["lr"]


def step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float:
    """S4.2: ``initial_lr · decay_rate^⌊step / decay_steps⌋``; decay_rate in (0, 1], decay_steps >= 1."""
    step, initial_lr, decay_rate, decay_steps = _STEP_DECAY.check(
        step=step, initial_lr=initial_lr, decay_rate=decay_rate, decay_steps=decay_steps).values()
    return initial_lr * decay_rate ** (step // decay_steps)


def exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.3: ``initial_lr · exp(−decay_rate · step)``; decay_rate >= 0 (may underflow to 0.0)."""
    step, initial_lr, decay_rate = _EXP_DECAY.check(step=step, initial_lr=initial_lr, decay_rate=decay_rate).values()
    return initial_lr * math.exp(-decay_rate * step)


def inverse_time_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.4: ``initial_lr / (1 + decay_rate · step)``; decay_rate >= 0."""
    step, initial_lr, decay_rate = _INV_DECAY.check(step=step, initial_lr=initial_lr, decay_rate=decay_rate).values()
    return initial_lr / (1 + decay_rate * step)


def lr_multiplier(it: int, *, num_iterations: int, warmup_ratio: float = _LR_MULT.default("warmup_ratio"),
                  warmdown_ratio: float = _LR_MULT.default("warmdown_ratio"),
                  final_lr_frac: float = _LR_MULT.default("final_lr_frac")) -> float:
    """S4.5: nanochat's warmup → 1 → linear warmdown to ``final_lr_frac``.

    ``n_up = round(warmup_ratio·N)``, ``n_down = round(warmdown_ratio·N)`` (half to even). Warmup
    ``(it + 1)/n_up`` while ``it < n_up`` (wins on overlap); 1.0 while ``it <= N − n_down``; then
    ``p + (1 − p)·final_lr_frac`` with ``p = (N − it)/n_down``. Requires ``0 <= it <= N``.
    """
    n, it, warmup_ratio, warmdown_ratio, final_lr_frac = _LR_MULT.check(
        num_iterations=num_iterations, it=it, warmup_ratio=warmup_ratio, warmdown_ratio=warmdown_ratio,
        final_lr_frac=final_lr_frac).values()
    n_up = round(warmup_ratio * n)
    n_down = round(warmdown_ratio * n)
    if it < n_up:
        return (it + 1) / n_up
    if it <= n - n_down:
        return 1.0
    progress = (n - it) / n_down
    return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it: int, *, start: float = _MUON_MOM.default("start"), end: float = _MUON_MOM.default("end"),
                  ramp_steps: int = _MUON_MOM.default("ramp_steps")) -> float:
    """S4.6: linear ramp ``(1 − f)·start + f·end`` with ``f = min(it / ramp_steps, 1)``; momenta in [0, 1)."""
    it, start, end, ramp_steps = _MUON_MOM.check(it=it, start=start, end=end, ramp_steps=ramp_steps).values()
    frac = min(it / ramp_steps, 1)
    return (1 - frac) * start + frac * end
