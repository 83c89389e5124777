"""Stepping a target's DTensorMuon / DTensorAdamW (S9.7, S9.8) on one rank, with DTensor parameters.

:func:`step_dtensor` is :func:`stepping.step_through` for DTensor parameters: it places each parameter on a 1-D
device mesh of the W ranks as ``traj.placements[i]`` says (S9.6: ``"Shard(d)"``, ``"Replicate()"``, or
``"fully_shard"``: FSDP2's ``fully_shard`` on a module holding those parameters, which places them ``Shard(0)``),
gives the target on every step what FSDP2's backward would leave in ``p.grad`` — the mean over ranks of their own
gradients, as a DTensor of the parameter's placements — and records what every rank sees:

* before / after each step: the whole parameters (``full_tensor()``; for ``Replicate()`` a rank's own copy, so
  ranks that diverge show), and the gradient this rank contributed (its own, before averaging: the judges take
  the mean of the ranks' as S9.4 does);
* whether each parameter kept its placements (a target must step the DTensor in place, not replace it);
* at the end, each state tensor under torch.optim's names: its whole value (``full_tensor()`` of a DTensor, the
  tensor itself otherwise; only this rank's piece of an entry that some rank lacks, after the ranks agree on which
  entries they hold), its local shape, whether it is placed as its parameter; and the state elements this rank
  holds (local pieces), which is how sharding is judged.

The gradients: ``"Shard(d)"`` / ``"Replicate()"``: ``DTensor.from_local(g_rank, mesh, [Partial("avg")])``
redistributed to the parameter's placements (a reduce-scatter or all-reduce, AVG); ``"fully_shard"``: a real
forward and backward of loss = Σ_i <p_i, g_i(rank)> through the FSDP2 module, whose backward reduce-scatters the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .stepping import STATE_KEYS, Replayed, Trajectory, _f64, _round_trip, checkpoint_io, inject_fault

__all__ = ["FULLY_SHARD", "PLACEMENTS", "step_dtensor"]

#: a placement value of ``Trajectory.placements`` meaning "through FSDP2's fully_shard" (Shard(0) on the mesh)
FULLY_SHARD = "fully_shard"
#: every value ``Trajectory.placements`` may hold
PLACEMENTS = ("Shard(0)", "Shard(1)", "Replicate()", FULLY_SHARD)


def _placement(name: str):
    from torch.distributed.tensor import Replicate, Shard

    if name == "Replicate()":
        return Replicate()
    if name.startswith("Shard(") and name.endswith(")"):
        return Shard(int(name[6:-1]))
    raise ValueError(f"placements must be drawn from {PLACEMENTS}; got {name!r}")


def _module(tensors: list) -> Any:
    import torch

    class _Inner(torch.nn.Module):
        """loss = Σ_i <p_i, g_i>: the backward gives each rank its own g_i, FSDP2 averages them."""

        def __init__(self) -> None:
            super().__init__()
            self.ps = torch.nn.ParameterList([torch.nn.Parameter(t) for t in tensors])

        def forward(self, gs: list) -> Any:
            return sum((p * g).sum() for p, g in zip(self.ps, gs, strict=True))

    return _Inner()


def _state_record(v: Any, p: Any, gather: bool) -> dict:
    """What the judges read of one state tensor; ``gather``: every rank holds this entry, so ``full_tensor()`` (a
    collective) may run, else only this rank's own piece is recorded."""
    import torch
    from torch.distributed.tensor import DTensor

    if isinstance(v, DTensor) and not gather:
        return {"whole": _f64(v), "local_shape": tuple(v.to_local().shape),
                "placed_as_param": str(v.placements) == str(getattr(p, "placements", None)), "dtensor": False}
    if isinstance(v, DTensor):
        return {"whole": _f64(v.full_tensor()), "local_shape": tuple(v.to_local().shape),
                "placed_as_param": str(v.placements) == str(getattr(p, "placements", None)), "dtensor": True}
    t = torch.as_tensor(v)
    return {"whole": _f64(t), "local_shape": tuple(t.shape), "placed_as_param": False, "dtensor": False}


