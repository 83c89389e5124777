"""Float32-family trajectories (S3.5 SGD, S8.2 AdamW, S9.5 DistAdamW on the mean gradient): each step against
the live reference from the target's own parameters, the whole trajectory against the goldens."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from optconform.conformance import tolerances as T
from optconform.conformance.evidence import compare, describe
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Replayed, Trajectory
from optconform.reference.adam import adamw as ref_adamw


def judge_float_family(verdict: Verdict, traj: Trajectory, rep: Replayed, ref_step: Callable, *, step_rtol: float,
                       golden_rtol: Callable[[int], float], variants: dict[str, Callable] | None = None
                       ) -> list[dict]:
    """Judge a float32-family trajectory step by step and against the goldens.

    The float32 family's per-step error bound is absolute, 1.5u‖θ'‖ + 4u‖Δθ‖ <= 4u(‖θ'‖ + ‖Δθ‖)
    (tolerances.py, float32 section), so every error is normalised by ‖θ'‖ + ‖Δθ‖ of the reference step
    (θ' the parameters after it, Δθ its change): a parameter passing near zero is judged fairly.
    Per step: every parameter against ``ref_step(param, grad, state, i, per_step_hyper)`` started from the
    parameters and the exact gradients the target had (errors cannot accumulate here), <= ``step_rtol``.
    Whole trajectory: ‖θ_t − θ_t(golden)‖ <= ``golden_rtol(1)`` · Σ_{s<=t}(‖θ'_s‖ + ‖Δθ_s‖), the per-step
    bounds added up (errors add without feedback when gradients are given; ``golden_rtol(k)`` is k times
    the per-step bound). Returns the reference's final per-parameter states.

    Evidence for a miss: a parameter that turns NaN/inf is reported as the target's output (step, parameter)
    and not judged further; at the first step that leaves tolerance, the target's Δθ is compared with the
    reference's (:mod:`..evidence`), the parameter's ``lr_mul`` / ``wd_mul`` are named, and each of
    ``variants`` (name -> another ``ref_step``, e.g. the reference with the multipliers ignored) that the
    target's step matches is named.
    """
    states: list[dict] = [{} for _ in traj.params0]
    errs, scales = [], []  # scales[t][i] = ‖θ'‖ + ‖Δθ‖ of the reference step (nan once a parameter is non-finite)
    dead: dict[int, tuple[int, int]] = {}  # param -> (step it turned non-finite, entries)
    evidence = ""
    for t in range(traj.steps):
        worst, row, at = 0.0, [], None
        for i in range(len(traj.params0)):
            before, after, g = rep.before[t][i], rep.after[t][i], rep.grads[t][i]
            if i not in dead and not np.all(np.isfinite(after)):
                dead[i] = (t, int(np.sum(~np.isfinite(after))))
            if i in dead:
                row.append(math.nan)
                worst = math.inf
                continue
            prev = states[i]
            ref_after, states[i] = ref_step(before, g, prev, i, traj.per_step[t])
            scale = float(np.linalg.norm(ref_after)) + float(np.linalg.norm(ref_after - before))
            row.append(scale)
            err = float(np.linalg.norm(after - ref_after))
            e = err / scale if scale > 0 else err
            if e > worst:
                worst, at = e, (i, before, g, prev, ref_after, after)
        errs.append(worst)
        scales.append(row)
        if not evidence and worst > step_rtol and at is not None:
            evidence = _step_evidence(traj, t, at, step_rtol, variants or {})
    for i, (t, count) in sorted(dead.items()):
        verdict.check(f"non-finite entries of param {i}", count, 0, case=f"{traj.case_id} step {t}",
                      evidence=f"the target's param {i} holds {count} NaN/inf after step {t} (its own output)")
    verdict.trajectory("error / (‖θ'‖+‖Δθ‖) vs live reference, per step", errs, step_rtol, case=traj.case_id,
                       evidence=evidence)
    if traj.expected is not None:
        per_step = golden_rtol(1)
        budget = np.cumsum(np.asarray(scales), axis=0) * per_step  # [t][i]
        gerrs = [max(float(np.linalg.norm(a - e)) / b if b > 0 else float(np.linalg.norm(a - e))
                     for a, e, b in zip(rep.after[t], traj.expected[t], budget[t], strict=True))
                 for t in range(traj.steps)]
        verdict.trajectory("error / accumulated bound vs golden trajectory", gerrs, 1.0, case=traj.case_id)
    return states


def _step_evidence(traj: Trajectory, t: int, at: tuple, step_rtol: float, variants: dict[str, Callable]) -> str:
    """At the first step that left tolerance: what the worst parameter's Δθ is next to the reference's."""
    i, before, g, prev, ref_after, after = at
    parts = [f"step {t} param {i}: Δθ is " + describe(compare(after - before, ref_after - before))]
    attrs = traj.attrs[i] if traj.attrs else {}
    if attrs:
        parts.append("this parameter carries " + ", ".join(f"p.{k} = {v:g}" for k, v in sorted(attrs.items())))
    for name, variant in variants.items():
        alt, _ = variant(before, g, prev, i, traj.per_step[t])
        scale = float(np.linalg.norm(alt)) + float(np.linalg.norm(alt - before))
        if float(np.linalg.norm(after - alt)) <= step_rtol * scale:
            parts.append(f"it matches the reference with {name}")
    return "; ".join(parts)


def judge_local(case, traj: Trajectory, ref_step: Callable, *, squares: bool,
                variants: dict[str, Callable] | None = None) -> list[dict]:
    """Replay a single-process float32-family trajectory through the target (``case.replay``) and judge it with
    the policy's per-step and trajectory bounds (strict under ``--strict-numerics``)."""
    rep = case.replay(traj, squares=squares)
    return judge_float_family(case.verdict, traj, rep, ref_step,
                              step_rtol=T.F32_STEP_RTOL_STRICT if case.strict else T.F32_STEP_RTOL,
                              golden_rtol=lambda k: T.f32_trajectory_rtol(k, strict=case.strict), variants=variants)


def adamw_step(traj: Trajectory, options: dict | None = None) -> Callable:
    """The reference's S8.2 step for ``traj``: its constant hyperparameters, each step's lr, every parameter's
    ``lr_mul`` / ``wd_mul`` attributes and the variant ``options`` (the ``ref_step`` of :func:`judge_float_family`)."""
    h, opts = traj.hyper, dict(options or {})

    def ref_step(p, g, state, i, hp):
        a = traj.attrs[i] if traj.attrs else {}
        return ref_adamw(p, g, state, lr=hp["lr"], betas=h["betas"], eps=h["eps"], weight_decay=h["weight_decay"],
                         lr_mul=a.get("lr_mul", 1.0), wd_mul=a.get("wd_mul", 1.0), **opts)

    return ref_step


def adamw_variants(traj: Trajectory, options: dict | None = None) -> dict[str, Callable]:
    """Known ways a target departs from S8.2 that the evidence names when they match: the per-parameter
    multipliers ignored (torch.optim.AdamW and fused kernels do not read ``p.lr_mul`` / ``p.wd_mul``), ε before bias
    correction (S8.3)."""
    opts = dict(options or {})
    out = {}
    if any(traj.attrs or ()) and opts.get("param_muls", "read") == "read":
        out["p.lr_mul and p.wd_mul ignored (option param_muls='ignore')"] = adamw_step(traj, {**opts,
                                                                                              "param_muls": "ignore"})
    other = "before" if opts.get("eps_placement", "after") == "after" else "after"
    out[f"ε {other} bias correction (option eps_placement={other!r})"] = adamw_step(traj, {**opts,
                                                                                      "eps_placement": other})
    return out
