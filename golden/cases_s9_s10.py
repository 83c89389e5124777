"""Golden cases for S9 (ZeRO-2 DistMuon / DistAdamW) and S10 (nanochat setup and training step)."""

from __future__ import annotations

import numpy as np

from optconform.golden._case import Case, gaussian, low_rank, seeded
from optconform.reference import nanochat, schedules, zero2

T = 20  # distributed trajectory length (>= 20)
WORLD_SIZES = (1, 2, 3, 4)


# ------------------------------------------------------------------------------------------------ S9


def _stack_states(history: list[list[dict]], world: int) -> dict[str, np.ndarray]:
    """{"state.r<r>.<i>.<key>": (T, ...)} from per-step rank states."""
    out: dict[str, list] = {}
    for step_states in history:
        for r in range(world):
            for i, st in step_states[r].items():
                for k, v in st.items():
                    out.setdefault(f"state.r{r}.{i}.{k}", []).append(np.asarray(v))
    if any(len(v) != len(history) for v in out.values()):
        raise AssertionError("a rank's state appeared part way through the trajectory")
    return {k: np.stack(v) for k, v in out.items()}


def _dist_run(fn, params0: list[np.ndarray], grads: list[np.ndarray], fixed: dict, per_step: dict, world: int):
    params = list(params0)
    rank_states: list[dict] = [{} for _ in range(world)]
    hist_p, hist_s = [], []
    for t in range(T):
        rank_grads = [[g[t, r] for g in grads] for r in range(world)]
        kw = {k: float(v[t]) for k, v in per_step.items()}
        params, rank_states = fn(params, rank_grads, rank_states, **fixed, **kw)
        hist_p.append(params)
        hist_s.append(rank_states)
    outs = {f"param.{i}": np.stack([h[i] for h in hist_p]) for i in range(len(params0))}
    outs.update(_stack_states(hist_s, world))
    return outs


def _dist_replay(n: int, per_step: list[str], fields: list[str]) -> dict:
    return {"param0": [f"param0.{i}" for i in range(n)], "grads": [f"grads.{i}" for i in range(n)],
            "grads_layout": "(steps, world_size, *param_shape)", "per_step": per_step,
            "expected_param": [f"param.{i}" for i in range(n)],
            "expected_state": "state.r<rank>.<param_index>.<" + "|".join(fields) + ">"}


def _dist_muon_case(world: int) -> Case:
    shapes = [(2, 8), (8, 2), (2, 8), (2, 8), (3, 3), (2, 8), (8, 2)]
    cid = f"zero2.dist_muon.w{world}_7params_3shapes"
    seed, rng = seeded(cid)
    params0 = [0.1 * gaussian(rng, *s) for s in shapes]
    grads = [gaussian(rng, T, world, *s) for s in shapes]
    grads[1][:, :, 0] = 0.0  # a zero row on every rank
    grads[4][6] = 0.0  # the 3×3 parameter gets a zero gradient on every rank at step 6
    grads[2][:, 0] = np.stack([low_rank(rng, 2, 8, 1) for _ in range(T)])  # rank 0's grads of param 2: rank 1
    lr = 0.02 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmdown_ratio=0.3) for t in range(T)])
    mom = np.array([schedules.muon_momentum(t, ramp_steps=10) for t in range(T)])
    outs = _dist_run(zero2.dist_muon, params0, grads, {"nesterov": True, "ns_steps": 5},
                     {"lr": lr, "momentum": mom}, world)
    groups = zero2.muon_shape_groups(shapes)
    owners = [0] * len(shapes)
    for _, idxs in groups:
        for j, i in enumerate(idxs):
            owners[i] = zero2.muon_owner(j, world)
    ins = {f"param0.{i}": p for i, p in enumerate(params0)}
    ins.update({f"grads.{i}": g for i, g in enumerate(grads)})
    ins.update(lr=lr, momentum=mom)
    return Case(cid, "S9.4", "zero2.dist_muon", f"W={world}; group sizes 4, 2, 1 (not divisible by W)",
                "per-rank grads; params identical on all ranks; state.r<r>.<i> only for owned params",
                {"nesterov": True, "ns_steps": 5}, ins, outs, seed=seed, steps=T, world_size=world,
                layout="dist_trajectory", tolerance_class="linalg",
                extra={"shapes": [list(s) for s in shapes], "owners": owners,
                       "replay": _dist_replay(len(shapes), ["lr", "momentum"], ["momentum_buffer"])})


