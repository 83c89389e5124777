"""S9.6–S9.8 in torch: Muon and AdamW over DTensor-sharded parameters (FSDP2's ``fully_shard``, or plain DTensors).

Under FSDP2 every parameter is a DTensor on a device mesh: rank r holds only its piece (S9.6: ``Shard(d)`` is
torch.chunk's ceil(n/W) split of dimension d; ``Replicate`` is the whole tensor), and the backward pass already
reduce-scatters the gradients, so ``p.grad`` is a DTensor of p's placements holding rank r's piece of the mean
gradient. An elementwise optimizer needs nothing more; Muon needs each whole matrix once per step.

``DTensorMuon`` (S9.7), per step and per group of same-shape, same-placement matrices (sorted by shape, then
placement; owners block-cyclic within a group as DistMuon's, S9.2: member j belongs to rank j % W):

1. momentum, on each rank's own pieces (elementwise, the state is a DTensor of p's placements):
   buf ← lerp(buf, g, 1 − β); u = lerp(g, buf, β) (or S7.3's other forms);
2. ONE ``all_to_all_single`` per group sends every owner the other ranks' pieces of u of the matrices it owns
   (skipped for ``Replicate``: every rank holds u whole);
3. each owner orthogonalises its whole matrices (MuonEq, Newton–Schulz, Muon+, NorMuon as S7.2's kernel: the same
   function, batched per group; NorMuon's v lives on the owner);
4. ONE ``all_to_all_single`` per group returns to every rank its piece of every O (``Replicate``: one
   ``all_gather_into_tensor`` of the owners' whole O's);
5. θ ← decay(θ, O) − lr·s·O on each rank's own pieces, s from the *global* shape (S7.1).

So one step equals the single-process Muon (S7.2) on the mean gradient, bit for bit on CPU (the same elementwise
kernels on pieces, the same Newton–Schulz on whole matrices).

Communication per step (what this optimizer sends; FSDP2's own gradient reduce-scatter and parameter all-gather are
the training loop's): for ``Shard(d)`` each matrix of N elements travels (W−1)/W·N elements to its owner and the
same back, i.e. 2·(W−1)/W·N summed over ranks, 2·(W−1)/W²·N per rank on average; the ZeRO-2 ``DistMuon`` moves
2·(W−1)/W·N per rank (its reduce-scatter averages the gradients, its all-gather replaces FSDP's): W times more per
rank, because FSDP2 already did the averaging. ``Replicate``: (W−1)/W·N per rank (the all-gather of O's).
:func:`step_elements` states it per rank; tests/impl/test_dtensor.py counts it.

``DTensorAdamW`` (S9.8) is :class:`optconform.impl.adamw.AdamW` itself: every AdamW operation is elementwise, so
torch runs it on each rank's pieces, and ``zeros_like(p)`` gives the moments p's placements.

Requirements (ValueError naming the parameter otherwise): every parameter a 2-D DTensor on one 1-D device mesh
spanning the default process group, placements ``Shard(0)``, ``Shard(1)`` or ``Replicate()``; the gradients
DTensors of the parameters' placements (agreed between ranks before any data moves, as DistMuon's pre-flight).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.tensor import DTensor, Replicate, Shard

from optconform import spec

from .adamw import AdamW
from .distributed import _all_gather_single, _require_group, _slot, _ZeRO2, grouped_params, owned
from .muon import (
    MUON_OPTIONS,
    _apply,
    _check_hyper,
    _ns_input,
    _ns_keywords,
    _orthogonalized,
    _per_matrix,
    _post_processed,
    _step_sizes,
    _update_momentum,
    _work_dtype,
    new_second_moment,
    profile_keywords,
)
from .newton_schulz import zeropower, zeropower_eager

__all__ = ["DTensorMuon", "DTensorAdamW", "local_range", "placement_name", "step_elements"]

_H = spec.hyper("S9.7")

#: S9.8: AdamW is elementwise, so the single-process optimizer is the DTensor one.
DTensorAdamW = AdamW


def placement_name(p: Tensor) -> str:
    """``"Shard(0)"``, ``"Shard(1)"``, ``"Replicate()"`` for a DTensor on a 1-D mesh; ``"local"`` otherwise."""
    if not isinstance(p, DTensor):
        return "local"
    return ",".join(str(pl) if not isinstance(pl, Shard) else f"Shard({pl.dim})" for pl in p.placements)


def local_range(n: int, world: int, rank: int) -> tuple[int, int]:
    """S9.6 ``[start, stop)`` of a dimension of size n that ``Shard`` gives ``rank`` (torch.chunk: c = ceil(n/W))."""
    c = -(-n // world) if n else 0
    return min(rank * c, n), min((rank + 1) * c, n)


def step_elements(shapes: Sequence[Sequence[int]], placements: Sequence[str], world: int, rank: int) -> int:
    """Elements this rank sends in one DTensorMuon step (both all-to-alls, or the Replicate all-gather input)."""
    out = 0
    groups: dict[tuple, list[int]] = {}
    for i, (s, pl) in enumerate(zip(shapes, placements, strict=True)):
        groups.setdefault((tuple(s), pl), []).append(i)
    for (shape, pl), idx in groups.items():
        own = len(owned(len(idx), rank, world))
        k = -(-len(idx) // world)
        numel = shape[0] * shape[1]
        if pl == "Replicate()":
            out += k * numel
            continue
        d = 0 if pl == "Shard(0)" else 1
        a, b = local_range(shape[d], world, rank)
        mine = (b - a) * numel // shape[d] if shape[d] else 0
        others = len(idx) - own  # my pieces of the matrices others own, and others' pieces of mine
        out += others * mine + own * (numel - mine)
    return out


class DTensorMuon(_ZeRO2):
    """Muon (S9.7) over 2-D DTensor parameters: pieces stepped where they live, whole matrices orthogonalised
    once each, by an owner (module docstring). ``DTensorMuon(params, lr=0.02, momentum=0.95, nesterov=True,
    ns_steps=5, *, <MUON_OPTIONS>)``; ``params``: DTensors or (name, DTensor) pairs (one param group per shape and
    placement is made here). State per parameter: ``momentum_buffer`` (a DTensor of p's placements), ``step`` (only
    for ``momentum_form="bias_corrected"``), ``second_momentum_buffer`` (NorMuon, a plain tensor on the owner)."""

    _who = "DTensorMuon"
    _reshardable = True  # its momentum buffers are DTensors: torch's state-dict API and DCP reshard them
    _options = MUON_OPTIONS
    _hyper_names = ("lr", "momentum", "nesterov", "ns_steps", *MUON_OPTIONS)
    _n_hypers = len(_hyper_names)
    _hyper_set = _H
    orthogonalize = staticmethod(zeropower)

    def __init__(self, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]], lr: float = _H.default("lr"),
                 momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov"),
                 ns_steps: int = _H.default("ns_steps"), *, ns_eps: float = _H.default("ns_eps"),
                 rows: str | None = _H.default("rows"), row_cut: str = _H.default("row_cut"),
                 normalisation: str = _H.default("normalisation"), safety: float = _H.default("safety"),
                 momentum_form: str = _H.default("momentum_form"), muoneq: bool = _H.default("muoneq"),
                 muon_plus: bool = _H.default("muon_plus"), normuon_beta2: float | None = _H.default("normuon_beta2"),
                 lr_scale: str = _H.default("lr_scale"), weight_decay: float = _H.default("weight_decay"),
                 weight_decay_lr: str = _H.default("weight_decay_lr"),
                 weight_decay_mode: str = _H.default("weight_decay_mode")):
        rank, world = _require_group(self._who)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                        row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                        muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                        weight_decay=weight_decay, weight_decay_lr=weight_decay_lr,
                        weight_decay_mode=weight_decay_mode)
        _check_hyper(**defaults)
        groups, flat, tensors = grouped_params(params, "DTensorMuon", "shape and placement",
                                               lambda label, p: self._check_param(label, p, world),
                                               lambda p: (tuple(p.shape), placement_name(p)))
        super().__init__(groups, defaults)
        #: input_order[j]: the position, in param_groups order, of the j-th parameter given
        self.input_order = sorted(range(len(flat)), key=flat.__getitem__)
        self._check_device([p.to_local() for p in tensors])

    @staticmethod
    def _check_param(label: str, p: object, world: int) -> None:
        if not isinstance(p, DTensor):
            raise ValueError(f"{label} must be a DTensor (fully_shard or distribute_tensor on a device mesh); got "
                             f"{type(p).__name__}: DistMuon is the optimizer for replicated plain tensors")
        if p.ndim != 2:
            raise ValueError(f"{label} must be 2-D (Muon orthogonalises matrices); got shape {tuple(p.shape)}")
        mesh = p.device_mesh
        if mesh.ndim != 1 or mesh.size() != world:
            raise ValueError(f"{label} must live on a 1-D device mesh of all {world} ranks; got mesh shape "
                             f"{tuple(mesh.shape)}")
        pl = p.placements[0]
        if not (isinstance(pl, Replicate) or (isinstance(pl, Shard) and pl.dim in (0, 1))):
            raise ValueError(f"{label} must be placed Shard(0), Shard(1) or Replicate(); got {pl}")

    @classmethod
    def from_profile(cls, name: str, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]], **overrides: Any
                     ) -> DTensorMuon:
        """DTensorMuon with profile ``name``'s S9.7 options (``overrides`` on top)."""
        return cls(params, **profile_keywords("S9.7", name, overrides))

    @torch.no_grad()
    def step(self, closure=None):
        """One DTensorMuon step on every rank (collective: all ranks must call it). Returns ``closure()``."""
        from ._closure import run_closure

        loss = run_closure(closure)
        rank, world = _require_group(self._who)
        self._preflight(rank, world)
        for group in self.param_groups:
            self._step_group(group, rank, world)
        return loss

    def _step_group(self, group: dict[str, Any], rank: int, world: int) -> None:
        ps: list[DTensor] = group["params"]
        h = {k: group[k] for k in self._hyper_names}
        shape = tuple(ps[0].shape)
        placement = ps[0].placements[0]
        counted = h["momentum_form"] == "bias_corrected"
        # [1] momentum and u on this rank's pieces (elementwise: the same bits as on the whole matrix)
        for p in ps:
            if "momentum_buffer" not in self.state[p]:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        bufs = [self.state[p]["momentum_buffer"].to_local() for p in ps]
        grads = [p.grad.to_local() for p in ps]
        _update_momentum(h, bufs, grads)
        steps = [int(self.state[p].get("step", 0)) + 1 for p in ps]
        us = [_ns_input(h, g, buf, t if counted else None) for g, buf, t in zip(grads, bufs, steps, strict=True)]
        own = list(owned(len(ps), rank, world))  # members this rank orthogonalises
        # [2] whole u of the owned matrices
        if isinstance(placement, Shard):
            whole = self._to_owners(us, shape, placement.dim, rank, world)
        else:
            whole = [us[j] for j in own]
        # [3] O of the owned matrices (NorMuon's v on the owner)
        ortho = self._orthogonalize_owned(group, h, [ps[j] for j in own], whole)
        # [4] this rank's piece of every O, sent in O's own dtype (every rank derives it alike)
        wire = self._wire_dtype(h, us[0].dtype)
        ortho = [o.to(wire) for o in ortho]
        if isinstance(placement, Shard):
            pieces = self._from_owners(ortho, us, shape, placement.dim, rank, world, wire)
        else:
            pieces = self._gather_replicated(ortho, us, world, wire)
        # [5] decay and step on this rank's pieces, the aspect scale from the global shape
        alpha, decay = _step_sizes(h, shape)
        for p, o in zip(ps, pieces, strict=True):
            _apply(p.to_local(), o, alpha, decay, h["weight_decay_mode"])
        if counted:
            for p, t in zip(ps, steps, strict=True):
                self.state[p]["step"] = t

    def _orthogonalize_owned(self, group: dict[str, Any], h: dict[str, Any], own: list[DTensor],
                             whole: list[Tensor]) -> list[Tensor]:
        if not own:
            return []
        ns_kw = _ns_keywords(h)
        post = _post_processed(h)
        vs = None
        if h["normuon_beta2"] is not None:
            for p in own:
                if "second_momentum_buffer" not in self.state[p]:
                    self.state[p]["second_momentum_buffer"] = new_second_moment(whole[0])
            vs = [self.state[p]["second_momentum_buffer"] for p in own]
        dtype, shape = whole[0].dtype, whole[0].shape
        # as the S7.2 kernel: one 2-D call per large CPU matrix (bit-identical, faster)
        if _per_matrix(whole[0].device, shape, self.orthogonalize):
            return [_orthogonalized(h, u, h["ns_steps"], ns_kw, self.orthogonalize, dtype, post,
                                    vs[j] if vs is not None else None) for j, u in enumerate(whole)]
        v = torch.stack(vs) if vs is not None else None
        out = _orthogonalized(h, torch.stack(whole), h["ns_steps"], ns_kw, self.orthogonalize, dtype, post, v)
        if vs is not None:
            for j, vj in enumerate(vs):
                vj.copy_(v[j])
        return list(out.unbind(0))

    def _wire_dtype(self, h: dict[str, Any], dtype: torch.dtype) -> torch.dtype:
        """O's dtype: the S7.2 kernel's (the work dtype after Muon+ / NorMuon, bf16 from the spec's Newton–Schulz);
        a custom ``orthogonalize``'s results travel in the parameter's dtype."""
        if _post_processed(h):
            return _work_dtype(dtype)
        if self.orthogonalize is zeropower or self.orthogonalize is zeropower_eager:
            return torch.bfloat16
        return dtype

    @staticmethod
    def _splits(shape: tuple[int, ...], dim: int, world: int) -> list[tuple[int, int]]:
        return [local_range(shape[dim], world, r) for r in range(world)]

    def _to_owners(self, us: list[Tensor], shape: tuple[int, ...], dim: int, rank: int, world: int) -> list[Tensor]:
        """All-to-all: rank s sends owner r its pieces of r's matrices; returns the whole u of each owned one."""
        n, rows = len(us), self._splits(shape, dim, world)
        mine = us[0].numel()
        send = [us[j].reshape(-1) for r in range(world) for j in owned(n, r, world)]
        in_splits = [mine * len(owned(n, r, world)) for r in range(world)]
        k = len(owned(n, rank, world))
        other = shape[1 - dim]
        out_splits = [(b - a) * other * k for a, b in rows]
        sendbuf = torch.cat(send) if send else us[0].new_empty(0)
        recv = us[0].new_empty(sum(out_splits))
        dist.all_to_all_single(recv, sendbuf, out_splits, in_splits)
        whole, off = [[] for _ in range(k)], 0
        for a, b in rows:
            piece_shape = (b - a, other) if dim == 0 else (other, b - a)
            for c in range(k):
                size = (b - a) * other
                whole[c].append(recv[off:off + size].view(piece_shape))
                off += size
        return [torch.cat(parts, dim=dim) for parts in whole]

    def _from_owners(self, ortho: list[Tensor], us: list[Tensor], shape: tuple[int, ...], dim: int, rank: int,
                     world: int, wire: torch.dtype) -> list[Tensor]:
        """All-to-all: each owner sends rank s its piece of every O it computed; returns this rank's piece of every
        member's O, in member order."""
        n, rows = len(us), self._splits(shape, dim, world)
        other = shape[1 - dim]
        send, in_splits = [], []
        for a, b in rows:
            for o in ortho:
                send.append(o.narrow(dim, a, b - a).reshape(-1))
            in_splits.append((b - a) * other * len(ortho))
        mine = us[0].numel()
        out_splits = [mine * len(owned(n, r, world)) for r in range(world)]
        sendbuf = torch.cat(send) if send else us[0].new_empty(0, dtype=wire)
        recv = us[0].new_empty(sum(out_splits), dtype=wire)
        dist.all_to_all_single(recv, sendbuf, out_splits, in_splits)
        pieces: list[Tensor | None] = [None] * n
        off = 0
        for r in range(world):
            for j in owned(n, r, world):
                pieces[j] = recv[off:off + mine].view(us[0].shape)
                off += mine
        return pieces  # type: ignore[return-value]

    @staticmethod
    def _gather_replicated(ortho: list[Tensor], us: list[Tensor], world: int, wire: torch.dtype) -> list[Tensor]:
        """Replicate: one all-gather of every owner's O's (padded to k per rank)."""
        n, k = len(us), -(-len(us) // world)
        mine = us[0].new_zeros((k, *us[0].shape), dtype=wire)
        for c, o in enumerate(ortho):
            mine[c].copy_(o)
        out = us[0].new_empty((world * k, *us[0].shape), dtype=wire)
        _all_gather_single(out, mine)
        return [out[_slot(j, world, k)] for j in range(n)]

    def _check_loaded_state(self, rank: int, world: int) -> None:
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                buf = self.state.get(p, {}).get("momentum_buffer")
                if buf is not None and (not isinstance(buf, DTensor) or buf.shape != p.shape
                                        or buf.placements != p.placements):
                    raise ValueError(f"state_dict's momentum buffer for {self._label(gi, i)} is not a DTensor of "
                                     f"the parameter's shape and placements")
