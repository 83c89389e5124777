"""impl.muon (S7 in torch: kernel + Muon optimizer) against the float64 reference muon()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optconform.conformance import tolerances as tol
from optconform.conformance.metrics import ns_subspace_errors
from optconform.impl.muon import Muon, muon
from optconform.impl.newton_schulz import zeropower
from optconform.reference.muon import muon as ref_muon
from optconform.reference.muon import muon_aspect_scale
from optconform.reference.orthogonalize import zeropower as ref_zeropower

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
F32_U = 2.0**-24  # float32 unit roundoff: params and buffers are rounded to it once per operation


def _t(a, dtype=torch.float32):
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(dtype)


def _all_judged(u: np.ndarray) -> bool:
    """Every direction of the NS input is acted on and resolved by a bf16 input (the NS policy's set S is all
    of them), so ‖O_impl − O_ref‖_F is bounded by the acted bound (tolerances.py, MUON TRAJECTORY)."""
    return ns_subspace_errors(u, u, u, threshold=tol.NS_SUBSPACE_THRESHOLD)["n_directions"] == min(u.shape[-2:])


# --- the kernel, one step -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32), (3, 16, 24), (2, 2, 20, 12)])
@pytest.mark.parametrize("nesterov", [True, False])
def test_kernel_one_step_matches_reference(rng, shape, nesterov):
    p0, g, b0 = rng.standard_normal(shape), rng.standard_normal(shape), 0.3 * rng.standard_normal(shape)
    lr, beta = 0.05, 0.9
    p, grad, buf = _t(p0), _t(g), _t(b0)
    muon([p], [grad], [buf], lr=lr, momentum=beta, nesterov=nesterov, ns_steps=5)
    rp, rs = ref_muon(p0, g, {"momentum_buffer": b0}, lr=lr, momentum=beta, nesterov=nesterov)
    # buffer: inputs rounded to float32 once, then one float32 lerp: a few roundings of max|buf| + max|g|
    atol = 4 * F32_U * (np.abs(b0).max() + np.abs(g).max())
    assert np.allclose(buf.double().numpy(), rs["momentum_buffer"], rtol=0, atol=atol)
    # param: the update lr·scale·O differs from the reference only by the NS error. Recover O from the
    # float32 step (float32 error ~1e-7/lr relative, negligible) and judge it by the NS policy
    u = g + beta * (rs["momentum_buffer"] - g) if nesterov else rs["momentum_buffer"]
    o_ref = ref_zeropower(u)
    scale = muon_aspect_scale(shape)
    o_impl = (_t(p0).double().numpy() - p.double().numpy()) / (lr * scale)
    e = ns_subspace_errors(o_impl, o_ref, u)
    assert e["direction"] <= tol.NS_DIRECTION_ATOL and e["acted"] <= tol.NS_FUSED_ACTED_RTOL, e
    err = np.linalg.norm(p.double().numpy() - rp)
    if _all_judged(u):  # every direction judged (non-square): whole-update bound
        bound = tol.muon_trajectory_bound([lr], scale, [np.linalg.norm(o_ref)], [np.linalg.norm(rp)], F32_U,
                                          acted_rtol=tol.NS_FUSED_ACTED_RTOL)
        assert err <= bound, (err, bound)
    assert err > 0  # bf16 NS really ran: not the float64 path by accident


def test_kernel_uses_first_step_zero_buffer_and_does_not_modify_grads(rng):
    g = _t(rng.standard_normal((16, 24)))
    g_before = g.clone()
    p, buf = torch.zeros(16, 24), torch.zeros(16, 24)
    muon([p], [g], [buf], lr=0.1, momentum=0.95, nesterov=True, ns_steps=5)
    assert torch.equal(g, g_before)
    # first step from a zero buffer: buf = (1 − β)·g exactly as a lerp; u = lerp(g, buf, β) = (1 − β + β(1−β))·g
    assert torch.allclose(buf, 0.05 * g_before, rtol=1e-6, atol=0)
    expected = -0.1 * zeropower(torch.lerp(g_before, buf, 0.95)).float()
    assert torch.equal(p, expected)


@pytest.mark.parametrize("nesterov", [True, False])
def test_no_aliasing_with_bf16_grads(rng, nesterov):
    """pytorch #194664: bf16 grad in -> grad untouched; buffer = lerp(buf, g, 1−β) and nothing else."""
    shape = (24, 40)
    p = _t(rng.standard_normal(shape), torch.bfloat16)
    g = _t(rng.standard_normal(shape), torch.bfloat16)
    buf = _t(0.5 * rng.standard_normal(shape), torch.bfloat16)
    g0, b0, p0 = g.clone(), buf.clone(), p.clone()
    muon([p], [g], [buf], lr=0.02, momentum=0.9, nesterov=nesterov, ns_steps=5)
    assert torch.equal(g, g0)
    assert torch.equal(buf, torch.lerp(b0, g0, 0.1))
    u = torch.lerp(g0, torch.lerp(b0, g0, 0.1), 0.9) if nesterov else torch.lerp(b0, g0, 0.1)
    assert torch.equal(p, p0.add(zeropower(u), alpha=-0.02))