def _dist_adamw_case(world: int) -> Case:
    shapes = [(7, 3), (2, 5), (13,), (), (4, 2, 2), (9, 4)]
    cid = f"zero2.dist_adamw.w{world}_dim0_7_2_13_scalar"
    seed, rng = seeded(cid)
    params0 = [gaussian(rng, *s) for s in shapes]
    grads = [gaussian(rng, T, world, *s) + 0.2 for s in shapes]
    grads[2] *= 1e-10  # the 1-D parameter's gradient is comparable to eps = 1e-10
    grads[5][4] = 0.0  # a zero-gradient step for one parameter on every rank
    grads[0][:, :, 3] = 0.0  # a zero row
    lr = 0.004 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmup_ratio=0.1, warmdown_ratio=0.2)
                           for t in range(T)])
    hyper = {"betas": [0.8, 0.95], "eps": 1e-10, "weight_decay": 0.05,
             "lr_muls": [1.0, 0.5, 1.0, 2.0, 1.0, 1.0], "wd_muls": [1.0, 0.0, 1.0, 1.0, 0.5, 1.0]}
    outs = _dist_run(zero2.dist_adamw, params0, grads, hyper, {"lr": lr}, world)
    shards = [[list(zero2.adamw_row_shard(s[0] if s else 1, world, r)) for r in range(world)] for s in shapes]
    ins = {f"param0.{i}": p for i, p in enumerate(params0)}
    ins.update({f"grads.{i}": g for i, g in enumerate(grads)})
    ins["lr"] = lr
    return Case(cid, "S9.5", "zero2.dist_adamw",
                f"W={world}; dim0 not divisible by W, dim0 < W, 1-D with |g|~1e-10, 0-D, 3-D",
                "per-rank grads; state.r<r>.<i>.* holds rows extra.shards[i][r] of the moments",
                hyper, ins, outs, seed=seed, steps=T, world_size=world, layout="dist_trajectory",
                extra={"shapes": [list(s) for s in shapes], "shards": shards,
                       "replay": _dist_replay(len(shapes), ["lr"], ["step", "exp_avg", "exp_avg_sq"])})


#: S9.7 / S9.8 golden placements: both Shard dims, Replicate, dim 0 or 1 not divisible by W or smaller than W, and
#: one shape under two placements (two groups for an implementation that groups by shape and placement)
_DT_MUON_PARAMS = [((8, 6), "Shard(0)"), ((8, 6), "Shard(1)"), ((5, 3), "Shard(0)"), ((3, 5), "Shard(1)"),
                   ((6, 6), "Replicate()"), ((2, 8), "Shard(0)"), ((8, 6), "Shard(0)")]
_DT_ADAMW_PARAMS = [((7, 3), "Shard(0)"), ((3, 7), "Shard(1)"), ((13,), "Shard(0)"), ((), "Replicate()"),
                    ((4, 2, 2), "Shard(1)"), ((2, 5), "Replicate()")]


def _dtensor_case(clause: str, fn, params: list, world: int) -> Case:
    shapes, placements = [s for s, _ in params], [pl for _, pl in params]
    name = fn.__name__
    cid = f"zero2.{name}.w{world}_{len(shapes)}params_mixed_placements"
    seed, rng = seeded(cid)
    muon = clause == "S9.7"
    params0 = [(0.1 if muon else 1.0) * gaussian(rng, *s) for s in shapes]
    grads = [gaussian(rng, T, world, *s) + (0.0 if muon else 0.2) for s in shapes]
    if muon:
        grads[2][:, 0] = np.stack([low_rank(rng, 5, 3, 1) for _ in range(T)])  # rank 0's grads of param 2: rank 1
        lr = 0.02 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmdown_ratio=0.3) for t in range(T)])
        per_step = {"lr": lr, "momentum": np.array([schedules.muon_momentum(t, ramp_steps=10) for t in range(T)])}
        fixed: dict = {"nesterov": True, "ns_steps": 5}
        fields = ["momentum_buffer"]
    else:
        grads[2] *= 1e-10  # the 1-D parameter's gradient is comparable to eps = 1e-10
        lr = 0.004 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmdown_ratio=0.2) for t in range(T)])
        per_step = {"lr": lr}
        fixed = {"betas": [0.8, 0.95], "eps": 1e-10, "weight_decay": 0.05, "lr_muls": [1.0, 0.5, 1.0, 2.0, 1.0, 1.0],
                 "wd_muls": [1.0, 0.0, 1.0, 1.0, 0.5, 1.0]}
        fields = ["step", "exp_avg", "exp_avg_sq"]
    outs = _dist_run(fn, params0, grads, {**fixed, "placements": placements}, per_step, world)
    ins = {f"param0.{i}": p for i, p in enumerate(params0)}
    ins.update({f"grads.{i}": g for i, g in enumerate(grads)})
    ins.update(per_step)
    return Case(cid, clause, f"zero2.{name}", f"W={world}; placements {', '.join(placements)}",
                "per-rank grads; params whole (full_tensor); state.r<r>.<i> is rank r's S9.6 piece of the state "
                "of parameter i placed extra.placements[i]", fixed, ins, outs, seed=seed, steps=T, world_size=world,
                layout="dist_trajectory", tolerance_class="linalg" if muon else "elementwise",
                extra={"shapes": [list(s) for s in shapes], "placements": placements,
                       "replay": _dist_replay(len(shapes), list(per_step), fields)})


