"""Entry point: ``python -m bench.run [--quick] [--out PATH.json] [--markdown PATH.md] [--only IDS]``.

Runs the six figures of BENCHMARKS.md (see the modules named after them) with one of three presets:
full (default, ~5–10 min on 2 cores), ``--quick`` (< 1 min) and ``--smoke`` (seconds; used by
tests/test_bench.py, the numbers mean nothing). Run from the repository root; ``optconform`` is imported
from the installed package (or PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import distributed, memory, optimizers, suite, zeropower
from .report import to_markdown
from .timing import load_average, machine

__all__ = ["PRESETS", "FIGURES", "main"]

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "zeropower": dict(shapes=[(768, 768), (768, 3072), (3072, 768), (1280, 5120), (5120, 1280)], repeats=7,
                          warmup=2, compile=True, large_shapes=[(4096, 16384)], large_repeats=2),
        # d20: the shapes of nanochat d20 (1280² ×4, 1280×5120, 5120×1280 per layer), 2 of its 20 layers
        "muon_step": dict(d_model=768, depth=12, repeats=5, warmup=1, extra_sets=[(1280, 2)], thread_counts=[1, 2]),
        "adamw_step": dict(d_model=768, vocab=65536, repeats=7, warmup=2, extra_d_models=[1280],
                           thread_counts=[1, 2]),
        "dist_muon": dict(d_model=768, depth=12, repeats=3, warmup=1, rounds=3),
        "state_bytes": dict(d_model=768, depth=12, vocab=65536, worlds=[2, 4]),
        "suite": dict(),
    },
    "quick": {
        "zeropower": dict(shapes=[(768, 768), (768, 3072)], repeats=3, warmup=1, compile=False),
        "muon_step": dict(d_model=768, depth=1, repeats=3, warmup=1),
        "adamw_step": dict(d_model=768, vocab=8192, repeats=5, warmup=1),
        "dist_muon": dict(d_model=768, depth=2, repeats=2, warmup=1, rounds=1),
        "state_bytes": dict(d_model=768, depth=2, vocab=8192, worlds=[2, 4]),
        "suite": dict(select=["--world-sizes", "1,2", "-k", "not large"]),
    },
    "smoke": {
        "zeropower": dict(shapes=[(32, 32), (32, 64)], repeats=2, warmup=1, compile=False),
        "muon_step": dict(d_model=32, depth=1, repeats=2, warmup=1),
        "adamw_step": dict(d_model=32, vocab=64, repeats=2, warmup=1),
        "dist_muon": dict(d_model=32, depth=1, repeats=2, warmup=1, rounds=1, timeout_s=120.0),
        "state_bytes": dict(d_model=32, depth=1, vocab=64, worlds=[2], timeout_s=120.0),
        "suite": dict(select=["--world-sizes", "", "-k", "step_decay or clip_grad_norm_golden"], timeout_s=300.0),
    },
}

FIGURES: dict[str, Callable[..., dict[str, Any]]] = {
    "zeropower": zeropower.run,
    "muon_step": optimizers.run_muon,
    "adamw_step": optimizers.run_adamw,
    "dist_muon": distributed.run,
    "state_bytes": memory.run,
    "suite": suite.run,
}


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small configuration, under a minute")
    size.add_argument("--smoke", action="store_true", help="tiny configuration for the tests (seconds)")
    ap.add_argument("--out", metavar="PATH.json", help="write all results (with raw times) as JSON")
    ap.add_argument("--markdown", metavar="PATH.md", help="write the report as markdown (BENCHMARKS.md)")
    ap.add_argument("--only", metavar="IDS", help=f"comma-separated subset of {','.join(FIGURES)}")
    ap.add_argument("--merge", metavar="PATH.json",
                    help="an earlier --out: its figures are kept, those run now replace theirs (each figure keeps "
                         "the command and date it was measured with)")
    ap.add_argument("--threads", type=int, default=1,
                    help="intra-op threads for figures 1-3 (default 1: stable on a shared 2-core machine)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.only:
        unknown = sorted(set(args.only.split(",")) - set(FIGURES))
        if unknown:
            ap.error(f"--only: unknown figure(s) {unknown}; choose from {list(FIGURES)}")
    return args


def _load_note(start: list[float], end: list[float], cores: int) -> str:
    if not start:
        return ""
    if start[0] > 0.5 * cores or (end and end[0] > cores + 2):
        return (f"The machine was shared with other work (1-min load average {start[0]:.1f} at the start on "
                f"{cores} cores; this run adds 1–2, up to 4 in figure 5): absolute times are noisy, the "
                "same-run ratios of figures 1–3 much less so; figure 4 reports how much CPU each process got.")
    return "The machine was otherwise quiet."


def _merged(path: str, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The figures of the earlier results at ``path``, those in ``new`` replaced, in FIGURES order."""
    with open(path) as fh:
        old = json.load(fh)
    figs = {f["id"]: {"command": old["command"], "date_utc": old["machine"]["date_utc"], **f} for f in old["figures"]}
    figs.update({f["id"]: f for f in new})
    return [figs[fid] for fid in FIGURES if fid in figs]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the selected figures; write ``--out``/``--markdown``; return the results dict."""
    args = _parse(argv)
    preset = "smoke" if args.smoke else "quick" if args.quick else "full"
    ids = args.only.split(",") if args.only else list(FIGURES)
    info = machine()
    argv_list = list(sys.argv[1:] if argv is None else argv)
    results: dict[str, Any] = {"command": " ".join(["python -m bench.run"] + [shlex.quote(a) for a in argv_list]),
                               "preset": preset, "machine": info, "threads": args.threads, "figures": []}
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    try:
        for fid in ids:
            kwargs = dict(PRESETS[preset][fid])
            torch.set_num_threads(args.threads)
            print(f"[bench] {fid} ({preset}) ...", file=sys.stderr, flush=True)
            fig = FIGURES[fid](**kwargs)
            fig.update(command=results["command"], date_utc=info["date_utc"])
            print(f"[bench] {fid}: {fig['seconds']:.1f} s — {fig['reading']}", file=sys.stderr, flush=True)
            results["figures"].append(fig)
    finally:
        torch.set_num_threads(old_threads)
    results["seconds"] = time.perf_counter() - t0
    if args.merge:
        results["figures"] = _merged(args.merge, results["figures"])
    results["load_average_end"] = load_average()
    results["load_note"] = _load_note(info["load_average_start"], results["load_average_end"], info["cores"])
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(to_markdown(results))
    return results


if __name__ == "__main__":
    main()
