"""Replaying an optimizer trajectory through a target and judging it step by step.

A :class:`Trajectory` is framework-neutral: initial parameters, the gradients of every step, the
group hyperparameters of every step (what a scheduler would set), and optionally the golden
parameters after every step. :func:`replay` builds float tensors on the requested device, sets
``p.grad`` itself, updates ``group[...]`` between steps, calls ``step()``, and records after each
step the parameters the target produced and the gradients it was given (read *before* the step:
an implementation may legitimately overwrite ``p.grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optconform.golden.store import GoldenCase


@dataclass
class Trajectory:
    case_id: str
    params0: list[np.ndarray]
    grads: list[list[np.ndarray]]  # [step][param]; distributed: [step][rank][param]
    per_step: list[dict]  # group hyperparameters set before each step
    hyper: dict  # constructor keyword arguments
    expected: list[list[np.ndarray]] | None = None  # golden params after each step, [step][param]
    attrs: list[dict] = field(default_factory=list)  # per-parameter attributes (lr_mul, wd_mul)

    @property
    def steps(self) -> int:
        return len(self.grads)


@dataclass
class Replayed:
    before: list[list[np.ndarray]]  # [step][param] parameters before the step (float64 copy)
    grads: list[list[np.ndarray]]  # [step][param] the gradients the target was given (float64 copy)
    after: list[list[np.ndarray]]  # [step][param] parameters after the step


def from_golden(case: GoldenCase, hyper_keys: Sequence[str]) -> Trajectory:
    """A single-process trajectory from a golden case with ``layout == "trajectory"``."""
    rp = case.extra["replay"]
    multi = isinstance(rp["param0"], list)
    names0 = rp["param0"] if multi else [rp["param0"]]
    gnames = rp["grads"] if multi else [rp["grads"]]
    enames = rp["expected_param"] if multi else [rp["expected_param"]]
    steps = case.steps
    params0 = [case.inputs[n] for n in names0]
    grads = [[case.inputs[g][t] for g in gnames] for t in range(steps)]
    per_step = [{k: float(case.inputs[k][t]) for k in rp.get("per_step", [])} for t in range(steps)]
    expected = [[case.outputs[e][t] for e in enames] for t in range(steps)]
    hyper = {k: v for k, v in case.hyper.items() if k in hyper_keys}
    for k in rp.get("per_step", []):  # the constructor needs a value; step 0's is set again before step 0
        if k in hyper_keys:
            hyper.setdefault(k, per_step[0][k])
    attrs = [{} for _ in params0]
    for key, attr in (("lr_mul", "lr_mul"), ("wd_mul", "wd_mul")):
        if key in case.hyper and case.hyper[key] != 1.0:
            for a in attrs:
                a[attr] = float(case.hyper[key])
    return Trajectory(case.id, params0, grads, per_step, hyper, expected, attrs)


def _f64(t) -> np.ndarray:
    return t.detach().to("cpu").double().numpy().copy()


def replay(make_optimizer: Callable, traj: Trajectory, *, device, dtype) -> Replayed:
    """Run ``traj`` through ``make_optimizer(params, **traj.hyper)``; see the module docstring."""
    import torch

    params = [torch.nn.Parameter(torch.as_tensor(p0, dtype=dtype, device=device).clone()) for p0 in traj.params0]
    for p, attrs in zip(params, traj.attrs or [{}] * len(params), strict=True):
        for k, v in attrs.items():
            setattr(p, k, v)
    opt = make_optimizer(params, **traj.hyper)
    out = Replayed([], [], [])
    for t in range(traj.steps):
        out.before.append([_f64(p) for p in params])
        for p, g in zip(params, traj.grads[t], strict=True):
            p.grad = torch.as_tensor(g, dtype=dtype, device=device).clone()
        out.grads.append([_f64(p.grad) for p in params])
        for group in opt.param_groups:
            group.update(traj.per_step[t])
        opt.step()
        out.after.append([_f64(p) for p in params])
    return out


# float32's normal range; a value outside it (or whose square is, for second-moment optimizers) cannot be
# represented faithfully, so such a case runs in float64 instead (SPEC "Tolerance policy", precision).
_F32_TINY, _F32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38


def case_dtype(arrays, *, squares: bool = False):
    """torch.float32 when every non-zero |x| (and |x|², with ``squares``) lies in float32's normal range."""
    import torch

    lo, hi = (_F32_TINY**0.5, _F32_MAX**0.5) if squares else (_F32_TINY, _F32_MAX)
    for a in arrays:
        x = np.abs(np.asarray(a, dtype=np.float64))
        x = x[x > 0]
        if x.size and (x.min() < lo or x.max() > hi):
            return torch.float64
    return torch.float32


def all_arrays(traj: Trajectory) -> list[np.ndarray]:
    out = list(traj.params0)
    for step in traj.grads:
        for g in step:
            out.extend(g if isinstance(g, list) else [g])
    return out


def judge_float_family(verdict, traj: Trajectory, rep: Replayed, ref_step: Callable, *, step_rtol: float,
                       golden_rtol: Callable[[int], float]) -> list[dict]:
    """Judge a float32-family trajectory (SGD, AdamW) step by step and against the goldens.

    The float32 family's per-step error bound is absolute, 1.5u‖θ'‖ + 4u‖Δθ‖ <= 4u(‖θ'‖ + ‖Δθ‖)
    (tolerances.py, float32 section), so every error is normalised by ‖θ'‖ + ‖Δθ‖ of the reference step
    (θ' the parameters after it, Δθ its change): a parameter passing near zero is judged fairly.
    Per step: every parameter against ``ref_step(param, grad, state, i, per_step_hyper)`` started from the
    parameters and the exact gradients the target had (errors cannot accumulate here), <= ``step_rtol``.
    Whole trajectory: ‖θ_t − θ_t(golden)‖ <= ``golden_rtol(1)`` · Σ_{s<=t}(‖θ'_s‖ + ‖Δθ_s‖), the per-step
    bounds added up (errors add without feedback when gradients are given; ``golden_rtol(k)`` is k times
    the per-step bound). Returns the reference's final per-parameter states.
    """
    states: list[dict] = [{} for _ in traj.params0]
    errs, scales = [], []  # scales[t][i] = ‖θ'‖ + ‖Δθ‖ of the reference step
    for t in range(traj.steps):
        worst, row = 0.0, []
        for i in range(len(traj.params0)):
            ref_after, states[i] = ref_step(rep.before[t][i], rep.grads[t][i], states[i], i, traj.per_step[t])
            scale = float(np.linalg.norm(ref_after)) + float(np.linalg.norm(ref_after - rep.before[t][i]))
            row.append(scale)
            err = float(np.linalg.norm(rep.after[t][i] - ref_after))
            worst = max(worst, err / scale if scale > 0 else err)
        errs.append(worst)
        scales.append(row)
    verdict.trajectory("error / (‖θ'‖+‖Δθ‖) vs live reference, per step", errs, step_rtol, case=traj.case_id)
    if traj.expected is not None:
        per_step = golden_rtol(1)
        budget = np.cumsum(np.asarray(scales), axis=0) * per_step  # [t][i]
        gerrs = [max(float(np.linalg.norm(a - e)) / b if b > 0 else float(np.linalg.norm(a - e))
                     for a, e, b in zip(rep.after[t], traj.expected[t], budget[t], strict=True))
                 for t in range(traj.steps)]
        verdict.trajectory("error / accumulated bound vs golden trajectory", gerrs, 1.0, case=traj.case_id)
    return states
