"""Running distributed trajectories on real process groups for the S9 conformance cases.

One spawn per (optimizer, world size) runs every trajectory on every rank (starting W processes costs
seconds; the steps cost milliseconds). Each rank replays the trajectory with :func:`stepping.step_through`
(its own gradients) and returns what it recorded, including the state it keeps under torch.optim's names,
which is how ownership and memory are judged. A trajectory whose constructor or step raises
``optconform.spec.Unsupported`` on a rank is recorded as ``{"unsupported": reason}`` and the next one runs.
"""

from __future__ import annotations

from dataclasses import asdict

from .dtensor import step_dtensor
from .stepping import Trajectory, case_dtype, relax_recompile_limits, step_through

#: the distributed protocol names whose state holds squares (Adam's v): their cases need float64 sooner
SQUARES = ("DistAdamW", "DTensorAdamW")


def run_rank(rank: int, world_size: int, target_spec: str, trajectories: list[Trajectory],
             device: str) -> list[dict]:
    """The per-rank body (module level, so spawned children can import it)."""
    import torch

    from optconform.spec import Unsupported

    from .target import load_target

    target = load_target(target_spec)
    dev = torch.device(device if device == "cpu" else f"cuda:{rank}")
    out = []
    for traj in trajectories:
        relax_recompile_limits()
        ctor = target.get(traj.kind)
        dtype = case_dtype(traj.arrays(rank), squares=traj.kind in SQUARES)
        ckpt = target.get("Checkpoint") if traj.save_to or traj.load_from else None  # S9.9
        try:
            if traj.placements is not None:  # DTensor parameters (S9.7, S9.8)
                rec = step_dtensor(ctor, traj, device=dev, dtype=dtype, rank=rank, world_size=world_size,
                                   checkpoint=ckpt)
            else:
                rec = asdict(step_through(ctor, traj, device=dev, dtype=dtype, rank=rank, checkpoint=ckpt))
        except Unsupported as exc:
            rec = {"unsupported": str(exc) or type(exc).__name__}
        out.append(dict(rec, case_id=traj.case_id))
    return out


def run_all(target_spec: str, trajectories: list[Trajectory], world_size: int, *, device: str,
            timeout_s: float) -> list[list[dict]]:
    """Every trajectory on ``world_size`` ranks; returns ``[rank][trajectory]`` records."""
    from .spawn import run_distributed

    backend = "nccl" if device == "cuda" else "gloo"
    return run_distributed(run_rank, world_size, args=(target_spec, trajectories, device), timeout_s=timeout_s,
                           backend=backend)
