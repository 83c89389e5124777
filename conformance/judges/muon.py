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

Under a profile (``options``: S7.2's variant options) the reference computes that variant, the bounds follow its
coefficient rows, and the update is recovered through the variant's shape factor and weight decay
(:func:`recover_update`; a cautious mask is the one the target's own update implies). Where Muon+ or NorMuon
rescale the orthogonalised matrix (S7.4, S7.5) the recovered update is no Newton–Schulz output any more; it is
judged as a whole, by its relative Frobenius error against the family's ``acted`` bound: both rescalings divide by
norms of the matrix they rescale, and x ↦ x/‖x‖ has Jacobian norm 1/‖x‖, so to first order they do not enlarge a
relative error.
"""

from __future__ import annotations

import numpy as np

from optconform.conformance import tolerances as T
from optconform.conformance.evidence import compare, describe
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Replayed, Trajectory
from optconform.reference.muon import muon as ref_muon
from optconform.reference.muon import muon_aspect_scale
from optconform.reference.orthogonalize import zeropower as ref_zeropower
from optconform.spec import options as O

from .ns import bounds, judge_ns

_NS = ("rows", "row_cut", "normalisation", "safety")


def recover_update(before: np.ndarray, after: np.ndarray, *, lr: float, scale: float, decay_lr: float,
                   weight_decay: float, mode: str, reference: np.ndarray | None = None) -> np.ndarray:
    """The update D of θ_after = θ − decay_lr·λ·θ·m − lr·scale·D (S7.2 with S7.6's decay), given both parameters.

    m = 1 (decoupled); cautious: per element the mask that is consistent with the D it implies (m = 1 needs
    D·θ >= 0, m = 0 needs D·θ < 0; at most one holds); where neither holds, ``reference``'s mask."""
    delta = before - after
    if weight_decay == 0.0:
        return delta / (lr * scale)
    decay = decay_lr * weight_decay * before
    if mode == "decoupled":
        return (delta - decay) / (lr * scale)
    d0, d1 = delta / (lr * scale), (delta - decay) / (lr * scale)
    ok1, ok0 = d1 * before >= 0, d0 * before < 0
    fallback = (reference * before >= 0) if reference is not None else ok1
    return np.where(ok1, d1, np.where(ok0, d0, np.where(fallback, d1, d0)))


def judge_muon(verdict: Verdict, traj: Trajectory, rep: Replayed, *, strict: bool,
               extra_rtol: float = 0.0, options: dict | None = None) -> list[dict]:
    """Judge every step's recovered update (live and golden); returns the reference's final states.

    ``extra_rtol``: added per step to the buffer bound (a distributed AVG reduction's rounding); ``options``: the
    variant options (S7.2's names; default: the seed's)."""
    ns_steps, nesterov = int(traj.hyper["ns_steps"]), bool(traj.hyper["nesterov"])
    opts = O.clause_options("S7.2", {**O.option_defaults(), **(options or {})})
    b = bounds(ns_steps, strict=strict, rows=opts["rows"], row_cut=opts["row_cut"])
    ns_opts = {"eps": opts["ns_eps"], **{k: opts[k] for k in _NS}}
    rescaled = opts["muon_plus"] or opts["normuon_beta2"] is not None
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
                seen["o"] = ref_zeropower(u, steps, **ns_opts)
                return seen["o"]

            ref_after, states[i] = ref_muon(rep.before[t][i], rep.grads[t][i], states[i], lr=lr, momentum=beta,
                                            nesterov=nesterov, ns_steps=ns_steps, orthogonalize=capture,
                                            **{k: v for k, v in opts.items() if k not in _NS and k != "ns_eps"})
            before, after = rep.before[t][i], rep.after[t][i]
            case = f"{traj.case_id} step {t} param {i}"
            if lr == 0.0 or "u" not in seen:  # lr 0, or an empty parameter: nothing may move
                verdict.check("max |Δθ| at lr = 0", float(np.max(np.abs(after - before), initial=0.0)), 0.0, case=case)
                continue
            shape_factor = muon_aspect_scale(np.shape(p0), opts["lr_scale"])
            scale = lr * shape_factor
            how = dict(lr=lr, scale=shape_factor, weight_decay=opts["weight_decay"], mode=opts["weight_decay_mode"],
                       decay_lr=lr * (shape_factor if opts["weight_decay_lr"] == "adjusted" else 1.0))
            expected = recover_update(before, ref_after, **how)
            recovered = recover_update(before, after, reference=expected, **how)
            if rescaled:
                err = rel_fro_error(recovered, expected)
                verdict.check("update vs live reference (rel. Frobenius, Muon+/NorMuon)", err, b.acted, case=case,
                              evidence="" if err <= b.acted else describe(compare(recovered, expected)))
                continue
            judge_ns(verdict, recovered, seen["o"], seen["u"], b, case=case)
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
