"""Figure 1: bf16 Newton–Schulz (``zeropower``) throughput against a plain bf16 matmul (the roofline).

FLOPs of ``steps`` quintic steps on an (m, n) matrix, m <= n after the transpose: per step 2·m·m·n for
A = X·Xᵀ, 2·m·m·m for A·A and 2·m·m·n for B·X, i.e. steps·(4m²n + 2m³) (normalisation and the axpy
epilogues are not counted: they are O(mn)). The roofline is the FLOP rate of a plain bf16 ``torch.mm`` of
(m × m)·(m × n) (the B·X product, the largest of the three) measured in the same rounds. Candidates: our
eager kernel (``method="standard"``), our Gram-space kernel (``method="gram"``, the same polynomial in fewer FLOPs
for rectangular G; its rate is reported in the standard iteration's FLOPs, i.e. as an effective rate), our
``torch.compile`` kernel (CPU, inductor, standard), and torch.optim.Muon's own Newton–Schulz.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from typing import Any

import torch

from optconform.impl.newton_schulz import NS_COEFFICIENTS, NS_EPS, _use_gram, zeropower_compiled, zeropower_eager

from .timing import interleaved, load_average, median, paired_ratios, spread

__all__ = ["ns_flops", "gram_flops", "run"]

COMPILE_BUDGET_S = 60.0


def ns_flops(shape: tuple[int, int], steps: int) -> int:
    """FLOPs of ``steps`` Newton–Schulz steps on a ``shape`` matrix: steps·(4m²n + 2m³), m <= n."""
    m, n = sorted(shape)
    return steps * (4 * m * m * n + 2 * m ** 3)


def gram_flops(shape: tuple[int, int], steps: int) -> int:
    """FLOPs of the Gram path (``impl.newton_schulz._iterate_gram``) on a ``shape`` matrix, n <= m the sides:
    2mn² for each X·Xᵀ and Q·X (one each per restart segment) plus 8n³ per iteration less 6n³ per segment
    (the first Z needs no product with Q, the last R is not updated): (12α + 22)·n³ for 5 steps."""
    from optconform.impl.newton_schulz import _gram_restarts

    n, m = sorted(shape)
    if steps == 0:
        return 0
    segments = len(_gram_restarts((NS_COEFFICIENTS,) * steps)) + 1
    return segments * (4 * m * n * n - 6 * n ** 3) + 8 * steps * n ** 3


def _torch_ns(steps: int):
    from torch.optim._muon import _zeropower_via_newtonschulz

    return lambda G: _zeropower_via_newtonschulz(G, NS_COEFFICIENTS, steps, NS_EPS)


def _compile_first_calls(shapes: list[tuple[int, int]], steps: int, seed: int) -> dict[str, Any]:
    """First call of the compiled kernel per shape (compile time), with a fresh inductor cache directory."""
    out: dict[str, Any] = {"first_call_s": {}, "ok": True, "why": ""}
    cache = tempfile.mkdtemp(prefix="bench_inductor_")
    old = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold compile: no artefacts from earlier runs
    out["cache_dir"] = cache
    try:
        gen = torch.Generator().manual_seed(seed)
        for shape in shapes:
            G = torch.randn(shape, generator=gen)
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                zeropower_compiled(G, steps)
            dt = time.perf_counter() - t0
            out["first_call_s"][f"{shape[0]}x{shape[1]}"] = dt
            failed = [w for w in caught if issubclass(w.category, RuntimeWarning)]
            if failed:
                out.update(ok=False, why=f"torch.compile failed: {failed[0].message}")
                break
            if dt > COMPILE_BUDGET_S:
                out.update(ok=False, why=f"compiling for {shape} took {dt:.0f} s > {COMPILE_BUDGET_S:.0f} s")
                break
    finally:
        if old is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = old
    return out


def run(*, shapes: list[tuple[int, int]], steps: int = 5, repeats: int, warmup: int, compile: bool,
        seed: int = 0, large_shapes: list[tuple[int, int]] = (), large_repeats: int = 2) -> dict[str, Any]:
    """Measure figure 1; returns the figure as a dict (rows, raw times, reading). ``large_shapes`` (e.g. 4096×16384,
    seconds per call) run after ``shapes`` with ``large_repeats`` rounds and one warm-up round."""
    t_start = time.perf_counter()
    comp: dict[str, Any] = {"ok": False, "why": "not requested (--quick / smoke configuration)",
                            "first_call_s": {}}
    if compile:
        comp = _compile_first_calls([*shapes, *large_shapes], steps, seed)
    torch_ns = _torch_ns(steps)
    gen = torch.Generator().manual_seed(seed + 1)
    rows, raw = [], {}
    plan = [(tuple(sh), repeats, warmup) for sh in shapes] + [(tuple(sh), large_repeats, 1) for sh in large_shapes]
    for shape, shape_repeats, shape_warmup in plan:
        m, n = sorted(shape)
        G = torch.randn(shape, generator=gen)
        lhs = torch.randn((m, m), generator=gen).bfloat16()
        rhs = torch.randn((m, n), generator=gen).bfloat16()
        fns = {
            "matmul": lambda lhs=lhs, rhs=rhs: torch.mm(lhs, rhs),
            "ours_eager": lambda G=G: zeropower_eager(G, steps, method="standard"),
            "ours_gram": lambda G=G: zeropower_eager(G, steps, method="gram"),
            "torch_optim": lambda G=G: torch_ns(G),
        }
        if comp["ok"]:
            fns["ours_compiled"] = lambda G=G: zeropower_compiled(G, steps, method="standard")
        with torch.no_grad():
            times = interleaved(fns, repeats=shape_repeats, warmup=shape_warmup)
        flops = ns_flops(shape, steps)
        mm_flops = 2 * m * m * n
        mm_rate = [mm_flops / t for t in times["matmul"]]
        row: dict[str, Any] = {"shape": f"{shape[0]}×{shape[1]}", "gflop": flops / 1e9,
                               "gram_gflop": gram_flops(shape, steps) / 1e9,
                               "matmul_gflops": median(mm_rate) / 1e9}
        for name in ("ours_eager", "ours_gram", "torch_optim", "ours_compiled"):
            if name not in times:
                row[f"{name}_ms"] = row[f"{name}_frac"] = None
                continue
            rate = [flops / t for t in times[name]]
            row[f"{name}_ms"] = median(times[name]) * 1e3
            row[f"{name}_frac"] = median(paired_ratios(rate, mm_rate))
        versus = paired_ratios(times["torch_optim"], times["ours_eager"])
        row["ours_vs_torch"] = median(versus)
        row["ours_vs_torch_range"] = "{:.2f}–{:.2f}".format(*spread(versus))
        row["gram_vs_torch"] = median(paired_ratios(times["ours_gram"], times["torch_optim"]))
        row["gram_vs_standard"] = median(paired_ratios(times["ours_gram"], times["ours_eager"]))
        row["auto"] = "gram" if _use_gram(G, "auto") else "standard"
        rows.append(row)
        raw[row["shape"]] = times
    if comp.get("cache_dir"):
        shutil.rmtree(comp.pop("cache_dir"), ignore_errors=True)
    fracs = [r["ours_eager_frac"] for r in rows]
    tfracs = [r["torch_optim_frac"] for r in rows]
    speed = [r["ours_vs_torch"] for r in rows]
    reading = (f"Our eager bf16 Newton–Schulz runs at {min(fracs):.2f}–{max(fracs):.2f} of the plain bf16 matmul "
               f"rate (torch.optim.Muon's: {min(tfracs):.2f}–{max(tfracs):.2f}); torch's time / ours = "
               f"{min(speed):.2f}–{max(speed):.2f} ({_verdict(speed)}).")
    reading += (" Gram path: time / torch.optim's " + ", ".join(f"{r['shape']}: {r['gram_vs_torch']:.2f}" for r in rows)
                + "; time / our standard " + ", ".join(f"{r['shape']}: {r['gram_vs_standard']:.2f}" for r in rows)
                + " (<1: Gram faster); method='auto' picks "
                + ", ".join(f"{r['shape']}: {r['auto']}" for r in rows) + ".")
    if comp["ok"]:
        cf = [r["ours_compiled_frac"] for r in rows]
        reading += (f" torch.compile on CPU: {min(cf):.2f}–{max(cf):.2f} of the roofline, first calls "
                    f"{_fmt_first(comp['first_call_s'])}.")
    else:
        reading += f" Compiled path not measured: {comp['why']}."
    return {
        "id": "zeropower",
        "title": "Figure 1 — zeropower (bf16 Newton–Schulz, 5 steps) vs a plain bf16 matmul",
        "config": {"shapes": [list(s) for s in shapes], "steps": steps, "repeats": repeats, "warmup": warmup,
                   "large_shapes": [list(s) for s in large_shapes], "large_repeats": large_repeats,
                   "threads": torch.get_num_threads(), "compile": compile},
        "columns": [["shape", "shape (G)", "s"], ["gflop", "GFLOP / call", ".2f"],
                    ["matmul_gflops", "bf16 matmul GFLOP/s (roofline)", ".0f"],
                    ["ours_eager_ms", "ours eager ms", ".1f"], ["ours_eager_frac", "ours eager / roofline", ".2f"],
                    ["gram_gflop", "Gram GFLOP / call", ".2f"], ["ours_gram_ms", "ours Gram ms", ".1f"],
                    ["ours_gram_frac", "Gram effective rate / roofline", ".2f"],
                    ["ours_compiled_ms", "ours compiled ms", ".1f"],
                    ["ours_compiled_frac", "ours compiled / roofline", ".2f"],
                    ["torch_optim_ms", "torch.optim.Muon NS ms", ".1f"],
                    ["torch_optim_frac", "torch NS / roofline", ".2f"],
                    ["ours_vs_torch", "torch time / ours (>1: ours faster)", ".2f"],
                    ["ours_vs_torch_range", "its min–max over rounds", "s"],
                    ["gram_vs_torch", "Gram time / torch (<1: Gram faster)", ".2f"],
                    ["gram_vs_standard", "Gram time / our standard", ".2f"], ["auto", "method='auto'", "s"]],
        "rows": rows,
        "compile": comp,
        "raw_seconds": raw,
        "reading": reading,
        "notes": [
            "FLOPs per call = 5·(4m²n + 2m³) with m <= n (A = XXᵀ, A·A, B·X); the roofline is a plain "
            "bf16 torch.mm of (m×m)·(m×n) timed in the same interleaved rounds; ratios are per-round "
            "ratios of FLOP rates, median over rounds. Input G is float32, so both NS kernels include "
            "their normalisation and bf16 cast.",
            "Gram path (method='gram'): R = XXᵀ (n×n, n the small side), per row B = bR + cR², Q ← aQ + QB, "
            "R ← Z(RZ), output Q·X, all bf16, restarts (X ← QX, R ← XXᵀ) after iterations 1 and 3 (segments of at most "
            "two iterations, so that no rounded Gram eigenvalue can diverge); its GFLOP column "
            "counts its own products, its rate column the standard iteration's FLOPs over its time (effective "
            "rate). 'Gram time / torch' and 'Gram time / our standard' are per-round time ratios. Why 'auto' never "
            "picks it: forced onto every Newton–Schulz call, 4 of 20 seeds of the suite miss S7.2's spectral_max "
            "bound by up to 1 %; a last iteration in standard form instead (segments [1], [2, 3], [4], [5], ~0.89× "
            "the FLOPs) fails S7.2/S9.4's bias check on seeds 0 and 1 (directions with ŝ ≈ 0.05 respond 1.3× too "
            "much); fewer restarts diverge on ill-conditioned input (impl/newton_schulz.py, GRAM_MIN_ASPECT).",
            "Noise: this VM's speed swings (the same torch.optim call took 54–151 ms within one process while another "
            "process ran), so a ratio from 7 rounds can scatter by ±15 % between repeats of the whole measurement; "
            "the min–max column shows the scatter within this run. Run it on an otherwise idle machine.",
            "Compiled path: torch.compile(fullgraph=True) of the same kernel, inductor C++ backend, cold "
            "cache (a fresh TORCHINDUCTOR_CACHE_DIR); 'first call' = compile + one run. Shapes after the "
            "first distinct one may reuse a dynamic-shape graph, so their first calls are cheaper.",
        ],
        "load_average_end": load_average(),
        "seconds": time.perf_counter() - t_start,
    }


def _fmt_first(first: dict[str, float]) -> str:
    return ", ".join(f"{k}: {v:.1f} s" for k, v in first.items())


def _verdict(ratios: list[float]) -> str:
    if min(ratios) > 1.05:
        return "ours faster on every shape"
    if max(ratios) < 0.95:
        return "ours slower on every shape"
    return "within ±5 % or mixed across shapes"