def zero2_cases() -> list[Case]:
    cases = []
    for w in WORLD_SIZES:
        cid = f"zero2.mean_gradient.w{w}"
        seed, rng = seeded(cid)
        rg = gaussian(rng, w, 5, 7) * np.array([1.0, 1e-10, 1e10, 3.0])[:w, None, None]
        cases.append(Case(cid, "S9.1", "zero2.mean_gradient", f"W={w}, rank scales 1, 1e-10, 1e10, 3",
                          "rank_grads[r] = gradient of rank r", {}, {"rank_grads": rg},
                          {"mean": zero2.mean_gradient(list(rg))}, seed=seed, world_size=w))
    shapes = [[8, 16], [16, 8], [8, 16], [4, 4], [8, 16], [2, 3, 4], [16, 8], [8, 16], [4, 4], [8, 16]]
    groups = zero2.muon_shape_groups([tuple(s) for s in shapes])
    group_of = np.zeros(len(shapes), dtype=np.int64)
    index_in = np.zeros(len(shapes), dtype=np.int64)
    for gi, (_, idxs) in enumerate(groups):
        for j, i in enumerate(idxs):
            group_of[i], index_in[i] = gi, j
    outs = {"group_of": group_of, "index_in_group": index_in}
    for w in WORLD_SIZES:
        outs[f"owner.w{w}"] = np.array([zero2.muon_owner(int(j), w) for j in index_in])
    cases.append(Case("zero2.muon_shape_groups.table", "S9.2", "zero2.muon_shape_groups",
                      "10 params, 4 shapes, one 3-D", "group g = groups[g] in sorted-shape order; owner.w<W>[i] = "
                      "muon_owner(index_in_group[i], W)", {"shapes": shapes}, {}, outs, layout="table",
                      extra={"group_shapes": [list(s) for s, _ in groups]}))
    rows = [(d, w, r) for d in (0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 50257) for w in WORLD_SIZES for r in range(w)]
    d0, ws, rk = (np.array(c) for c in zip(*rows, strict=True))
    se = np.array([zero2.adamw_row_shard(int(d), int(w), int(r)) for d, w, r in rows])
    cases.append(Case("zero2.adamw_row_shard.table", "S9.3", "zero2.adamw_row_shard",
                      "dim0 0..13 and 50257 (nanochat #320), W 1..4, every rank",
                      "row i: adamw_row_shard(dim0[i], world_size[i], rank[i]) = (start[i], stop[i])", {},
                      {"dim0": d0, "world_size": ws, "rank": rk}, {"start": se[:, 0], "stop": se[:, 1]},
                      layout="table"))
    cases += [_dist_muon_case(w) for w in WORLD_SIZES]
    cases += [_dist_adamw_case(w) for w in WORLD_SIZES]
    rows = [(s, pl, w, r) for s, pl in (((7, 3), "Shard(0)"), ((7, 3), "Shard(1)"), ((3, 50257), "Shard(1)"),
                                        ((2, 9), "Shard(0)"), ((4, 4), "Replicate()"), ((), "Replicate()"),
                                        ((0, 4), "Shard(0)"), ((4, 2, 5), "Shard(2)"))
            for w in WORLD_SIZES for r in range(w)]
    ranges = [zero2.dtensor_shard(s, pl, w, r) for s, pl, w, r in rows]
    ndim = 3
    pad = [list(rg) + [(0, 0)] * (ndim - len(rg)) for rg in ranges]
    cases.append(Case("zero2.dtensor_shard.table", "S9.6", "zero2.dtensor_shard",
                      "Shard(0/1/2), Replicate, 0-D, empty dim, dims not divisible by W, W 1..4, every rank",
                      "row i: dtensor_shard(extra.shapes[i], extra.placements[i], world_size[i], rank[i]) = "
                      "((start[i, d], stop[i, d]) for d < len(shape)); columns past the shape's ndim are 0", {},
                      {"world_size": np.array([w for *_, w, _ in rows]), "rank": np.array([r for *_, r in rows])},
                      {"start": np.array([[a for a, _ in p] for p in pad]),
                       "stop": np.array([[b for _, b in p] for p in pad])}, layout="table",
                      extra={"shapes": [list(s) for s, *_ in rows], "placements": [pl for _, pl, *_ in rows]}))
    cases += [_dtensor_case("S9.7", zero2.dtensor_muon, _DT_MUON_PARAMS, w) for w in WORLD_SIZES]
    cases += [_dtensor_case("S9.8", zero2.dtensor_adamw, _DT_ADAMW_PARAMS, w) for w in WORLD_SIZES]
    cases += [_reshard_case(*c) for c in RESHARDS]
    return cases


