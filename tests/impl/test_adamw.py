"""impl/adamw.py (S8.2) against the float64 reference, torch.optim.AdamW, and known formula mistakes.

Tolerances: conformance/tolerances.py float32 section (F32_STEP_RTOL_STRICT per step from the same state;
f32_trajectory_rtol(k) after k steps without reset). Metric: rel_fro_error in float64.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.tolerances import F32_STEP_RTOL_STRICT, f32_trajectory_rtol
from optconform.impl.adamw import AdamW, adamw
from optconform.reference.adam import adamw as ref_adamw


@pytest.fixture(autouse=True, params=["fused", "foreach"])
def adamw_kernel(request, monkeypatch) -> str:
    """Every test runs on both AdamW kernels (OPTCONFORM_ADAMW_KERNEL)."""
    monkeypatch.setenv("OPTCONFORM_ADAMW_KERNEL", request.param)
    return request.param


SHAPES = [(6, 5), (7,), (), (3, 2, 4)]
F64_RTOL = 1e-13  # float64 impl vs float64 reference: ~10 roundings of 2^-53 per step × 24 steps, with margin


def _grad(rng, shape, t, dtype=np.float32):
    """Gradients cycling through the regimes that matter: Gaussian, |g| ~ eps (1e-10), zero, mixed 1e-12..1e2."""
    g = rng.standard_normal(shape)
    kind = t % 4
    if kind == 1:
        g = g * 1e-10
    elif kind == 2:
        g = g * 0.0
    elif kind == 3:
        g = g * 10.0 ** rng.uniform(-12, 2, size=shape)
    return np.asarray(g, dtype=dtype)


def _params(rng, dtype=torch.float32):
    ps = [torch.tensor(rng.standard_normal(s), dtype=dtype, requires_grad=True) for s in SHAPES]
    for p in ps:
        p.lr_mul = float(rng.uniform(0.5, 1.5))
        p.wd_mul = float(rng.uniform(0.0, 2.0))
    return ps


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_trajectory_matches_reference(rng, weight_decay):
    """24 steps, lr changed every step, eps-sized and zero gradients, lr_mul/wd_mul: no reset in between."""
    ps = _params(rng)
    opt = AdamW(ps, lr=1e-3, weight_decay=weight_decay)
    refs = [p.detach().double().numpy() for p in ps]
    states = [{} for _ in ps]
    k = 24
    for t in range(1, k + 1):
        lr = float(10 ** rng.uniform(-4, -0.7))
        opt.param_groups[0]["lr"] = lr
        for i, p in enumerate(ps):
            g = _grad(rng, p.shape, t)
            p.grad = torch.tensor(g)
            refs[i], states[i] = ref_adamw(refs[i], g, states[i], lr=lr, weight_decay=weight_decay,
                                           lr_mul=p.lr_mul, wd_mul=p.wd_mul)
        opt.step()
    tol = f32_trajectory_rtol(k, strict=True)
    for i, p in enumerate(ps):
        st = opt.state[p]
        assert int(st["step"].item()) == states[i]["step"] == k
        assert rel_fro_error(p, refs[i]) <= tol
        assert rel_fro_error(st["exp_avg"], states[i]["exp_avg"]) <= tol
        assert rel_fro_error(st["exp_avg_sq"].sqrt(), np.sqrt(states[i]["exp_avg_sq"])) <= tol


@pytest.mark.parametrize("eps_regime", [False, True])
def test_each_step_within_strict_bound(rng, eps_regime):
    """Per step from the reference's (float32-rounded) state, as torch's optimizer tests do."""
    shape = (12, 9)
    theta = rng.standard_normal(shape).astype(np.float32)
    m = np.zeros(shape, np.float32)
    v = np.zeros(shape, np.float32)
    for t in range(1, 21):
        lr, wd = float(10 ** rng.uniform(-4, -0.7)), 0.05
        g = (rng.standard_normal(shape) * (1e-10 if eps_regime else 1.0)).astype(np.float32)
        p, mt, vt = torch.tensor(theta), torch.tensor(m), torch.tensor(v)
        adamw([p], [torch.tensor(g)], [mt], [vt], [t], lr=lr, beta1=0.8, beta2=0.95, eps=1e-10,
              weight_decay=wd, lr_muls=[1.3], wd_muls=[0.7])
        state = {"step": t - 1, "exp_avg": m.astype(np.float64), "exp_avg_sq": v.astype(np.float64)} if t > 1 else {}
        rp, rs = ref_adamw(theta, g, state, lr=lr, weight_decay=wd, lr_mul=1.3, wd_mul=0.7)
        assert rel_fro_error(p, rp) <= F32_STEP_RTOL_STRICT
        assert rel_fro_error(mt, rs["exp_avg"]) <= F32_STEP_RTOL_STRICT
        assert rel_fro_error(vt.sqrt(), np.sqrt(rs["exp_avg_sq"])) <= F32_STEP_RTOL_STRICT
        theta, m, v = rp.astype(np.float32), rs["exp_avg"].astype(np.float32), rs["exp_avg_sq"].astype(np.float32)


def test_float64_parameters_match_reference_to_float64_rounding(rng):
    ps = _params(rng, dtype=torch.float64)
    opt = AdamW(ps, lr=0.05, weight_decay=0.2)
    refs = [p.detach().numpy().copy() for p in ps]
    states = [{} for _ in ps]
    for t in range(1, 25):
        for i, p in enumerate(ps):
            g = _grad(rng, p.shape, t, np.float64)
            p.grad = torch.tensor(g)
            refs[i], states[i] = ref_adamw(refs[i], g, states[i], lr=0.05, weight_decay=0.2, lr_mul=p.lr_mul,
                                           wd_mul=p.wd_mul)
        opt.step()
    for p, r in zip(ps, refs, strict=True):
        assert rel_fro_error(p, r) <= F64_RTOL


def _torch_pair(rng, **torch_kw):
    ps = [torch.tensor(rng.standard_normal(s), dtype=torch.float32, requires_grad=True) for s in SHAPES]
    qs = [p.detach().clone().requires_grad_() for p in ps]
    ours = AdamW(ps, lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    theirs = torch.optim.AdamW(qs, lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1, **torch_kw)
    return ps, qs, ours, theirs


def _step_both(rng, ps, qs, ours, theirs, t):
    lr = float(10 ** rng.uniform(-4, -1))
    for o in (ours, theirs):
        o.param_groups[0]["lr"] = lr
    for p, q in zip(ps, qs, strict=True):
        g = torch.tensor(_grad(rng, p.shape, t))
        p.grad, q.grad = g.clone(), g.clone()
    ours.step()
    theirs.step()


def test_bitwise_equal_to_torch_adamw_twin(rng, adamw_kernel):
    """Our foreach path computes torch.optim.AdamW's single-tensor float32 ops in the same order; our fused
    path calls the kernel torch.optim.AdamW(fused=True) calls. Either way: bitwise equal."""
    ps, qs, ours, theirs = _torch_pair(rng, **(dict(foreach=False) if adamw_kernel == "foreach" else dict(fused=True)))
    for t in range(1, 25):
        _step_both(rng, ps, qs, ours, theirs, t)
    for p, q in zip(ps, qs, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(ours.state[p]["exp_avg_sq"], theirs.state[q]["exp_avg_sq"])


@pytest.mark.parametrize("torch_kw", [dict(foreach=True), dict(fused=True)], ids=["foreach", "fused"])
def test_close_to_torch_adamw_other_paths(rng, torch_kw):
    ps, qs, ours, theirs = _torch_pair(rng, **torch_kw)
    k = 24
    for t in range(1, k + 1):
        _step_both(rng, ps, qs, ours, theirs, t)
    for p, q in zip(ps, qs, strict=True):
        # both are float32 within f32_trajectory_rtol of the exact result; twice that bounds their distance
        assert rel_fro_error(p, q) <= 2 * f32_trajectory_rtol(k, strict=True)


# --- the tolerance rejects the formula mistakes it is meant to catch ---------------------------------------

def _mutant(p, g, m, v, t, *, lr, wd, lr_mul, kind):
    b1, b2, eps = 0.8, 0.95, 1e-10
    eta = lr * lr_mul
    p.mul_(1 - (lr if kind == "decay_without_lr_mul" else eta) * wd)
    m.lerp_(g, 1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    if kind == "eps_before_bias_correction":  # nanochat #304
        denom = (v.sqrt() + eps) / math.sqrt(bc2)
    elif kind == "no_bias_correction":
        bc1, denom = 1.0, v.sqrt() + eps
    elif kind == "float32_bias_correction":  # the seed's DistAdamW: beta ** int64-tensor -> float32
        tt = torch.tensor(t, dtype=torch.int64)
        bc1, bc2 = float(1 - b1**tt), float(1 - b2**tt)
        denom = v.sqrt() / math.sqrt(bc2) + eps
    else:
        denom = v.sqrt() / math.sqrt(bc2) + eps
    p.addcdiv_(m, denom, value=-eta / bc1)


@pytest.mark.parametrize("kind,rejected", [("eps_before_bias_correction", True), ("no_bias_correction", True),
                                           ("decay_without_lr_mul", True), ("float32_bias_correction", False)])
def test_default_tolerance_rejects_known_mistakes(rng, kind, rejected):
    shape = (16, 8)
    theta = rng.standard_normal(shape).astype(np.float32)
    p, m, v = torch.tensor(theta), torch.zeros(shape), torch.zeros(shape)
    rp, rs = theta.astype(np.float64), {}
    worst = 0.0
    for t in range(1, 11):
        g = (rng.standard_normal(shape) * (1e-10 if t % 2 else 1.0)).astype(np.float32)  # eps regime half the time
        _mutant(p, torch.tensor(g), m, v, t, lr=1e-2, wd=0.1, lr_mul=2.0, kind=kind)
        rp, rs = ref_adamw(rp, g, rs, lr=1e-2, weight_decay=0.1, lr_mul=2.0)
        worst = max(worst, rel_fro_error(p, rp) / f32_trajectory_rtol(t))
    assert (worst > 1.0) == rejected, worst


# --- optimizer mechanics --------------------------------------------------------------------------------------

def test_none_grad_is_skipped_and_state_untouched(rng):
    a = torch.tensor(rng.standard_normal((3, 3)), dtype=torch.float32, requires_grad=True)
    b = torch.tensor(rng.standard_normal(4), dtype=torch.float32, requires_grad=True)
    opt = AdamW([a, b], lr=0.1)
    a.grad = torch.tensor(rng.standard_normal((3, 3)), dtype=torch.float32)
    b_before = b.detach().clone()
    opt.step()
    assert b not in opt.state and torch.equal(b, b_before)
    # frozen-then-unfrozen: b's first step happens at a's second and uses t = 1
    ra, sa = a.detach().double().numpy(), {"step": 1, "exp_avg": opt.state[a]["exp_avg"].double().numpy(),
                                           "exp_avg_sq": opt.state[a]["exp_avg_sq"].double().numpy()}
    gb = rng.standard_normal(4).astype(np.float32)
    b.grad = torch.tensor(gb)
    a.grad = None
    opt.step()
    assert int(opt.state[b]["step"].item()) == 1 and int(opt.state[a]["step"].item()) == 1
    rb, _ = ref_adamw(b_before.double().numpy(), gb, {}, lr=0.1)
    assert rel_fro_error(b, rb) <= F32_STEP_RTOL_STRICT
    assert rel_fro_error(a, ra) == 0.0 and sa["step"] == 1


def test_kernel_never_writes_grads_and_handles_mixed_dtypes(rng):
    p32 = torch.tensor(rng.standard_normal((4, 3)), dtype=torch.float32)
    p64 = torch.tensor(rng.standard_normal(5), dtype=torch.float64)
    g32, g64 = torch.randn(4, 3), torch.randn(5, dtype=torch.float64)
    g32c, g64c = g32.clone(), g64.clone()
    ms = [torch.zeros_like(p32), torch.zeros_like(p64)]
    vs = [torch.zeros_like(p32), torch.zeros_like(p64)]
    r64, _ = ref_adamw(p64.numpy().copy(), g64.numpy(), {}, lr=0.1)
    adamw([p32, p64], [g32, g64], ms, vs, [1, 1], lr=0.1, beta1=0.8, beta2=0.95, eps=1e-10, weight_decay=0.0,
          lr_muls=[1.0, 1.0], wd_muls=[1.0, 1.0])
    assert torch.equal(g32, g32c) and torch.equal(g64, g64c)
    assert rel_fro_error(p64, r64) <= F64_RTOL


def test_step_is_float32_cpu_tensor_and_bias_correction_uses_its_integer(rng):
    p = torch.tensor(rng.standard_normal(6), dtype=torch.float32, requires_grad=True)
    opt = AdamW([p], lr=0.01)
    p.grad = torch.ones(6)
    opt.step()
    step = opt.state[p]["step"]
    assert step.dtype == torch.float32 and step.device.type == "cpu" and step.item() == 1.0


def _saved_and_loaded(state_dict):
    """Through torch.save/torch.load, as a checkpoint goes: load_state_dict keeps (does not copy) tensors of
    the right dtype/device, so loading a live optimizer's state_dict directly would alias its state."""
    buf = io.BytesIO()
    torch.save(state_dict, buf)
    buf.seek(0)
    return torch.load(buf)


