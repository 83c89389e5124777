"""S10 nanochat setup and training step against the seed's numbers and a hand-written base_train loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from seed_code import get_muon_momentum, seed_lr_multiplier_for

from optconform.reference.nanochat import (
    apply_schedules,
    dmodel_lr_scale,
    nanochat_param_groups,
    train_step,
)

# Tolerance of the train_step comparison: the hand loop below is an independent float64 transcription
# (same operations, different arrangement), ≈ 10 ulp per step; Newton–Schulz (slope ≤ a⁵ ≈ 485 on tiny
# singular values, notes/numerics.md) amplifies that to ≲ 1e-12 over the 8 steps, so 1e-10 relative
# leaves headroom while any change of schedule, clipping or accumulation moves parameters by ≥ 1e-4.
RTOL = 1e-10

D, V = 8, 11
SHAPES = {
    "transformer.wte.weight": (V, D),
    "transformer.h.0.attn.c_q.weight": (D, D),
    "transformer.h.0.mlp.c_fc.weight": (4 * D, D),
    "transformer.h.0.mlp.c_proj.weight": (D, 4 * D),
    "transformer.h.1.attn.c_q.weight": (D, D),
    "lm_head.weight": (V, D),
}


# ---------------------------------------------------------------- S10.1


def test_dmodel_lr_scale_values():
    assert dmodel_lr_scale(768) == 1.0
    assert dmodel_lr_scale(1280) == pytest.approx(math.sqrt(0.6), rel=1e-15)  # ≈ 0.7746, 1 ulp
    assert dmodel_lr_scale(1280) == pytest.approx(0.7745966692414834, rel=1e-15)
    assert dmodel_lr_scale(3072) == pytest.approx(0.5, rel=1e-15)
    assert dmodel_lr_scale(192) == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("bad", [0, -768, 768.0, True, "768"])
def test_dmodel_lr_scale_invalid(bad):
    with pytest.raises(ValueError, match="^model_dim"):
        dmodel_lr_scale(bad)


# ---------------------------------------------------------------- S10.2


def test_param_groups_split_and_lrs():
    groups = nanochat_param_groups(SHAPES, model_dim=1280, weight_decay=0.1)
    s = (1280 / 768) ** -0.5
    unemb, emb = groups["adamw"]
    (mat,) = groups["muon"]
    assert unemb["names"] == ["lm_head.weight"]
    assert emb["names"] == ["transformer.wte.weight"]
    assert mat["names"] == [n for n in SHAPES if n.startswith("transformer.h.")]
    all_names = unemb["names"] + emb["names"] + mat["names"]
    assert sorted(all_names) == sorted(SHAPES)  # nothing missing, nothing twice
    assert unemb["lr"] == pytest.approx(0.004 * s, rel=1e-15) and emb["lr"] == pytest.approx(0.2 * s, rel=1e-15)
    assert mat["lr"] == 0.02  # Muon lr is not scaled
    for g in (unemb, emb, mat):
        assert g["initial_lr"] == g["lr"]
    for g in (unemb, emb):
        assert g["betas"] == (0.8, 0.95) and g["eps"] == 1e-10 and g["weight_decay"] == 0.1
    assert mat["momentum"] == 0.95 and mat["nesterov"] is True and mat["ns_steps"] == 5


def test_param_groups_custom_lrs():
    groups = nanochat_param_groups(SHAPES, model_dim=768, unembedding_lr=0.01, embedding_lr=0.3, matrix_lr=0.05)
    assert [g["lr"] for g in groups["adamw"]] == [0.01, 0.3]
    assert groups["muon"][0]["lr"] == 0.05


@pytest.mark.parametrize("shapes,match", [
    ({**SHAPES, "transformer.ln_f.weight": (D,)}, "^shapes"),  # unknown name
    ({**SHAPES, "transformer.h": (D, D)}, "^shapes"),  # prefix needs the dot
    ({**SHAPES, "transformer.h.0.norm.weight": (D,)}, r"^shapes\['transformer.h.0.norm.weight'\]"),  # 1-D Muon
    ({k: v for k, v in SHAPES.items() if k != "lm_head.weight"}, "^shapes"),  # empty group
    ({**SHAPES, "lm_head.bias": (-1,)}, r"^shapes\['lm_head.bias'\]"),
    ([("lm_head.weight", (V, D))], "^shapes"),
])
def test_param_groups_invalid_shapes(shapes, match):
    with pytest.raises(ValueError, match=match):
        nanochat_param_groups(shapes, model_dim=D)


@pytest.mark.parametrize("kw,name", [(dict(unembedding_lr=-1.0), "unembedding_lr"),
                                     (dict(embedding_lr=float("nan")), "embedding_lr"),
                                     (dict(matrix_lr=-0.02), "matrix_lr"), (dict(weight_decay=-0.1), "weight_decay"),
                                     (dict(model_dim=0), "model_dim")])
def test_param_groups_invalid_hyperparameters(kw, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        nanochat_param_groups(SHAPES, **{"model_dim": D, **kw})


# ---------------------------------------------------------------- seed transcriptions (base_train.py)


def get_lr_multiplier(it, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    return seed_lr_multiplier_for(num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac)(it)


def ns5(g, steps=5):
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        B = b * A + c * A @ A
        x = a * x + B @ x
    return x.T if g.shape[0] > g.shape[1] else x


def test_apply_schedules_matches_seed(rng):
    groups = nanochat_param_groups(SHAPES, model_dim=1280)
    kw = dict(num_iterations=50, warmup_ratio=0.1, warmdown_ratio=0.3, final_lr_frac=0.05)
    for it in [0, 1, 4, 5, 20, 35, 36, 49, 50]:
        out = apply_schedules(groups, it, **kw)
        lrm = get_lr_multiplier(it, 50, 0.1, 0.3, 0.05)
        for kind in ("adamw", "muon"):
            for g0, g1 in zip(groups[kind], out[kind], strict=True):
                assert g1["lr"] == pytest.approx(g0["initial_lr"] * lrm, rel=1e-15)
                assert g1["initial_lr"] == g0["initial_lr"] and g1["names"] == g0["names"]
        assert out["muon"][0]["momentum"] == pytest.approx(get_muon_momentum(it), rel=1e-15)
        assert "momentum" not in out["adamw"][0]
    assert groups["muon"][0]["lr"] == 0.02 and groups["muon"][0]["momentum"] == 0.95  # input untouched
    out = apply_schedules(groups, 600, num_iterations=1000)
    assert out["muon"][0]["momentum"] == 0.95 and out["adamw"][1]["lr"] == groups["adamw"][1]["initial_lr"]


def test_apply_schedules_errors():
    groups = nanochat_param_groups(SHAPES, model_dim=D)
    with pytest.raises(ValueError, match="^it"):
        apply_schedules(groups, 11, num_iterations=10)
    with pytest.raises(ValueError, match="^warmdown_ratio"):
        apply_schedules(groups, 1, num_iterations=10, warmdown_ratio=1.5)
    with pytest.raises(ValueError, match="^groups"):
        apply_schedules({"adamw": groups["adamw"]}, 1, num_iterations=10)


# ---------------------------------------------------------------- S10.4 train_step vs a hand loop


def hand_loop(params, micro_grads_per_step, *, num_iterations, grad_clip, sched, model_dim):
    """Transcription of base_train.py's step (accumulation, clip, schedules, AdamW then Muon)."""
    s = (model_dim / 768) ** -0.5
    lr0 = {"lm_head.weight": 0.004 * s, "transformer.wte.weight": 0.2 * s}
    p = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    buf = {k: np.zeros_like(v) for k, v in p.items()}
    history = []
    for it, micro in enumerate(micro_grads_per_step):
        K = len(micro)
        g = {k: sum(mg[k] for mg in micro) / K for k in p}
        if grad_clip > 0.0:
            total = math.sqrt(sum(float(np.sum(x * x)) for x in g.values()))
            if total > grad_clip:
                g = {k: x * (grad_clip / total) for k, x in g.items()}
        lrm = get_lr_multiplier(it, num_iterations, *sched)
        mom = get_muon_momentum(it)
        t = it + 1
        for k, lr in lr0.items():  # AdamW, textbook (torch.optim.AdamW arrangement), wd = 0
            m[k] = 0.8 * m[k] + 0.2 * g[k]
            v2[k] = 0.95 * v2[k] + 0.05 * g[k] ** 2
            denom = np.sqrt(v2[k]) / math.sqrt(1 - 0.95**t) + 1e-10
            p[k] = p[k] - (lr * lrm / (1 - 0.8**t)) * m[k] / denom
        for k in p:  # seed Muon.step
            if not k.startswith("transformer.h."):
                continue
            buf[k] = buf[k] + (1 - mom) * (g[k] - buf[k])
            u = g[k] + mom * (buf[k] - g[k])
            p[k] = p[k] - 0.02 * lrm * max(1, p[k].shape[0] / p[k].shape[1]) ** 0.5 * ns5(u)
        history.append({k: x.copy() for k, x in p.items()})
    return history


