"""S8.2 `adamw`: the target's AdamW against the goldens and the live reference.

The cases reach the regimes where each hyperparameter matters: gradients comparable to eps (where eps
placement and gradient scale show, nanochat #304), zero gradients, weight decay with per-parameter
``lr_mul`` / ``wd_mul`` attributes (nanochat's convention), lr 0 steps, a 0-D parameter, and both
nanochat's and torch's default betas/eps.
"""

from __future__ import annotations

import pytest

from optconform.conformance.judges.float_family import adamw_step, adamw_variants, judge_local
from optconform.conformance.stepping import Trajectory, from_golden
from optconform.golden import store


def _judge(case, traj: Trajectory) -> None:
    opts = case.reference_options("S8.2")
    judge_local(case, traj, adamw_step(traj, opts), squares=True, variants=adamw_variants(traj, opts))


@pytest.mark.clause("S8.2")
@pytest.mark.parametrize("case_id", store.case_ids("S8.2"))
def test_adamw_golden(case, case_id):
    _judge(case, from_golden(case.golden("S8.2", case_id)))


@pytest.mark.clause("S8.2")
@pytest.mark.parametrize("regime", ["nanochat_eps_regime", "mixed_scales_weight_decay", "torch_defaults"])
def test_adamw_live(case, regime):
    """Fresh seeded trajectories (24 steps) with a warmdown lr; gradients cycle O(1), ~eps (1e-10) and zero."""
    rng, steps = case.rng, 24
    shapes = [(8, 12), (5,), ()]
    if regime == "torch_defaults":
        hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
        scale = [1.0] * steps
    else:
        hyper = dict(lr=0.004, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0 if regime.startswith("nano") else 0.1)
        scale = [(1.0, 1e-10, 0.0, 3e-11)[t % 4] if regime.startswith("nano") else 10.0 ** rng.uniform(-11, 2)
                 for t in range(steps)]
    traj = Trajectory(
        "AdamW", f"live {regime}",
        params0=[rng.standard_normal(s) for s in shapes],
        per_step=[{"lr": hyper["lr"] * min(1.0, (steps - t) / 8)} for t in range(steps)],
        hyper=hyper,
        grads=[[scale[t] * rng.standard_normal(s) for s in shapes] for t in range(steps)],
        attrs=[{}, {}, {}] if regime != "mixed_scales_weight_decay" else [{"lr_mul": 2.0}, {"wd_mul": 0.0}, {}],
    )
    _judge(case, traj)
