"""S9 sharded optimizers: the target's DistMuon, DistAdamW (ZeRO-2) and DTensorMuon, DTensorAdamW (DTensor / FSDP2
parameters) on real process groups (gloo on CPU, NCCL on CUDA).

For every selected world size (``--world-sizes``, default 1,2,3,4) each optimizer runs the golden trajectory
of that world size and a fresh live one on W spawned ranks (a hang or crash on any rank is an error naming
the rank, after ``--dist-timeout`` seconds at most). Judged (``judges.zero2``):

* core: every rank holds bit-identical parameters after every step; each step equals the single-process
  optimizer (S7.2 / S8.2) stepped on the mean of the ranks' gradients, live and against the goldens; every
  optimizer-state element is held by exactly one rank and equals the reference's and the golden one; no rank
  holds more state than a balanced layout needs;
* core, "resume": the live trajectory with every rank's own ``state_dict()`` saved before step 6 (torch.save), a
  fresh optimizer built on every rank and given that rank's dict; each rank's later steps must match its
  uninterrupted run (``judges.resume``): a target whose checkpoints lose a rank's state (KellerJordan/Muon #46) fails;
* layout: the state sits where S9.2 (block-cyclic owners within same-shape groups) and S9.3 (dim-0 rows in
  chunks of ceil(dim0/W)) put it.

DTensorMuon / DTensorAdamW (S9.7, S9.8; ``conformance.dtensor`` steps them, ``judges.dtensor`` adds to the above):
the golden trajectories with their mixed placements, the live trajectory with each parameter placed Shard(0),
Shard(1) or Replicate() (``LIVE_PLACEMENTS``), "fully_shard" (the same through FSDP2's fully_shard and a real
backward), and "resume". core: the invariants above on the whole parameters, every parameter still a DTensor of its
placements, the whole state equal to the reference's, no rank holding more state than its own pieces need;
layout: every state tensor a DTensor placed as its parameter (S9.6).

Parameter counts and dim 0 do not divide W, dim 0 is smaller than W for some parameters, DistAdamW gets
1-D and 0-D parameters, and some steps have gradients comparable to eps, where averaging with a sum
instead of a mean changes the result even under Adam's and Newton–Schulz's scale invariance. A DistAdamW
case with a 0-D parameter or a dim 0 that W does not divide is ``hardening`` (S9.5's regime
``uneven_rows``: the seed's own DistAdamW cannot run it); the ``even`` case, dim 0 of 12 and 24, is ``core``.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import time
from dataclasses import replace

import numpy as np
import pytest

from optconform import spec
from optconform.conformance.case import Case, golden_dir, target_options, unsupported
from optconform.conformance.distributed import SQUARES, run_all
from optconform.conformance.dtensor import FULLY_SHARD
from optconform.conformance.judges import dtensor as D
from optconform.conformance.judges import faults as F
from optconform.conformance.judges import zero2 as Z
from optconform.conformance.judges.float_family import adamw_step, adamw_variants, judge_float_family
from optconform.conformance.judges.muon import judge_muon
from optconform.conformance.judges.ns import matrix_norms
from optconform.conformance.judges.resume import judge_resume
from optconform.conformance.plugin import option, variant_values
from optconform.conformance.spawn import RankFailure, RankTimeout
from optconform.conformance.stepping import FAULTS, Replayed, Trajectory, case_dtype, from_golden
from optconform.conformance.tolerances import (
    F32_STEP_RTOL,
    F32_STEP_RTOL_STRICT,
    dist_average_rtol,
    f32_trajectory_rtol,
)
from optconform.golden import store
from optconform.reference.schedules import lr_multiplier, muon_momentum

WORLD_SIZES = (1, 2, 3, 4)
CLAUSES = {"DistMuon": "S9.4", "DistAdamW": "S9.5", "DTensorMuon": "S9.7", "DTensorAdamW": "S9.8"}
#: the state entries of each kind that are sharded (judged against the reference, piece by piece)
SHARDED_STATE = {"DistMuon": ("momentum_buffer",), "DistAdamW": ("exp_avg", "exp_avg_sq"),
                 "DTensorMuon": ("momentum_buffer",), "DTensorAdamW": ("exp_avg", "exp_avg_sq")}
#: the DTensor kinds and the ZeRO-2 kind whose live trajectories they reuse (with placements)
DTENSOR = {"DTensorMuon": "DistMuon", "DTensorAdamW": "DistAdamW"}
#: placements of the live DTensor trajectories, parameter by parameter (S9.6: both Shard dims, Replicate, dims W
#: does not divide or smaller than W; the 0-D parameter can only be Replicate)
LIVE_PLACEMENTS = {"DTensorMuon": ["Shard(0)", "Shard(1)", "Shard(0)", "Shard(1)", "Replicate()", "Shard(0)",
                                   "Shard(0)"],
                   "DTensorAdamW": ["Shard(0)", "Shard(1)", "Shard(0)", "Replicate()", "Shard(1)", "Shard(0)"]}


def _golden(kind: str, world_size: int, where) -> Trajectory | None:
    """The golden trajectory of ``kind`` at ``world_size`` from the data folder ``where`` (None: no goldens for the
    run's options)."""
    if where is None:
        return None
    for cid in store.case_ids(CLAUSES[kind], where):
        c = store.load_case(cid, where)
        if c.world_size == world_size:
            return from_golden(c)
    return None


def _live(kind: str, world_size: int, rng: np.random.Generator, even: bool = False) -> Trajectory:
    if kind in DTENSOR:
        traj = _live(DTENSOR[kind], world_size, rng)
        return replace(traj, kind=kind, placements=list(LIVE_PLACEMENTS[kind]))
    steps = 12
    if kind == "DistMuon":
        shapes = [(8, 16), (8, 16), (8, 16), (16, 8), (16, 8), (12, 12), (4, 32)]
        scale = [1e-8 if t in (2, 7) else 1.0 for t in range(steps)]  # 1e-8: where sum vs mean shows
        per_step = [{"lr": 0.02 * lr_multiplier(t, num_iterations=steps - 1, warmdown_ratio=0.5, final_lr_frac=0.1),
                     "momentum": muon_momentum(30 * t)} for t in range(steps)]
        hyper = dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=True, ns_steps=5)
    else:  # uneven: dim 0 not divisible by W, smaller than W, 0-D; even: dim 0 in {12, 24}, divisible by 1..4
        shapes = [(12, 3), (24,), (12, 2, 2)] if even else [(7, 3), (2, 5), (13,), (), (3, 2, 2), (1, 4)]
        # 1e-10 ~ eps: where sum vs mean shows; from the first step on (even), where eps placement shows too
        scale = [1e-10 if (t < steps // 2 if even else t % 3 == 1) else 1.0 for t in range(steps)]
        per_step = [{"lr": 0.004 * lr_multiplier(t, num_iterations=steps - 1, warmdown_ratio=0.5)}
                    for t in range(steps)]
        hyper = dict(lr=0.004, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    params0 = [0.5 * rng.standard_normal(s) for s in shapes]
    rank_grads = [[[scale[t] * rng.standard_normal(s) for s in shapes] for _ in range(world_size)]
                  for t in range(steps)]
    name = f"live{' even rows' if even else ''} W={world_size}"
    # even rows also carry nanochat's per-parameter multipliers (p.lr_mul, p.wd_mul), as S8.2's core cases do
    attrs = [{"lr_mul": 0.5, "wd_mul": 0.0}, {}, {"lr_mul": 2.0}] if even else [{} for _ in shapes]
    return Trajectory(kind, name, params0, per_step, hyper, rank_grads=rank_grads, attrs=attrs)


#: Shapes where real implementations switch code paths or mask one bug with another. DistMuon "groups": same-shape
#: groups of 5, 3, 2, 1 and 4 parameters (every remainder modulo W = 2, 3, 4) and one 35×32 matrix (1120
#: elements, dim 0 divisible by no W > 1); "single": one shape only, so that a grouping bug cannot hide behind
#: a shape-mixing one, and large enough (128 directions per update) for the bias statistic to tell another
#: Newton–Schulz map from rounding. DistAdamW "large": 1024+ elements with dim 0 divisible by no W > 1.
SHAPES = {
    ("DistMuon", "groups"): [(4, 8)] * 5 + [(8, 4)] * 3 + [(6, 6)] * 2 + [(3, 5)] + [(5, 3)] * 4 + [(35, 32)],
    ("DistMuon", "single"): [(128, 256)] * 6,
    ("DistAdamW", "large"): [(257, 4), (35, 32), (1029,)],
}
KINDS = {"DistMuon": ("golden", "live", "groups", "single", "resume"),
         "DistAdamW": ("golden", "live", "even", "large", "resume"),
         "DTensorMuon": ("golden", "live", "fully_shard", "resume"),
         "DTensorAdamW": ("golden", "live", "fully_shard", "resume")}
#: "resume": the live trajectory again with each rank's state_dict() saved before this step (torch.save), a fresh
#: optimizer built and load_state_dict given that rank's own dict; judged against the live run, rank by rank
RESUME_AT = 6


def _shaped(kind: str, which: str, world_size: int, rng: np.random.Generator) -> Trajectory:
    """A 6-step live trajectory on SHAPES[kind, which]; DistAdamW's carries per-parameter multipliers."""
    steps, shapes = 6, SHAPES[kind, which]
    if kind == "DistMuon":
        per_step = [{"lr": 0.02, "momentum": muon_momentum(50 * t)} for t in range(steps)]
        hyper = dict(lr=0.02, momentum=per_step[0]["momentum"], nesterov=True, ns_steps=5)
        attrs = [{} for _ in shapes]
    else:
        per_step = [{"lr": 0.004} for _ in range(steps)]
        hyper = dict(lr=0.004, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
        attrs = [{"lr_mul": 2.0}, {}, {"wd_mul": 0.0}]
    scale = [1e-10 if kind == "DistAdamW" and t < 3 else 1.0 for t in range(steps)]
    params0 = [0.5 * rng.standard_normal(s) for s in shapes]
    rank_grads = [[[scale[t] * rng.standard_normal(s) for s in shapes] for _ in range(world_size)]
                  for t in range(steps)]
    return Trajectory(kind, f"live {which} W={world_size}", params0, per_step, hyper, rank_grads=rank_grads,
                      attrs=attrs)


def _trajectories(kind: str, world_size: int, live_seed: int, values: dict) -> dict[str, Trajectory]:
    rng = np.random.default_rng([live_seed, world_size, list(CLAUSES).index(kind)])
    where = golden_dir(CLAUSES[kind], values)
    out = {"golden": _golden(kind, world_size, where), "live": _live(kind, world_size, rng)}
    if kind == "DistAdamW":
        out["even"] = _live(kind, world_size, rng, even=True)
    for which in KINDS[kind]:
        if (kind, which) in SHAPES:
            out[which] = _shaped(kind, which, world_size, rng)
    if kind in DTENSOR:  # FSDP2: every parameter through fully_shard and a real backward (a 0-D one cannot be)
        live = out["live"]
        out["fully_shard"] = replace(live, case_id=live.case_id.replace("live", "live fully_shard"),
                                     placements=[FULLY_SHARD if p.ndim else "Replicate()" for p in live.params0])
    out["resume"] = replace(out["live"], case_id=out["live"].case_id.replace("live", "live resume"),
                            resume_at=RESUME_AT)
    base = out[RESHARD_BASE.get(kind, "live")]  # S9.9: its first RESUME_AT steps, then the target's save
    out["reshard"] = replace(base, case_id=base.case_id.replace("live", "live reshard save"),
                             rank_grads=base.rank_grads[:RESUME_AT], per_step=base.per_step[:RESUME_AT])
    return {k: v for k, v in out.items() if v is not None}


#: S9.9 "reshard": the core trajectory of each kind (DistAdamW's rows divide every W: S9.5's core regime) runs
#: RESUME_AT steps on W ranks and the target's Checkpoint.save, then on W′ ranks a fresh optimizer, Checkpoint.load
#: and the remaining steps with W′ ranks' gradients of the same mean; judged as one trajectory against the reference
RESHARD_BASE = {"DistAdamW": "even"}


def reshard_target(world_size: int, sizes: list[int]) -> int:
    """W′ for W: the next of the selected world sizes the target supports, cyclically (1→2→3→4→1 by default; W
    itself when it is the only one), so every W saves once and every W′ loads once."""
    return sizes[(sizes.index(world_size) + 1) % len(sizes)]


def _continuation(kind: str, base: Trajectory, saved: list[dict], world_size: int, w2: int, live_seed: int,
                  path: str) -> Trajectory:
    """The W′ half of a reshard case: the parameters the W ranks saved with, the remaining per-step values, and for
    each remaining step W′ ranks' gradients whose mean is the base trajectory's mean gradient of that step."""
    rng = np.random.default_rng([live_seed, world_size, w2, list(CLAUSES).index(kind), 9])
    rank_grads = []
    for m in base.mean_grads()[RESUME_AT:]:
        noise = [[rng.standard_normal(g.shape) * float(np.std(g)) for g in m] for _ in range(w2)]
        avg = [np.mean([n[i] for n in noise], axis=0) for i in range(len(m))]
        rank_grads.append([[g + n[i] - avg[i] for i, g in enumerate(m)] for n in noise])
    return replace(base, case_id=base.case_id.replace("live", f"live reshard W={world_size}→{w2}"),
                   params0=saved[0]["after"][-1], per_step=base.per_step[RESUME_AT:], rank_grads=rank_grads,
                   load_from=path)


def _judge_resume(case: Case, dist_results, kind: str, world_size: int, recs: list[dict]) -> None:
    """Every rank's resumed run against its uninterrupted live run (same spawn, same gradients)."""
    names, per_traj = dist_results(kind, world_size, case.verdict.level)
    live = per_traj[names.index("live")]
    if isinstance(live, Exception):  # the uninterrupted run crashed on its own: nothing to compare the resume with
        if case.verdict.error(live, case=f"resume W={world_size}"):
            pytest.fail(f"{kind} on {world_size} ranks (the uninterrupted live run): {live}", pytrace=False)
        return
    judge_resume(case.verdict, [_replayed(rec) for rec in live], [_replayed(rec) for rec in recs], RESUME_AT,
                 case=f"resume W={world_size}")


def _replayed(rec: dict) -> Replayed:
    return Replayed(rec["before"], rec["grads"], rec["after"], restored=rec.get("restored"))


def _runnable(target, traj: Trajectory) -> bool:
    """Whether the target declared nothing about this trajectory unsupported (else it is not spawned)."""
    caps = target.capabilities
    dtype = str(case_dtype(traj.arrays(0), squares=traj.kind in SQUARES)).removeprefix("torch.")
    return caps.dtype_reason(dtype) is None and all(caps.value_reason(traj.kind, v) is None
                                                    for v in traj.hyper_values())


def _regime(kind: str, world_size: int, traj: Trajectory) -> spec.Regime:
    """A distributed trajectory's input regime (S9.4: the gradients' norms; S9.5: rows W does not divide)."""
    if kind in ("DistMuon", "DTensorMuon"):
        return spec.clause(CLAUSES[kind]).regime(matrix_norms(*traj.arrays(0)[len(traj.params0):]))
    if kind == "DTensorAdamW":  # DTensor handles any split: one ordinary regime
        return spec.clause("S9.8").regime()
    uneven = any(p.ndim == 0 or p.shape[0] % world_size for p in traj.params0)
    return spec.clause("S9.5").regime(structural=("uneven_rows",) if uneven else ())


def _isolating(run, trajs: list[Trajectory]) -> list[list[dict] | Exception]:
    """``run(trajs)`` as per-trajectory records per rank; when a rank crashes, each trajectory again on its own
    (its own records, or its own exception). A hang (RankTimeout) propagates."""
    if not trajs:
        return []
    try:
        records = run(trajs)
    except RankFailure as exc:
        if len(trajs) == 1:
            return [exc]
        out: list = []
        for t in trajs:
            try:
                out.append([rec[0] for rec in run([t])])
            except (RankFailure, RankTimeout) as one:
                out.append(one)
        return out
    return [[records[r][j] for r in range(len(records))] for j in range(len(trajs))]


#: the test function of each kind (which kinds a session selected, to share their process groups)
TEST_OF = {"DistMuon": "test_dist_muon", "DistAdamW": "test_dist_adamw", "DTensorMuon": "test_dtensor_muon",
           "DTensorAdamW": "test_dtensor_adamw"}


def _by_kind(run, plans: dict[str, list[Trajectory]]) -> list[list[dict] | Exception]:
    """Every kind's trajectories on one process group (flattened in ``plans`` order): a crash reruns each trajectory
    on its own (``_isolating``), a hang each kind on its own (only the hanging one waits again)."""
    flat = [t for ts in plans.values() for t in ts]
    try:
        return _isolating(run, flat)
    except RankTimeout as exc:
        if len(plans) == 1:
            return [exc] * len(flat)
        out: list = []
        for ts in plans.values():
            try:
                out += _isolating(run, ts)
            except RankTimeout as one:
                out += [one] * len(ts)
        return out


@pytest.fixture(scope="session")
def checkpoint_root(tmp_path_factory) -> str:
    """Where the S9.9 cases' checkpoints go (one folder per kind and W)."""
    return str(tmp_path_factory.mktemp("reshard"))


@pytest.fixture(scope="session")
def dist_results(request, target, pytestconfig, live_seed, checkpoint_root):
    """Lazily runs the trajectories of (W, level), once per session, on one process group: those of the kind asked
    for and of every other kind this session selected that the target can run at W (starting W processes costs
    seconds, the steps milliseconds), each level apart (a crash in a hardening regime cannot take a core case down
    with it). Returns {(kind, W, level): (names, per trajectory: its records per rank, or the exception)}. When a rank
    crashes (RankFailure), each trajectory runs again on its own process group, so that one trajectory's crash is
    not every case's verdict; a hang (RankTimeout) is not rerun (each rerun would wait for the timeout again) and is
    every case's of that process group."""
    cache: dict = {}
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    # S9.9: the kinds whose reshard case the session selected (none when the target has no usable Checkpoint)
    reshard_kinds = {item.callspec.params["kind"] for item in request.session.items
                     if getattr(item, "originalname", "") == "test_reshard"} if target.problem("Checkpoint") is None \
        else set()

    def runnable_kind(kind: str, world_size: int) -> bool:
        return ((TEST_OF[kind] in selected or kind in reshard_kinds) and target.problem(kind) is None
                and target.capabilities.world_size_reason(world_size) is None)

    def level_of(kind: str, world_size: int, which: str, traj: Trajectory) -> str:
        return spec.clause("S9.9").regime().level if which == "reshard" else _regime(kind, world_size, traj).level

    def planned(kind: str, world_size: int, level: str) -> dict[str, Trajectory]:
        _, values = variant_values(pytestconfig, spec.clause(CLAUSES[kind]))
        extra = target_options(target, kind, values)  # the profile's options, where the target takes them
        out = {}
        for k, t in _trajectories(kind, world_size, live_seed, values).items():
            if (k == "reshard" and kind not in reshard_kinds) or (k != "reshard" and TEST_OF[kind] not in selected):
                continue
            if _runnable(target, t) and level_of(kind, world_size, k, t) == level:
                save_to = os.path.join(checkpoint_root, f"{kind}-W{world_size}") if k == "reshard" else None
                out[k] = replace(t, hyper={**t.hyper, **extra}, save_to=save_to)
        return out

    def runner(world_size: int):
        return functools.partial(run_all, target.spec, world_size=world_size, device=option(pytestconfig, "device"),
                                 timeout_s=option(pytestconfig, "dist-timeout"))

    def get(kind: str, world_size: int, level: str) -> tuple[list[str], list[list[dict] | Exception]]:
        if (kind, world_size, level) not in cache:
            kinds = [k for k in CLAUSES if (k, world_size, level) not in cache
                     and (k == kind or runnable_kind(k, world_size))]
            plans = {k: planned(k, world_size, level) for k in kinds}
            per_traj = _by_kind(runner(world_size), {k: list(p.values()) for k, p in plans.items()})
            start = 0
            for k in kinds:
                n = len(plans[k])
                cache[(k, world_size, level)] = (list(plans[k]), per_traj[start:start + n])
                start += n
        return cache[(kind, world_size, level)]

    def resharded(kind: str, world_size: int, w2: int
                  ) -> tuple[Trajectory, list[dict], Trajectory, list[dict]] | list[dict] | Exception:
        """S9.9: (save trajectory, its records on W ranks, continuation, its records on W′ ranks) of ``kind``; the W
        ranks' records alone when a rank found it unsupported; or the exception of the half that failed. The W′
        halves of every kind that saved at W run on one process group."""
        level = spec.clause("S9.9").regime().level
        if ("reshard", kind, world_size, w2) not in cache:
            kinds = [k for k in CLAUSES if k == kind or runnable_kind(k, world_size) and runnable_kind(k, w2)]
            saves, conts = {}, {}
            for k in kinds:
                names, per_traj = get(k, world_size, level)
                if "reshard" not in names:
                    continue
                recs = per_traj[names.index("reshard")]
                traj = planned(k, world_size, level)["reshard"]
                saves[k] = (traj, recs)
                if not isinstance(recs, Exception) and not any("unsupported" in rec for rec in recs):
                    base = _trajectories(k, world_size, live_seed, variant_values(
                        pytestconfig, spec.clause(CLAUSES[k]))[1])[RESHARD_BASE.get(k, "live")]
                    base = replace(base, hyper=traj.hyper)
                    conts[k] = _continuation(k, base, recs, world_size, w2, live_seed, traj.save_to)
            per_traj = _by_kind(runner(w2), {k: [t] for k, t in conts.items()})
            done = dict(zip(conts, per_traj, strict=True))
            for k, (traj, recs) in saves.items():
                if isinstance(recs, Exception) or k not in done:
                    cache[("reshard", k, world_size, w2)] = recs
                elif isinstance(done[k], Exception):
                    cache[("reshard", k, world_size, w2)] = done[k]
                else:
                    cache[("reshard", k, world_size, w2)] = (traj, recs, conts[k], done[k])
        return cache.get(("reshard", kind, world_size, w2), RuntimeError(f"no reshard trajectory of {kind}"))

    get.resharded = resharded
    return get


def _supported_sizes(case: Case, minimum: int = 1) -> list[int]:
    """The selected world sizes >= ``minimum`` that the target declares it supports, ascending."""
    return [w for w in sorted(case.world_sizes)
            if w >= minimum and case.target.capabilities.world_size_reason(w) is None]


def _needs_gpus(case: Case, ranks: int) -> None:
    """Skip a CUDA case whose process group needs more GPUs than are visible (one per rank)."""
    if case.device.type == "cuda":
        import torch

        if ranks > torch.cuda.device_count():
            pytest.skip(f"{ranks} ranks need {ranks} GPUs; {torch.cuda.device_count()} visible")


def _setup(case: Case, dist_results, live_seed: int, kind: str, world_size: int, which: str):
    case.require(kind)
    case.supports_world_size(world_size)
    _needs_gpus(case, world_size)
    if which == "golden" and golden_dir(CLAUSES[kind], case.options) is None:
        pytest.skip("no goldens for these options: goldens exist per profile (golden/data/<profile>/); the live "
                    "cases judge the variant")
    traj = _trajectories(kind, world_size, live_seed, case.options).get(which)
    if traj is None:
        pytest.skip(f"no {which} {kind} trajectory for world size {world_size}")
    for values in traj.hyper_values():
        case.supports(kind, values)
    case.supports_dtype(case_dtype(traj.arrays(0), squares=kind in SQUARES))
    case.verdict.regime(_regime(kind, world_size, traj))
    names, per_traj = dist_results(kind, world_size, case.verdict.level)
    recs = per_traj[names.index(which)]
    if isinstance(recs, Exception):
        if case.verdict.error(recs, case=traj.case_id):
            pytest.fail(f"{kind} on {world_size} ranks: {recs}", pytrace=False)
        return None
    reasons = [rec["unsupported"] for rec in recs if "unsupported" in rec]
    if reasons:
        unsupported(reasons[0])
    return traj, recs


def _stepped(case: Case, dist_results, live_seed: int, kind: str, world_size: int, which: str):
    """The judgments every S9 kind shares: the resume case whole, or the ranks' agreement (and, for DTensor kinds,
    kept placements) and each step against the single-process optimizer on the mean gradient. Returns (traj, recs,
    reference states, state tolerance, golden state tolerance), or None when nothing is left to judge."""
    got = _setup(case, dist_results, live_seed, kind, world_size, which)
    if got is None:
        return None
    traj, recs = got
    if which == "resume":
        _judge_resume(case, dist_results, kind, world_size, recs)
        return None
    Z.judge_identical_ranks(case.verdict, traj, recs)
    if kind in DTENSOR:
        D.judge_placements_kept(case.verdict, traj, recs)
    states = _judge_steps(case, kind, traj, Z.mean_replay(traj, recs), world_size)
    return (traj, recs, states, *Z.dist_state_tolerances(traj, world_size, strict=case.strict))


def _judge_steps(case: Case, kind: str, traj: Trajectory, replayed: Replayed, world_size: int) -> list[dict]:
    """Each step against the single-process optimizer (S7.2 / S8.2) on the mean gradient; returns the reference
    states after the last step."""
    extra = dist_average_rtol(world_size)
    if kind in ("DistMuon", "DTensorMuon"):
        return judge_muon(case.verdict, traj, replayed, strict=case.strict, extra_rtol=extra, options=case.options)
    step_rtol = (F32_STEP_RTOL_STRICT if case.strict else F32_STEP_RTOL) + extra
    opts = case.reference_options("S8.2")
    return judge_float_family(case.verdict, traj, replayed, adamw_step(traj, opts), step_rtol=step_rtol,
                              golden_rtol=lambda n: f32_trajectory_rtol(n, strict=case.strict) + n * extra,
                              variants=adamw_variants(traj, opts))


@pytest.mark.clause("S9.4")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", KINDS["DistMuon"])
def test_dist_muon(case, dist_results, live_seed, world_size, which):
    got = _stepped(case, dist_results, live_seed, "DistMuon", world_size, which)
    if got is None:
        return
    traj, recs, states, tol, golden_tol = got
    layout = Z.muon_layout(traj, world_size)
    Z.judge_state_partition(case.verdict, traj, recs, states, SHARDED_STATE["DistMuon"], layout, tol, golden_tol)
    # NorMuon (S7.4) keeps one more value per row (or column) of each matrix: size/min(rows, cols) elements
    normuon = case.options["normuon_beta2"] is not None
    per = 1.0 + (max(1.0 / min(p.shape[-2:]) for p in traj.params0) if normuon else 0.0)
    Z.judge_state_memory(case.verdict, traj, recs, per, layout)


@pytest.mark.clause("S9.5")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", KINDS["DistAdamW"])
def test_dist_adamw(case, dist_results, live_seed, world_size, which):
    got = _stepped(case, dist_results, live_seed, "DistAdamW", world_size, which)
    if got is None:
        return
    traj, recs, states, tol, golden_tol = got
    layout = Z.adamw_layout(traj, world_size)
    Z.judge_state_partition(case.verdict, traj, recs, states, SHARDED_STATE["DistAdamW"], layout, tol, golden_tol)
    Z.judge_state_memory(case.verdict, traj, recs, 2, layout)


@pytest.mark.clause("S9.7")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", KINDS["DTensorMuon"])
def test_dtensor_muon(case, dist_results, live_seed, world_size, which):
    got = _stepped(case, dist_results, live_seed, "DTensorMuon", world_size, which)
    if got is None:
        return
    traj, recs, states, tol, golden_tol = got
    D.judge_dtensor_state(case.verdict, traj, recs, states, SHARDED_STATE["DTensorMuon"], tol, golden_tol)
    D.judge_dtensor_memory(case.verdict, traj, recs, 1.0, extra_per_matrix=case.options["normuon_beta2"] is not None)


@pytest.mark.clause("S9.8")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("which", KINDS["DTensorAdamW"])
def test_dtensor_adamw(case, dist_results, live_seed, world_size, which):
    got = _stepped(case, dist_results, live_seed, "DTensorAdamW", world_size, which)
    if got is None:
        return
    traj, recs, states, tol, golden_tol = got
    D.judge_dtensor_state(case.verdict, traj, recs, states, SHARDED_STATE["DTensorAdamW"], tol, golden_tol)
    D.judge_dtensor_memory(case.verdict, traj, recs, 2.0)


@pytest.mark.clause("S9.9")
@pytest.mark.parametrize("world_size", WORLD_SIZES)
@pytest.mark.parametrize("kind", list(CLAUSES))
def test_reshard(case, dist_results, live_seed, kind, world_size):
    """A checkpoint saved by the target's Checkpoint on W ranks after 6 steps, loaded on W′ ranks (W′: the next
    selected world size, ``reshard_target``) into a fresh optimizer, and the trajectory continued: judged as one
    trajectory against the single-process reference on the mean gradients (core), the W′ ranks identical, and the
    state after the last step equal to the reference's, placed by the kind's rule at W′ (S9.2 / S9.3 / S9.6)."""
    case.require("Checkpoint")  # first: a target without one hears that, whichever optimizers it has
    case.require(kind)
    case.supports_world_size(world_size)
    w2 = reshard_target(world_size, _supported_sizes(case))
    _needs_gpus(case, max(world_size, w2))
    save = _trajectories(kind, world_size, live_seed, case.options)["reshard"]
    for values in save.hyper_values():
        case.supports(kind, values)
    case.supports_dtype(case_dtype(save.arrays(0), squares=kind in SQUARES))
    case.verdict.regime(spec.clause("S9.9").regime())
    got = dist_results.resharded(kind, world_size, w2)
    label = f"reshard W={world_size}→{w2}"
    if isinstance(got, Exception):
        if case.verdict.error(got, case=label):
            pytest.fail(f"{kind} {label}: {got}", pytrace=False)
        return
    if isinstance(got, list):  # the W half: records per rank, unsupported on some rank
        unsupported(next(rec["unsupported"] for rec in got if "unsupported" in rec))
    traj, recs, cont, cont_recs = got
    reasons = [rec["unsupported"] for rec in cont_recs if "unsupported" in rec]
    if reasons:
        unsupported(reasons[0])
    Z.judge_identical_ranks(case.verdict, cont, cont_recs)
    if kind in DTENSOR:
        D.judge_placements_kept(case.verdict, cont, cont_recs)
    # one trajectory: the W ranks' steps, then the W′ ranks' (each step's gradient: the mean its ranks were given)
    halves = [(traj, recs), (cont, cont_recs)]
    means = [m for t, rs in halves for m in Z.mean_replay(t, rs).grads]
    whole = replace(cont, case_id=f"{kind} {label} (loaded before step {RESUME_AT})", params0=traj.params0,
                    per_step=traj.per_step + cont.per_step, rank_grads=[[m] for m in means], load_from=None)
    replayed = Replayed([b for _, rs in halves for b in rs[0]["before"]], means,
                        [a for _, rs in halves for a in rs[0]["after"]])
    states = _judge_steps(case, kind, whole, replayed, max(world_size, w2))
    tol, golden_tol = Z.dist_state_tolerances(whole, max(world_size, w2), strict=case.strict)
    keys = SHARDED_STATE[kind]
    if kind in DTENSOR:
        D.judge_dtensor_state(case.verdict, cont, cont_recs, states, keys, tol, golden_tol)
    else:
        layout = (Z.muon_layout if kind == "DistMuon" else Z.adamw_layout)(cont, w2)
        Z.judge_state_partition(case.verdict, cont, cont_recs, states, keys, layout, tol, golden_tol)


#: the step before which the faulty rank fails (the others have stepped twice: state exists, collectives warmed up)
FAULT_STEP = 2


@pytest.mark.parametrize("what", FAULTS)
@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.clause(c)) for k, c in CLAUSES.items()])
def test_rank_fault(case, pytestconfig, live_seed, kind, what):
    """``--faults``: on the smallest selected world size >= 2, the kind's core trajectory with the last rank failing
    before step 2 (``stepping.FAULTS``: it raises, is SIGKILLed inside the step, or never steps); judged by
    ``judges.faults`` (regime rank_fault, hardening): the run ends within the timeout, names the faulty rank, and
    leaves no process. With world size 1 alone selected (one GPU: NCCL allows one rank per device) the one rank
    raises or is killed inside its step: its failure must end the run, reported as its own, with no process left;
    'absent' needs a peer left waiting and is skipped there."""
    case.require(kind)
    if not option(pytestconfig, "faults"):
        pytest.skip("the rank-fault cases run with --faults (each costs a process group; 'absent' waits for "
                    "--fault-timeout)")
    sizes = _supported_sizes(case, minimum=2) or _supported_sizes(case)
    if not sizes:
        pytest.skip("the rank-fault cases need a selected world size that the target supports")
    w = sizes[0]
    if w == 1 and what == "absent":
        pytest.skip("'absent' at world size 1: no peer is left waiting for the rank that never steps "
                    "(select a world size >= 2)")
    _needs_gpus(case, w)
    base = _trajectories(kind, w, live_seed, case.options)[RESHARD_BASE.get(kind, "live")]
    traj = replace(base, case_id=base.case_id.replace("live", f"live {what} on rank {w - 1}"),
                   hyper={**base.hyper, **case.target_options(kind)},
                   fault=(what, w - 1, FAULT_STEP))
    for values in traj.hyper_values():
        case.supports(kind, values)
    case.supports_dtype(case_dtype(traj.arrays(0), squares=kind in SQUARES))
    case.verdict.regime(spec.clause(CLAUSES[kind]).regime(structural=("rank_fault",)))
    timeout = option(pytestconfig, "fault-timeout")
    t0 = time.monotonic()
    try:
        outcome: object = run_all(case.target.spec, [traj], w, device=option(pytestconfig, "device"),
                                  timeout_s=timeout)
    except (RankFailure, RankTimeout) as exc:
        outcome = exc
    # from the ranks' launch where the harness measured it (a failed run): not the fork server's one-off start
    elapsed = getattr(outcome, "elapsed_s", None) or time.monotonic() - t0
    if isinstance(outcome, list):
        reasons = [rec[0]["unsupported"] for rec in outcome if "unsupported" in rec[0]]
        if reasons:
            unsupported(reasons[0])
    alive = sum(p.is_alive() for p in multiprocessing.active_children())
    F.judge_rank_fault(case.verdict, what, w - 1, w, outcome, elapsed, timeout, alive, case=traj.case_id)
