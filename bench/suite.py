"""Figure 6: the suite's own cost. ``nox -s conformance`` on the default target (every case, world sizes 1–4) and
``--diagnose`` on one target (the probes and the option search alone, then the whole run under the diagnosis), each
against the budget it has to stay within: 60 s of test time for the main job, 3 minutes for a diagnosis.

Each run is a fresh ``python -m pytest --pyargs optconform.conformance.cases`` process with the environment of the
nox session (hypothesis profile ``quick``, the machine's threads); "test time" is pytest's own count (what the
60 s budget is about), "wall" adds interpreter start-up, imports and collection. The probes-and-search time is
measured in this process by :func:`optconform.conformance.diagnose.diagnose_target`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

from .timing import load_average

__all__ = ["RUNS", "run"]

#: (label, target, extra pytest arguments, budget in seconds of test time)
RUNS: list[tuple[str, str, list[str], float]] = [
    ("nox -s conformance (the main job)", "optconform.impl", [], 60.0),
    ("--diagnose, torch.optim at its defaults", "optconform.conformance.torch_optim", ["--diagnose"], 180.0),
    ("--diagnose, the built-in implementation", "optconform.impl", ["--diagnose"], 180.0),
]

_SECONDS = re.compile(r" in ([0-9.]+)s")


def _suite(target: str, args: list[str], seed: int, timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "optconform.conformance.cases", "-p", "no:cacheprovider", "-q",
           "--target", target, "--seed", str(seed), *args]
    env = {**os.environ, "OPTCONFORM_HYPOTHESIS_PROFILE": "quick"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    wall = time.perf_counter() - t0
    last = [line for line in proc.stdout.splitlines() if _SECONDS.search(line)]
    if proc.returncode not in (0, 1) or not last:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return {"test_s": float(_SECONDS.search(last[-1]).group(1)), "wall_s": wall, "outcome": last[-1].strip("= "),
            "returncode": proc.returncode}


def _diagnose_seconds(target: str, seed: int) -> float:
    from optconform.conformance.diagnose import diagnose_target
    from optconform.conformance.target import load_target
    from optconform.spec import options as O

    loaded = load_target(target)
    t0 = time.perf_counter()
    diagnose_target(loaded, O.resolve(), seed=seed)
    return time.perf_counter() - t0


def run(*, select: list[str] | None = None, seed: int = 0, timeout_s: float = 900.0) -> dict[str, Any]:
    """Measure figure 6; ``select``: extra pytest arguments that narrow every run (the smoke preset)."""
    t_start = time.perf_counter()
    rows = []
    for label, target, args, budget in RUNS:
        res = _suite(target, [*args, *(select or [])], seed, timeout_s)
        diag = _diagnose_seconds(target, seed) if "--diagnose" in args else None
        rows.append({"run": label, "command": " ".join(["--target", target, *args]), "probes_s": diag,
                     "test_s": res["test_s"], "wall_s": res["wall_s"], "budget_s": budget,
                     "within": "yes" if res["test_s"] <= budget else "NO", "outcome": res["outcome"]})
    reading = "; ".join(f"{r['run']}: {r['test_s']:.0f} s of test time (budget {r['budget_s']:.0f} s"
                        + (f"; probes and search {r['probes_s']:.1f} s" if r["probes_s"] is not None else "") + ")"
                        for r in rows) + "."
    return {
        "id": "suite",
        "title": "Figure 6 — the suite's own cost: nox -s conformance and --diagnose, against their budgets",
        "config": {"seed": seed, "select": " ".join(select or []) or "every case", "world sizes": "1,2,3,4"},
        "columns": [["run", "run", "s"], ["command", "pytest arguments", "s"],
                    ["probes_s", "probes + option search s", ".1f"], ["test_s", "test time s (pytest)", ".1f"],
                    ["wall_s", "wall s (with start-up)", ".1f"], ["budget_s", "budget s", ".0f"],
                    ["within", "within budget", "s"], ["outcome", "pytest's summary", "s"]],
        "rows": rows,
        "reading": reading,
        "notes": ["A --diagnose run judges every case under the diagnosed options after the probes; its test time "
                  "includes the probes. The search's cost grows linearly with the number of options "
                  "(conformance/diagnose.py)."],
        "load_average_end": load_average(),
        "seconds": time.perf_counter() - t_start,
    }
