"""impl/nanochat.py (S10): setup_optimizers' split against nanochat_param_groups, and train_step against the
reference train_step on a tiny GPT-shaped module.

Tolerances: AdamW-owned parameters: f32_trajectory_rtol (float32 family, conformance/tolerances.py) — the
gradients go through one float32 accumulation and one clipping rounding first, relative errors that AdamW passes
on with condition <= 1. Muon-owned parameters: the policy's MUON_UPDATE_RTOL (bf16 Newton–Schulz).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optconform.conformance import tolerances
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.tolerances import F32_U, f32_trajectory_rtol
from optconform.impl.adamw import AdamW
from optconform.impl.nanochat import dmodel_lr_scale, setup_optimizers, train_step
from optconform.reference import nanochat as ref

muon_mod = pytest.importorskip("optconform.impl.muon")

#: bf16 NS5 vs float64 NS5 on full-rank Gaussian micro-gradients: the policy's bound on one Muon update
#: (tolerances.MUON_UPDATE_RTOL; measured max 0.018 over this file's 16×16 cases). Whole-matrix error is a fair
#: metric here only because the inputs are full-rank Gaussian (see the NS section of tolerances.py).
MUON_UPDATE_RTOL = tolerances.MUON_UPDATE_RTOL

V, D = 11, 16


class TinyGPT(nn.Module):
    """transformer.wte / transformer.h / lm_head, as nanochat's GPT names them."""

    def __init__(self, n_layer: int = 2, bias: bool = False):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(V, D), h=nn.ModuleList([nn.Linear(D, D, bias=bias) for _ in range(n_layer)])))
        self.lm_head = nn.Linear(D, V, bias=False)

    def forward(self, idx, targets):
        x = self.transformer.wte(idx)
        for block in self.transformer.h:
            x = x + torch.tanh(block(x))
        return nn.functional.cross_entropy(self.lm_head(x).flatten(0, 1), targets.flatten())


def _model(seed: int) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT()


def test_split_matches_reference_groups(rng):
    model = _model(int(rng.integers(2**31)))
    kw = dict(model_dim=D, unembedding_lr=0.003, embedding_lr=0.3, matrix_lr=0.05, weight_decay=0.01)
    adamw_opt, muon_opt = setup_optimizers(model, **kw)
    groups = ref.nanochat_param_groups({n: tuple(p.shape) for n, p in model.named_parameters()}, **kw)
    named = dict(model.named_parameters())
    assert isinstance(adamw_opt, AdamW) and isinstance(muon_opt, muon_mod.Muon)
    for og, rg in zip(adamw_opt.param_groups, groups["adamw"], strict=True):
        assert og["params"] == [named[n] for n in rg["names"]]
        assert og["lr"] == og["initial_lr"] == rg["lr"]        # same float64 product: exact
        assert og["betas"] == rg["betas"] and og["eps"] == rg["eps"] and og["weight_decay"] == rg["weight_decay"]
    (mg,), (rmg,) = muon_opt.param_groups, groups["muon"]
    assert mg["params"] == [named[n] for n in rmg["names"]]
    assert mg["lr"] == mg["initial_lr"] == 0.05 and mg["momentum"] == 0.95
    assert dmodel_lr_scale(1280) == ref.dmodel_lr_scale(1280)


def test_accepts_named_pairs_and_mappings(rng):
    model = _model(int(rng.integers(2**31)))
    a = setup_optimizers(list(model.named_parameters()), model_dim=D)
    b = setup_optimizers(dict(model.named_parameters()), model_dim=D)
    assert [g["params"] for g in a[0].param_groups] == [g["params"] for g in b[0].param_groups]


def _pairs(model):
    return list(model.named_parameters())


@pytest.mark.parametrize("case,match", [
    ("extra", "named_parameters"), ("vector_in_h", "named_parameters"), ("twice_name", "named_parameters"),
    ("twice_tensor", "named_parameters"), ("no_lm_head", "named_parameters"), ("model_dim", "model_dim"),
    ("lr", "embedding_lr"), ("wd", "weight_decay"),
])
def test_setup_errors(case, match):
    model = _model(0)
    pairs, kw = _pairs(model), dict(model_dim=D)
    if case == "extra":
        pairs.append(("transformer.ln_f.weight", nn.Parameter(torch.ones(D))))
    elif case == "vector_in_h":
        pairs.append(("transformer.h.0.bias", nn.Parameter(torch.ones(D))))
    elif case == "twice_name":
        pairs.append(pairs[0])
    elif case == "twice_tensor":
        pairs.append(("transformer.h.9.weight", pairs[-1][1]))
    elif case == "no_lm_head":
        pairs = [(n, p) for n, p in pairs if not n.startswith("lm_head.")]
    elif case == "model_dim":
        kw["model_dim"] = 0
    elif case == "lr":
        kw["embedding_lr"] = -0.1
    else:
        kw["weight_decay"] = float("nan")
    with pytest.raises(ValueError, match=f"^{match}"):
        setup_optimizers(pairs, **kw)


