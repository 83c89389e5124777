"""Muon trajectories (S7.2; S9.4 on the mean gradient): every step's recovered update against the live reference
and against the goldens, and the momentum buffer the target ends with.

Muon's update does not depend on the parameters, so each step's orthogonalized update is recovered from the
target as O = (θ_before − θ_after) / (lr · sqrt(max(1, rows/cols))) and judged with the Newton–Schulz family's
subspace metrics (:mod:`.ns`):

* live: against the reference's zeropower of the reference's own Newton–Schulz input (momentum buffer and
  Nesterov blend from the gradients the target was given, the buffer carried by the reference);
* golden: against the golden trajectory's own update, recovered the same way from the golden parameters,
  whose Newton–Schulz input is rebuilt from the golden momentum buffer and the golden gradient.

Steps with lr = 0 must leave θ unchanged. The final ``momentum_buffer`` (when the target keeps it under
torch.optim's name) must equal the reference's and the golden one to the float32 trajectory bound.
"""

from __future__ import annotations

import numpy as np

from optconform.conformance import tolerances as T
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Replayed, Trajectory
from optconform.reference.muon import muon as ref_muon
from optconform.reference.muon import muon_aspect_scale
from optconform.reference.orthogonalize import zeropower as ref_zeropower

from .ns import bounds, judge_ns


def judge_muon(verdict: Verdict, traj: Trajectory, rep: Replayed, *, strict: bool,
               extra_rtol: float = 0.0) -> list[dict]:
    """Judge every step's recovered update (live and golden); returns the reference's final states.

    ``extra_rtol``: added per step to the buffer bound (a distributed AVG reduction's rounding)."""
    ns_steps, nesterov = int(traj.hyper["ns_steps"]), bool(traj.hyper["nesterov"])
    b = bounds(ns_steps, strict=strict)
    mean = traj.mean_grads()
    states: list[dict] = [{} for _ in traj.params0]
    dead: set[int] = set()
    for t in range(traj.steps):
        lr, beta = traj.per_step[t]["lr"], traj.per_step[t]["momentum"]
        for i, p0 in enumerate(traj.params0):
            if i in dead:
                continue
            if not np.all(np.isfinite(rep.after[t][i])):  # the target's own output; the reference refuses NaN
                dead.add(i)
                n = int(np.sum(~np.isfinite(rep.after[t][i])))
                verdict.check(f"non-finite entries of param {i}", n, 0, case=f"{traj.case_id} step {t}",
                              evidence=f"the target's param {i} holds {n} NaN/inf after step {t} (its own output)")
                continue
            seen = {}

            def capture(u, steps, seen=seen):
                seen["u"] = u
                return ref_zeropower(u, steps)

            _, states[i] = ref_muon(rep.before[t][i], rep.grads[t][i], states[i], lr=lr, momentum=beta,
                                    nesterov=nesterov, ns_steps=ns_steps, orthogonalize=capture)
            before, after = rep.before[t][i], rep.after[t][i]
            case = f"{traj.case_id} step {t} param {i}"
            if lr == 0.0 or "u" not in seen:  # lr 0, or an empty parameter: nothing may move
                verdict.check("max |Δθ| at lr = 0", float(np.max(np.abs(after - before), initial=0.0)), 0.0, case=case)
                continue
            scale = lr * muon_aspect_scale(np.shape(p0))
            recovered = (before - after) / scale
            judge_ns(verdict, recovered, ref_zeropower(seen["u"], ns_steps), seen["u"], b, case=case)
            if traj.expected is not None:
                g_before = traj.params0[i] if t == 0 else traj.expected[t - 1][i]
                golden_update = (g_before - traj.expected[t][i]) / scale
                buf = traj.expected_state[t][i]["momentum_buffer"]
                g = mean[t][i]
                u = g + beta * (buf - g) if nesterov else buf
                judge_ns(verdict, recovered, golden_update, u, b, case=f"{case} (golden)")
    tol = T.f32_trajectory_rtol(traj.steps, strict=strict) + traj.steps * extra_rtol
    for i, st in enumerate(rep.state):
        if "momentum_buffer" not in st or traj.params0[i].size == 0 or i in dead:
            continue
        verdict.check(f"final momentum_buffer of param {i} vs live reference",
                      rel_fro_error(st["momentum_buffer"], states[i]["momentum_buffer"]), tol, case=traj.case_id)
        if traj.expected_state is not None:
            verdict.check(f"final momentum_buffer of param {i} vs golden",
                          rel_fro_error(st["momentum_buffer"], traj.expected_state[-1][i]["momentum_buffer"]), tol,
                          case=traj.case_id)
    return states
