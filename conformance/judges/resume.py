"""A checkpoint round trip must not change an optimizer's trajectory.

The case replays one trajectory twice through the target: uninterrupted, and with ``state_dict()`` saved
(torch.save) before step k, a fresh optimizer built on the same parameters and ``load_state_dict`` given the saved
dict (``stepping.step_through(resume_at=k)``). From step k on the parameters must agree with the uninterrupted
run's. A state entry the round trip lost or changed (momentum kept outside ``self.state``, a buffer that
``load_state_dict`` does not restore, a step count reset: KellerJordan/Muon #46) is named in the evidence.
"""

from __future__ import annotations

import math

from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Replayed
from optconform.conformance.tolerances import F32_STEP_RTOL

__all__ = ["RESUME_RTOL", "NONDETERMINISM_FACTOR", "judge_resume"]

#: Per step, ‖θ_resumed − θ_uninterrupted‖_F / ‖θ_uninterrupted‖_F. Both runs execute the same target on the same
#: float32 inputs, so a correct target is bitwise equal unless its kernels round by memory layout or thread
#: schedule; one float32 step's bound (tolerances.F32_STEP_RTOL, 16u) admits that and nothing else: a lost momentum
#: buffer moves θ by about lr·‖ΔO‖/‖θ‖ ~ 1e-2 in these cases.
RESUME_RTOL = F32_STEP_RTOL
#: A nondeterministic target's resumed run is one more independent run: its distance from the uninterrupted one is
#: of the size of two uninterrupted runs' distance (measured in the same case); 4× leaves room for the spread of
#: such distances over steps while a lost state (~1e-2) stays far above a run-to-run noise of ~1e-4 (HeavyBall's
#: stochastic bf16 rounding).
NONDETERMINISM_FACTOR = 4.0


def _gaps(plains: list[Replayed], others: list[Replayed], at: int) -> list[float]:
    return [0.0 if t < at else max(rel_fro_error(o, p) for pr, orr in zip(plains, others, strict=True)
                                   for o, p in zip(orr.after[t], pr.after[t], strict=True))
            for t in range(len(plains[0].after))]


def judge_resume(verdict: Verdict, plain: Replayed | list[Replayed], resumed: Replayed | list[Replayed], at: int, *,
                 case: str = "", again: Replayed | None = None) -> None:
    """Per step, the resumed run's parameters against the uninterrupted run's (0 before step ``at``); lists: one
    run per rank, the worst rank per step, and the lost state named by rank (a rank's steps can go wrong because
    another rank lost its state: the all-gather brings its matrices). ``again``: a second uninterrupted run; if it
    differs from the first (a nondeterministic target: stochastic rounding, racy reductions) the bound becomes
    ``NONDETERMINISM_FACTOR`` times that difference, since a correct resume is then just one more such run."""
    plains = plain if isinstance(plain, list) else [plain]
    resumeds = resumed if isinstance(resumed, list) else [resumed]
    errs = _gaps(plains, resumeds, at)
    noise = max(_gaps(plains, [again], at)) if again is not None else 0.0
    bound = max(RESUME_RTOL, NONDETERMINISM_FACTOR * noise)
    lost = [f"{f'rank {k} ' if len(resumeds) > 1 else ''}param {i} {key} "
            f"{'missing after load_state_dict' if math.isinf(d) else f'changed by up to {d:.3g}'}"
            for k, run in enumerate(resumeds) for i, moved in enumerate(run.restored or [])
            for key, d in moved.items() if d > 0]
    more = f"; … {len(lost) - 4} more" if len(lost) > 4 else ""
    evidence = ("the round trip lost state: " + "; ".join(lost[:4]) + more) if lost else \
        "the saved state came back unchanged, yet the steps after the load differ: state kept outside state_dict()"
    if noise > 0:
        evidence += (f" (the target is not deterministic: two uninterrupted runs differ by up to {noise:.3g}; the "
                     f"bound is {NONDETERMINISM_FACTOR:g}× that)")
    verdict.trajectory(f"θ after a state_dict round trip before step {at} vs uninterrupted", errs, bound,
                       case=case, evidence=evidence)