def test_same_shape_params_are_batched_into_one_call(rng):
    """Same shapes -> one orthogonalize call on the stack; results equal to per-matrix calls."""
    from optconform.impl import zeropower

    shapes = [(16, 24), (24, 16), (16, 24), (16, 24), (2, 16, 24)]
    ps = [_t(rng.standard_normal(s)) for s in shapes]
    gs = [_t(rng.standard_normal(s)) for s in shapes]
    bs = [torch.zeros(s) for s in shapes]
    calls = []
    batched = [p.clone() for p in ps]
    muon(batched, gs, [b.clone() for b in bs], lr=0.1, momentum=0.9, nesterov=True, ns_steps=5,
         orthogonalize=lambda u, k: calls.append(tuple(u.shape)) or zeropower(u, k))
    assert sorted(calls) == sorted([(3, 16, 24), (1, 24, 16), (1, 2, 16, 24)])
    for i in range(len(shapes)):  # one at a time
        single = ps[i].clone()
        muon([single], [gs[i]], [bs[i].clone()], lr=0.1, momentum=0.9, nesterov=True, ns_steps=5)
        # identical here; one bf16 ulp (2^-7 relative) of |O| <= NS_SPECTRAL_MAX allowed, times lr, for
        # backends whose batched and unbatched GEMMs round differently
        assert (single - batched[i]).abs().max() <= 0.1 * 2.0**-7 * tol.NS_SPECTRAL_MAX


# --- the optimizer over many steps ------------------------------------------------------------------


def _schedule(k):
    """lr and momentum changed between steps: warmup, decay, a momentum ramp and a step to 0."""
    lr = 0.02 * min(1.0, (k + 1) / 5) * (0.5 if k >= 15 else 1.0)
    beta = 0.0 if k == 10 else 0.85 + 0.1 * min(k / 12, 1.0)
    return lr, beta


@pytest.mark.parametrize("nesterov", [True, False])
def test_trajectory_matches_reference_within_accumulated_bound(rng, nesterov):
    """24 steps: ‖θ_impl − θ_ref‖_F <= Σₖ lrₖ·scale·NS_FUSED_ACTED_RTOL·‖O_ref,k‖_F + u32·‖θₖ‖_F (tolerances.py)."""
    shapes = [(24, 40), (40, 24), (24, 40), (2, 16, 24)]
    theta0 = [rng.standard_normal(s) for s in shapes]
    params = [torch.nn.Parameter(_t(t)) for t in theta0]
    opt = Muon(params, nesterov=nesterov)
    ref = [(t.copy(), {}) for t in theta0]
    lrs: list[float] = []
    gmax = 0.0
    onorms: list[list[float]] = [[] for _ in shapes]
    tnorms: list[list[float]] = [[] for _ in shapes]
    for k in range(24):
        lr, beta = _schedule(k)
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr, beta
        grads = [rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 3) for s in shapes]
        gmax = max(gmax, *(float(np.abs(g).max()) for g in grads))
        for p, g in zip(params, grads, strict=True):
            p.grad = _t(g)
        opt.step()
        lrs.append(lr)
        for i, g in enumerate(grads):
            theta, st = ref[i]
            buf = st.get("momentum_buffer", np.zeros(shapes[i])) * beta + (1 - beta) * g
            u = g + beta * (buf - g) if nesterov else buf
            assert _all_judged(u)  # every direction judged: the bound applies
            onorms[i].append(float(np.linalg.norm(ref_zeropower(u))))
            ref[i] = ref_muon(theta, g, st, lr=lr, momentum=beta, nesterov=nesterov)
            tnorms[i].append(float(np.linalg.norm(ref[i][0])))
            assert torch.equal(params[i].grad, _t(g))  # grads never modified
    for i, s in enumerate(shapes):
        err = float(np.linalg.norm(params[i].detach().double().numpy() - ref[i][0]))
        bound = tol.muon_trajectory_bound(lrs, muon_aspect_scale(s), onorms[i], tnorms[i], F32_U,
                                          acted_rtol=tol.NS_FUSED_ACTED_RTOL)
        assert 0 < err <= bound, (s, err, bound)
        buf = opt.state[params[i]]["momentum_buffer"]
        assert buf.dtype == params[i].dtype
        # float32 lerps: each step adds a few roundings of the largest magnitude seen (they decay, never grow)
        np.testing.assert_allclose(buf.double().numpy(), ref[i][1]["momentum_buffer"], rtol=0,
                                   atol=24 * 4 * F32_U * gmax)


