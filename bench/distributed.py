"""Figure 4: DistMuon on 2 gloo ranks (one thread each) vs single-process Muon on the same matrices.

Every configuration runs in processes started by ``optconform.conformance.spawn.run_distributed`` (the
project's harness; each rank has one intra-op thread unless told otherwise), so the single-process
baselines pay the same process start-up and run under the same conditions as the two ranks:

* ``Muon, 1 process × 1 thread``: the same total work on one core;
* ``DistMuon, 2 ranks × 1 thread``: each rank orthogonalises half of the matrices (block-cyclic per shape),
  plus a reduce-scatter of the gradients and an all-gather of the parameters over gloo (loopback TCP);
* ``DistMuon, 2 ranks, ns_steps=0``: the same step without Newton–Schulz, i.e. what the distribution costs
  (pre-flight all_reduce, collectives, momentum) — ns_steps does not change the collectives;
* ``DistMuon, 2 ranks, collectives='stacked'``: the stacked layout (nanochat master's), the default off gloo;
* ``Muon, 1 process × 2 threads``: the other way to use both cores (threaded matmuls);
* ``DTensorMuon, 2 ranks × 1 thread``: the same matrices as FSDP2 keeps them, ``Shard(0)`` DTensors with gradients
  that FSDP2's backward has already averaged (not timed here: the training loop's, not the optimizer's); each rank
  orthogonalises half of the matrices, whose pieces one all_to_all per shape group brings it and one returns.

A step is timed on every rank between a barrier and the end of ``step()``; a step's time is the slowest
rank's. Each rank also records its CPU time over the step: CPU s / wall s near 1 (per thread) means the
rank had its core to itself; well below 1 means it waited (for other processes on the machine, or for its
peer in a collective). The configurations run one after another (``rounds`` times), so they cannot be interleaved
within a round as the single-process figures are; the load note says how busy the machine was.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from optconform.conformance.collectives import count_collectives
from optconform.conformance.spawn import run_distributed

from .nanochat_shapes import make_tensors, muon_shapes, nbytes
from .timing import load_average, median

__all__ = ["muon_worker", "run"]


def muon_worker(rank: int, world: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Body of one rank: build the matrices, step ``warmup`` + ``repeats`` times, return the step times."""
    import torch.distributed as dist

    from optconform.impl.distributed import DistMuon, state_bytes
    from optconform.impl.dtensor import DTensorMuon, step_elements
    from optconform.impl.muon import Muon

    torch.set_num_threads(cfg["threads"])
    shapes = muon_shapes(cfg["d_model"], cfg["depth"])
    values = make_tensors(shapes, cfg["seed"])
    grads = make_tensors(shapes, cfg["seed"] + 1 + rank)  # each rank its own gradient, as in training
    params = []
    for name, v in values.items():
        v.grad = grads[name]
        params.append(v)
    hyper = dict(lr=0.02, momentum=0.95, nesterov=True, ns_steps=cfg["ns_steps"])
    sent = None
    if cfg["distributed"] == "dtensor":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor

        mesh = init_device_mesh("cpu", (world,))
        params = [torch.nn.Parameter(distribute_tensor(p.detach(), mesh, [Shard(0)])) for p in params]
        for p, g in zip(params, grads.values(), strict=True):
            p.grad = distribute_tensor(g, mesh, [Shard(0)])
        opt = DTensorMuon(params, **hyper)
        sent = step_elements([tuple(p.shape) for p in params], ["Shard(0)"] * len(params), world, rank)
    elif cfg["distributed"]:
        opt = DistMuon(params, collectives=cfg["collectives"], **hyper)
    else:
        opt = Muon(params, **hyper)
    times, cpu = [], []
    for i in range(cfg["warmup"] + cfg["repeats"]):
        dist.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if i >= cfg["warmup"]:
            times.append(dt)
            cpu.append(dc)
    with count_collectives() as calls:  # one more step, untimed: what a step issues
        opt.step()
    return {"times": times, "cpu": cpu, "state_bytes": state_bytes(opt), "threads": torch.get_num_threads(),
            "collectives": dict(calls), "elements_sent": sent}


def _describe_calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(calls.items())) or "none"


CONFIGS = (
    # key, label, world, threads per process, distributed, ns_steps, collectives
    ("single_1t", "Muon, 1 process × 1 thread", 1, 1, False, 5, "auto"),
    ("dist_2x1t", "DistMuon, 2 ranks × 1 thread", 2, 1, True, 5, "auto"),
    ("dist_2x1t_ns0", "DistMuon, 2 ranks × 1 thread, ns_steps=0 (distribution overhead)", 2, 1, True, 0, "auto"),
    ("dist_2x1t_stacked", "DistMuon, 2 ranks × 1 thread, collectives='stacked'", 2, 1, True, 5, "stacked"),
    ("single_2t", "Muon, 1 process × 2 threads", 1, 2, False, 5, "auto"),
    ("dtensor_2x1t", "DTensorMuon, 2 ranks × 1 thread (Shard(0), gradients averaged by FSDP2)", 2, 1, "dtensor", 5,
     "auto"),
)