#: S9.9 cases: (layout, W, W′), each layout growing and shrinking, W′ = 1 (consolidation) among them
RESHARDS = (("S9.2", 2, 3), ("S9.2", 4, 1), ("S9.3", 3, 2), ("S9.3", 1, 4), ("S9.6", 2, 3), ("S9.6", 4, 2))
#: their parameters: DistMuon shape groups of 3, 2 and 1 matrices; DistAdamW / DTensor shapes with dim 0 below and
#: not divisible by W, 1-D and 0-D; S9.6 placements on both dims and Replicate
_RESHARD_SHAPES = {"S9.2": [(4, 6), (6, 4), (4, 6), (6, 4), (4, 6), (3, 3)],
                   "S9.3": [(7, 3), (2, 5), (13,), (), (3, 2, 2)],
                   "S9.6": [(7, 3), (2, 5), (5, 9), (), (13,)]}
_RESHARD_PLACEMENTS = ["Shard(0)", "Shard(1)", "Replicate()", "Replicate()", "Shard(0)"]


def _reshard_case(layout: str, world: int, new_world: int) -> Case:
    """The state after a few steps of the layout's optimizer on ``world`` ranks (its reference), resharded."""
    cid = f"zero2.reshard.{layout.replace('.', '_').lower()}_w{world}_to_w{new_world}"
    seed, rng = seeded(cid)
    shapes = _RESHARD_SHAPES[layout]
    placements = _RESHARD_PLACEMENTS if layout == "S9.6" else None
    params = [gaussian(rng, *s) for s in shapes]
    states: list[dict] = [{} for _ in range(world)]
    for _ in range(3):  # three steps: momentum, moments and step counts that differ per parameter
        grads = [[gaussian(rng, *s) for s in shapes] for _ in range(world)]
        if layout == "S9.2":
            params, states = zero2.dist_muon(params, grads, states, lr=0.02)
        elif layout == "S9.3":
            params, states = zero2.dist_adamw(params, grads, states, lr=0.004, weight_decay=0.1)
        else:
            params, states = zero2.dtensor_adamw(params, grads, states, placements, lr=0.004, weight_decay=0.1)
    new = zero2.reshard(states, shapes, new_world, layout=layout, placements=placements)

    def flat(rank_states):
        return {f"state.r{r}.{i}.{k}": np.asarray(v) for r, st in enumerate(rank_states) for i, e in st.items()
                for k, v in e.items()}

    return Case(cid, "S9.9", "zero2.reshard", f"{layout} state on W={world} ranks read on W′={new_world}",
                "inputs state.r<r>.<i>.<key>: rank r's piece of parameter i's state at W (as the layout's optimizer "
                "left it after 3 steps); outputs: the same at W′ = reshard(..., world_size=W′)",
                {"world_size": new_world, "layout": layout, "placements": placements,
                 "shapes": [list(s) for s in shapes]}, flat(states), flat(new), seed=seed, world_size=world,
                layout="table")