def test_state_dict_round_trip_continues_in_lockstep(rng):
    ps = _params(rng)
    qs = [p.detach().clone().requires_grad_() for p in ps]
    for p, q in zip(ps, qs, strict=True):
        q.lr_mul, q.wd_mul = p.lr_mul, p.wd_mul
    a = AdamW(ps, lr=0.02, weight_decay=0.1)
    for t in range(1, 6):
        for p in ps:
            p.grad = torch.tensor(_grad(rng, p.shape, t))
        a.step()
    with torch.no_grad():
        for p, q in zip(ps, qs, strict=True):
            q.copy_(p)
    b = AdamW(qs, lr=0.5, weight_decay=0.0)
    b.load_state_dict(_saved_and_loaded(a.state_dict()))
    assert b.param_groups[0]["lr"] == 0.02 and b.param_groups[0]["weight_decay"] == 0.1
    for t in range(6, 12):
        for p, q in zip(ps, qs, strict=True):
            g = torch.tensor(_grad(rng, p.shape, t))
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for p, q in zip(ps, qs, strict=True):
        assert torch.equal(p, q)
        assert torch.equal(a.state[p]["exp_avg"], b.state[q]["exp_avg"])


def test_loads_torch_adamw_state_dict(rng, adamw_kernel):
    ps, qs, ours, theirs = _torch_pair(rng, **(dict(foreach=False) if adamw_kernel == "foreach" else dict(fused=True)))
    for t in range(1, 4):  # torch steps alone, then hands its state to ours
        for q in qs:
            q.grad = torch.tensor(_grad(rng, q.shape, t))
        theirs.step()
    with torch.no_grad():
        for p, q in zip(ps, qs, strict=True):
            p.copy_(q)
    sd = theirs.state_dict()
    sd["param_groups"] = [{k: g[k] for k in ("lr", "betas", "eps", "weight_decay", "params")}
                          for g in sd["param_groups"]]
    ours.load_state_dict(_saved_and_loaded(sd))
    for t in range(4, 10):
        _step_both(rng, ps, qs, ours, theirs, t)
    for p, q in zip(ps, qs, strict=True):
        assert torch.equal(p, q)


