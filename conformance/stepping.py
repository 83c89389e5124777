"""Trajectories and the one stepping loop that replays them through a target, in one process or on each rank.

A :class:`Trajectory` is framework-neutral: initial parameters, the gradients of every step (one list per
step, or one per step and rank for the distributed optimizers), the group hyperparameters of every step
(what a scheduler would set), the constructor's hyperparameters, per-parameter attributes (nanochat's
``lr_mul`` / ``wd_mul``), and optionally the golden parameters and states after every step.

:func:`step_through` is the only loop that drives a target optimizer: it builds float tensors on the
requested device, sets ``p.grad`` itself, updates ``group[...]`` before each step, calls ``step()``, and
records the parameters before and after each step, the gradients it gave (read *before* the step: an
implementation may legitimately overwrite ``p.grad``), and at the end the state the optimizer keeps under
torch.optim's names plus the number of state elements it holds in all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optconform import spec
from optconform.golden.store import GoldenCase

#: the state keys the suite reads (torch.optim's names)
STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "step")


@dataclass
class Trajectory:
    kind: str  # the protocol name it replays through ("Muon", "DistAdamW", ...)
    case_id: str
    params0: list[np.ndarray]
    per_step: list[dict]  # group hyperparameters set before each step
    hyper: dict  # constructor keyword arguments
    grads: list[list[np.ndarray]] | None = None  # [step][param]
    rank_grads: list[list[list[np.ndarray]]] | None = None  # [step][rank][param] (distributed)
    expected: list[list[np.ndarray]] | None = None  # golden params after each step, [step][param]
    expected_state: list[list[dict[str, np.ndarray]]] | None = None  # golden state after each step [step][param]
    attrs: list[dict] = field(default_factory=list)  # per-parameter attributes (lr_mul, wd_mul)
    resume_at: int | None = None  # a state_dict round trip before this step (step_through), as a checkpoint would
    #: DTensor parameters (S9.7, S9.8): each parameter's placement (``conformance.dtensor.PLACEMENTS``)
    placements: list[str] | None = None
    #: S9.9: after the last step, the target's ``Checkpoint.save(optimizer, save_to)`` (every rank)
    save_to: str | None = None
    #: S9.9: before the first step, the target's ``Checkpoint.load(optimizer, load_from)`` into the fresh optimizer
    load_from: str | None = None
    #: a rank-fault case: (what, rank, step) -- that rank does ``what`` (``FAULTS``) just before that step
    fault: tuple[str, int, int] | None = None

    @property
    def steps(self) -> int:
        return len(self.grads if self.grads is not None else self.rank_grads)

    @property
    def world_size(self) -> int | None:
        return len(self.rank_grads[0]) if self.rank_grads else None

    def grads_of(self, rank: int | None = None) -> Callable[[int], list[np.ndarray]]:
        """Step -> the gradients this process (or ``rank``) gives the target."""
        if self.rank_grads is None:
            return lambda t: self.grads[t]
        return lambda t: self.rank_grads[t][rank]

    def arrays(self, rank: int | None = None) -> list[np.ndarray]:
        """Every value this process's tensors hold (to choose a dtype that represents them)."""
        g = self.grads_of(rank if rank is not None else 0)
        return list(self.params0) + [a for t in range(self.steps) for a in g(t)]

    def mean_grads(self) -> list[list[np.ndarray]]:
        """[step][param] the mean over ranks (S9.1); the local gradients when not distributed."""
        if self.rank_grads is None:
            return self.grads
        return [[np.mean([rg[i] for rg in ranks], axis=0) for i in range(len(self.params0))]
                for ranks in self.rank_grads]

    def hyper_values(self) -> list[dict]:
        """Every combination of hyperparameters the target sees: the constructor's, then each step's."""
        return [dict(self.hyper)] + [dict(self.hyper, **ps) for ps in self.per_step]


@dataclass
class Replayed:
    before: list[list[np.ndarray]]  # [step][param] parameters before the step (float64 copy)
    grads: list[list[np.ndarray]]  # [step][param] the gradients the target was given (float64 copy)
    after: list[list[np.ndarray]]  # [step][param] parameters after the step
    state: list[dict[str, np.ndarray]] = field(default_factory=list)  # [param] final state, torch.optim keys
    state_elements: int = 0  # elements of every tensor the optimizer keeps in its state (but its step counts)
    #: with ``resume_at``: [param] state key -> max |after load − before save| (inf: missing after the load)
    restored: list[dict[str, float]] | None = None


def _f64(t) -> np.ndarray:
    """A float64 NumPy copy (of this rank's own piece, for a DTensor: no communication)."""
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.detach().to("cpu").double().numpy().copy()


