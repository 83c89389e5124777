"""Learning-rate and momentum schedules (SPEC S4), float64, exactly as the seed writes them.

Every function returns a Python ``float`` computed with the seed's own operations in the seed's
order (Python ``float``/``int`` arithmetic, ``math.exp``), so a direct transcription of the seed
reproduces it bit for bit on the valid domain.

Integer counters (``step``, ``it``, ``num_iterations``, ``decay_steps``, ``ramp_steps``) must be
integers in ``[minimum, 2**53]``: above ``2**53`` they no longer convert to float64 exactly (and a
huge Python int makes ``float * int`` raise ``OverflowError``), so they are rejected up front.
"""

from __future__ import annotations

import math

from ._checks import require_int, require_nonnegative, require_positive, require_unit_interval

__all__ = [
    "MAX_COUNT",
    "constant_lr",
    "step_decay_lr",
    "exponential_decay_lr",
    "inverse_time_decay_lr",
    "lr_multiplier",
    "muon_momentum",
]

MAX_COUNT = 2**53
"""Largest accepted value of any integer counter: the largest n with every int <= n exact in float64."""


def _require_count(name: str, value: object, *, minimum: int) -> int:
    v = require_int(name, value, minimum=minimum)
    if v > MAX_COUNT:
        raise ValueError(f"{name} must be an integer in [{minimum}, 2**53]; got {value!r}")
    return v


def constant_lr(step: int, *, lr: float) -> float:
    """S4.1: ``lr`` at every ``step`` (``step`` integer >= 0, ``lr`` finite and > 0)."""
    _require_count("step", step, minimum=0)
    return require_positive("lr", lr)


def step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float:
    """S4.2: ``initial_lr * decay_rate ** (step // decay_steps)``.

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` in (0, 1] (a decay; 0 would
    make the schedule vanish after the first plateau), ``decay_steps`` integer >= 1.
    """
    step = _require_count("step", step, minimum=0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_unit_interval("decay_rate", decay_rate, closed_left=False)
    decay_steps = _require_count("decay_steps", decay_steps, minimum=1)
    return initial_lr * (decay_rate ** (step // decay_steps))


def exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.3: ``initial_lr * exp(-decay_rate * step)`` (``math.exp``; may underflow to 0.0).

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` finite and >= 0.
    """
    step = _require_count("step", step, minimum=0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_nonnegative("decay_rate", decay_rate)
    return initial_lr * math.exp(-decay_rate * step)


def inverse_time_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.4: ``initial_lr / (1 + decay_rate * step)``.

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` finite and >= 0.
    """
    step = _require_count("step", step, minimum=0)
    initial_lr = require_positive("initial_lr", initial_lr)
    decay_rate = require_nonnegative("decay_rate", decay_rate)
    return initial_lr / (1 + decay_rate * step)


def lr_multiplier(it: int, *, num_iterations: int, warmup_ratio: float = 0.0, warmdown_ratio: float = 0.2,
                  final_lr_frac: float = 0.0) -> float:
    """S4.5: nanochat's warmup / constant / warmdown multiplier, exactly the seed's ``get_lr_multiplier``.

    ``warmup_iters = round(warmup_ratio * num_iterations)`` and likewise ``warmdown_iters`` (Python
    ``round``: half to even, applied to the float64 product), then

    * ``it < warmup_iters``                    -> ``(it + 1) / warmup_iters``  (checked first: wins)
    * ``it <= num_iterations - warmdown_iters`` -> ``1.0``
    * otherwise, with ``progress = (num_iterations - it) / warmdown_iters``,
      ``progress * 1.0 + (1 - progress) * final_lr_frac``.

    Domain: ``num_iterations`` integer >= 0; ``0 <= it <= num_iterations``; ``warmup_ratio``,
    ``warmdown_ratio`` and ``final_lr_frac`` in [0, 1]. ``it > num_iterations`` raises: there the seed
    extrapolates the warmdown line below ``final_lr_frac`` (negative for ``final_lr_frac = 0``) and,
    when ``warmdown_iters == 0``, divides by zero.
    """
    num_iterations = _require_count("num_iterations", num_iterations, minimum=0)
    it = _require_count("it", it, minimum=0)
    if it > num_iterations:
        raise ValueError(f"it must be <= num_iterations ({num_iterations}); got {it!r}")
    warmup_ratio = require_unit_interval("warmup_ratio", warmup_ratio)
    warmdown_ratio = require_unit_interval("warmdown_ratio", warmdown_ratio)
    final_lr_frac = require_unit_interval("final_lr_frac", final_lr_frac)

    warmup_iters = round(warmup_ratio * num_iterations)
    warmdown_iters = round(warmdown_ratio * num_iterations)
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    elif it <= num_iterations - warmdown_iters:
        return 1.0
    else:
        progress = (num_iterations - it) / warmdown_iters
        return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it: int, *, start: float = 0.85, end: float = 0.95, ramp_steps: int = 300) -> float:
    """S4.6: ``frac = min(it / ramp_steps, 1)``; ``(1 - frac) * start + frac * end`` (seed get_muon_momentum).

    Domain: ``it`` integer >= 0; ``start`` and ``end`` in [0, 1) (they are momenta, S7.2);
    ``ramp_steps`` integer >= 1. Equals ``end`` exactly for ``it >= ramp_steps``.
    """
    it = _require_count("it", it, minimum=0)
    start = require_unit_interval("start", start, closed_right=False)
    end = require_unit_interval("end", end, closed_right=False)
    ramp_steps = _require_count("ramp_steps", ramp_steps, minimum=1)
    frac = min(it / ramp_steps, 1)
    return (1 - frac) * start + frac * end