def run(*, d_model: int, depth: int, repeats: int, warmup: int, rounds: int = 1, seed: int = 0,
        timeout_s: float = 600.0) -> dict[str, Any]:
    """Measure figure 4; returns the figure as a dict."""
    t_start = time.perf_counter()
    shapes = muon_shapes(d_model, depth)
    per_round: dict[str, list[float]] = {k: [] for k, *_ in CONFIGS}
    raw: dict[str, list[list[float]]] = {k: [] for k, *_ in CONFIGS}
    busy: dict[str, list[float]] = {k: [] for k, *_ in CONFIGS}
    calls: dict[str, str] = {}
    sent: dict[str, int | None] = {}
    for _ in range(rounds):
        for key, _, world, threads, distributed, ns_steps, collectives in CONFIGS:
            cfg = dict(d_model=d_model, depth=depth, repeats=repeats, warmup=warmup, seed=seed,
                       threads=threads, distributed=distributed, ns_steps=ns_steps, collectives=collectives)
            results = run_distributed(muon_worker, world, args=(cfg,), timeout_s=timeout_s)
            step_times = [max(ts) for ts in zip(*(r["times"] for r in results), strict=True)]
            raw[key].append(step_times)
            busy[key] += [c / t for r in results for c, t in zip(r["cpu"], step_times, strict=True)]
            per_round[key].append(median(step_times))
            calls[key] = _describe_calls(results[0]["collectives"])
            sent[key] = results[0]["elements_sent"]
    base = per_round["single_1t"]
    rows = []
    for key, label, world, threads, _, ns_steps, _ in CONFIGS:
        speedup = [b / t for b, t in zip(base, per_round[key], strict=True)]
        rows.append({"config": label, "processes": world, "threads": threads, "ns_steps": ns_steps,
                     "s_per_step": median([t for ts in raw[key] for t in ts]),
                     "speedup": median(speedup), "busy": median(busy[key]), "collectives": calls[key]})
    by = {r["config"]: r for r in rows}
    t1 = by[CONFIGS[0][1]]["s_per_step"]
    s2 = by[CONFIGS[1][1]]["speedup"]
    ovh = by[CONFIGS[2][1]]["s_per_step"]
    stacked = by[CONFIGS[3][1]]["speedup"]
    s2t = by[CONFIGS[4][1]]["speedup"]
    sdt = by[CONFIGS[5][1]]["speedup"]
    dt_sent = sent["dtensor_2x1t"] or 0
    mib = nbytes(shapes) / 2**20
    if s2 > 1.05 * s2t:
        versus = "so on this machine two single-threaded ranks beat threading the matmuls"
    elif s2 < 0.95 * s2t:
        versus = ("so on one 2-core machine ZeRO-2 buys no speed over threading; its point is 1/W of the "
                  "optimizer state per rank (figure 5) and the arithmetic of multi-device training")
    else:
        versus = "about the same as the 2-rank split"
    starved = by[CONFIGS[1][1]]["busy"]
    load = ""
    if starved < 0.85 or by[CONFIGS[0][1]]["busy"] < 0.85:
        load = (f" Caveat: other work on the machine left each single-threaded process only "
                f"{by[CONFIGS[0][1]]['busy']:.2f} (Muon) and {starved:.2f} (each DistMuon rank) of a core per "
                "step, so the speed-ups measure the contention as much as the code.")
    reading = (f"DistMuon on 2 single-threaded ranks is {s2:.2f}× as fast as single-threaded Muon "
               f"({t1:.2f} → {t1 / s2:.2f} s per step; ideal 2×), and {ovh:.2f} s of its step is the distribution "
               f"itself (the ns_steps=0 run). With collectives='stacked' (one reduce-scatter and one all-gather per "
               f"shape group, the default off gloo) it is {stacked:.2f}×. One process with 2 threads on the same 2 "
               f"cores is {s2t:.2f}× as fast, {versus}. DTensorMuon on the same matrices as FSDP2 shards them (its "
               f"gradients already averaged by the backward) is {sdt:.2f}×: per step rank 0 sends "
               f"{dt_sent * 4 / 2**20:.0f} MiB at most (u in float32, O in bf16: less), against DistMuon's "
               f"{mib:.0f} MiB reduce-scattered and {mib:.0f} MiB all-gathered.{load}")
    return {
        "id": "dist_muon",
        "title": "Figure 4 — DistMuon and DTensorMuon, 2 gloo ranks × 1 thread, vs single-process Muon (same matrices)",
        "config": {"d_model": d_model, "depth": depth, "repeats": repeats, "warmup": warmup, "rounds": rounds,
                   "backend": "gloo", "matrices": len(shapes), "fp32_mib": round(mib, 1)},
        "columns": [["config", "configuration", "s"], ["s_per_step", "s / step (median)", ".3f"],
                    ["speedup", "speed-up vs 1 process × 1 thread", ".2f"],
                    ["busy", "CPU s / wall s per process (1 thread: ≤ 1)", ".2f"],
                    ["collectives", "collectives per step (rank 0)", "s"]],
        "rows": rows,
        "raw_seconds": raw,
        "reading": reading,
        "notes": [
            f"Matrices: nanochat d={d_model}, depth {depth} transformer.h ({len(shapes)} matrices, "
            f"{mib:.0f} MiB fp32). Per step each rank reduce-scatters and all-gathers every matrix "
            f"(about {mib:.0f} MiB in and out per rank at W=2, over loopback TCP).",
            "DistMuon's collectives='auto' is 'chunked' on gloo (one list-form reduce-scatter and all-gather per "
            "W consecutive parameters of a shape group) and 'stacked' elsewhere (one of each per shape group); the "
            "'collectives per step' column is counted by optconform.conformance.collectives on one more step "
            "(the pre-flight agreement is the all_reduce).",
            "On 2 cores the two ranks have exactly one core each; any other process on the machine takes "
            "time from one of them and the collectives make the other wait, so this figure is the most "
            "load-sensitive one.",
        ],
        "load_average_end": load_average(),
        "seconds": time.perf_counter() - t_start,
    }