def step_dtensor(make_optimizer, traj: Trajectory, *, device, dtype, rank: int, world_size: int,
                 checkpoint: Any = None) -> dict:
    """Replay ``traj`` on this rank with DTensor parameters (module docstring); returns the record as a dict.
    ``checkpoint``: the target's Checkpoint, for ``traj.load_from`` / ``traj.save_to`` (``stepping.checkpoint_io``)."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, distribute_tensor

    assert traj.placements is not None
    mesh = init_device_mesh(device.type, (world_size,))
    full = [torch.as_tensor(p0, dtype=dtype, device=device).clone() for p0 in traj.params0]
    fsdp_idx = [i for i, pl in enumerate(traj.placements) if pl == FULLY_SHARD]
    params: list = [None] * len(full)
    model = None
    if fsdp_idx:
        from torch.distributed.fsdp import fully_shard

        model = _module([full[i] for i in fsdp_idx])
        fully_shard(model, mesh=mesh)
        for j, i in enumerate(fsdp_idx):
            params[i] = model.ps[j]
    for i, pl in enumerate(traj.placements):
        if pl != FULLY_SHARD:
            params[i] = torch.nn.Parameter(distribute_tensor(full[i], mesh, [_placement(pl)]))
    for p, attrs in zip(params, traj.attrs or [{}] * len(params), strict=True):
        for k, v in attrs.items():
            setattr(p, k, v)
    placements0 = [str(p.placements) for p in params]
    opt = make_optimizer(params, **traj.hyper)
    checkpoint_io(checkpoint, traj, opt, "start")
    grads_at = traj.grads_of(rank)
    out = Replayed([], [], [])
    restored = None
    for t in range(traj.steps):
        if t == traj.resume_at:
            opt, restored = _round_trip(make_optimizer, opt, params, traj.hyper)
        # the parameters before a step are those after the previous one (a resume changes only the optimizer)
        out.before.append(out.after[-1] if out.after else [_f64(p.full_tensor()) for p in params])
        gs = [torch.as_tensor(g, dtype=dtype, device=device).clone() for g in grads_at(t)]
        out.grads.append([_f64(g) for g in gs])
        if model is not None:
            model.zero_grad(set_to_none=True)
            model([gs[i] for i in fsdp_idx]).backward()
        for i, p in enumerate(params):
            if traj.placements[i] != FULLY_SHARD:
                p.grad = DTensor.from_local(gs[i], mesh, [Partial("avg")]).redistribute(mesh, p.placements)
        for group in opt.param_groups:
            group.update(traj.per_step[t])
        inject_fault(traj, rank, t)
        opt.step()
        out.after.append([_f64(p.full_tensor()) for p in params])
    checkpoint_io(checkpoint, traj, opt, "end")
    state = getattr(opt, "state", {})
    # which state entries every rank holds (a target that creates state lazily on some ranks only must not make the
    # suite's own full_tensor() calls disagree: that is the desynchronisation the judges report)
    import torch.distributed as dist

    mine = [sorted(k for k in state.get(p, {}) if k in STATE_KEYS and k != "step") for p in params]
    everyone: list = [None] * world_size
    dist.all_gather_object(everyone, mine)
    common = [set.intersection(*(set(e[i]) for e in everyone)) for i in range(len(params))]
    records = [{k: _state_record(v, p, k in common[i]) for k, v in state.get(p, {}).items()
                if k in STATE_KEYS and k != "step"} for i, p in enumerate(params)]
    elements = sum((v.to_local() if isinstance(v, DTensor) else v).numel() for st in state.values()
                   for k, v in st.items() if torch.is_tensor(v) and k != "step")
    return {"before": out.before, "grads": out.grads, "after": out.after, "restored": restored,
            "state_records": records, "state_elements": int(elements),
            "local_param_elements": [int(p.to_local().numel()) for p in params],
            "placements_kept": [str(p.placements) == pl0 for p, pl0 in zip(params, placements0, strict=True)],
            "state": [{k: r["whole"] for k, r in rec.items()} for rec in records]}


def whole_state(recs: list[dict], i: int, key: str) -> np.ndarray | None:
    """Parameter i's whole ``key`` state as rank 0 sees it (None where rank 0 keeps none)."""
    rec = recs[0]["state_records"][i].get(key)
    return None if rec is None else rec["whole"]
