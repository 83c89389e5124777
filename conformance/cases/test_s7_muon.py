"""S7.2 `muon`: the target's Muon optimizer against the goldens and the live reference, step by step.

Each step's orthogonalized update is recovered from the parameters and judged with the Newton–Schulz
family's subspace metrics against the live reference and against the golden trajectory's own update
(``judges.muon``); the final momentum buffer against both. The cases reach the regimes where each piece
shows: tiny gradients (1e-8, where a momentum buffer kept as a sum instead of an average, or another eps
convention, changes the normalised input by a constant factor that Newton–Schulz cannot hide), tall and wide
shapes (aspect scale), momentum 0, Nesterov off, a momentum ramp and a warmdown lr changed between steps,
ns_steps 1 and 3. Gradients of 1e30 are ``hardening`` (a bf16 norm overflows). A 128×512 and a 512×128 parameter
of unit-size entries give the bias statistic 128 directions per update (another coefficient row, a rescaled or
row-normalised update, ``clamp(min=eps)`` at ‖g‖_F = 1e-8) and make any weight decay, which the spec's Muon does
not have, a large part of the recovered update.
"""

from __future__ import annotations

import numpy as np
import pytest

from optconform import spec
from optconform.conformance.judges.muon import judge_muon
from optconform.conformance.judges.ns import matrix_norms
from optconform.conformance.stepping import Trajectory, from_golden
from optconform.golden import store
from optconform.reference.schedules import lr_multiplier, muon_momentum


def _run(case, traj: Trajectory) -> None:
    import torch

    case.verdict.regime(spec.clause("S7.2").regime(matrix_norms(*traj.arrays()[len(traj.params0):])))
    rep = case.replay(traj, dtype=torch.float32)  # Newton–Schulz inputs stay float32 even at 1e30
    judge_muon(case.verdict, traj, rep, strict=case.strict, options=case.options)


@pytest.mark.clause("S7.2")
@pytest.mark.parametrize("case_id", store.case_ids("S7.2"))
def test_muon_golden(case, case_id):
    _run(case, from_golden(case.golden("S7.2", case_id)))


@pytest.mark.clause("S7.2")
@pytest.mark.parametrize("regime", ["nanochat_ramp", "tiny_grads_1e-8", "nesterov_off_momentum0", "ns_steps1_tiny",
                                    "graded_rows"])
def test_muon_live(case, regime):
    """Fresh seeded 20-step trajectories on a 1:4, a 4:1 and a square matrix with scheduled lr and momentum."""
    rng, steps, n_iter = case.rng, 20, 19
    shapes = [(8, 32), (32, 8), (16, 16)]
    scale = {"tiny_grads_1e-8": 1e-8, "ns_steps1_tiny": 3e-8}.get(regime, 1.0)
    per_step = []
    for t in range(steps):
        lrm = lr_multiplier(t, num_iterations=n_iter, warmup_ratio=0.0, warmdown_ratio=0.4, final_lr_frac=0.1)
        mom = 0.0 if regime == "nesterov_off_momentum0" else muon_momentum(t * 20)
        per_step.append({"lr": 0.02 * lrm, "momentum": mom})
    traj = Trajectory(
        "Muon", f"live {regime}",
        params0=[rng.standard_normal(s) * 0.1 for s in shapes],
        per_step=per_step,
        hyper=dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=regime != "nesterov_off_momentum0",
                   ns_steps=1 if regime == "ns_steps1_tiny" else 5),
        grads=[[scale * rng.standard_normal(s) * _row_scales(regime, s) for s in shapes] for _ in range(steps)],
    )
    _run(case, traj)


def _row_scales(regime: str, shape: tuple[int, int]) -> np.ndarray:
    """``graded_rows``: row norms spread over 1e-2 … 1e1 (some neurons get far larger gradients), where row
    equilibration (MuonEq, S6.4) changes the Newton–Schulz input and a mistake in it shows; else all 1."""
    if regime != "graded_rows":
        return np.ones((shape[0], 1))
    return np.logspace(-2, 1, shape[0])[:, None]


@pytest.mark.clause("S7.2")
@pytest.mark.parametrize("grad_norm,grading", [(1.0, "ordinary"), (1e-8, "ordinary"), (1.0, "graded_rows")])
def test_muon_live_large(case, grad_norm, grading):
    """Six steps on a 128×512 and a 512×128 parameter, gradients of Frobenius norm ``grad_norm`` per matrix (with
    ``graded_rows``, row norms spread over 1e-2 … 1e1: the bias statistic then sees row equilibration, S6.4)."""
    rng, steps, shapes = case.rng, 6, [(128, 512), (512, 128)]
    per_step = [{"lr": 0.02, "momentum": muon_momentum(60 * t)} for t in range(steps)]

    def grad(s):
        g = rng.standard_normal(s) * _row_scales(grading, s)
        return g * (grad_norm / np.linalg.norm(g))

    traj = Trajectory(
        "Muon", f"live large ‖g‖={grad_norm:g} {grading}",
        params0=[rng.standard_normal(s) for s in shapes],
        per_step=per_step,
        hyper=dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=True, ns_steps=5),
        grads=[[grad(s) for s in shapes] for _ in range(steps)],
    )
    _run(case, traj)
