"""Timing helpers and the machine description shared by every figure.

Candidates that are compared are timed *interleaved*: each repeat runs every candidate once, in an order
rotated from repeat to repeat, so that load from other processes on a shared machine hits all of them
alike. Ratios are formed per repeat (same repeat, same load) and summarised by their median.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch

__all__ = ["interleaved", "median", "paired_ratios", "spread", "machine", "load_average"]


def interleaved(fns: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each ``fns[name]``: ``warmup`` untimed rounds, then ``repeats`` timed rounds.

    Round r runs the candidates in the order rotated by r. Returns name -> list of ``repeats`` times.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0; got {repeats}, {warmup}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(xs))


def paired_ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """num[r] / den[r] for each repeat r (both measured in the same round)."""
    if len(num) != len(den):
        raise ValueError(f"num and den must have one entry per repeat; got {len(num)} and {len(den)}")
    return [a / b for a, b in zip(num, den, strict=True)]


def spread(xs: Sequence[float]) -> tuple[float, float]:
    """(min, max): how far the repeats scatter around the median."""
    return float(min(xs)), float(max(xs))


def load_average() -> list[float]:
    """1-, 5-, 15-minute load averages (empty where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": cores,
        "memory_gib": _mem_total_gib(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "default_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
    }
