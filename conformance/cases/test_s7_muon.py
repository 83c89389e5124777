"""S7.2 `muon`: the target's Muon optimizer against the goldens and the live reference, step by step.

Muon's update does not depend on the parameters, so each step's orthogonalized update is recovered from
the target as O = (θ_before − θ_after) / (lr · sqrt(max(1, rows/cols))) and judged with the Newton–Schulz
family's subspace metrics against the reference's zeropower of the reference's own Newton–Schulz input
(momentum buffer and Nesterov blend from the same gradients). Steps with lr = 0 must leave θ unchanged.
The cases reach the regimes where each piece shows: tiny gradients (1e-8, where a momentum buffer kept
as a sum instead of an average, or another eps convention, changes the normalised input by a constant
factor that Newton–Schulz cannot hide), tall and wide shapes (aspect scale), momentum 0, Nesterov off,
a momentum ramp and a warmdown lr changed between steps, ns_steps 1 and 3.
"""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance import tolerances as T
from optconform.conformance.cases.test_s6_orthogonalize import judge_ns
from optconform.conformance.replay import Trajectory, from_golden, replay
from optconform.golden import store
from optconform.reference.muon import muon as ref_muon
from optconform.reference.muon import muon_aspect_scale
from optconform.reference.orthogonalize import zeropower as ref_zeropower
from optconform.reference.schedules import lr_multiplier, muon_momentum

GOLDEN = [c.id for c in store.iter_cases("S7.2")]
KEYS = ("lr", "momentum", "nesterov", "ns_steps")
F32_STORE = 2.0**-24  # float32 parameter storage: relative rounding of θ after each step


def judge_muon(verdict, traj: Trajectory, rep, strict: bool) -> list[dict]:
    """Judge every step's recovered update; returns the reference's final per-parameter states."""
    ns_steps, nesterov = int(traj.hyper["ns_steps"]), bool(traj.hyper["nesterov"])
    states = [{} for _ in traj.params0]
    for t in range(traj.steps):
        lr, mom = traj.per_step[t]["lr"], traj.per_step[t]["momentum"]
        for i, p0 in enumerate(traj.params0):
            seen = {}

            def capture(u, steps, seen=seen):
                seen["u"] = u
                return ref_zeropower(u, steps)

            _, states[i] = ref_muon(rep.before[t][i], rep.grads[t][i], states[i], lr=lr, momentum=mom,
                                    nesterov=nesterov, ns_steps=ns_steps, orthogonalize=capture)
            before, after = rep.before[t][i], rep.after[t][i]
            case = f"{traj.case_id} step {t} param {i}"
            if lr == 0.0:
                verdict.check("max |Δθ| at lr = 0", float(np.max(np.abs(after - before))), 0.0, case=case)
                continue
            scale = muon_aspect_scale(np.shape(p0))
            recovered = (before - after) / (lr * scale)
            judge_ns(verdict, recovered, ref_zeropower(seen["u"], ns_steps), seen["u"], ns_steps, strict, case)
    return states


def _run(target, verdict, traj, device, strict):
    import torch

    Muon = target.require("Muon")
    rep = replay(lambda params, **kw: Muon(params, **kw), traj, device=device, dtype=torch.float32)
    judge_muon(verdict, traj, rep, strict)


@pytest.mark.clause("S7.2", "muon")
@pytest.mark.parametrize("case_id", GOLDEN)
def test_muon_golden(target, verdict, device, strict, case_id):
    _run(target, verdict, from_golden(store.load_case(case_id), KEYS), device, strict)


@pytest.mark.clause("S7.2", "muon")
@pytest.mark.parametrize("regime", ["nanochat_ramp", "tiny_grads_1e-8", "nesterov_off_momentum0", "ns_steps1_tiny"])
def test_muon_live(target, verdict, device, strict, live_rng, regime):
    """Fresh seeded 20-step trajectories on a 1:4, a 4:1 and a square matrix with scheduled lr and momentum."""
    steps, n_iter = 20, 19
    shapes = [(8, 32), (32, 8), (16, 16)]
    scale = {"tiny_grads_1e-8": 1e-8, "ns_steps1_tiny": 3e-8}.get(regime, 1.0)
    nesterov = regime != "nesterov_off_momentum0"
    per_step = []
    for t in range(steps):
        lrm = lr_multiplier(t, num_iterations=n_iter, warmup_ratio=0.0, warmdown_ratio=0.4, final_lr_frac=0.1)
        mom = 0.0 if regime == "nesterov_off_momentum0" else muon_momentum(t * 20)
        per_step.append({"lr": 0.02 * lrm, "momentum": mom})
    traj = Trajectory(
        case_id=f"live {regime}",
        params0=[live_rng.standard_normal(s) * 0.1 for s in shapes],
        grads=[[scale * live_rng.standard_normal(s) for s in shapes] for _ in range(steps)],
        per_step=per_step,
        hyper=dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=nesterov,
                   ns_steps=1 if regime == "ns_steps1_tiny" else 5),
    )
    _run(target, verdict, traj, device, strict)
    assert T.NS_SUBSPACE_THRESHOLD > 0
