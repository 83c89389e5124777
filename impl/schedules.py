"""Learning-rate and momentum schedules (S4) for a training loop: plain Python floats.

Same signatures, domains and ValueErrors as ``optconform.reference.schedules``. A schedule value is a
scalar computed once per step, so these are float64 Python arithmetic (no tensors): assign the result
to ``group["lr"]`` / ``group["momentum"]``. Integer counters must lie in ``[minimum, 2**53]``.
"""

from __future__ import annotations

import math

from optconform.reference._checks import (
    require_int,
    require_nonnegative,
    require_positive,
    require_unit_interval,
)

__all__ = [
    "constant_lr",
    "step_decay_lr",
    "exponential_decay_lr",
    "inverse_time_decay_lr",
    "lr_multiplier",
    "muon_momentum",
]

_MAX_COUNT = 2**53  # every integer up to here converts to float64 exactly


def _count(name: str, value: object, minimum: int) -> int:
    v = require_int(name, value, minimum=minimum)
    if v > _MAX_COUNT:
        raise ValueError(f"{name} must be an integer in [{minimum}, 2**53]; got {value!r}")
    return v


def constant_lr(step: int, *, lr: float) -> float:
    """S4.1: ``lr`` for every step >= 0 (lr > 0)."""
    _count("step", step, 0)
    return require_positive("lr", lr)


def step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float:
    """S4.2: ``initial_lr · decay_rate^⌊step / decay_steps⌋``; decay_rate in (0, 1], decay_steps >= 1."""
    step = _count("step", step, 0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_unit_interval("decay_rate", decay_rate, closed_left=False)
    decay_steps = _count("decay_steps", decay_steps, 1)
    return initial_lr * decay_rate ** (step // decay_steps)


def exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.3: ``initial_lr · exp(−decay_rate · step)``; decay_rate >= 0 (may underflow to 0.0)."""
    step = _count("step", step, 0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_nonnegative("decay_rate", decay_rate)
    return initial_lr * math.exp(-decay_rate * step)


def inverse_time_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.4: ``initial_lr / (1 + decay_rate · step)``; decay_rate >= 0."""
    step = _count("step", step, 0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_nonnegative("decay_rate", decay_rate)
    return initial_lr / (1 + decay_rate * step)


def lr_multiplier(it: int, *, num_iterations: int, warmup_ratio: float = 0.0, warmdown_ratio: float = 0.2,
                  final_lr_frac: float = 0.0) -> float:
    """S4.5: nanochat's warmup → 1 → linear warmdown to ``final_lr_frac``.

    ``n_up = round(warmup_ratio·N)``, ``n_down = round(warmdown_ratio·N)`` (half to even). Warmup
    ``(it + 1)/n_up`` while ``it < n_up`` (wins on overlap); 1.0 while ``it <= N − n_down``; then
    ``p + (1 − p)·final_lr_frac`` with ``p = (N − it)/n_down``. Requires ``0 <= it <= N``.
    """
    n = _count("num_iterations", num_iterations, 0)
    it = _count("it", it, 0)
    if it > n:
        raise ValueError(f"it must be <= num_iterations ({n}); got {it!r}")
    warmup_ratio = require_unit_interval("warmup_ratio", warmup_ratio)
    warmdown_ratio = require_unit_interval("warmdown_ratio", warmdown_ratio)
    final_lr_frac = require_unit_interval("final_lr_frac", final_lr_frac)
    n_up = round(warmup_ratio * n)
    n_down = round(warmdown_ratio * n)
    if it < n_up:
        return (it + 1) / n_up
    if it <= n - n_down:
        return 1.0
    progress = (n - it) / n_down
    return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it: int, *, start: float = 0.85, end: float = 0.95, ramp_steps: int = 300) -> float:
    """S4.6: linear ramp ``(1 − f)·start + f·end`` with ``f = min(it / ramp_steps, 1)``; momenta in [0, 1)."""
    it = _count("it", it, 0)
    start = require_unit_interval("start", start, closed_right=False)
    end = require_unit_interval("end", end, closed_right=False)
    ramp_steps = _count("ramp_steps", ramp_steps, 1)
    frac = min(it / ramp_steps, 1)
    return (1 - frac) * start + frac * end
