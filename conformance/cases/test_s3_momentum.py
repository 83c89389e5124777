"""S3.5 `sgd`: the target's SGD (heavy-ball and Nesterov, torch form) against the goldens and the live reference."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance.replay import Trajectory, all_arrays, case_dtype, from_golden, judge_float_family, replay
from optconform.conformance.tolerances import F32_STEP_RTOL, F32_STEP_RTOL_STRICT, f32_trajectory_rtol
from optconform.golden import store
from optconform.reference.momentum import sgd as ref_sgd

GOLDEN = [c.id for c in store.iter_cases("S3.5")]


def _judge(target, verdict, traj, device, strict):
    SGD = target.require("SGD")
    dtype = case_dtype(all_arrays(traj), squares=False)
    rep = replay(lambda params, **kw: SGD(params, **kw), traj, device=device, dtype=dtype)
    mom, nest = traj.hyper["momentum"], traj.hyper["nesterov"]

    def ref_step(p, g, state, i, hp):
        return ref_sgd(p, g, state, lr=hp["lr"], momentum=mom, nesterov=nest)

    judge_float_family(verdict, traj, rep, ref_step, step_rtol=F32_STEP_RTOL_STRICT if strict else F32_STEP_RTOL,
                       golden_rtol=lambda k: f32_trajectory_rtol(k, strict=strict))


@pytest.mark.clause("S3.5", "sgd")
@pytest.mark.parametrize("case_id", GOLDEN)
def test_sgd_golden(target, verdict, device, strict, case_id):
    _judge(target, verdict, from_golden(store.load_case(case_id), ("lr", "momentum", "nesterov")), device, strict)


@pytest.mark.clause("S3.5", "sgd")
@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.0, False), (0.99, True)])
def test_sgd_live(target, verdict, device, strict, live_rng, momentum, nesterov):
    """Fresh seeded gradients over 24 steps, a decaying lr, and gradient scales from 1e-6 to 1e3."""
    steps = 24
    scales = 10.0 ** live_rng.uniform(-6, 3, size=steps)
    traj = Trajectory(
        case_id=f"live m={momentum} nesterov={nesterov}",
        params0=[live_rng.standard_normal((12, 10)), live_rng.standard_normal(7)],
        grads=[[s * live_rng.standard_normal((12, 10)), s * live_rng.standard_normal(7)] for s in scales],
        per_step=[{"lr": 0.1 * (1 - t / steps) + 1e-3} for t in range(steps)],
        hyper=dict(lr=0.1, momentum=momentum, nesterov=nesterov),
    )
    _judge(target, verdict, traj, device, strict)
    assert np.isfinite(traj.params0[0]).all()