def test_state_dict_round_trip_continues_in_lockstep(rng):
    shapes = [(16, 24), (2, 24, 16)]
    a = [torch.nn.Parameter(_t(rng.standard_normal(s))) for s in shapes]
    opt_a = Muon(a, lr=0.03, momentum=0.9)
    grads = [[_t(rng.standard_normal(s)) for s in shapes] for _ in range(8)]
    for k in range(4):
        for p, g in zip(a, grads[k], strict=True):
            p.grad = g.clone()
        opt_a.step()
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_b = Muon(b, lr=0.5, momentum=0.5)  # hyperparameters come back from the state dict
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.param_groups[0]["lr"] == 0.03 and opt_b.param_groups[0]["momentum"] == 0.9
    for k in range(4, 8):
        for pa, pb, g in zip(a, b, grads[k], strict=True):
            pa.grad, pb.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        for pa, pb in zip(a, b, strict=True):
            assert torch.equal(pa, pb)
            assert torch.equal(opt_a.state[pa]["momentum_buffer"], opt_b.state[pb]["momentum_buffer"])


def test_zero_grad_then_step_names_the_parameter(rng):
    ps = [torch.nn.Parameter(_t(rng.standard_normal((8, 8)))) for _ in range(3)]
    opt = Muon([{"params": ps[:1]}, {"params": ps[1:], "lr": 0.01}])
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)
    ps[0].grad, ps[1].grad = torch.ones(8, 8), torch.ones(8, 8)
    before = [p.detach().clone() for p in ps]
    with pytest.raises(RuntimeError, match=r"params\[2\] \(shape \(8, 8\)\) has no gradient"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, before, strict=True))  # nothing written
    assert not opt.state


def test_closure_and_per_group_hyperparameters(rng):
    p1, p2 = (torch.nn.Parameter(_t(rng.standard_normal((8, 12)))) for _ in range(2))
    opt = Muon([{"params": [p1]}, {"params": [p2], "lr": 0.0}])
    p2_before = p2.detach().clone()

    def closure():
        opt.zero_grad()
        loss = (p1**2).sum() + (p2**2).sum()
        loss.backward()
        return loss

    p1_before = p1.detach().clone()
    expected_loss = float((p1_before**2).sum() + (p2_before**2).sum())
    loss = opt.step(closure)
    assert math.isclose(float(loss.detach()), expected_loss, rel_tol=1e-6)
    assert torch.equal(p2, p2_before) and not torch.equal(p1, p1_before)  # lr 0 in group 2 only


# --- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,name", [({"lr": -1.0}, "lr"), ({"lr": float("nan")}, "lr"),
                                     ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
                                     ({"nesterov": 1}, "nesterov"), ({"ns_steps": -1}, "ns_steps"),
                                     ({"ns_steps": 2.5}, "ns_steps")])
def test_invalid_hyperparameters(kw, name):
    p = torch.nn.Parameter(torch.ones(4, 4))
    with pytest.raises(ValueError, match=rf"^{name} must"):
        Muon([p], **kw)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        Muon([{"params": [p], **kw}])
    opt = Muon([p])
    key, value = next(iter(kw.items()))
    opt.param_groups[0][key] = value  # a scheduler writing a bad value: caught at the next step
    p.grad = torch.ones(4, 4)
    with pytest.raises(ValueError, match=rf"^{name} must"):
        opt.step()
    args = dict(lr=0.1, momentum=0.9, nesterov=True, ns_steps=5) | kw
    with pytest.raises(ValueError, match=rf"^{name} must"):
        muon([torch.ones(4, 4)], [torch.ones(4, 4)], [torch.ones(4, 4)], **args)