def _numeric(v: Any) -> bool:
    """A state value the round trip can compare: a tensor or a plain number (not a nested dict, a string, …)."""
    import torch

    return torch.is_tensor(v) or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _round_trip(make_optimizer: Callable[..., Any], opt: Any, params: list, hyper: dict[str, Any]
                ) -> tuple[Any, list[dict[str, float]]]:
    """``opt.state_dict()`` through torch.save / torch.load into a fresh ``make_optimizer(params, **hyper)``; returns
    it and, per parameter, how far each state entry moved (inf: gone) between the save and the load."""
    import io

    import torch

    before = [{k: _f64(torch.as_tensor(v)) for k, v in opt.state.get(p, {}).items() if _numeric(v)} for p in params]
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    fresh = make_optimizer(params, **hyper)
    fresh.load_state_dict(torch.load(buf, weights_only=False))
    moved = []
    for p, old in zip(params, before, strict=True):
        new = fresh.state.get(p, {})
        moved.append({k: float(np.max(np.abs(_f64(torch.as_tensor(new[k])) - v), initial=0.0))
                      if k in new and _numeric(new[k]) else math.inf for k, v in old.items()})
    return fresh, moved


#: What the faulty rank of a rank-fault case does before its step: raise ``InjectedFault``; start a timer that sends
#: itself SIGKILL ``SIGKILL_DELAY_S`` into the step (as the OOM killer would, its peers inside the step's
#: collectives); or sleep instead of stepping (it never enters the step's collectives).
FAULTS = ("raise", "sigkill", "absent")
SIGKILL_DELAY_S = 0.005


class InjectedFault(RuntimeError):
    """The suite's own failure on the faulty rank of a rank-fault case (never a target's)."""


