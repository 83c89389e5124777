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
rescale the orthogonalised matrix (S7.4, S7.5), the reference's row / column / global factors are divided out of
the target's update (:func:`unscale`) and what is left is judged as a Newton–Schulz output.
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
    D·θ >= 0, m = 0 needs D·θ < 0; at most one holds). Where neither holds the target's D is 0 to rounding (a bf16
    Newton–Schulz output has exact zeros, and [0·θ >= 0] decays): the hypothesis with the smaller |D| is taken.
    ``reference`` is accepted for the signature's symmetry and not needed."""
    delta = before - after
    if weight_decay == 0.0:
        return delta / (lr * scale)
    decay = decay_lr * weight_decay * before
    if mode == "decoupled":
        return (delta - decay) / (lr * scale)
    d0, d1 = delta / (lr * scale), (delta - decay) / (lr * scale)
    ok1, ok0 = d1 * before >= 0, d0 * before < 0
    return np.where(ok1, d1, np.where(ok0, d0, np.where(np.abs(d1) <= np.abs(d0), d1, d0)))


def unscale(recovered: np.ndarray, ortho: np.ndarray, G: np.ndarray, *, normuon: bool) -> np.ndarray:
    """The target's rescaled update brought back to the reference's Newton–Schulz output ``ortho`` of the input ``G``:
    NorMuon scales each row (rows >= cols) or column by a factor computed from the target's own output, Muon+ the
    whole matrix; each such row / column / matrix of the target's update is multiplied by the least-squares factor
    that best matches ``ortho`` (so the target's own factors, and their rounding, drop out) and what is left is
    judged as a Newton–Schulz output. The factors are fitted in the directions the suite judges only (G's singular
    directions with ŝ >= NS_SUBSPACE_THRESHOLD): in the others a bf16 output holds amplified rounding of O(1)
    (S6.3), which also enters the target's own factors, and fitting it would fit noise. The factors themselves are
    judged by :func:`judge_muon`'s norm check."""
    U, s, Vh = np.linalg.svd(np.asarray(G, dtype=np.float64), full_matrices=False)
    top = s[..., :1]
    keep = (s >= T.NS_SUBSPACE_THRESHOLD * np.where(top > 0, top, 1.0)) & (top > 0)
    Uj, Vj = U * keep[..., None, :], np.swapaxes(Vh, -2, -1) * keep[..., None, :]

    def rows_side(x):  # x projected onto the judged right singular directions: each row's judged part
        return x @ Vj @ np.swapaxes(Vj, -2, -1)

    def cols_side(x):
        return Uj @ np.swapaxes(Uj, -2, -1) @ x

    if normuon and ortho.shape[-2] >= ortho.shape[-1]:
        axis: int | tuple[int, int] = -1
        a, b = rows_side(recovered), rows_side(ortho)
    elif normuon:
        axis = -2
        a, b = cols_side(recovered), cols_side(ortho)
    else:
        axis = (-2, -1)
        a, b = cols_side(rows_side(recovered)), cols_side(rows_side(ortho))
    num = np.sum(a * b, axis=axis, keepdims=True)
    den = np.sum(a * a, axis=axis, keepdims=True)
    return recovered * np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)


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
    acted: dict[int, float] = {}  # step -> the worst parameter's acted error vs the live reference (plot data only)
    at_shat: dict[int, float] = {}  # step -> the worst parameter's direction-at-ŝ ratio (plot data only)
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
            how = dict(lr=lr, scale=shape_factor, weight_decay=opts["weight_decay"], mode=opts["weight_decay_mode"],
                       decay_lr=lr * (shape_factor if opts["weight_decay_lr"] == "adjusted" else 1.0))
            expected = recover_update(before, ref_after, **how)
            recovered = recover_update(before, after, reference=expected, **how)
            if rescaled and np.any(seen["o"]):  # (an all-zero input: nothing to rescale; judged as zero out)
                if opts["muon_plus"]:  # Muon+ fixes ‖D‖_F = sqrt(min(rows, cols)) whatever O is: rounding only
                    err = abs(float(np.linalg.norm(recovered)) / float(np.linalg.norm(expected)) - 1.0)
                    bound = T.NS_SPECTRAL_ROUNDINGS * b.unit_roundoff
                    verdict.check("‖update‖_F vs live reference (Muon+ norm)", err, bound, case=case,
                                  evidence="" if err <= bound else describe(compare(recovered, expected)))
                recovered = unscale(recovered, seen["o"], seen["u"], normuon=opts["normuon_beta2"] is not None)
            zero_atol = T.muon_decay_recovery_atol(before, lr=lr, scale=shape_factor, decay_lr=how["decay_lr"],
                                                   weight_decay=opts["weight_decay"])
            e = judge_ns(verdict, recovered, seen["o"], seen["u"], b, case=case, rescaled=rescaled,
                         zero_atol=zero_atol)
            if e["n_directions"] > 0:
                acted[t] = max(acted.get(t, 0.0), float(e["acted"]))
                if "direction_at_shat" in e:
                    at_shat[t] = max(at_shat.get(t, 0.0), float(e["direction_at_shat"]))
            if traj.expected is not None:
                g_before = traj.params0[i] if t == 0 else traj.expected[t - 1][i]
                golden_update = recover_update(g_before, traj.expected[t][i], **how)
                if rescaled and np.any(seen["o"]):  # the golden update's own factors fitted out, as the target's
                    golden_update = unscale(golden_update, seen["o"], seen["u"],
                                            normuon=opts["normuon_beta2"] is not None)
                buf = traj.expected_state[t][i]["momentum_buffer"]
                g = mean[t][i]
                u = g + beta * (buf - g) if nesterov else buf
                judge_ns(verdict, recovered, golden_update, u, b, case=f"{case} (golden)", rescaled=rescaled,
                         zero_atol=zero_atol)
    if acted:
        verdict.series("acted error vs live reference (worst param), per step", list(acted.values()), b.acted,
                       case=traj.case_id, steps=list(acted))
    if at_shat:
        verdict.series("direction at its ŝ / bound (worst param), per step", list(at_shat.values()), 1.0,
                       case=traj.case_id, steps=list(at_shat))
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
