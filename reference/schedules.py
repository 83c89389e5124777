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

from optconform import spec
from optconform.spec.checks import MAX_COUNT

__all__ = [
    "MAX_COUNT",
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
    """S4.1: ``lr`` at every ``step`` (``step`` integer >= 0, ``lr`` finite and > 0)."""
    return _CONSTANT.check(step=step, lr=lr)["lr"]


def step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float:
    """S4.2: ``initial_lr * decay_rate ** (step // decay_steps)``.

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` in (0, 1] (a decay; 0 would
    make the schedule vanish after the first plateau), ``decay_steps`` integer >= 1.
    """
    h = _STEP_DECAY.check(step=step, initial_lr=initial_lr, decay_rate=decay_rate, decay_steps=decay_steps)
    step, initial_lr, decay_rate, decay_steps = (h[k] for k in _STEP_DECAY.names)
    return initial_lr * (decay_rate ** (step // decay_steps))


def exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.3: ``initial_lr * exp(-decay_rate * step)`` (``math.exp``; may underflow to 0.0).

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` finite and >= 0.
    """
    step, initial_lr, decay_rate = _EXP_DECAY.check(step=step, initial_lr=initial_lr, decay_rate=decay_rate).values()
    return initial_lr * math.exp(-decay_rate * step)


def inverse_time_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    """S4.4: ``initial_lr / (1 + decay_rate * step)``.

    Domain: ``step`` integer >= 0, ``initial_lr`` > 0, ``decay_rate`` finite and >= 0.
    """
    step, initial_lr, decay_rate = _INV_DECAY.check(step=step, initial_lr=initial_lr, decay_rate=decay_rate).values()
    return initial_lr / (1 + decay_rate * step)


def lr_multiplier(it: int, *, num_iterations: int, warmup_ratio: float = _LR_MULT.default("warmup_ratio"),
                  warmdown_ratio: float = _LR_MULT.default("warmdown_ratio"),
                  final_lr_frac: float = _LR_MULT.default("final_lr_frac")) -> float:
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
    h = _LR_MULT.check(num_iterations=num_iterations, it=it, warmup_ratio=warmup_ratio,
                       warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)
    num_iterations, it, warmup_ratio, warmdown_ratio, final_lr_frac = (h[k] for k in _LR_MULT.names)

    warmup_iters = round(warmup_ratio * num_iterations)
    warmdown_iters = round(warmdown_ratio * num_iterations)
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    elif it <= num_iterations - warmdown_iters:
        return 1.0
    else:
        progress = (num_iterations - it) / warmdown_iters
        return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it: int, *, start: float = _MUON_MOM.default("start"), end: float = _MUON_MOM.default("end"),
                  ramp_steps: int = _MUON_MOM.default("ramp_steps")) -> float:
    """S4.6: ``frac = min(it / ramp_steps, 1)``; ``(1 - frac) * start + frac * end`` (seed get_muon_momentum).

    Domain: ``it`` integer >= 0; ``start`` and ``end`` in [0, 1) (they are momenta, S7.2);
    ``ramp_steps`` integer >= 1. Equals ``end`` exactly for ``it >= ramp_steps``.
    """
    it, start, end, ramp_steps = _MUON_MOM.check(it=it, start=start, end=end, ramp_steps=ramp_steps).values()
    frac = min(it / ramp_steps, 1)
    return (1 - frac) * start + frac * end
