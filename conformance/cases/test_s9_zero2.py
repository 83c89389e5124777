"""S9 ZeRO-2: the target's DistMuon and DistAdamW on real process groups (gloo on CPU, NCCL on CUDA).

For every selected world size (``--world-sizes``, default 1,2,3,4) each optimizer runs the golden
trajectory of that world size and a fresh live one on W spawned ranks (a hang or crash on any rank is
a failure naming the rank, after ``--dist-timeout`` seconds at most). Judged, per S9:

* every rank holds bit-identical parameters after every step;
* each step equals the single-process optimizer (S7.2 / S8.2) stepped on the mean of the ranks'
  gradients (judged like the single-process cases, from the parameters the ranks had);
* the whole trajectory matches the goldens (DistAdamW) ;
* state is sharded as S9.2 / S9.3 say: DistMuon keeps ``momentum_buffer`` only on the owning rank
  (block-cyclic over same-shape groups), DistAdamW keeps ``exp_avg`` / ``exp_avg_sq`` only for the rows
  the rank owns (dim-0 chunks of ceil(dim0/W)), and those shards equal the reference's.

Parameter counts and dim 0 do not divide W, dim 0 is smaller than W for some parameters, DistAdamW gets
1-D and 0-D parameters, and some steps have gradients comparable to eps, where averaging with a sum
instead of a mean changes the result even under Adam's and Newton–Schulz's scale invariance.
"""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance.cases.test_s7_muon import judge_muon
from optconform.conformance.distributed import DistTrajectory, run_all
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.replay import Replayed, Trajectory, judge_float_family
from optconform.conformance.spawn import RankFailure, RankTimeout
from optconform.conformance.tolerances import F32_STEP_RTOL, F32_STEP_RTOL_STRICT, F32_U, f32_trajectory_rtol
from optconform.golden import store
from optconform.reference.adam import adamw as ref_adamw
from optconform.reference.schedules import lr_multiplier, muon_momentum
from optconform.reference.zero2 import adamw_row_shard, muon_owner, muon_shape_groups

WORLD_SIZES = (1, 2, 3, 4)
KINDS = ("DistMuon", "DistAdamW")


def _golden(kind: str, world_size: int) -> DistTrajectory | None:
    clause = "S9.4" if kind == "DistMuon" else "S9.5"
    for c in store.iter_cases(clause):
        if c.world_size != world_size:
            continue
        rp = c.extra["replay"]
        params0 = [c.inputs[n] for n in rp["param0"]]
        rank_grads = [[[c.inputs[g][t, r] for g in rp["grads"]] for r in range(world_size)] for t in range(c.steps)]
        per_step = [{k: float(c.inputs[k][t]) for k in rp["per_step"]} for t in range(c.steps)]
        expected = [[c.outputs[e][t] for e in rp["expected_param"]] for t in range(c.steps)]
        if kind == "DistMuon":
            hyper = dict(lr=per_step[0]["lr"], momentum=per_step[0].get("momentum", c.hyper.get("momentum", 0.95)),
                         nesterov=bool(c.hyper["nesterov"]), ns_steps=int(c.hyper["ns_steps"]))
            attrs = [{} for _ in params0]
        else:
            hyper = dict(lr=per_step[0]["lr"], betas=tuple(c.hyper["betas"]), eps=float(c.hyper["eps"]),
                         weight_decay=float(c.hyper["weight_decay"]))
            muls = zip(c.hyper.get("lr_muls") or [1.0] * len(params0), c.hyper.get("wd_muls") or [1.0] * len(params0),
                       strict=True)
            attrs = [{k: v for k, v in (("lr_mul", lm), ("wd_mul", wm)) if v != 1.0} for lm, wm in muls]
        return DistTrajectory(kind, c.id, params0, rank_grads, per_step, hyper, attrs, expected)
    return None


