"""Running DistMuon / DistAdamW trajectories on real process groups for the S9 conformance cases.

One spawn per world size runs every distributed trajectory on every rank (starting W processes costs
seconds; the steps cost milliseconds). Each rank builds the same initial parameters, sets ``p.grad`` to
its own gradients, sets the group hyperparameters before each step, calls ``step()``, and returns the
parameters after every step plus, at the end, the state tensors it keeps under torch.optim's names
(``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, ``step``), which is how ownership is checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "step")


@dataclass
class DistTrajectory:
    kind: str  # "DistMuon" | "DistAdamW"
    case_id: str
    params0: list[np.ndarray]
    rank_grads: list[list[list[np.ndarray]]]  # [step][rank][param]
    per_step: list[dict]
    hyper: dict
    attrs: list[dict] = field(default_factory=list)
    expected: list[list[np.ndarray]] | None = None  # golden params after each step

    @property
    def steps(self) -> int:
        return len(self.rank_grads)


def _f64(t) -> np.ndarray:
    return t.detach().to("cpu").double().numpy().copy()


def run_rank(rank: int, world_size: int, target_spec: str, trajectories: list[DistTrajectory],
             device: str) -> list[dict]:
    """The per-rank body (module level, so spawned children can import it)."""
    import torch

    from .replay import case_dtype
    from .target import load_target

    target = load_target(target_spec)
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    out = []
    for traj in trajectories:
        ctor = target.get(traj.kind)
        arrays = list(traj.params0) + [g for step in traj.rank_grads for g in step[rank]]
        dtype = case_dtype(arrays, squares=traj.kind == "DistAdamW")
        params = [torch.nn.Parameter(torch.as_tensor(p0, dtype=dtype, device=dev).clone()) for p0 in traj.params0]
        for p, attrs in zip(params, traj.attrs or [{}] * len(params), strict=True):
            for k, v in attrs.items():
                setattr(p, k, v)
        opt = ctor(params, **traj.hyper)
        rec = dict(case_id=traj.case_id, before=[], grads=[], after=[])
        for t in range(traj.steps):
            rec["before"].append([_f64(p) for p in params])
            for p, g in zip(params, traj.rank_grads[t][rank], strict=True):
                p.grad = torch.as_tensor(g, dtype=dtype, device=dev).clone()
            rec["grads"].append([_f64(p.grad) for p in params])
            for group in opt.param_groups:
                group.update(traj.per_step[t])
            opt.step()
            rec["after"].append([_f64(p) for p in params])
        rec["state"] = [{k: _f64(torch.as_tensor(v)) for k, v in opt.state.get(p, {}).items()
                         if k in STATE_KEYS} for p in params]
        out.append(rec)
    return out


def run_all(target_spec: str, trajectories: list[DistTrajectory], world_size: int, *, device: str,
            timeout_s: float) -> list[list[dict]]:
    """Every trajectory on ``world_size`` ranks; returns ``[rank][trajectory]`` records."""
    from .spawn import run_distributed

    backend = "nccl" if device == "cuda" else "gloo"
    return run_distributed(run_rank, world_size, args=(target_spec, trajectories, device), timeout_s=timeout_s,
                           backend=backend)