# ----------------------------------------------------------------------------------------------- S10


#: A toy nanochat model (depth 1, model_dim 4, vocab 8): names sorted, so JSON key order = input order.
TOY_SHAPES: dict[str, tuple[int, ...]] = {
    "lm_head.weight": (8, 4),
    "transformer.h.0.attn.c_q.weight": (4, 4),
    "transformer.h.0.mlp.c_fc.weight": (16, 4),
    "transformer.h.0.mlp.c_proj.weight": (4, 16),
    "transformer.wte.weight": (8, 4),
}
_SCHED = {"num_iterations": T - 1, "warmup_ratio": 0.1, "warmdown_ratio": 0.3, "final_lr_frac": 0.0}


def _group_arrays(groups: dict, prefix: str = "") -> dict[str, np.ndarray]:
    a, m = groups["adamw"], groups["muon"]
    return {f"{prefix}adamw.lr": np.array([g["lr"] for g in a]),
            f"{prefix}adamw.initial_lr": np.array([g["initial_lr"] for g in a]),
            f"{prefix}adamw.betas": np.array([list(g["betas"]) for g in a]),
            f"{prefix}adamw.eps": np.array([g["eps"] for g in a]),
            f"{prefix}adamw.weight_decay": np.array([g["weight_decay"] for g in a]),
            f"{prefix}muon.lr": np.array([g["lr"] for g in m]),
            f"{prefix}muon.initial_lr": np.array([g["initial_lr"] for g in m]),
            f"{prefix}muon.momentum": np.array([g["momentum"] for g in m]),
            f"{prefix}muon.nesterov": np.array([g["nesterov"] for g in m]),
            f"{prefix}muon.ns_steps": np.array([g["ns_steps"] for g in m])}


def _group_of(groups: dict, names: list[str]) -> np.ndarray:
    """0 = adamw[0] (lm_head), 1 = adamw[1] (wte), 2 = muon[0]."""
    flat = [set(g["names"]) for g in groups["adamw"]] + [set(g["names"]) for g in groups["muon"]]
    return np.array([next(k for k, s in enumerate(flat) if n in s) for n in names])


def _train_case(tag: str, grad_clip: float, k_micro: int, scales: np.ndarray) -> Case:
    cid = f"nanochat.train_step.{tag}"
    seed, rng = seeded(cid)
    names = list(TOY_SHAPES)
    groups = nanochat.nanochat_param_groups(TOY_SHAPES, model_dim=4)
    params = {n: 0.5 * gaussian(rng, *s) for n, s in TOY_SHAPES.items()}
    micro = {n: gaussian(rng, T, k_micro, *s) * scales.reshape((T, 1) + (1,) * len(s)) / 16.0
             for n, s in TOY_SHAPES.items()}
    micro["transformer.h.0.attn.c_q.weight"][4] = 0.0  # one matrix has a zero gradient at step 4
    ins = {f"param0.{n}": p for n, p in params.items()}
    ins.update({f"micro_grads.{n}": g for n, g in micro.items()})
    ins["it"] = np.arange(T)
    states: dict = {}
    hist: dict[str, list] = {}
    for t in range(T):
        mg = [{n: micro[n][t, k] for n in names} for k in range(k_micro)]
        params, states, info = nanochat.train_step(params, mg, states, groups, it=t, grad_clip=grad_clip, **_SCHED)
        rec = {f"param.{n}": params[n] for n in names}
        rec.update({f"state.{n}.{k}": np.asarray(v) for n in names for k, v in states[n].items()})
        rec["info.grad_norm"] = np.float64(np.nan if info["grad_norm"] is None else info["grad_norm"])
        rec["info.lr_multiplier"] = np.float64(info["lr_multiplier"])
        rec["info.muon_momentum"] = np.float64(info["muon_momentum"])
        rec["info.adamw_lr"] = np.array([g["lr"] for g in info["groups"]["adamw"]])
        rec["info.muon_lr"] = np.array([g["lr"] for g in info["groups"]["muon"]])
        for key, v in rec.items():
            hist.setdefault(key, []).append(v)
    outs = {k: np.stack(v) for k, v in hist.items()}
    if grad_clip == 0.0:
        del outs["info.grad_norm"]  # not computed when clipping is off (info["grad_norm"] is None)
    return Case(cid, "S10.4", "nanochat.train_step", tag,
                "toy model (extra.names); micro_grads.<name>[t, k]; step t uses it = t; group_of: 0 = adamw[0], "
                "1 = adamw[1], 2 = muon[0]",
                {"groups": groups, "grad_clip": grad_clip, **_SCHED}, ins, {**outs, "group_of":
                                                                             _group_of(groups, names)},
                seed=seed, steps=T, layout="trajectory", tolerance_class="linalg",
                extra={"names": names, "micro_steps": k_micro,
                       "replay": {"param0": [f"param0.{n}" for n in names],
                                  "grads": [f"micro_grads.{n}" for n in names],
                                  "grads_layout": "(steps, micro_steps, *param_shape)", "per_step": ["it"],
                                  "expected_param": [f"param.{n}" for n in names],
                                  "expected_state": "state.<name>.<step|exp_avg|exp_avg_sq|momentum_buffer>"}})


