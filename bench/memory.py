"""Figure 5: optimizer-state bytes per rank, DistMuon/DistAdamW at W = 2, 4 vs Muon/AdamW in one process.

Each world size runs in its own process group (``run_distributed``); W = 1 uses the single-process
``Muon`` and ``AdamW``. Every rank builds nanochat's full parameter set (transformer.h matrices for Muon,
lm_head and wte for AdamW, float32, replicated as ZeRO-2 does), takes one step (state is created lazily)
and reports ``optconform.impl.distributed.state_bytes`` for each optimizer; the state only grows, so this
is its peak. The process's peak resident set (``ru_maxrss``: torch, parameters, gradients, state and the
collectives' transient buffers) is given for context.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch

from optconform.conformance.spawn import run_distributed

from .nanochat_shapes import adamw_shapes, make_tensors, muon_shapes, nbytes
from .timing import load_average

__all__ = ["memory_worker", "run"]


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def memory_worker(rank: int, world: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """Body of one rank: one Muon/DistMuon and one AdamW/DistAdamW step; returns the state bytes."""
    from optconform.impl.adamw import AdamW
    from optconform.impl.distributed import DistAdamW, DistMuon, state_bytes
    from optconform.impl.muon import Muon

    def leaves(shapes: dict[str, tuple[int, int]], seed: int) -> list[torch.Tensor]:
        values, grads = make_tensors(shapes, seed), make_tensors(shapes, seed + 1 + rank)
        for name, v in values.items():
            v.grad = grads[name]
        return list(values.values())

    mp = leaves(muon_shapes(cfg["d_model"], cfg["depth"]), cfg["seed"])
    ap = leaves(adamw_shapes(cfg["d_model"], cfg["vocab"]), cfg["seed"] + 10)
    groups = [dict(params=[ap[0]], lr=0.004), dict(params=[ap[1]], lr=0.2)]
    if world == 1:
        muon, adamw = Muon(mp, ns_steps=cfg["ns_steps"]), AdamW(groups)
    else:
        muon, adamw = DistMuon(mp, ns_steps=cfg["ns_steps"]), DistAdamW(groups)
    muon.step()
    adamw.step()
    return {"muon": state_bytes(muon), "adamw": state_bytes(adamw), "maxrss": _maxrss_bytes()}


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def run(*, d_model: int, depth: int, vocab: int, worlds: list[int], ns_steps: int = 5, seed: int = 0,
        timeout_s: float = 600.0) -> dict[str, Any]:
    """Measure figure 5; returns the figure as a dict. A world size whose estimated memory exceeds what
    the machine has available is skipped (and said so)."""
    t_start = time.perf_counter()
    m_bytes = nbytes(muon_shapes(d_model, depth))
    a_bytes = nbytes(adamw_shapes(d_model, vocab))
    rows, skipped, base = [], [], None
    for world in sorted(set([1] + list(worlds))):
        # per rank: params + grads (replicated) + generated copies + state + transient buffers, + ~0.5 GiB torch
        need = world * (3 * (m_bytes + a_bytes) + (m_bytes + 2 * a_bytes) // world + 2**29)
        avail = _mem_available()
        if avail is not None and need > 0.8 * avail:
            skipped.append(f"W={world}: needs ~{need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available")
            continue
        cfg = dict(d_model=d_model, depth=depth, vocab=vocab, seed=seed, ns_steps=ns_steps)
        res = run_distributed(memory_worker, world, args=(cfg,), timeout_s=timeout_s)
        muon = [r["muon"] for r in res]
        adamw = [r["adamw"] for r in res]
        total = [a + b for a, b in zip(muon, adamw, strict=True)]
        if world == 1:
            base = total[0]
        rows.append({
            "world": world, "optimizers": "Muon + AdamW" if world == 1 else "DistMuon + DistAdamW",
            "muon_mib": max(muon) / 2**20, "adamw_mib": max(adamw) / 2**20, "total_mib": max(total) / 2**20,
            "min_total_mib": min(total) / 2**20,
            "fraction": max(total) / base if base else float("nan"), "ideal": 1.0 / world,
            "maxrss_gib": max(r["maxrss"] for r in res) / 2**30,
        })
    reading = "; ".join(f"W={r['world']}: {r['total_mib']:.0f} MiB per rank = {r['fraction']:.3f} of "
                        f"single-process (ideal {r['ideal']:.3f})" for r in rows if r["world"] > 1)
    reading = (reading + "." if reading else "No distributed world size fitted in memory.")
    return {
        "id": "state_bytes",
        "title": "Figure 5 — optimizer-state bytes per rank: ZeRO-2 (DistMuon + DistAdamW) vs single process",
        "config": {"d_model": d_model, "depth": depth, "vocab": vocab, "worlds": worlds, "ns_steps": ns_steps,
                   "muon_param_mib": round(m_bytes / 2**20, 1), "adamw_param_mib": round(a_bytes / 2**20, 1)},
        "columns": [["world", "W", "d"], ["optimizers", "optimizers", "s"],
                    ["muon_mib", "Muon state MiB (max rank)", ".1f"],
                    ["adamw_mib", "AdamW state MiB (max rank)", ".1f"],
                    ["total_mib", "total MiB (max rank)", ".1f"], ["min_total_mib", "total MiB (min rank)", ".1f"],
                    ["fraction", "max rank / single process", ".3f"], ["ideal", "ideal 1/W", ".3f"],
                    ["maxrss_gib", "peak RSS GiB (max rank, context)", ".2f"]],
        "rows": rows,
        "skipped": skipped,
        "reading": reading,
        "notes": [
            f"Parameters (float32): Muon {m_bytes / 2**20:.0f} MiB (d={d_model}, depth {depth}), AdamW "
            f"{a_bytes / 2**20:.0f} MiB (lm_head + wte, {vocab}×{d_model} each). State: Muon one momentum "
            "buffer per owned matrix; AdamW exp_avg + exp_avg_sq of the owned rows + a 4-byte step per "
            "parameter.",
            "Peak RSS counts everything the process holds (parameters and gradients are replicated on every "
            "rank in ZeRO-2), so it shrinks far less than the state does.",
        ] + [f"Skipped {s}." for s in skipped],
        "load_average_end": load_average(),
        "seconds": time.perf_counter() - t_start,
    }
