"""impl.muon's lean step (issue 11, item 2) against the step it replaced, bit for bit.

The oracle below is the previous ``muon`` group loop and ``Muon.step`` verbatim in their arithmetic: momentum by a
per-tensor loop, u stacked per (shape, dtype, device) and orthogonalised in ONE batched call, NorMuon's v stacked
and copied back, one param group at a time. The new step (foreach momentum, one 2-D zeropower call per matrix on
CPU, u written straight into the stack elsewhere, same-hyperparameter groups stepped together) does the same
arithmetic, so parameters and every state tensor must be equal bit for bit, over steps with lr/momentum changed
between them, across every variant option, mixed shapes, 3-D parameters, several param groups, a state_dict round
trip, and both kernel paths (per-matrix and batched).
"""

from __future__ import annotations

import copy

import pytest
import torch

from optconform.impl import muon as M
from optconform.impl.muon import Muon, muon
from optconform.impl.newton_schulz import zeropower

# --- the oracle: the previous step ----------------------------------------------------------------------------


@torch.no_grad()
def _old_muon(params, grads, bufs, *, orthogonalize=zeropower, steps=None, second_momentum_buffers=None, **hyper):
    h = M._check_hyper(**hyper)
    lr, beta, ns_steps = h["lr"], h["momentum"], h["ns_steps"]
    ns_kw = {M._NS_KEYWORDS[k]: h[k] for k in M._NS_KEYWORDS
             if h[k] != M._D[k] and not (k == "row_cut" and h["rows"] is None)}
    post = h["muon_plus"] or h["normuon_beta2"] is not None
    wd = h["weight_decay"]
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        if p.numel() == 0:
            continue
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(i)
    for buf, g in zip(bufs, grads, strict=True):
        if h["momentum_form"] == "sum":
            buf.mul_(beta).add_(g)
        else:
            buf.lerp_(g, 1.0 - beta)
    for (shape, dtype, _), idx in groups.items():
        u = torch.stack([M._ns_input(h, grads[i], bufs[i], steps[i] if steps is not None else None) for i in idx])
        if h["muoneq"]:
            u = M._equilibrate_rows(u)
        ortho = orthogonalize(u, ns_steps, **ns_kw)
        if post:
            ortho = ortho.to(M._work_dtype(dtype))
            if h["muon_plus"]:
                ortho = M._muon_plus(ortho)
            if h["normuon_beta2"] is not None:
                v = torch.stack([second_momentum_buffers[i] for i in idx])
                ortho = M._normuon(ortho, v, h["normuon_beta2"])
                for j, i in enumerate(idx):
                    second_momentum_buffers[i].copy_(v[j])
        scale = M.muon_aspect_scale(shape, h["lr_scale"])
        alpha = -lr * scale
        decay = wd * (lr * scale if h["weight_decay_lr"] == "adjusted" else lr)
        for j, i in enumerate(idx):
            p = params[i]
            if decay != 0.0:
                if h["weight_decay_mode"] == "cautious":
                    p.sub_(p * (ortho[j] * p >= 0), alpha=decay)
                else:
                    p.mul_(1.0 - decay)
            p.add_(ortho[j], alpha=alpha)