def test_rejects_vectors_and_scalars_at_construction():
    ps = [torch.nn.Parameter(torch.ones(4, 4)), torch.nn.Parameter(torch.ones(4))]
    with pytest.raises(ValueError, match=r"^params\[1\] must have at least 2 dimensions.*\(4,\)"):
        Muon(ps)
    with pytest.raises(ValueError, match=r"^params\[2\] must have at least 2 dimensions"):
        Muon([{"params": [ps[0], torch.nn.Parameter(torch.ones(2, 2))]}, {"params": [torch.tensor(1.0)]}])


KW = dict(lr=0.1, momentum=0.9, nesterov=True, ns_steps=5)


def test_kernel_rejects_mismatches():
    p, g, b = torch.ones(4, 6), torch.ones(4, 6), torch.zeros(4, 6)
    with pytest.raises(ValueError, match=r"^grads and momentum_buffers must have one entry per param"):
        muon([p], [], [b], **KW)
    with pytest.raises(ValueError, match=r"^grads\[0\] must have the shape of params\[0\]"):
        muon([p], [torch.ones(6, 4)], [b], **KW)
    with pytest.raises(ValueError, match=r"^momentum_buffers\[0\] must have the shape"):
        muon([p], [g], [torch.zeros(4, 5)], **KW)
    with pytest.raises(ValueError, match=r"^grads\[0\] must be on the device of params\[0\]"):
        muon([p], [torch.ones(4, 6, device="meta")], [b], **KW)
    with pytest.raises(ValueError, match=r"^momentum_buffers\[0\] must have the dtype of params\[0\]"):
        muon([p], [g], [torch.zeros(4, 6, dtype=torch.float64)], **KW)
    with pytest.raises(ValueError, match=r"^params\[1\] must have at least 2 dimensions"):
        muon([p, torch.ones(3)], [g, torch.ones(3)], [b, torch.zeros(3)], **KW)
    with pytest.raises(ValueError, match=r"^grads\[0\] must be a torch.Tensor"):
        muon([p], [np.ones((4, 6))], [b], **KW)
    before = (p.clone(), b.clone())
    with pytest.raises(ValueError):  # the second triplet is bad: the first is not touched either
        muon([p, p.clone()], [g, g.double()], [b, b.clone()], **KW)
    assert torch.equal(p, before[0]) and torch.equal(b, before[1])


def test_empty_parameter_is_left_alone():
    p, g, b = torch.ones(0, 4), torch.ones(0, 4), torch.zeros(0, 4)
    muon([p], [g], [b], **KW)
    assert p.shape == (0, 4)


# --- CUDA -----------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("nesterov", [True, False])
def test_cuda_kernel_matches_reference(rng, nesterov):
    shapes = [(96, 160), (160, 96), (96, 160)]
    p0 = [rng.standard_normal(s) for s in shapes]
    g = [rng.standard_normal(s) for s in shapes]
    ps = [_t(x).cuda() for x in p0]
    muon(ps, [_t(x).cuda() for x in g], [torch.zeros(s, device="cuda") for s in shapes], lr=0.02,
         momentum=0.95, nesterov=nesterov, ns_steps=5)
    for i, s in enumerate(shapes):
        rp, rs = ref_muon(p0[i], g[i], {}, lr=0.02, momentum=0.95, nesterov=nesterov)
        u = g[i] + 0.95 * (rs["momentum_buffer"] - g[i]) if nesterov else rs["momentum_buffer"]
        o_impl = (p0[i] - ps[i].double().cpu().numpy()) / (0.02 * muon_aspect_scale(s))
        e = ns_subspace_errors(o_impl, ref_zeropower(u), u)
        assert e["acted"] <= tol.NS_FUSED_ACTED_RTOL and e["direction"] <= tol.NS_DIRECTION_ATOL, e


def test_load_state_dict_does_not_share_buffers_with_the_source(rng):
    p = torch.nn.Parameter(_t(rng.standard_normal((8, 12))))
    opt = Muon([p])
    p.grad = _t(rng.standard_normal((8, 12)))
    opt.step()
    q = torch.nn.Parameter(p.detach().clone())
    other = Muon([q])
    other.load_state_dict(opt.state_dict())
    assert other.state[q]["momentum_buffer"].data_ptr() != opt.state[p]["momentum_buffer"].data_ptr()
    assert torch.equal(other.state[q]["momentum_buffer"], opt.state[p]["momentum_buffer"])