def test_distributed_true_without_process_group_raises():
    with pytest.raises(RuntimeError, match="distributed"):
        setup_optimizers(_model(0), model_dim=D, distributed=True)


def _micro_grads(rng, model, k, scale):
    return [[torch.tensor(rng.standard_normal(p.shape) * scale, dtype=torch.float32) for p in model.parameters()]
            for _ in range(k)]


@pytest.mark.parametrize("grad_clip,scale", [(1.0, 1.0), (1.0, 1e-3), (0.0, 1.0)], ids=["clipped", "unclipped",
                                                                                    "clip-off"])
def test_train_step_matches_reference(rng, grad_clip, scale):
    model = _model(int(rng.integers(2**31)))
    opts = setup_optimizers(model, model_dim=D, weight_decay=0.05)
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
    groups = ref.nanochat_param_groups({n: tuple(p.shape) for n, p in model.named_parameters()}, model_dim=D,
                                       weight_decay=0.05)
    states: dict = {}
    sched = dict(num_iterations=6, warmup_ratio=0.34, warmdown_ratio=0.5, final_lr_frac=0.1)
    muon_names = set(groups["muon"][0]["names"])
    for it in range(7):
        old = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
        mg = _micro_grads(rng, model, 3, scale)
        info = train_step(model, opts, mg, it=it, grad_clip=grad_clip, **sched)
        ref_mg = [{n: g.double().numpy() for n, g in zip(names, m, strict=True)} for m in mg]
        params, states, rinfo = ref.train_step(params, ref_mg, states, groups, it=it, grad_clip=grad_clip, **sched)
        assert info["lr_multiplier"] == rinfo["lr_multiplier"] and info["muon_momentum"] == rinfo["muon_momentum"]
        if grad_clip:
            # g/K rounded, then two float32 additions: error <= 3u·‖Σ|g_k|‖/K, and ‖Σ|g_k|‖ ≈ 1.5‖Σg_k‖ for 3 iid
            # Gaussian micro-gradients: 4.5u, 6u with margin (the norm itself is float64, CLIP_NORM_RTOL)
            assert abs(info["grad_norm"] - rinfo["grad_norm"]) <= 6 * F32_U * rinfo["grad_norm"]
        else:
            assert info["grad_norm"] is None
        assert info["loss"] is None
        for n, p in model.named_parameters():
            assert p.grad is None
            if n in muon_names:  # compare this step's update; reset to the reference to keep steps independent
                assert rel_fro_error(p.detach().double().numpy() - old[n], params[n] - old[n]) <= MUON_UPDATE_RTOL
            else:
                assert rel_fro_error(p, params[n]) <= f32_trajectory_rtol(it + 1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in muon_names:
                    p.copy_(torch.from_numpy(params[n]))
                    params[n] = p.detach().double().numpy().copy()
        for g in opts[1].param_groups:
            assert g["momentum"] == rinfo["muon_momentum"]
        for o, kind in zip(opts, ("adamw", "muon"), strict=True):
            for g, rg in zip(o.param_groups, rinfo["groups"][kind], strict=True):
                assert g["lr"] == rg["lr"]


def test_loss_callables_equal_precomputed_gradients(rng):
    """(loss / K).backward() with K = 2 scales by an exact power of two: bitwise equal to Σ g_k / K."""
    seed = int(rng.integers(2**31))
    a, b = _model(seed), _model(seed)
    oa, ob = setup_optimizers(a, model_dim=D), setup_optimizers(b, model_dim=D)
    for it in range(3):
        batches = [(torch.tensor(rng.integers(0, V, (2, 5))), torch.tensor(rng.integers(0, V, (2, 5))))
                   for _ in range(2)]
        grads, losses = [], []
        for x, y in batches:
            loss = b(x, y)
            losses.append(float(loss.detach()))
            grads.append(list(torch.autograd.grad(loss, list(b.parameters()))))
        ia = train_step(a, oa, [lambda x=x, y=y: a(x, y) for x, y in batches], it=it, num_iterations=10)
        ib = train_step(b, ob, grads, it=it, num_iterations=10)
        assert ia["loss"] == sum(losses) / 2 and ia["grad_norm"] == ib["grad_norm"]
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q) and p.grad is None


@pytest.mark.parametrize("change,match", [
    (dict(grad_clip=-1.0), "grad_clip"), (dict(it=11), "it"), (dict(warmdown_ratio=2.0), "warmdown_ratio"),
    (dict(micro_steps=[]), "micro_steps"), (dict(micro_steps=[[torch.zeros(1)]]), r"micro_steps\[0\]"),
])
def test_train_step_errors(change, match):
    model = _model(0)
    opts = setup_optimizers(model, model_dim=D)
    kw = dict(micro_steps=[[torch.zeros_like(p) for p in model.parameters()]], it=0, num_iterations=10)
    kw.update(change)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=f"^{match}"):
        train_step(model, opts, **kw)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_train_step_requires_initial_lr():
    model = _model(0)
    opt = AdamW(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="^optimizers"):
        train_step(model, [opt], [[torch.zeros_like(p) for p in model.parameters()]], it=0, num_iterations=1)
