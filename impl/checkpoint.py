"""Checkpoints of Muon, AdamW, DistMuon, DistAdamW, DTensorMuon and DTensorAdamW through torch.distributed.checkpoint
(DCP), loadable on another world size (SPEC S9.9; this module is the built-in target's ``Checkpoint``).

``save(optimizer, path, extra=None)`` and ``load(optimizer, path) -> extra`` are collective for the ZeRO-2 and
DTensor optimizers (every rank calls them) and plain calls otherwise. One key scheme serves all six, so a checkpoint
saved by DistMuon on W ranks loads into DistMuon on W′ ranks (W, W′ >= 1), into DTensorMuon on W′ ranks or into
single-process Muon, and likewise DistAdamW / DTensorAdamW / AdamW:

* ``optim/meta``: family ("muon" | "adamw"), the optimizer's class, and per parameter its key, shape and dtype, in
  the optimizer's parameter order (names when the optimizer was given ``(name, tensor)`` pairs, else ``params.<j>``,
  j the position in the order the parameters were given);
* ``optim/hypers/<key>``: the hyperparameters of the parameter's group (lr, momentum, options, …);
* ``optim/state/<key>/<name>``: each state tensor in its full logical shape. Muon, AdamW: plain tensors. DistMuon:
  plain tensors written by the owner only. DistAdamW: ``exp_avg`` / ``exp_avg_sq`` as DTensors sharded by rows
  (``Shard(0)`` over the W ranks: torch.chunk's split, which is S9.3's ceil(d0/W) rows per rank), so each rank
  writes its rows and, on load, reads only the rows it owns at W′; a 0-D parameter's moments and every ``step``
  are plain tensors. DTensorMuon, DTensorAdamW (DTensor parameters): the entries of the parameter's shape are
  DTensors placed as the parameter (S9.6), which DCP writes piece by piece and reads into the placements of W′;
  NorMuon's ``second_momentum_buffer`` (DTensorMuon's, a plain tensor on the matrix's owner) is written by its owner
  at W and read by its owner at W′;
* ``extra/...``: the caller's objects (a schedule's position, the data loader's, …), returned by ``load``.

Before any state is read, ``load`` compares ``optim/meta`` with the optimizer (family, number of parameters, then
per parameter key, shape and dtype) and raises ValueError naming the first mismatch; for the ZeRO-2 and DTensor
optimizers the ranks then agree in one ``all_reduce`` and every rank raises (RuntimeError naming the failing rank on
the others), so no rank is left in a collective. Loading replaces the state and the hyperparameters; the parameters
themselves are the model's (save them with the model).

``consolidate(path, file)`` writes a DCP checkpoint as one ``torch.save`` file (DCP's ``dcp_to_torch_save``: the
full tensors, DTensor shards joined), and ``from_consolidated(file, path)`` converts it back; ``load`` reads either
form's directory.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import Tensor

from .adamw import AdamW
from .distributed import DistAdamW, DistMuon, owner
from .dtensor import DTensorMuon
from .muon import Muon

__all__ = ["save", "load", "consolidate", "from_consolidated", "FAMILIES"]

#: optimizer class -> family; a checkpoint loads into any optimizer of its family
FAMILIES: dict[type, str] = {Muon: "muon", DistMuon: "muon", DTensorMuon: "muon", AdamW: "adamw",
                             DistAdamW: "adamw"}  # DTensorAdamW is AdamW on DTensor parameters
_META, _HYPERS, _STATE, _EXTRA = "optim/meta", "optim/hypers/", "optim/state/", "extra/"


def _family(opt: torch.optim.Optimizer) -> str:
    for cls, fam in FAMILIES.items():
        if isinstance(opt, cls):
            return fam
    raise ValueError(f"optimizer must be one of {', '.join(c.__name__ for c in FAMILIES)}; got {type(opt).__name__}")


def _dtensor(p: Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def _collective(opt: torch.optim.Optimizer) -> bool:
    """Every rank takes part (ZeRO-2 optimizers, and any optimizer over DTensor parameters)."""
    return isinstance(opt, (DistMuon, DistAdamW, DTensorMuon)) or any(
        _dtensor(p) for g in opt.param_groups for p in g["params"])


def _params(opt: torch.optim.Optimizer) -> list[tuple[str, Tensor, dict[str, Any]]]:
    """(key, parameter, its group) in the order the parameters were given to the optimizer."""
    found = []
    for group in opt.param_groups:
        names = group.get("param_names")
        for i, p in enumerate(group["params"]):
            found.append((names[i] if names else None, p, group))
    order = getattr(opt, "input_order", None)
    if order is not None:  # DistMuon regroups by shape; input_order[j] = position of the j-th given parameter
        found = [found[k] for k in order] + found[len(order):]
    return [(name if name is not None else f"params.{j}", p, g) for j, (name, p, g) in enumerate(found)]


def _hypers(group: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k not in ("params", "param_names")}


def _meta(opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {"family": _family(opt), "optimizer": type(opt).__name__,
            "params": [(key, tuple(p.shape), str(p.dtype)) for key, p, _ in _params(opt)]}


def _opaque(d: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A dict as a tuple of items: DCP flattens mappings into keys of their own, a tuple is one object."""
    return tuple(d.items())