class _OldMuon(Muon):
    """Muon with the previous step: one kernel call per param group."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            hyper = M._check_hyper(**{k: group[k] for k in M._H.names})
            params = group["params"]
            bufs, steps, seconds = [], [], []
            counted = hyper["momentum_form"] == "bias_corrected"
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
                if counted:
                    steps.append(int(state.get("step", 0)) + 1)
                if hyper["normuon_beta2"] is not None:
                    if "second_momentum_buffer" not in state:
                        state["second_momentum_buffer"] = M.new_second_moment(p)
                    seconds.append(state["second_momentum_buffer"])
            _old_muon(params, [p.grad for p in params], bufs, orthogonalize=self.orthogonalize,
                      steps=steps if counted else None, second_momentum_buffers=seconds or None, **hyper)
            if counted:
                for p, t in zip(params, steps, strict=True):
                    self.state[p]["step"] = t


def _batched_zeropower(u, k, **kw):
    return zeropower(u, k, **kw)


class _BatchedMuon(Muon):
    """The new step through its batched path (any orthogonalize other than zeropower itself takes it)."""

    orthogonalize = staticmethod(_batched_zeropower)


# --- helpers ------------------------------------------------------------------------------------------------------

#: mixed shapes: square, wide, tall, repeated shapes (batched groups), a 3-D parameter, a float64 one, an empty one
SHAPES = [(16, 16), (12, 20), (20, 12), (16, 16), (12, 20), (2, 12, 20), (20, 12), (16, 16), (0, 4)]
DTYPES = [torch.float32] * 5 + [torch.float32, torch.float32, torch.float64, torch.float32]

OPTION_SETS = [
    {},
    {"nesterov": False},
    {"momentum_form": "sum"},
    {"momentum_form": "sum", "nesterov": False},
    {"momentum_form": "bias_corrected"},
    {"momentum_form": "bias_corrected", "nesterov": False},
    {"muoneq": True},
    {"muon_plus": True},
    {"normuon_beta2": 0.95},
    {"normuon_beta2": 0.9, "muon_plus": True, "muoneq": True},
    {"lr_scale": "match_rms_adamw"},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "weight_decay_lr": "adjusted", "weight_decay_mode": "cautious"},
    {"rows": "polar_express"},
    {"rows": "polar_express", "row_cut": "truncate", "ns_steps": 7},
    {"normalisation": "clamp", "ns_eps": 1e-6},
    {"safety": 1.05},
    {"ns_steps": 0},
]


def _params(rng, shapes=SHAPES, dtypes=DTYPES):
    return [torch.nn.Parameter(torch.from_numpy(rng.standard_normal(s)).to(d)) for s, d in zip(shapes, dtypes,
                                                                                               strict=True)]


def _clone(ps):
    return [torch.nn.Parameter(p.detach().clone()) for p in ps]


def _grads(rng, ps, n):
    return [[torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p.dtype) for p in ps] for _ in range(n)]


def _groups(ps, layout):
    """layout: list of (start, stop, extra hyperparameters) param groups."""
    return [{"params": ps[a:b], **kw} for a, b, kw in layout]


def _assert_same(opt_a, opt_b, ps_a, ps_b):
    for i, (pa, pb) in enumerate(zip(ps_a, ps_b, strict=True)):
        assert torch.equal(pa, pb), f"params[{i}] differ"
        sa, sb = opt_a.state.get(pa, {}), opt_b.state.get(pb, {})
        assert sa.keys() == sb.keys(), f"params[{i}]: state keys {sorted(sa)} vs {sorted(sb)}"
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                assert sa[k].shape == sb[k].shape and sa[k].dtype == sb[k].dtype
                assert torch.equal(sa[k], sb[k]), f"params[{i}] state {k!r} differs"
            else:
                assert sa[k] == sb[k]
        if "momentum_buffer" in sb:  # the suite's contract: a tensor of p's shape
            assert tuple(sb["momentum_buffer"].shape) == tuple(pb.shape)


def _run_lockstep(opts, params, grads, schedule=True):
    for k, gs in enumerate(grads):
        for opt, ps in zip(opts, params, strict=True):
            for p, g in zip(ps, gs, strict=True):
                p.grad = g.clone()
            if schedule:  # lr / momentum changed between steps, as the suite does
                for j, group in enumerate(opt.param_groups):
                    group["lr"] = 0.02 * (1 + j) * (0.5 if k == 2 else 1.0)
                    group["momentum"] = 0.0 if k == 1 else 0.9 + 0.01 * k
            opt.step()


# --- tests --------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["per_matrix", "batched", "batched_custom"])
def cls(request, monkeypatch):
    """The new Muon through each of its paths: one zeropower call per matrix (the CPU path for large matrices,
    forced here for small ones), one batched call per shape (small matrices, the default here), a custom
    orthogonalize (always batched)."""
    if request.param == "per_matrix":
        monkeypatch.setattr(M, "PER_MATRIX_MIN_DIM", 1)
    return _BatchedMuon if request.param == "batched_custom" else Muon


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "seed")
def test_step_equals_previous_step_bit_for_bit(rng, cls, options):
    ps = _params(rng)
    old_ps, new_ps = _clone(ps), _clone(ps)
    layout = [(0, 4, {}), (4, 9, {"lr": 0.05})]
    old = _OldMuon(_groups(old_ps, layout), **options)
    new = cls(_groups(new_ps, layout), **options)
    _run_lockstep([old, new], [old_ps, new_ps], _grads(rng, ps, 4))
    _assert_same(old, new, old_ps, new_ps)
    assert any(not torch.equal(a, b) for a, b in zip(ps, new_ps, strict=True)) or options.get("ns_steps") == 0


@pytest.mark.parametrize("layout", [
    [(0, 9, {})],
    [(0, 3, {}), (3, 6, {}), (6, 9, {})],  # equal hyperparameters: stepped together
    [(0, 3, {}), (3, 6, {"lr": 0.01}), (6, 9, {"momentum": 0.8, "nesterov": False})],
    [(0, 2, {"weight_decay": 0.1}), (2, 5, {}), (5, 9, {"weight_decay": 0.1})],
    [(0, 4, {"normuon_beta2": 0.95}), (4, 9, {"momentum_form": "bias_corrected"})],
], ids=["one", "equal", "different", "interleaved", "stateful"])
def test_param_groups_equal_and_different(rng, cls, layout):
    ps = _params(rng)
    old_ps, new_ps = _clone(ps), _clone(ps)
    old, new = _OldMuon(_groups(old_ps, layout)), cls(_groups(new_ps, layout))
    _run_lockstep([old, new], [old_ps, new_ps], _grads(rng, ps, 3), schedule=False)
    _assert_same(old, new, old_ps, new_ps)


def test_groups_with_equal_hyperparameters_share_one_batched_call(rng):
    calls: list[tuple[int, ...]] = []

    class Recording(Muon):
        orthogonalize = staticmethod(lambda u, k, **kw: calls.append(tuple(u.shape)) or zeropower(u, k, **kw))

    shapes = [(8, 12)] * 4 + [(12, 8)] * 2
    ps = _params(rng, shapes, [torch.float32] * 6)
    opt = Recording([{"params": ps[:2]}, {"params": ps[2:4] + ps[4:5]}, {"params": ps[5:], "lr": 0.01},
                     {"params": [], "lr": 0.5}])
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert sorted(calls) == sorted([(4, 8, 12), (1, 12, 8), (1, 12, 8)])  # lr 0.01 stays on its own
    calls.clear()
    opt.param_groups[2]["lr"] = opt.param_groups[0]["lr"]  # now they agree: merged from this step on
    opt.step()
    assert sorted(calls) == sorted([(4, 8, 12), (2, 12, 8)])


def test_groups_differing_only_in_type_or_sign_of_zero_are_not_merged(rng):
    calls: list[tuple[int, ...]] = []

    class Recording(Muon):
        orthogonalize = staticmethod(lambda u, k, **kw: calls.append(tuple(u.shape)) or zeropower(u, k, **kw))

    ps = _params(rng, [(8, 12)] * 2, [torch.float32] * 2)
    opt = Recording([{"params": ps[:1], "lr": 0.0}, {"params": ps[1:], "lr": -0.0}])
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert calls == [(1, 8, 12), (1, 8, 12)]


def test_kernel_per_matrix_path_equals_batched_and_previous(rng, monkeypatch):
    """The functional kernel: default zeropower (per matrix on CPU) vs a batched orthogonalize vs the oracle."""
    monkeypatch.setattr(M, "PER_MATRIX_MIN_DIM", 1)
    shapes, dtypes = SHAPES, DTYPES
    ps = _params(rng, shapes, dtypes)
    gs = _grads(rng, ps, 1)[0]
    bufs = [torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p.dtype) for p in ps]
    vs = [M.new_second_moment(p) + 0.5 for p in ps]
    kw = dict(lr=0.03, momentum=0.9, nesterov=True, ns_steps=5, normuon_beta2=0.95, muon_plus=True,
              weight_decay=0.01)
    runs = []
    for fn, orth in ((muon, zeropower), (muon, _batched_zeropower), (_old_muon, zeropower)):
        p2 = [p.detach().clone() for p in ps]
        b2 = [b.clone() for b in bufs]
        v2 = [v.clone() for v in vs]
        fn(p2, gs, b2, orthogonalize=orth, second_momentum_buffers=v2, **kw)
        runs.append((p2, b2, v2))
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_large_matrices_take_the_per_matrix_path_and_match(rng, monkeypatch):
    """At the default threshold: matrices with min(rows, cols) >= PER_MATRIX_MIN_DIM go one call each."""
    n = M.PER_MATRIX_MIN_DIM
    shapes = [(n, n + 64), (n, n + 64), (n + 64, n), (16, 24), (16, 24)]
    calls: list[tuple[int, ...]] = []
    real = M._orthogonalized

    def recording(h, u, *args):
        calls.append(tuple(u.shape))
        return real(h, u, *args)

    ps = _params(rng, shapes, [torch.float32] * len(shapes))
    old_ps, new_ps = _clone(ps), _clone(ps)
    old, new = _OldMuon(old_ps), Muon(new_ps)
    grads = _grads(rng, ps, 2)
    _run_lockstep([old], [old_ps], grads)
    monkeypatch.setattr(M, "_orthogonalized", recording)
    _run_lockstep([new], [new_ps], grads)
    _assert_same(old, new, old_ps, new_ps)
    assert sorted(calls[:4]) == sorted([(n, n + 64), (n, n + 64), (n + 64, n), (2, 16, 24)])


@pytest.mark.parametrize("options", [{}, {"momentum_form": "bias_corrected", "normuon_beta2": 0.95}],
                         ids=["seed", "stateful"])
@pytest.mark.parametrize("cls", ["per_matrix", "batched"], indirect=True)
def test_state_dict_round_trip_bit_for_bit(rng, options, cls):
    ps = _params(rng)
    old_ps, new_ps = _clone(ps), _clone(ps)
    layout = [(0, 5, {}), (5, 9, {"lr": 0.01})]
    old, new = _OldMuon(_groups(old_ps, layout), **options), cls(_groups(new_ps, layout), **options)
    grads = _grads(rng, ps, 6)
    _run_lockstep([old, new], [old_ps, new_ps], grads[:3])
    sd = new.state_dict()
    assert set(sd["state"]) == {i for i, p in enumerate(new_ps)}
    for i, p in enumerate(new_ps):
        assert tuple(sd["state"][i]["momentum_buffer"].shape) == tuple(p.shape)
    # a fresh optimizer over copies of the parameters, loaded from the state dict, continues in lockstep
    re_ps = _clone(new_ps)
    re = cls(_groups(re_ps, [(0, 5, {"lr": 0.7}), (5, 9, {"lr": 0.9})]), momentum=0.1, **options)
    re.load_state_dict(copy.deepcopy(sd))
    assert [g["lr"] for g in re.param_groups] == [g["lr"] for g in new.param_groups]
    _run_lockstep([old, new, re], [old_ps, new_ps, re_ps], grads[3:])
    _assert_same(old, new, old_ps, new_ps)
    _assert_same(old, re, old_ps, re_ps)
    # no buffer shared with the source
    assert all(re.state[a]["momentum_buffer"].data_ptr() != new.state[b]["momentum_buffer"].data_ptr()
               for a, b in zip(re_ps, new_ps, strict=True) if a.numel())


@pytest.mark.parametrize("cls", ["per_matrix", "batched"], indirect=True)
def test_state_buffers_are_live_tensors_of_the_parameter_shape(rng, cls):
    """The suite reads and may overwrite ``state[p]['momentum_buffer']`` between steps: the step must use it."""
    ps = _params(rng, [(8, 12), (8, 12), (12, 8)], [torch.float32] * 3)
    old_ps, new_ps = _clone(ps), _clone(ps)
    old, new = _OldMuon(old_ps), cls(new_ps)
    grads = _grads(rng, ps, 3)
    _run_lockstep([old, new], [old_ps, new_ps], grads[:1])
    for o, n in zip(old_ps, new_ps, strict=True):  # overwrite in place and replace one outright
        old.state[o]["momentum_buffer"].mul_(0.5)
        new.state[n]["momentum_buffer"].mul_(0.5)
    old.state[old_ps[1]]["momentum_buffer"] = torch.ones(8, 12)
    new.state[new_ps[1]]["momentum_buffer"] = torch.ones(8, 12)
    _run_lockstep([old, new], [old_ps, new_ps], grads[1:])
    _assert_same(old, new, old_ps, new_ps)


@pytest.mark.parametrize("cls", ["per_matrix", "batched"], indirect=True)
def test_bfloat16_parameters(rng, cls):
    shapes = [(16, 24), (16, 24), (24, 16)]
    ps = _params(rng, shapes, [torch.bfloat16] * 3)
    old_ps, new_ps = _clone(ps), _clone(ps)
    old, new = _OldMuon(old_ps), cls(new_ps)
    _run_lockstep([old, new], [old_ps, new_ps], _grads(rng, ps, 3))
    _assert_same(old, new, old_ps, new_ps)