@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_train_step_matches_hand_loop(rng, grad_clip):
    params = {k: rng.normal(size=s) * 0.1 for k, s in SHAPES.items()}
    n_it = 8
    # per step: 1–3 micro-batches, overall scale from 1e-3 to 1e2 so clipping is on for some steps only
    steps = []
    for it in range(n_it):
        scale = 10.0 ** rng.uniform(-3, 2)
        steps.append([{k: rng.normal(size=s) * scale for k, s in SHAPES.items()} for _ in range(1 + it % 3)])
    sched = (0.25, 0.5, 0.1)  # warmup_ratio, warmdown_ratio, final_lr_frac
    expected = hand_loop(params, steps, num_iterations=n_it, grad_clip=grad_clip, sched=sched, model_dim=D)
    groups = nanochat_param_groups(SHAPES, model_dim=D)
    p, states = params, {}
    clipped_any = unclipped_any = False
    for it in range(n_it):
        p, states, info = train_step(p, steps[it], states, groups, it=it, grad_clip=grad_clip, num_iterations=n_it,
                                     warmup_ratio=sched[0], warmdown_ratio=sched[1], final_lr_frac=sched[2])
        for k in SHAPES:
            np.testing.assert_allclose(p[k], expected[it][k], rtol=RTOL, atol=RTOL)
        assert info["grads"] == dict.fromkeys(SHAPES)  # zero_grad(set_to_none=True)
        assert info["lr_multiplier"] == get_lr_multiplier(it, n_it, *sched)
        assert info["muon_momentum"] == get_muon_momentum(it)
        assert info["groups"]["muon"][0]["momentum"] == get_muon_momentum(it)
        if grad_clip > 0:
            clipped_any |= info["grad_norm"] > grad_clip
            unclipped_any |= info["grad_norm"] <= grad_clip
        else:
            assert info["grad_norm"] is None
        assert set(states) == set(SHAPES) and states["lm_head.weight"]["step"] == it + 1
    assert groups["muon"][0]["lr"] == 0.02  # groups not modified
    if grad_clip > 0:
        assert clipped_any and unclipped_any


