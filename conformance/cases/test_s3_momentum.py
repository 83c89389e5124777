"""S3.5 `sgd`: the target's SGD (heavy-ball and Nesterov, torch form) against the goldens and the live reference."""

from __future__ import annotations

import pytest

from optconform.conformance.judges.float_family import judge_local
from optconform.conformance.stepping import Trajectory, from_golden
from optconform.golden import store
from optconform.reference.momentum import sgd as ref_sgd


def _judge(case, traj: Trajectory) -> None:
    mom, nest = traj.hyper["momentum"], traj.hyper["nesterov"]

    def ref_step(p, g, state, i, hp):
        return ref_sgd(p, g, state, lr=hp["lr"], momentum=mom, nesterov=nest)

    judge_local(case, traj, ref_step, squares=False)


@pytest.mark.clause("S3.5")
@pytest.mark.parametrize("case_id", store.case_ids("S3.5"))
def test_sgd_golden(case, case_id):
    _judge(case, from_golden(store.load_case(case_id)))


@pytest.mark.clause("S3.5")
@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.9, True), (0.0, False), (0.99, True)])
def test_sgd_live(case, momentum, nesterov):
    """Fresh seeded gradients over 24 steps, a decaying lr, and gradient scales from 1e-6 to 1e3."""
    rng, steps = case.rng, 24
    scales = 10.0 ** rng.uniform(-6, 3, size=steps)
    traj = Trajectory(
        "SGD", f"live m={momentum} nesterov={nesterov}",
        params0=[rng.standard_normal((12, 10)), rng.standard_normal(7)],
        per_step=[{"lr": 0.1 * (1 - t / steps) + 1e-3} for t in range(steps)],
        hyper=dict(lr=0.1, momentum=momentum, nesterov=nesterov),
        grads=[[s * rng.standard_normal((12, 10)), s * rng.standard_normal(7)] for s in scales],
    )
    _judge(case, traj)