def nanochat_cases() -> list[Case]:
    dims = np.array([1, 4, 64, 384, 768, 1024, 1280, 2048, 3072])
    cases = [Case("nanochat.dmodel_lr_scale.table", "S10.1", "nanochat.dmodel_lr_scale", "model_dim 1 .. 3072",
                  "value[i] = dmodel_lr_scale(model_dim[i])", {}, {"model_dim": dims},
                  {"value": np.array([nanochat.dmodel_lr_scale(int(d)) for d in dims])}, layout="table")]
    for tag, kw in (("toy_model_dim4_defaults", {"model_dim": 4}),
                    ("model_dim768_custom_lrs_wd0.1", {"model_dim": 768, "unembedding_lr": 0.008,
                                                       "embedding_lr": 0.3, "matrix_lr": 0.05,
                                                       "weight_decay": 0.1})):
        groups = nanochat.nanochat_param_groups(TOY_SHAPES, **kw)
        names = list(TOY_SHAPES)
        cases.append(Case(f"nanochat.nanochat_param_groups.{tag}", "S10.2", "nanochat.nanochat_param_groups", tag,
                          "group_of[i] for extra.names[i]: 0 = adamw[0] (unembedding), 1 = adamw[1] (embedding), "
                          "2 = muon[0]; <kind>.<field>[j] = groups[kind][j][field]",
                          {"shapes": {n: list(s) for n, s in TOY_SHAPES.items()}, **kw}, {},
                          {"group_of": _group_of(groups, names), **_group_arrays(groups)}, layout="call",
                          extra={"names": names}))
    groups = nanochat.nanochat_param_groups(TOY_SHAPES, model_dim=4)
    for tag, its, sched in (("n20_warmup0.1_warmdown0.3_final0.05", list(range(21)),
                             {"num_iterations": 20, "warmup_ratio": 0.1, "warmdown_ratio": 0.3, "final_lr_frac": 0.05}),
                            ("n1000_momentum_ramp_edges", [0, 1, 150, 299, 300, 301, 799, 800, 801, 1000],
                             {"num_iterations": 1000, "warmup_ratio": 0.0, "warmdown_ratio": 0.2,
                              "final_lr_frac": 0.0})):
        rows = [nanochat.apply_schedules(groups, it, **sched) for it in its]
        outs = {"adamw.lr": np.stack([[g["lr"] for g in r["adamw"]] for r in rows]),
                "muon.lr": np.stack([[g["lr"] for g in r["muon"]] for r in rows]),
                "muon.momentum": np.stack([[g["momentum"] for g in r["muon"]] for r in rows])}
        cases.append(Case(f"nanochat.apply_schedules.{tag}", "S10.3", "nanochat.apply_schedules", tag,
                          "row i: apply_schedules(groups, it[i], ...); <kind>.lr[i, j] = new groups[kind][j]['lr']",
                          {"groups": groups, **sched}, {"it": np.array(its)}, outs, layout="table"))
    # per-step gradient scales chosen so the clipped total norm crosses max_norm = 1 both ways
    scales = np.array([0.2, 3.0, 1.0, 0.5, 2.0] * 4)
    cases.append(_train_case("toy_clip1_k2", 1.0, 2, scales))
    cases.append(_train_case("toy_clip0_off_k3", 0.0, 3, scales))
    return cases