def _live(kind: str, world_size: int, rng: np.random.Generator) -> DistTrajectory:
    steps = 12
    if kind == "DistMuon":
        shapes = [(8, 16), (8, 16), (8, 16), (16, 8), (16, 8), (12, 12), (4, 32)]
        scale = [1e-8 if t in (2, 7) else 1.0 for t in range(steps)]  # 1e-8: where sum vs mean shows
        per_step = [{"lr": 0.02 * lr_multiplier(t, num_iterations=steps - 1, warmdown_ratio=0.5, final_lr_frac=0.1),
                     "momentum": muon_momentum(30 * t)} for t in range(steps)]
        hyper = dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=True, ns_steps=5)
    else:
        shapes = [(7, 3), (2, 5), (13,), (), (3, 2, 2), (1, 4)]
        scale = [1e-10 if t % 3 == 1 else 1.0 for t in range(steps)]  # 1e-10 ~ eps: where sum vs mean shows
        per_step = [{"lr": 0.004 * lr_multiplier(t, num_iterations=steps - 1, warmdown_ratio=0.5)}
                    for t in range(steps)]
        hyper = dict(lr=0.004, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    params0 = [0.5 * rng.standard_normal(s) for s in shapes]
    rank_grads = [[[scale[t] * rng.standard_normal(s) for s in shapes] for _ in range(world_size)]
                  for t in range(steps)]
    return DistTrajectory(kind, f"live W={world_size}", params0, rank_grads, per_step, hyper,
                          [{} for _ in shapes])


@pytest.fixture(scope="session")
def dist_results(target, pytestconfig, live_seed):
    """Lazily runs (kind, W) once per session: {(kind, W): (trajectories, records | exception)}."""
    cache: dict = {}

    def get(kind: str, world_size: int):
        if (kind, world_size) not in cache:
            rng = np.random.default_rng([live_seed, world_size, KINDS.index(kind)])
            trajs = [t for t in (_golden(kind, world_size), _live(kind, world_size, rng)) if t is not None]
            try:
                records = run_all(target.spec, trajs, world_size, device=pytestconfig.getoption("device"),
                                  timeout_s=pytestconfig.getoption("dist_timeout"))
            except (RankFailure, RankTimeout) as exc:
                records = exc
            cache[(kind, world_size)] = (trajs, records)
        return cache[(kind, world_size)]

    return get


def _setup(target, world_sizes, dist_results, kind, world_size, device):
    target.require(kind)
    if world_size not in world_sizes:
        pytest.skip(f"world size {world_size} not selected (--world-sizes)")
    if device.type == "cuda":
        import torch

        if world_size > torch.cuda.device_count():
            pytest.skip(f"world size {world_size} needs {world_size} GPUs; {torch.cuda.device_count()} visible")
    trajs, records = dist_results(kind, world_size)
    if isinstance(records, Exception):
        pytest.fail(f"{kind} on {world_size} ranks: {records}", pytrace=False)
    return trajs, records


def _judge_common(verdict, traj: DistTrajectory, recs: list[dict], world_size: int) -> Replayed:
    """Ranks identical after every step; returns rank 0's replay with the mean gradients."""
    worst = 0.0
    for r in range(1, world_size):
        for t in range(traj.steps):
            for a, b in zip(recs[r]["after"][t], recs[0]["after"][t], strict=True):
                worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    verdict.check("max |θ_rank − θ_rank0| over steps", worst, 0.0, case=traj.case_id)
    mean = [[np.mean([recs[r]["grads"][t][i] for r in range(world_size)], axis=0) for i in range(len(traj.params0))]
            for t in range(traj.steps)]
    return Replayed(recs[0]["before"], mean, recs[0]["after"])


def _as_single(traj: DistTrajectory, mean_grads) -> Trajectory:
    return Trajectory(traj.case_id, traj.params0, mean_grads, traj.per_step, traj.hyper, traj.expected, traj.attrs)


@pytest.mark.clause("S9.4", "dist_muon")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", ["golden", "live"])
def test_dist_muon(target, verdict, world_sizes, dist_results, device, strict, world_size, which):
    trajs, records = _setup(target, world_sizes, dist_results, "DistMuon", world_size, device)
    k = [t.case_id.startswith("live") for t in trajs].index(which == "live")
    traj, recs = trajs[k], [records[r][k] for r in range(world_size)]
    rep = _judge_common(verdict, traj, recs, world_size)
    states = judge_muon(verdict, _as_single(traj, rep.grads), rep, strict)
    # ownership (S9.2): momentum_buffer only on the owner, equal to the reference's buffer
    owner = {}
    for _, idx in muon_shape_groups([p.shape for p in traj.params0]):
        for j, i in enumerate(idx):
            owner[i] = muon_owner(j, world_size)
    for i in range(len(traj.params0)):
        holders = [r for r in range(world_size) if "momentum_buffer" in recs[r]["state"][i]]
        verdict.equal(f"ranks holding momentum_buffer of param {i}", holders, [owner[i]], case=traj.case_id)
        buf = recs[owner[i]]["state"][i]["momentum_buffer"]
        tol = f32_trajectory_rtol(traj.steps, strict=strict) + world_size * F32_U
        verdict.check(f"momentum_buffer {i} rel_fro vs reference", rel_fro_error(buf, states[i]["momentum_buffer"]),
                      tol, case=traj.case_id)


@pytest.mark.clause("S9.5", "dist_adamw")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", ["golden", "live"])
def test_dist_adamw(target, verdict, world_sizes, dist_results, device, strict, world_size, which):
    trajs, records = _setup(target, world_sizes, dist_results, "DistAdamW", world_size, device)
    k = [t.case_id.startswith("live") for t in trajs].index(which == "live")
    traj, recs = trajs[k], [records[r][k] for r in range(world_size)]
    rep = _judge_common(verdict, traj, recs, world_size)
    h = traj.hyper
    # the float32 AVG reduction adds <= (W-1)·u relative to Σ_r|g_r| to the mean (tolerances: float32 family)
    extra = world_size * F32_U

    def ref_step(p, g, state, i, hp):
        a = traj.attrs[i] if traj.attrs else {}
        return ref_adamw(p, g, state, lr=hp["lr"], betas=h["betas"], eps=h["eps"], weight_decay=h["weight_decay"],
                         lr_mul=a.get("lr_mul", 1.0), wd_mul=a.get("wd_mul", 1.0))

    step_rtol = (F32_STEP_RTOL_STRICT if strict else F32_STEP_RTOL) + extra
    states = judge_float_family(verdict, _as_single(traj, rep.grads), rep, ref_step, step_rtol=step_rtol,
                                golden_rtol=lambda n: f32_trajectory_rtol(n, strict=strict) + n * extra)
    # ownership (S9.3): exp_avg / exp_avg_sq rows [start, stop) on rank r only, equal to the reference's rows
    tol = f32_trajectory_rtol(traj.steps, strict=strict) + traj.steps * extra
    for i, p0 in enumerate(traj.params0):
        dim0 = p0.shape[0] if p0.ndim else 1
        for r in range(world_size):
            start, stop = adamw_row_shard(dim0, world_size, r)
            st = recs[r]["state"][i]
            for key in ("exp_avg", "exp_avg_sq"):
                want = None if stop == start else (states[i][key] if p0.ndim == 0 else states[i][key][start:stop])
                got = st.get(key)
                shape = None if got is None else tuple(got.shape)
                verdict.equal(f"rank {r} {key} shape of param {i}", shape, None if want is None else want.shape,
                              case=traj.case_id)
                if want is not None:
                    verdict.check(f"rank {r} {key} rows of param {i} rel_fro", rel_fro_error(got, want), tol,
                                  case=traj.case_id)