def _mesh(device: torch.device) -> Any:
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (dist.get_world_size(),))


def _row_dtensor(local: Tensor, full_shape: tuple[int, ...], mesh: Any) -> Any:
    """This rank's rows as a DTensor sharded by rows (torch.chunk's split = S9.3's) over ``mesh``."""
    from torch.distributed.tensor import DTensor, Shard

    stride = tuple(int(math.prod(full_shape[k + 1:])) for k in range(len(full_shape)))
    return DTensor.from_local(local, mesh, [Shard(0)], run_check=False, shape=torch.Size(full_shape), stride=stride)


def _state_items(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The DCP entries of this rank's state (see the module docstring)."""
    out: dict[str, Any] = {}
    params = _params(opt)
    # DistAdamW: the mesh on every rank (creating it is collective), whether or not this rank owns rows
    mesh = _mesh(params[0][1].device) if isinstance(opt, DistAdamW) and params else None
    for key, p, _ in params:
        st = opt.state.get(p, {})
        for name, value in st.items():
            if not isinstance(value, Tensor):
                value = torch.tensor(value)  # Muon's bias-corrected step count (an int)
            if isinstance(opt, DistAdamW) and name != "step" and p.ndim >= 1:
                value = _row_dtensor(value, tuple(p.shape), mesh)
            out[f"{_STATE}{key}/{name}"] = value
    return out


def save(optimizer: torch.optim.Optimizer, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
    """Write ``optimizer``'s state, hyperparameters and ``extra`` as a DCP checkpoint in directory ``path``
    (collective for DistMuon / DistAdamW: every rank calls it)."""
    sd: dict[str, Any] = {_META: _opaque(_meta(optimizer))}
    for key, _, group in _params(optimizer):
        sd[f"{_HYPERS}{key}"] = _opaque(_hypers(group))
    sd.update(_state_items(optimizer))
    for k, v in (extra or {}).items():
        sd[f"{_EXTRA}{k}"] = v
    grouped = dist.is_available() and dist.is_initialized()  # replicated single-process state: written once
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.save(sd, checkpoint_id=os.fspath(path), no_dist=not grouped)


def _compare(saved: Mapping[str, Any], mine: Mapping[str, Any]) -> str | None:
    """The first difference between a checkpoint's ``optim/meta`` and this optimizer's, in words (None: none)."""
    if saved.get("family") != mine["family"]:
        return (f"the checkpoint holds a {saved.get('optimizer')} ({saved.get('family')} family) state; this is a "
                f"{mine['optimizer']} ({mine['family']} family)")
    a, b = list(saved["params"]), mine["params"]
    for j, (x, y) in enumerate(zip(a, b, strict=False)):
        if tuple(x) != tuple(y):
            what = "key" if x[0] != y[0] else "shape" if tuple(x[1]) != tuple(y[1]) else "dtype"
            return (f"parameter {j}: the checkpoint has {x[0]!r} of shape {tuple(x[1])} and {x[2]}, this optimizer "
                    f"{y[0]!r} of shape {tuple(y[1])} and {y[2]} (first difference: the {what})")
    if len(a) != len(b):
        return f"the checkpoint has {len(a)} parameters, this optimizer {len(b)}"
    return None


def _agree(opt: torch.optim.Optimizer, problem: str | None, what: str) -> None:
    """Raise on every rank if any rank has a problem (ValueError with it on that rank, RuntimeError elsewhere)."""
    if _collective(opt):
        flags = torch.zeros(dist.get_world_size(), dtype=torch.float64, device=opt.param_groups[0]["params"][0].device)
        flags[dist.get_rank()] = 1.0 if problem else 0.0
        dist.all_reduce(flags)
        bad = [r for r, f in enumerate(flags.tolist()) if f]
        if bad and not problem:
            raise RuntimeError(f"{type(opt).__name__} checkpoint {what}: rank(s) {bad} failed (see the error on "
                               "those ranks); nothing was loaded")
    if problem:
        raise ValueError(f"{type(opt).__name__} checkpoint {what}: {problem}")


def _owned(opt: torch.optim.Optimizer) -> set[int]:
    """ids of the parameters whose whole plain-tensor state this rank holds: DistMuon's and DTensorMuon's owner
    (NorMuon's second moment), DistAdamW's row holders, every parameter otherwise."""
    if isinstance(opt, (DistMuon, DTensorMuon)):
        rank, world = dist.get_rank(), dist.get_world_size()
        return {id(p) for g in opt.param_groups for i, p in enumerate(g["params"]) if owner(i, world) == rank}
    if isinstance(opt, DistAdamW):
        rank, world = dist.get_rank(), dist.get_world_size()
        rows = {id(p): DistAdamW._rows(p, world, rank) for g in opt.param_groups for p in g["params"]}
        return {k for k, (_, _, start, stop) in rows.items() if stop > start}
    return {id(p) for g in opt.param_groups for p in g["params"]}


def _read(sd: dict[str, Any], path: str, *, collective: bool) -> None:
    """dcp.load into ``sd``: collectively, or by this process alone (no warning about the missing group)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        dcp.load(sd, checkpoint_id=path, no_dist=not collective)


def load(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by ``save`` (by any optimizer of the family, on any world size) into
    ``optimizer``: its state and hyperparameters; returns the ``extra`` objects. Collective for DistMuon /
    DistAdamW. A checkpoint of another model or optimizer family -> ValueError naming the first mismatch (on every
    rank)."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = os.fspath(path)
    problem, saved_keys = None, {}
    try:
        md = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        saved_keys = dict(md)
        head: dict[str, Any] = {_META: None}
        _read(head, path, collective=False)
        problem = _compare(dict(head[_META]), _meta(optimizer))
    except Exception as exc:  # unreadable, not a checkpoint of ours
        problem = f"cannot read {path!r} as an optconform checkpoint ({type(exc).__name__}: {exc})"
    _agree(optimizer, problem, "load")

    params = _params(optimizer)
    objects: dict[str, Any] = {k: None for k in saved_keys if k.startswith((_HYPERS, _EXTRA))}
    _read(objects, path, collective=False)
    for k in objects:
        if k.startswith(_HYPERS):
            objects[k] = dict(objects[k])
    owned = _owned(optimizer)
    collective = _collective(optimizer)
    rank = dist.get_rank() if collective else 0
    world = dist.get_world_size() if collective else 1
    mesh = _mesh(params[0][1].device) if isinstance(optimizer, DistAdamW) and params else None
    templates: dict[str, Any] = {}
    for key, p, _ in params:
        prefix = f"{_STATE}{key}/"
        for k, m in saved_keys.items():
            if not k.startswith(prefix) or not isinstance(m, TensorStorageMetadata):
                continue
            name, shape, dtype = k[len(prefix):], tuple(m.size), m.properties.dtype
            if _dtensor(p) and shape == tuple(p.shape) and name != "second_momentum_buffer":
                from torch.distributed.tensor import zeros

                templates[k] = zeros(shape, dtype=dtype, device_mesh=p.device_mesh, placements=p.placements)
            elif isinstance(optimizer, DistAdamW) and name != "step" and p.ndim >= 1:
                _, _, start, stop = DistAdamW._rows(p, world, rank)
                local = torch.zeros((stop - start, *shape[1:]), dtype=dtype, device=p.device)
                templates[k] = _row_dtensor(local, shape, mesh)
            elif isinstance(optimizer, DistAdamW) or id(p) in owned or name == "step":
                device = p.to_local().device if _dtensor(p) else p.device
                templates[k] = torch.zeros(shape, dtype=dtype, device=device)
    # DistAdamW and DTensor optimizers: one collective load (every rank holds every DTensor key and reads only its
    # own pieces); otherwise each rank reads what it owns by itself
    problem = None
    try:
        _read(templates, path, collective=isinstance(optimizer, DistAdamW) or any(_dtensor(p) for _, p, _ in params))
    except Exception as exc:
        problem = f"reading the state failed ({type(exc).__name__}: {exc})"
    _agree(optimizer, problem, "load")

    state: dict[Tensor, dict[str, Any]] = {}
    for key, p, _ in params:
        if id(p) not in owned and not _dtensor(p):
            continue
        prefix = f"{_STATE}{key}/"
        st = {}
        for k, v in templates.items():
            if k.startswith(prefix):
                name = k[len(prefix):]
                v = v.to_local() if isinstance(optimizer, DistAdamW) and hasattr(v, "to_local") else v
                st[name] = int(v) if (name == "step" and isinstance(optimizer, (Muon, DistMuon, DTensorMuon))) else v
        if st:
            state[p] = st
    problem = None
    try:
        _set_hypers(optimizer, params, objects)
    except ValueError as exc:
        problem = str(exc)
    _agree(optimizer, problem, "load")
    optimizer.state.clear()
    optimizer.state.update(state)
    check = getattr(optimizer, "_check_loaded_state", None)
    if check is not None:
        check(rank, world)
    return {k[len(_EXTRA):]: v for k, v in objects.items() if k.startswith(_EXTRA)}


def _set_hypers(opt: torch.optim.Optimizer, params: list[tuple[str, Tensor, dict[str, Any]]],
                objects: Mapping[str, Any]) -> None:
    """Each group takes its parameters' saved hyperparameters (keys the group has); parameters of one group must
    have saved the same values (ValueError naming the first that did not)."""
    by_group: dict[int, tuple[str, dict[str, Any]]] = {}
    for key, _, group in params:
        saved = objects.get(f"{_HYPERS}{key}")
        if saved is None:
            continue
        values = {k: v for k, v in saved.items() if k in group}
        seen = by_group.setdefault(id(group), (key, values))
        if seen[1] != values:
            raise ValueError(f"parameters {seen[0]!r} and {key!r} share a param group here but were saved with "
                             f"different hyperparameters ({seen[1]} vs {values})")
    for group in opt.param_groups:
        if id(group) in by_group:
            group.update(by_group[id(group)][1])


def consolidate(path: str | os.PathLike, file: str | os.PathLike) -> None:
    """Write the DCP checkpoint in directory ``path`` as one ``torch.save`` file (full tensors; one process)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(os.fspath(path), os.fspath(file))


def from_consolidated(file: str | os.PathLike, path: str | os.PathLike) -> None:
    """Convert a file written by ``consolidate`` back into a DCP checkpoint directory ``path`` (one process); it
    then loads on any world size like the original."""
    from torch.distributed.checkpoint.format_utils import torch_save_to_dcp

    torch_save_to_dcp(os.fspath(file), os.fspath(path))
