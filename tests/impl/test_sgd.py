"""impl/sgd.py (S3.5) against the float64 reference sgd and torch.optim.SGD.

Tolerances: conformance/tolerances.py float32 section (F32_STEP_RTOL_STRICT per step, f32_trajectory_rtol(k)).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.tolerances import F32_STEP_RTOL_STRICT, f32_trajectory_rtol
from optconform.impl.sgd import SGD, sgd
from optconform.reference.momentum import sgd as ref_sgd

SHAPES = [(5, 4), (6,), ()]
MODES = [(0.0, False), (0.9, False), (0.9, True), (0.5, True)]
MODE_IDS = ["plain", "momentum", "nesterov", "nesterov-0.5"]


def _grad(rng, shape, t):
    """Gaussian, tiny (1e-10), zero and mixed-magnitude gradients in turn."""
    g = rng.standard_normal(shape) * [1.0, 1e-10, 0.0, 10.0 ** rng.uniform(-12, 2)][t % 4]
    return np.asarray(g, dtype=np.float32)


@pytest.mark.parametrize("momentum,nesterov", MODES, ids=MODE_IDS)
def test_trajectory_matches_reference(rng, momentum, nesterov):
    ps = [torch.tensor(rng.standard_normal(s), dtype=torch.float32, requires_grad=True) for s in SHAPES]
    opt = SGD(ps, lr=0.1, momentum=momentum, nesterov=nesterov)
    refs = [p.detach().double().numpy() for p in ps]
    states = [{} for _ in ps]
    k = 24
    for t in range(1, k + 1):
        lr = float(10 ** rng.uniform(-4, -0.7))
        opt.param_groups[0]["lr"] = lr
        for i, p in enumerate(ps):
            g = _grad(rng, p.shape, t)
            p.grad = torch.tensor(g)
            refs[i], states[i] = ref_sgd(refs[i], g, states[i], lr=lr, momentum=momentum, nesterov=nesterov)
        opt.step()
    for i, p in enumerate(ps):
        assert rel_fro_error(p, refs[i]) <= f32_trajectory_rtol(k, strict=True)
        if momentum:
            assert rel_fro_error(opt.state[p]["momentum_buffer"], states[i]["momentum_buffer"]) <= \
                f32_trajectory_rtol(k, strict=True)
        else:
            assert "momentum_buffer" not in opt.state[p]


@pytest.mark.parametrize("momentum,nesterov", MODES, ids=MODE_IDS)
def test_each_step_within_strict_bound(rng, momentum, nesterov):
    shape = (9, 7)
    theta = rng.standard_normal(shape).astype(np.float32)
    state: dict = {}
    for _ in range(20):
        lr = float(10 ** rng.uniform(-4, -0.7))
        g = rng.standard_normal(shape).astype(np.float32)
        p = torch.tensor(theta)
        bufs = [torch.tensor(state["momentum_buffer"], dtype=torch.float32) if state else None]
        sgd([p], [torch.tensor(g)], bufs, lr=lr, momentum=momentum, nesterov=nesterov)
        rp, state = ref_sgd(theta, g, state, lr=lr, momentum=momentum, nesterov=nesterov)
        assert rel_fro_error(p, rp) <= F32_STEP_RTOL_STRICT
        if momentum:
            assert rel_fro_error(bufs[0], state["momentum_buffer"]) <= F32_STEP_RTOL_STRICT
            state = {"momentum_buffer": bufs[0].double().numpy()}  # continue from float32-representable state
        theta = rp.astype(np.float32)


@pytest.mark.parametrize("momentum,nesterov", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("foreach", [False, True])
def test_matches_torch_sgd(rng, momentum, nesterov, foreach):
    """torch.optim.SGD (dampening 0, no weight decay) is the S3.5 form: same ops, so equal to rounding."""
    ps = [torch.tensor(rng.standard_normal(s), dtype=torch.float32, requires_grad=True) for s in SHAPES]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    ours = SGD(ps, lr=0.05, momentum=momentum, nesterov=nesterov)
    theirs = torch.optim.SGD(qs, lr=0.05, momentum=momentum, nesterov=nesterov, foreach=foreach)
    k = 24
    for t in range(1, k + 1):
        for p, q in zip(ps, qs, strict=True):
            g = torch.tensor(_grad(rng, p.shape, t))
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
    for p, q in zip(ps, qs, strict=True):
        # both within f32_trajectory_rtol of the exact result (in practice bitwise equal)
        assert rel_fro_error(p, q) <= 2 * f32_trajectory_rtol(k, strict=True)


def test_first_momentum_step_stores_a_copy_of_the_gradient(rng):
    p = torch.tensor(rng.standard_normal(5), dtype=torch.float32)
    g = torch.tensor(rng.standard_normal(5), dtype=torch.float32)
    g_before = g.clone()
    bufs = [None]
    sgd([p], [g], bufs, lr=0.1, momentum=0.9)
    assert torch.equal(bufs[0], g) and bufs[0].data_ptr() != g.data_ptr()
    sgd([p], [g], bufs, lr=0.1, momentum=0.9)
    assert torch.equal(g, g_before)  # grads never written
    assert torch.allclose(bufs[0], 1.9 * g, rtol=2 * F32_STEP_RTOL_STRICT, atol=0)  # 0.9·g + g, 2 roundings


def test_none_grad_skipped(rng):
    a = torch.tensor(rng.standard_normal(3), dtype=torch.float32, requires_grad=True)
    b = torch.tensor(rng.standard_normal(3), dtype=torch.float32, requires_grad=True)
    b0 = b.detach().clone()
    opt = SGD([a, b], lr=0.1, momentum=0.9)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b, b0) and b not in opt.state


def test_state_dict_round_trip_continues_in_lockstep(rng):
    ps = [torch.tensor(rng.standard_normal(s), dtype=torch.float32, requires_grad=True) for s in SHAPES]
    a = SGD(ps, lr=0.05, momentum=0.9, nesterov=True)
    for t in range(1, 5):
        for p in ps:
            p.grad = torch.tensor(_grad(rng, p.shape, t))
        a.step()
    qs = [p.detach().clone().requires_grad_() for p in ps]
    b = SGD(qs, lr=1.0)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    assert b.param_groups[0]["momentum"] == 0.9 and b.param_groups[0]["nesterov"] is True
    for t in range(5, 12):
        for p, q in zip(ps, qs, strict=True):
            g = torch.tensor(_grad(rng, p.shape, t))
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for p, q in zip(ps, qs, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kw,name", [(dict(lr=-0.1), "lr"), (dict(lr=0.1, momentum=1.0), "momentum"),
                                     (dict(lr=0.1, momentum=-0.5), "momentum"),
                                     (dict(lr=0.1, nesterov=True), "nesterov"),
                                     (dict(lr=0.1, momentum=0.9, nesterov=1), "nesterov")])
def test_constructor_rejects_invalid_hyperparameters(kw, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        SGD([torch.zeros(2, requires_grad=True)], **kw)


@pytest.mark.parametrize("change,name", [
    (dict(grads=[torch.ones(3)]), r"grads\[0\]"), (dict(grads=[]), "grads"),
    (dict(momentum_buffers=[torch.zeros(2, 3, device="meta")]), r"momentum_buffers\[0\]"),
    (dict(momentum_buffers=[None, None]), "momentum_buffers"), (dict(lr=float("nan")), "lr"),
])
def test_kernel_rejects_bad_input(change, name):
    kw = dict(params=[torch.zeros(2, 3)], grads=[torch.ones(2, 3)], momentum_buffers=[None], lr=0.1,
              momentum=0.9, nesterov=False)
    kw.update(change)
    with pytest.raises(ValueError, match=f"^{name}"):
        sgd(**kw)