# --- errors ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,name", [(dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"),
                                     (dict(betas=(1.0, 0.95)), r"betas\[0\]"), (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
                                     (dict(betas=0.9), "betas"), (dict(eps=0.0), "eps"),
                                     (dict(weight_decay=-0.1), "weight_decay")])
def test_constructor_rejects_invalid_hyperparameters(kw, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        AdamW([torch.zeros(2, requires_grad=True)], **kw)


def test_invalid_lr_set_by_a_scheduler_raises_at_step_without_touching_anything():
    p = torch.ones(3, requires_grad=True)
    opt = AdamW([p], lr=0.1)
    opt.param_groups[0]["lr"] = -0.5
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="^lr"):
        opt.step()
    assert not opt.state[p] and torch.equal(p, torch.ones(3))


def _kernel_args():
    p = torch.zeros(2, 3)
    return dict(params=[p], grads=[torch.ones(2, 3)], exp_avgs=[torch.zeros(2, 3)], exp_avg_sqs=[torch.zeros(2, 3)],
                steps=[1], lr=0.1, beta1=0.8, beta2=0.95, eps=1e-10, weight_decay=0.0, lr_muls=[1.0], wd_muls=[1.0])


@pytest.mark.parametrize("change,name", [
    (dict(beta1=1.0), "beta1"), (dict(beta2=1.5), "beta2"), (dict(eps=-1.0), "eps"), (dict(lr=-1.0), "lr"),
    (dict(weight_decay=float("inf")), "weight_decay"),
    (dict(grads=[torch.ones(3, 2)]), r"grads\[0\]"), (dict(grads=[]), "grads"),
    (dict(exp_avgs=[torch.zeros(2, 3, dtype=torch.float64)]), r"exp_avgs\[0\]"),
    (dict(exp_avg_sqs=[torch.zeros(2, 3, device="meta")]), r"exp_avg_sqs\[0\]"),
    (dict(steps=[0]), r"steps\[0\]"), (dict(steps=[1, 2]), "steps"), (dict(lr_muls=[-1.0]), r"lr_muls\[0\]"),
    (dict(wd_muls=[float("nan")]), r"wd_muls\[0\]"), (dict(params=[torch.zeros(2, 3, dtype=torch.int64)]),
                                                       r"params\[0\]"),
])
def test_kernel_rejects_bad_input(change, name):
    kw = _kernel_args()
    kw.update(change)
    with pytest.raises(ValueError, match=f"^{name}"):
        adamw(**kw)