def test_train_step_accumulation_and_global_clip(rng):
    # K micro-grads: the step equals one micro-batch of their mean; the clip norm spans ALL parameters
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    micro = [{k: rng.normal(size=s) * 3 for k, s in SHAPES.items()} for _ in range(4)]
    mean = {k: sum(mg[k] for mg in micro) / 4 for k in SHAPES}
    groups = nanochat_param_groups(SHAPES, model_dim=D)
    kw = dict(it=0, num_iterations=10)
    pa, _, ia = train_step(params, micro, {}, groups, **kw)
    pb, _, ib = train_step(params, [mean], {}, groups, **kw)
    for k in SHAPES:
        np.testing.assert_allclose(pa[k], pb[k], rtol=RTOL, atol=RTOL)
    total = math.sqrt(sum(float(np.sum(x * x)) for x in mean.values()))
    assert ia["grad_norm"] == pytest.approx(total, rel=1e-13)  # summation order only
    # clipping scales the first AdamW update of every parameter only through ε: check the Muon-free
    # quantity exp_avg = 0.2·g_clipped instead
    _, st, _ = train_step(params, micro, {}, groups, **kw)
    np.testing.assert_allclose(st["lm_head.weight"]["exp_avg"], 0.2 * mean["lm_head.weight"] / total, rtol=1e-13)


def test_train_step_errors(rng):
    groups = nanochat_param_groups(SHAPES, model_dim=D)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    mg = [{k: rng.normal(size=s) for k, s in SHAPES.items()}]
    kw = dict(it=0, num_iterations=5)
    with pytest.raises(ValueError, match="^params"):
        train_step({k: v for k, v in params.items() if k != "lm_head.weight"}, mg, {}, groups, **kw)
    with pytest.raises(ValueError, match="^micro_grads"):
        train_step(params, [], {}, groups, **kw)
    with pytest.raises(ValueError, match=r"^micro_grads\[0\]"):
        train_step(params, [{**mg[0], "lm_head.weight": np.ones((2, 2))}], {}, groups, **kw)
    with pytest.raises(ValueError, match=r"^micro_grads\[1\]"):
        train_step(params, [mg[0], {}], {}, groups, **kw)
    with pytest.raises(ValueError, match="^states"):
        train_step(params, mg, {"other": {}}, groups, **kw)
    with pytest.raises(ValueError, match="^grad_clip"):
        train_step(params, mg, {}, groups, grad_clip=-1.0, **kw)
    with pytest.raises(ValueError, match="^it"):
        train_step(params, mg, {}, groups, it=6, num_iterations=5)
    with pytest.raises(ValueError, match="^groups"):
        train_step(params, mg, {}, {"adamw": groups["adamw"], "muon": groups["muon"] * 2}, **kw)


def test_train_step_inputs_not_modified(rng):
    groups = nanochat_param_groups(SHAPES, model_dim=D)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    mg = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(2)]
    _, states, _ = train_step(params, mg, {}, groups, it=0, num_iterations=5)
    snap = {k: v.copy() for k, v in params.items()}
    gsnap = [{k: v.copy() for k, v in d.items()} for d in mg]
    buf = states["transformer.h.0.attn.c_q.weight"]["momentum_buffer"].copy()
    train_step(params, mg, states, groups, it=1, num_iterations=5)
    for k in SHAPES:
        np.testing.assert_array_equal(snap[k], params[k])
        for d0, d1 in zip(gsnap, mg, strict=True):
            np.testing.assert_array_equal(d0[k], d1[k])
    np.testing.assert_array_equal(buf, states["transformer.h.0.attn.c_q.weight"]["momentum_buffer"])