def inject_fault(traj: Trajectory, rank: int | None, t: int) -> None:
    """Before step ``t`` on ``rank``: the fault ``traj.fault`` asks for there, if any (``FAULTS``)."""
    if traj.fault is None or rank != traj.fault[1] or t != traj.fault[2]:
        return
    what = traj.fault[0]
    if what == "raise":
        raise InjectedFault(f"the suite's injected failure on rank {rank} before step {t}")
    if what == "sigkill":
        import os
        import signal
        import threading

        threading.Timer(SIGKILL_DELAY_S, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return
    if what == "absent":
        import time

        time.sleep(1e6)  # never returns: the harness's timeout ends the run
    raise ValueError(f"fault must be one of {FAULTS}; got {what!r}")


def checkpoint_io(checkpoint: Any, traj: Trajectory, opt: Any, when: str) -> None:
    """S9.9: ``checkpoint.load(opt, traj.load_from)`` (``when="start"``) or ``checkpoint.save(opt, traj.save_to)``
    (``when="end"``) where the trajectory asks for it; ``checkpoint`` is the target's ``Checkpoint``."""
    path = traj.load_from if when == "start" else traj.save_to
    if path is None:
        return
    if checkpoint is None:
        raise ValueError(f"trajectory {traj.case_id!r} needs the target's Checkpoint (save_to / load_from)")
    (checkpoint.load if when == "start" else checkpoint.save)(opt, path)


def step_through(make_optimizer: Callable[..., Any], traj: Trajectory, *, device, dtype,
                 rank: int | None = None, checkpoint: Any = None) -> Replayed:
    """Run ``traj`` through ``make_optimizer(params, **traj.hyper)`` (this process's gradients, or ``rank``'s).
    ``traj.resume_at``: before that step, save ``state_dict()`` (torch.save), build a fresh optimizer on the same
    parameters and ``load_state_dict`` it, then go on (a checkpoint and resume). ``traj.load_from`` /
    ``traj.save_to``: the target's ``checkpoint`` loads before the first step / saves after the last
    (:func:`checkpoint_io`)."""
    import torch

    params = [torch.nn.Parameter(torch.as_tensor(p0, dtype=dtype, device=device).clone()) for p0 in traj.params0]
    for p, attrs in zip(params, traj.attrs or [{}] * len(params), strict=True):
        for k, v in attrs.items():
            setattr(p, k, v)
    opt = make_optimizer(params, **traj.hyper)
    checkpoint_io(checkpoint, traj, opt, "start")
    grads_at = traj.grads_of(rank)
    out = Replayed([], [], [])
    for t in range(traj.steps):
        if t == traj.resume_at:
            opt, out.restored = _round_trip(make_optimizer, opt, params, traj.hyper)
        out.before.append([_f64(p) for p in params])
        for p, g in zip(params, grads_at(t), strict=True):
            p.grad = torch.as_tensor(g, dtype=dtype, device=device).clone()
        out.grads.append([_f64(p.grad) for p in params])
        for group in opt.param_groups:
            group.update(traj.per_step[t])
        inject_fault(traj, rank, t)
        opt.step()
        out.after.append([_f64(p) for p in params])
    checkpoint_io(checkpoint, traj, opt, "end")
    state = getattr(opt, "state", {})
    out.state = [{k: _f64(torch.as_tensor(v)) for k, v in state.get(p, {}).items() if k in STATE_KEYS}
                 for p in params]
    out.state_elements = sum(v.numel() for st in state.values() for k, v in st.items()
                             if torch.is_tensor(v) and k != "step")
    return out


#: torch.compile recompiles a shape-specialised function for each new input shape, and refuses past its
#: recompile limit (8 by default; with ``fullgraph=True`` a hard error). The suite's cases use far more shapes
#: than one training run does, so it raises the limits for its own processes: a compiled target is then never
#: failed for the suite's variety of shapes, only slowed by it.
RECOMPILE_LIMIT = 1024
_LIMIT_NAMES = ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit")


def relax_recompile_limits() -> None:
    """Raise torch._dynamo's recompile limits to at least :data:`RECOMPILE_LIMIT` (if torch.compile is in use)."""
    import sys

    cfg = sys.modules.get("torch._dynamo.config")
    if cfg is None:
        return
    for name in _LIMIT_NAMES:
        try:
            current = getattr(cfg, name)
        except AttributeError:
            continue
        if isinstance(current, int) and current < RECOMPILE_LIMIT:
            setattr(cfg, name, RECOMPILE_LIMIT)


# float32's normal range; a value outside it (or whose square is, for second-moment optimizers) cannot be
# represented faithfully, so such a case runs in float64 instead (SPEC "Tolerance policy", precision).
_F32_TINY, _F32_MAX = 1.1754943508222875e-38, 3.4028234663852886e38


def case_dtype(arrays: Sequence[np.ndarray], *, squares: bool = False):
    """torch.float32 when every non-zero |x| (and |x|², with ``squares``) lies in float32's normal range."""
    import torch

    lo, hi = (_F32_TINY**0.5, _F32_MAX**0.5) if squares else (_F32_TINY, _F32_MAX)
    for a in arrays:
        x = np.abs(np.asarray(a, dtype=np.float64))
        x = x[x > 0]
        if x.size and (x.min() < lo or x.max() > hi):
            return torch.float64
    return torch.float32


def _names(value: str | list[str]) -> list[str]:
    return value if isinstance(value, list) else [value]


def from_golden(case: GoldenCase) -> Trajectory:
    """The trajectory of a golden optimizer case (``layout`` trajectory or dist_trajectory), replayed through
    its clause's protocol name with the protocol's keyword hyperparameters."""
    clause = spec.clause(case.clause)
    rp = case.extra["replay"]
    steps = case.steps
    params0 = [case.inputs[n] for n in _names(rp["param0"])]
    gnames = _names(rp["grads"])
    per_step = [{k: float(case.inputs[k][t]) for k in rp.get("per_step", [])} for t in range(steps)]
    keywords = clause.protocol_keywords
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in case.hyper.items() if k in keywords}
    for k in rp.get("per_step", []):  # the constructor needs a value; step 0's is set again before step 0
        if k in keywords:
            hyper.setdefault(k, per_step[0][k])
    n = len(params0)
    muls = {attr: case.hyper.get(f"{attr}s") or [case.hyper.get(attr, 1.0)] * n for attr in ("lr_mul", "wd_mul")}
    attrs = [{a: float(muls[a][i]) for a in muls if float(muls[a][i]) != 1.0} for i in range(n)]
    expected = [[case.outputs[e][t] for e in _names(rp["expected_param"])] for t in range(steps)]
    traj = Trajectory(clause.protocol_name, case.id, params0, per_step, hyper, expected=expected, attrs=attrs)
    if case.world_size is None:
        traj.grads = [[case.inputs[g][t] for g in gnames] for t in range(steps)]
        keys = [k.removeprefix("state.") for k in _names(rp["expected_state"])]
        traj.expected_state = [[{k: case.outputs[f"state.{k}"][t] for k in keys}] for t in range(steps)]
    else:
        w = case.world_size
        traj.rank_grads = [[[case.inputs[g][t, r] for g in gnames] for r in range(w)] for t in range(steps)]
        traj.expected_state = [[_gathered_state(case, i, t) for i in range(n)] for t in range(steps)]
        traj.placements = case.extra.get("placements")
    return traj


def _gathered_state(case: GoldenCase, i: int, t: int) -> dict[str, np.ndarray]:
    """The single-process state of parameter i after step t, joined from the golden per-rank pieces: S9.3's rows
    (concatenated along dim 0), S9.2's whole matrices (one owner), or S9.6's pieces of a DTensor placement
    (``extra.placements``: concatenated along the Shard dimension, rank 0's for Replicate)."""
    placement = (case.extra.get("placements") or [None] * (i + 1))[i]
    dim = int(placement[6:-1]) if placement and placement.startswith("Shard(") else None
    pieces: dict[str, list[np.ndarray]] = {}
    for r in range(case.world_size):
        prefix = f"state.r{r}.{i}."
        for name, arr in case.outputs.items():
            if name.startswith(prefix):
                pieces.setdefault(name.removeprefix(prefix), []).append(arr[t])
    out = {}
    for key, parts in pieces.items():
        if placement is not None:
            out[key] = parts[0] if key == "step" or dim is None else np.concatenate(parts, dim)
        else:
            out[key] = parts[0] if key == "step" or parts[0].ndim == 0 or len(parts) == 1 else np.concatenate(parts, 0)
    return out
