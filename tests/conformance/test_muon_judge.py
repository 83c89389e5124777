"""The Muon judge's recovery of a variant's update (conformance/judges/muon.py): weight decay and cautious masks
undone exactly, the rounding a decayed float32 step leaves behind bounded, Muon+ / NorMuon factors fitted in the
judged directions only."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance import tolerances as T
from optconform.conformance.judges.muon import recover_update, unscale
from optconform.reference.orthogonalize import zeropower


def _low_rank(rng, m, n, r):
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n))


@pytest.mark.parametrize("mode", ["decoupled", "cautious"])
def test_recover_update_undoes_the_decay_exactly_in_float64(mode):
    rng = np.random.default_rng(0)
    theta, D = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    lr, scale, wd = 0.02, 1.5, 0.1
    mask = (D * theta >= 0) if mode == "cautious" else np.ones_like(D, dtype=bool)
    after = theta - lr * wd * theta * mask - lr * scale * D
    got = recover_update(theta, after, lr=lr, scale=scale, decay_lr=lr, weight_decay=wd, mode=mode)
    np.testing.assert_allclose(got, D, rtol=0, atol=1e-12)


def test_the_decay_recovery_bound_covers_a_float32_step_with_a_zero_update_and_not_much_more():
    """θ' = θ·(1 − η·λ) in float32 and D = 0: what the recovered D holds is the step's rounding, inside
    muon_decay_recovery_atol; a real update of 1 % of that size would not be."""
    import torch

    rng = np.random.default_rng(1)
    theta = torch.tensor(rng.standard_normal((16, 16)), dtype=torch.float32)
    lr, scale, wd = 0.01, 1.0, 0.1
    after = theta.clone().mul_(1 - lr * wd).double().numpy()
    before = theta.double().numpy()
    got = recover_update(before, after, lr=lr, scale=scale, decay_lr=lr, weight_decay=wd, mode="decoupled")
    atol = T.muon_decay_recovery_atol(before, lr=lr, scale=scale, decay_lr=lr, weight_decay=wd)
    assert 0 < np.max(np.abs(got)) <= atol
    assert atol < 1e-3  # far below any Newton–Schulz output entry of an 16×16 matrix (~0.25)
    assert T.muon_decay_recovery_atol(before, lr=lr, scale=scale, decay_lr=lr, weight_decay=0.0) == 0.0


@pytest.mark.parametrize("shape,normuon", [((8, 8), True), ((6, 12), True), ((12, 6), True), ((8, 8), False)])
def test_unscale_fits_the_factors_in_the_judged_directions_only(shape, normuon):
    """A rank-2 input: the reference's output has 2 directions; the target's holds O(1) garbage in the null
    directions (a bf16 output does) and per-row / per-column / global factors computed from all of it. unscale must
    give back the reference's output in the judged directions exactly, whatever the garbage."""
    rng = np.random.default_rng(2)
    G = _low_rank(rng, *shape, 2)
    O = zeropower(G, 5)
    U, s, Vh = np.linalg.svd(G)
    null = U[:, 2:] @ rng.standard_normal((shape[0] - 2, shape[1] - 2)) @ Vh[2:, :]  # outside the judged subspace
    if normuon:
        f = rng.uniform(0.5, 2.0, size=(shape[0], 1) if shape[0] >= shape[1] else (1, shape[1]))
    else:
        f = np.array(1.7)
    target = f * (O + null)
    back = unscale(target, O, G, normuon=normuon)
    Uj, Vj = U[:, :2], Vh[:2, :].T
    np.testing.assert_allclose(Uj.T @ back @ Vj, Uj.T @ O @ Vj, atol=1e-9)
    # the old whole-matrix fit would have fitted the garbage: show the difference is real
    axis = (-1 if shape[0] >= shape[1] else -2) if normuon else (-2, -1)
    naive = target * (np.sum(target * O, axis=axis, keepdims=True) / np.sum(target * target, axis=axis, keepdims=True))
    assert np.max(np.abs(Uj.T @ naive @ Vj - Uj.T @ O @ Vj)) > 1e-2
