"""Verdict levels and the input regimes that decide a case's level.

Every check the suite makes belongs to exactly one level:

* ``core`` -- the clause's arithmetic wherever the seed's own code is well-defined, and the distributed
  invariants (each step equals the single-process optimizer on the mean gradient, every rank holds
  identical parameters, every optimizer-state element is held by exactly one rank, no rank holds more
  state than a balanced layout needs);
* ``hardening`` -- input regimes where the seed's own arithmetic breaks and the spec asks for more
  (a Frobenius or clipping norm that overflows or underflows in the seed's precision), and a rank that fails
  mid-run (the rank-fault cases, ``--faults``);
* ``layout`` -- the spec's exact ownership rule (S9.2 block-cyclic within shape groups, S9.3 ceil rows, S9.6 state
  placed as its DTensor parameter).

A case's numeric checks take the level of its input :class:`Regime` (found from the magnitude of the norm
the clause computes); ownership checks are ``layout``. ``--require`` chooses which levels fail a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "CORE",
    "HARDENING",
    "LAYOUT",
    "LEVELS",
    "LEVEL_DOCS",
    "BF16_MAX",
    "FLOAT32_TINY",
    "FLOAT64_TINY",
    "NORM_OVERFLOW",
    "NORM_UNDERFLOW_F32",
    "NORM_UNDERFLOW_F64",
    "CORE_MARGIN",
    "CORE_NORM_MAX",
    "CORE_NORM_MIN",
    "Regime",
    "ORDINARY",
    "ORDINARY_WITH_EPS",
    "NORM_OVERFLOW_REGIME",
    "NORM_UNDERFLOW_REGIME",
    "EVEN_ROWS",
    "UNEVEN_ROWS",
    "RANK_FAULT",
    "parse_levels",
]

CORE, HARDENING, LAYOUT = "core", "hardening", "layout"
LEVELS: tuple[str, ...] = (CORE, HARDENING, LAYOUT)
LEVEL_DOCS: dict[str, str] = {
    CORE: "the clause's arithmetic where the seed's own code is well-defined, and the distributed invariants "
          "(step = single-process optimizer on the mean gradient, identical parameters on every rank, every "
          "state element held by exactly one rank, no rank above a balanced layout's state)",
    HARDENING: "input regimes where the seed's own arithmetic breaks and the spec asks for more "
               "(norms that overflow or underflow in the seed's precision; a rank that fails mid-run)",
    LAYOUT: "the spec's exact ownership rule (S9.2 block-cyclic within shape groups, S9.3 ceil(dim0/W) rows, S9.6 "
            "state placed as its DTensor parameter)",
}

# --- where the seed's norms break ---------------------------------------------------------------------------
#: Largest finite bfloat16 (and, to 3 significant digits, float32): 3.3895e38.
BF16_MAX = 3.3895313892515355e38
#: Smallest normal float32 / bfloat16 and float64.
FLOAT32_TINY = 1.1754943508222875e-38
FLOAT64_TINY = 2.2250738585072014e-308
#: A norm computed as sqrt(Σx²) in bf16/float32 overflows once ‖x‖² > BF16_MAX: ‖x‖ ≳ 1.84e19 (the seed's
#: ``X.norm()`` on a bf16 X, torch's float32 ``clip_grad_norm_``).
NORM_OVERFLOW = math.sqrt(BF16_MAX)
#: Squares of float32 entries below sqrt(FLOAT32_TINY) ≈ 1.08e-19 are subnormal (precision lost, then 0).
NORM_UNDERFLOW_F32 = math.sqrt(FLOAT32_TINY)
#: Squares of float64 entries below sqrt(FLOAT64_TINY) ≈ 1.49e-154 are subnormal (a plain float64 norm).
NORM_UNDERFLOW_F64 = math.sqrt(FLOAT64_TINY)
#: The core regime stops four decades inside the seed's breaking points, so no correct implementation in the
#: seed's arithmetic is near them (a sum of n <= 1e6 squares, any order, stays far from both ends) and a
#: case is never classified by a hair.
CORE_MARGIN = 1e4
CORE_NORM_MAX = 1e15  # NORM_OVERFLOW / CORE_MARGIN = 1.84e15, rounded down to a decade
CORE_NORM_MIN = 1e-15  # NORM_UNDERFLOW_F32 * CORE_MARGIN = 1.08e-15, rounded to a decade (margin 9300)


@dataclass(frozen=True)
class Regime:
    """An input regime of a clause and its level: either a range of the clause's governing norm
    (``norm = (lo, hi)``: the regime holds when lo <= the norm <= hi; a zero norm is always ``ordinary``, there
    is nothing to overflow or underflow), or a structural property of the case named by ``doc``
    (``norm = None``; the judge that knows the structure reports it by the regime's name)."""

    name: str
    level: str
    norm: tuple[float, float] | None
    doc: str

    def holds(self, norm: float) -> bool:
        return self.norm is not None and self.norm[0] <= norm <= self.norm[1]


ORDINARY = Regime("ordinary", CORE, (CORE_NORM_MIN, CORE_NORM_MAX),
                  f"norm in [{CORE_NORM_MIN:g}, {CORE_NORM_MAX:g}] (or exactly 0): the seed's bf16/float32 "
                  "arithmetic holds")
NORM_OVERFLOW_REGIME = Regime("norm_overflow", HARDENING, (CORE_NORM_MAX, math.inf),
                              f"norm > {CORE_NORM_MAX:g}: a bf16/float32 sqrt(Σx²) overflows from "
                              f"{NORM_OVERFLOW:.3g}")
NORM_UNDERFLOW_REGIME = Regime("norm_underflow", HARDENING, (0.0, CORE_NORM_MIN),
                               f"0 < norm < {CORE_NORM_MIN:g}: squares underflow in float32 below "
                               f"{NORM_UNDERFLOW_F32:.3g} and in float64 below {NORM_UNDERFLOW_F64:.3g}")
#: Where an additive eps guards the norm (Newton–Schulz: X/(‖X‖_F + 1e-7)), a tiny norm changes nothing the
#: eps does not already dominate, so those clauses have no underflow regime: everything below CORE_NORM_MAX
#: is ordinary.
ORDINARY_WITH_EPS = Regime("ordinary", CORE, (0.0, CORE_NORM_MAX),
                           f"‖G‖_F <= {CORE_NORM_MAX:g}: the seed's bf16 norm holds (below, the 1e-7 eps dominates)")


#: S9.5: the seed's DistAdamW gives each rank dim0 // W rows through reduce_scatter_tensor, which needs W | dim0,
#: and reads grad.shape[0], which a 0-D parameter lacks (nanochat #320/#364): it raises there. S9.3 defines the
#: general case.
UNEVEN_ROWS = Regime("uneven_rows", HARDENING, None,
                     "some parameter is 0-D or has dim 0 not divisible by W: the seed's DistAdamW slices dim0 // W "
                     "rows with reduce_scatter_tensor (needs W | dim0) and reads grad.shape[0]")
#: Its complement: every parameter at least 1-D with W | dim0.
EVEN_ROWS = Regime("even_rows", CORE, None, "every parameter at least 1-D with dim 0 divisible by W")
#: The distributed clauses' fault cases (``--faults``, ``conformance/judges/faults.py``).
RANK_FAULT = Regime("rank_fault", HARDENING, None,
                    "one rank fails mid-run (raises, is SIGKILLed, or never enters the step): every rank stops within "
                    "the timeout, the failure names that rank, no process outlives the run")


def parse_levels(text: str) -> tuple[str, ...]:
    """``"core,hardening"`` / ``"all"`` -> the levels in canonical order; ValueError naming ``--require``."""
    raw = [t.strip() for t in text.split(",") if t.strip()]
    if raw == ["all"]:
        return LEVELS
    bad = [t for t in raw if t not in LEVELS]
    if bad or not raw:
        raise ValueError(f"--require must be 'all' or a comma-separated subset of {', '.join(LEVELS)}; got {text!r}")
    return tuple(lv for lv in LEVELS if lv in raw)
