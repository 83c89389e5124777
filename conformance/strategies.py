"""The project's hypothesis strategies: THE single home for them (torch-free).

Schedule strategies draw *valid* arguments of the S4 reference functions, returned as dicts of
keyword arguments (the iteration/step under its own key, so ``f(d.pop("it"), **d)`` calls the
function), weighted towards the boundaries where schedules go wrong: 0, the last iteration, phase
joins, ratios 0 and 1, and ratios whose float64 product with ``num_iterations`` is exactly ``k + 0.5``
(where Python's half-to-even ``round`` matters).

Array strategies draw finite float64 arrays whose overall scale spans many orders of magnitude.

Contents
--------
counts(max_value)              integers >= 0, small ones favoured
unit_ratios()                  floats in [0, 1], 0 / 1 / 0.5 / 0.2 favoured
positive_lrs()                 learning rates > 0 over 1e-8 .. 10
constant_lr_args()             {"step", "lr"}                                         S4.1
step_decay_lr_args()           {"step", "initial_lr", "decay_rate", "decay_steps"}    S4.2
exponential_decay_lr_args()    {"step", "initial_lr", "decay_rate"}                   S4.3
inverse_time_decay_lr_args()   {"step", "initial_lr", "decay_rate"}                   S4.4
lr_multiplier_hparams(max_iterations=10**6)
                               {"num_iterations", "warmup_ratio", "warmdown_ratio", "final_lr_frac"}
lr_multiplier_args(max_iterations=10**6)
                               lr_multiplier_hparams() plus "it" in [0, num_iterations]  S4.5
muon_momentum_args()           {"it", "start", "end", "ramp_steps"}                   S4.6
float64_arrays(shape=None)     finite float64 arrays, random shape unless given, scale 1e-30 .. 1e30
grad_lists()                   lists of float64 arrays of mixed shapes (clipping, S5)

Other helpers may append clearly separated strategies at the end of this file.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "counts",
    "unit_ratios",
    "positive_lrs",
    "constant_lr_args",
    "step_decay_lr_args",
    "exponential_decay_lr_args",
    "inverse_time_decay_lr_args",
    "lr_multiplier_hparams",
    "lr_multiplier_args",
    "muon_momentum_args",
    "float64_arrays",
    "grad_lists",
]

_UNIT = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


def counts(max_value: int = 10**6) -> st.SearchStrategy[int]:
    """Integers in [0, max_value], with 0..20 and 0..1000 drawn as often as the full range."""
    return st.one_of(
        st.integers(0, min(20, max_value)),
        st.integers(0, min(1000, max_value)),
        st.integers(0, max_value),
    )


def unit_ratios() -> st.SearchStrategy[float]:
    """Floats in [0, 1]: the endpoints, common settings (0.2, 0.5) and arbitrary values."""
    return st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.2]), _UNIT)


def positive_lrs() -> st.SearchStrategy[float]:
    """Learning rates in [1e-8, 10] (finite, > 0)."""
    return st.one_of(st.sampled_from([1e-3, 0.02, 0.1, 1.0]), st.floats(1e-8, 10.0))


def constant_lr_args() -> st.SearchStrategy[dict]:
    """Valid keyword arguments of ``constant_lr`` (S4.1): step >= 0 and lr > 0."""
    return st.fixed_dictionaries({"step": counts(), "lr": positive_lrs()})


def step_decay_lr_args() -> st.SearchStrategy[dict]:
    """Valid arguments of ``step_decay_lr`` (S4.2): decay_rate in (0, 1], decay_steps >= 1."""
    return st.fixed_dictionaries({
        "step": counts(),
        "initial_lr": positive_lrs(),
        "decay_rate": st.one_of(st.sampled_from([0.5, 0.1, 1.0]), st.floats(1e-3, 1.0)),
        "decay_steps": st.one_of(st.integers(1, 10), st.integers(1, 10**4)),
    })


def _decay_rates() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from([0.0, 1e-3, 0.1]), st.floats(0.0, 10.0))


def exponential_decay_lr_args() -> st.SearchStrategy[dict]:
    """Valid arguments of ``exponential_decay_lr`` (S4.3): decay_rate >= 0."""
    return st.fixed_dictionaries(
        {"step": counts(), "initial_lr": positive_lrs(), "decay_rate": _decay_rates()})


def inverse_time_decay_lr_args() -> st.SearchStrategy[dict]:
    """Valid arguments of ``inverse_time_decay_lr`` (S4.4): decay_rate >= 0."""
    return st.fixed_dictionaries(
        {"step": counts(), "initial_lr": positive_lrs(), "decay_rate": _decay_rates()})


@st.composite
def _ratio_for(draw, num_iterations: int) -> float:
    """A ratio in [0, 1] for this num_iterations; often one whose product lands on k + 0.5 exactly."""
    if num_iterations >= 1 and draw(st.booleans()):
        k = draw(st.integers(0, num_iterations - 1))
        r = (k + 0.5) / num_iterations
        if r <= 1.0 and r * num_iterations == k + 0.5:
            return r
    return draw(unit_ratios())


@st.composite
def lr_multiplier_hparams(draw, max_iterations: int = 10**6) -> dict:
    """Valid schedule settings of ``lr_multiplier`` (S4.5), without the iteration.

    num_iterations in 0..max_iterations (small favoured); the ratios are often chosen so that
    ``ratio * num_iterations`` is exactly ``k + 0.5``; final_lr_frac in [0, 1].
    """
    n = draw(counts(max_iterations))
    return {
        "num_iterations": n,
        "warmup_ratio": draw(st.one_of(st.just(0.0), _ratio_for(n))),
        "warmdown_ratio": draw(_ratio_for(n)),
        "final_lr_frac": draw(unit_ratios()),
    }


@st.composite
def lr_multiplier_args(draw, max_iterations: int = 10**6) -> dict:
    """``lr_multiplier_hparams()`` plus ``"it"`` in [0, num_iterations], boundaries favoured.

    ``it`` is 0, num_iterations, a value next to a phase join (warmup end, warmdown start), or uniform.
    """
    hp = draw(lr_multiplier_hparams(max_iterations))
    n = hp["num_iterations"]
    wu = round(hp["warmup_ratio"] * n)
    wd = round(hp["warmdown_ratio"] * n)
    joins = [0, n, wu - 1, wu, n - wd - 1, n - wd, n - wd + 1]
    near = st.sampled_from([min(max(j, 0), n) for j in joins])
    hp["it"] = draw(st.one_of(near, st.integers(0, n)))
    return hp


def muon_momentum_args() -> st.SearchStrategy[dict]:
    """Valid arguments of ``muon_momentum`` (S4.6): start, end in [0, 1), ramp_steps >= 1."""
    mom = st.one_of(st.sampled_from([0.0, 0.85, 0.95]), st.floats(0.0, 1.0, exclude_max=True))
    return st.fixed_dictionaries({
        "it": counts(10**6),
        "start": mom,
        "end": mom,
        "ramp_steps": st.one_of(st.just(300), st.integers(1, 10), st.integers(1, 10**5)),
    })


def float64_arrays(shape: tuple[int, ...] | None = None, *, max_side: int = 8,
                   min_exponent: int = -30, max_exponent: int = 30) -> st.SearchStrategy[np.ndarray]:
    """Finite float64 arrays: entries in [-1, 1] times 10**k, k drawn in [min_exponent, max_exponent].

    ``shape=None`` draws a shape of 0..3 dimensions with sides 0..max_side (empty arrays included).
    """
    shapes = st.just(tuple(shape)) if shape is not None else hnp.array_shapes(
        min_dims=0, max_dims=3, min_side=0, max_side=max_side)
    elements = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)

    @st.composite
    def _draw(draw) -> np.ndarray:
        base = draw(hnp.arrays(np.float64, draw(shapes), elements=elements))
        scale = 10.0 ** draw(st.integers(min_exponent, max_exponent))
        return np.asarray(base * scale, dtype=np.float64)

    return _draw()


def grad_lists(*, max_len: int = 5, min_exponent: int = -30,
               max_exponent: int = 30) -> st.SearchStrategy[list]:
    """Lists (0..max_len long) of float64 arrays of mixed shapes sharing one overall scale 10**k."""
    elements = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
    one = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                     elements=elements)

    @st.composite
    def _draw(draw) -> list:
        scale = 10.0 ** draw(st.integers(min_exponent, max_exponent))
        return [np.asarray(a * scale, dtype=np.float64) for a in draw(st.lists(one, max_size=max_len))]

    return _draw()
