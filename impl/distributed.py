"""S9 ZeRO-2 in torch: ``DistMuon`` and ``DistAdamW`` over the default torch.distributed process group.

Both replicate the parameters on every rank, average the gradients with reduce-scatter(AVG) so that each
rank receives only what it owns, step *only* what they own with the functional kernels
(:func:`optconform.impl.muon.muon`, :func:`optconform.impl.adamw.adamw`), keep optimizer state only for
what they own, and all-gather the updated pieces, so every rank ends with the same parameters. In exact
arithmetic one step equals the single-process optimizer stepped on the mean of the ranks' gradients.

Ownership (S9.2, S9.3, the seed's):

* ``DistMuon``: parameters (2-D only) are grouped by shape, groups sorted by shape, original order within a
  group; the j-th parameter of a group belongs to rank ``j % W`` (block-cyclic). With ``collectives="stacked"``
  (the default except on gloo) a group of n parameters travels as one (W·k, rows, cols) stack, k = ceil(n/W),
  parameter j at slot (j % W)·k + j // W (so each rank's piece is its own k parameters; slots past n are zeros):
  per group ONE ``reduce_scatter_tensor`` and ONE ``all_gather_into_tensor`` per step, the owner's parameters
  through one Muon kernel call (one batched Newton–Schulz); the stack holds one more copy of the group's gradients
  while a step runs. With ``"chunked"`` (the default on gloo, where it is measured faster) the same happens per W
  consecutive parameters with the list-form collectives, a last chunk padded with a zero matrix.
* ``DistAdamW``: rank r owns rows ``[min(r·c, d0), min((r+1)·c, d0))`` of every parameter, c = ceil(d0/W),
  d0 = ``shape[0]`` (1 for a 0-D parameter). Gradients are zero-padded to c·W rows, so d0 need not be
  divisible by W (nanochat #320/#364) and may be < W: trailing ranks then own nothing but still take part
  in every collective.

Every step, before any data moves, the ranks agree in one small ``all_reduce`` on: which parameters lack a
gradient (or have one of the wrong shape/dtype/device, or sparse) on which rank, whether any rank rejected
its hyperparameters, and whether the hyperparameters are identical on all ranks. Any problem raises on
**every** rank (the rank whose own hyperparameters are invalid raises ``ValueError``, all others
``RuntimeError`` naming it), so no rank is left waiting in a collective (KellerJordan/Muon #37/#38: skipping
a missing gradient desynchronises the collectives and hangs). Use zeros for a parameter that received no
gradient. Collectives are issued with ``async_op=True`` and waited on through their ``Work`` handles (gloo
implements no ``get_future``); every input and output tensor of a collective is referenced until its
``wait()`` returns (nanochat #843: dropped buffers/handles give torn all-gathers).

``p.grad`` is never written: the averaged gradient lands in a separate buffer (the seed overwrites the
owner's ``p.grad`` with it). After ``step()`` every rank's ``p.grad`` still holds that rank's own local
gradient; ``zero_grad()`` works as for any optimizer.

State and checkpoints: ``state_dict()`` is this rank's shard (DistMuon: ``momentum_buffer`` of the owned
parameters; DistAdamW: ``step``/``exp_avg``/``exp_avg_sq`` of the owned rows), tagged with the rank and world
size; save one file per rank and load it on the same rank of a group of the same size, with the same
parameters in the same order (``load_state_dict`` raises ``ValueError`` otherwise). Momentum is therefore
never read from a non-owner (KellerJordan/Muon #46). :func:`state_bytes` reports a rank's state memory,
about 1/W of the single-process optimizer's.

Variant options (SPEC "Variant options"): ``DistMuon`` takes Muon's (``impl.muon.MUON_OPTIONS``), ``DistAdamW``
AdamW's (``impl.adamw.ADAMW_OPTIONS``), as constructor keywords stored in the param groups; the owners pass them
to the kernels, and the pre-flight agreement covers them like ``lr``. ``from_profile(name, params, **overrides)``
takes a profile's (S9.4 / S9.5 options of ``spec.options``).

Launch: construct after ``torch.distributed.init_process_group`` (under ``torchrun`` the default
``env://`` init reads RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT); all parameters on one device that the
backend supports (gloo: CPU; nccl: CUDA). Constructing without an initialised group raises RuntimeError.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from optconform import spec

from ._closure import run_closure
from .adamw import ADAMW_OPTIONS, check_adamw_hyperparameters, check_adamw_options
from .adamw import adamw as adamw_kernel
from .muon import MUON_OPTIONS, new_second_moment, profile_keywords
from .muon import muon as muon_kernel
from .newton_schulz import zeropower

__all__ = ["DistMuon", "DistAdamW", "state_bytes", "COLLECTIVE_LAYOUTS"]

_MUON, _ADAMW = spec.hyper("S9.4"), spec.hyper("S9.5")

# torch >= 2.13 names the single-tensor collectives *_single; older releases only have the old names.
_reduce_scatter_single = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
_all_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor

# Per-parameter gradient problems, as agreed between ranks before any data collective.
_GRAD_PROBLEMS = {1: "has no .grad", 2: "has a .grad of the wrong shape", 3: "has a .grad of another dtype",
                  4: "has a .grad on another device", 5: "has a sparse .grad",
                  6: "has a .grad whose DTensor placements differ from the parameter's"}
_STATE_TAG = "zero2"
#: DistMuon's ``collectives``: "stacked" (per shape group one reduce_scatter_tensor and one all_gather_into_tensor of
#: a (W·k, rows, cols) stack, nanochat master's pattern), "chunked" (per W consecutive parameters of a group one
#: list-form reduce_scatter and all_gather, no stack copies, the seed's pattern) or "auto": chunked on gloo, stacked
#: on every other backend. Measured on gloo (2 ranks, 1 thread, 48 × 768² float32): reduce_scatter_tensor 0.18–0.20 s
#: against 0.12–0.13 s for the 24 list-form ones, all_gather_into_tensor 0.16–0.19 s against 0.08 s; a d12 step 4.2 s
#: stacked against 3.4 s chunked. On NCCL the list forms copy into one flat buffer themselves, so stacking saves
#: launches and copies (not measured here: no GPU).
COLLECTIVE_LAYOUTS = ("auto", "stacked", "chunked")


def owned(n: int, rank: int, world: int) -> range:
    """S9.2's block-cyclic rule (DistMuon, DTensorMuon): of a shape group's ``n`` members, rank r of W owns members
    r, r + W, r + 2W, … (member j belongs to rank j mod W: :func:`owner`)."""
    return range(rank, n, world)


def owner(j: int, world: int) -> int:
    """The rank that owns member ``j`` of a shape group (:func:`owned`)."""
    return j % world


def _slot(j: int, world: int, k: int) -> int:
    """DistMuon: where member j of a unit (owner(j, W)) sits among its W·k slots, so each rank's piece of the
    reduce-scatter / all-gather is its own members in order."""
    return owner(j, world) * k + j // world


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors in ``optimizer.state`` on this rank (any optimizer, sharded or not)."""
    return sum(t.numel() * t.element_size() for st in optimizer.state.values() for t in st.values()
               if isinstance(t, Tensor))


def _require_group(who: str) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"{who} needs an initialised torch.distributed process group: call "
                           "torch.distributed.init_process_group(...) first (torchrun sets up env://)")
    return dist.get_rank(), dist.get_world_size()


def _as_float(value: object) -> float:
    """A hyperparameter or option value as a float that every rank computes alike (None -> -1, a string -> its
    CRC-32), for the pre-flight comparison."""
    if value is None:
        return -1.0
    if isinstance(value, str):
        return float(zlib.crc32(value.encode()))
    return float(value)  # type: ignore[arg-type]


def _grad_code(p: Tensor) -> int:
    g = p.grad
    if g is None:
        return 1
    if g.is_sparse:
        return 5
    if g.shape != p.shape:
        return 2
    if g.dtype != p.dtype:
        return 3
    if g.device != p.device:
        return 4
    if getattr(g, "placements", None) != getattr(p, "placements", None):  # DTensor parameters (impl.dtensor)
        return 6
    return 0


def grouped_params(params: Iterable[Any], who: str, what: str, check: Callable[[str, Any], None],
                   key: Callable[[Tensor], Any]) -> tuple[list[dict[str, Any]], list[int], list[Tensor]]:
    """One param group per distinct ``key(p)`` (sorted), the given order within a group; ``params``: tensors or
    (name, tensor) pairs, each passed to ``check(label, p)``. Returns (groups, flat: the input position of each
    parameter in group order, the tensors). ValueError for an empty list, param-group dicts, a mix of named and
    plain, or the same tensor twice."""
    items = list(params)
    if not items:
        raise ValueError("params must not be empty")
    if any(isinstance(x, dict) for x in items):
        raise ValueError(f"params must be tensors or (name, tensor) pairs, not param groups: {who} makes one group "
                         f"per {what} itself")
    named = [x for x in items if isinstance(x, tuple)]
    if named and len(named) != len(items):
        raise ValueError("params must be all tensors or all (name, tensor) pairs")
    tensors = [x[1] if isinstance(x, tuple) else x for x in items]
    for j, p in enumerate(tensors):
        check(repr(items[j][0]) if named else f"params[{j}]", p)
    if len({id(p) for p in tensors}) != len(tensors):
        raise ValueError("params must not contain the same tensor twice")
    groups, flat = [], []
    for k in sorted({key(p) for p in tensors}):
        idx = [j for j, p in enumerate(tensors) if key(p) == k]
        groups.append(dict(params=[items[j] for j in idx]))
        flat += idx
    return groups, flat, tensors


class _ZeRO2(torch.optim.Optimizer):
    """Shared machinery: the pre-flight agreement between ranks and the per-rank checkpoint tag."""

    _who = "ZeRO2"

    def _label(self, gi: int, i: int) -> str:
        group = self.param_groups[gi]
        p = group["params"][i]
        if "param_names" in group:
            return f"{group['param_names'][i]!r} (shape {tuple(p.shape)})"
        return f"param_groups[{gi}]['params'][{i}] (shape {tuple(p.shape)})"

    def _check_device(self, params: Sequence[Tensor]) -> None:
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                if p.device != params[0].device:
                    raise ValueError(f"params must all be on one device ({params[0].device}); "
                                     f"{self._label(gi, i)} is on {p.device}")
                if not p.is_floating_point():
                    raise ValueError(f"params must be floating point; {self._label(gi, i)} is {p.dtype}")

    #: the clause's hyperparameters (``spec.hyper``), checked over ``_hyper_names`` by the default ``_check_hypers``
    _hyper_set: Any = None

    @classmethod
    def _check_hypers(cls, group: dict[str, Any]) -> list[float]:
        """One group's hyperparameters validated (ValueError naming one), as floats every rank computes alike."""
        h = cls._hyper_set.check(**{k: group[k] for k in cls._hyper_names})
        return [_as_float(h[k]) for k in cls._hyper_names]

    def _hyper_row(self) -> list[float]:
        """This rank's hyperparameters as floats (must be identical on every rank)."""
        return [v for group in self.param_groups for v in self._check_hypers(group)]

    def _validate_groups(self) -> None:
        for group in self.param_groups:
            self._check_hypers(group)

    def _preflight(self, rank: int, world: int) -> None:
        """One all_reduce that lets every rank see every rank's problems, then raise on all of them."""
        flat = [(gi, i, p) for gi, g in enumerate(self.param_groups) for i, p in enumerate(g["params"])]
        local_error: ValueError | None = None
        hypers: list[float] = []
        try:
            self._validate_groups()
            hypers = self._hyper_row()
        except ValueError as exc:
            local_error = exc
        settings = self._settings()
        g = len(self.param_groups) * self._n_hypers
        n, k = len(flat), g + len(settings)
        device = flat[0][2].device if flat else torch.device("cpu")
        table = torch.zeros((world, n + 1 + k), dtype=torch.float64, device=device)
        row = [float(_grad_code(p)) for _, _, p in flat] + [1.0 if local_error else 0.0]
        row += hypers if local_error is None else [0.0] * g
        row += list(settings.values())
        table[rank] = torch.tensor(row, dtype=torch.float64)
        dist.all_reduce(table, op=dist.ReduceOp.SUM)  # each rank filled only its own row
        table = table.cpu()
        bad_ranks = [r for r in range(world) if table[r, n] != 0]
        if bad_ranks:
            if local_error is not None:
                raise local_error
            raise RuntimeError(f"{self._who}.step: rank(s) {bad_ranks} rejected their hyperparameters "
                               "(see the ValueError on those ranks); no rank stepped")
        problems = []
        for j, (gi, i, _) in enumerate(flat):
            codes = table[:, j]
            for code, what in _GRAD_PROBLEMS.items():
                ranks = [r for r in range(world) if codes[r] == code]
                if ranks:
                    problems.append(f"{self._label(gi, i)} {what} on rank(s) {ranks}")
        if problems:
            raise RuntimeError(f"{self._who}.step: every parameter needs a dense gradient of its own shape, "
                               "dtype and device on every rank (use zeros for an unused parameter; skipping "
                               "one would desynchronise the collectives); no rank stepped: "
                               + "; ".join(problems))
        hyp = table[:, n + 1:]
        if k and not bool((hyp == hyp[0]).all()):
            cols = sorted({int(c) for c in torch.nonzero(hyp != hyp[0])[:, 1]})
            names = [f"param_groups[{c // self._n_hypers}]['{self._hyper_names[c % self._n_hypers]}']"
                     for c in range(g)] + list(settings)
            diff = [f"{names[c]} = {hyp[:, c].tolist()}" for c in cols]
            raise RuntimeError(f"{self._who}.step: hyperparameters or settings differ across ranks (per rank): "
                               + "; ".join(diff) + "; no rank stepped")

    def _settings(self) -> dict[str, float]:
        """Optimizer-wide settings that every rank must share (name -> a float every rank computes alike)."""
        return {}

    _n_hypers = 0
    _hyper_names: tuple[str, ...] = ()
    _options: tuple[str, ...] = ()

    # --- per-rank checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """This rank's shard of the state, tagged ``{"zero2": {"rank", "world_size", "optimizer"}}``."""
        sd = super().state_dict()
        sd[_STATE_TAG] = {"rank": dist.get_rank(), "world_size": dist.get_world_size(),
                          "optimizer": self._who}
        return sd

    #: whether an untagged state dict loads (torch.distributed.checkpoint.state_dict's, on any world size): only
    #: where the state is DTensors placed as the parameters, which carry their own layout (DTensorMuon)
    _reshardable = False

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a shard saved by ``state_dict()`` on the same rank of a group of the same size (or, where the state
        is DTensors, ``_reshardable``, an untagged dict of them from any world size, checked after the load)."""
        rank, world = _require_group(self._who)
        tag = state_dict.get(_STATE_TAG) if isinstance(state_dict, dict) else None
        if not isinstance(tag, dict) and not (self._reshardable and isinstance(state_dict, dict)):
            raise ValueError(f"state_dict must come from {self._who}.state_dict() (no '{_STATE_TAG}' tag): "
                             "the state of a ZeRO-2 optimizer is sharded, one state_dict per rank")
        mine = {"rank": rank, "world_size": world, "optimizer": self._who}
        if tag is not None and tag != mine:
            raise ValueError(f"state_dict was saved by {tag}; this is {mine}: load each rank's own shard, "
                             "on a group of the same size")
        sd = {k: v for k, v in state_dict.items() if k != _STATE_TAG}
        super().load_state_dict(sd)
        for group in self.param_groups:  # a shard saved without an option: this optimizer's value
            for k in self._options:
                group.setdefault(k, self.defaults[k])
        self._check_loaded_state(rank, world)

    def _check_loaded_state(self, rank: int, world: int) -> None:
        raise NotImplementedError


class DistMuon(_ZeRO2):
    """ZeRO-2 Muon (S9.4): reduce-scatter(AVG) of 2-D gradients, block-cyclic owners run the Muon kernel
    (S7.2), all-gather of the updated parameters. One param group per distinct shape (sorted).

    ``collectives`` (``COLLECTIVE_LAYOUTS``, not a spec option: the arithmetic is the same): "stacked" issues per
    shape group one reduce-scatter and one all-gather, "chunked" one of each per W consecutive parameters of a group,
    "auto" chunked on gloo and stacked elsewhere (measured, see ``COLLECTIVE_LAYOUTS``). Every rank must use the same
    (the pre-flight agreement checks it)."""

    _who = "DistMuon"
    _options = MUON_OPTIONS
    _hyper_names = ("lr", "momentum", "nesterov", "ns_steps", *MUON_OPTIONS)
    _n_hypers = len(_hyper_names)
    _hyper_set = _MUON
    #: the Newton–Schulz map ``(u, ns_steps, **changed S6.2 options) -> O`` (S6.2's ``zeropower``); a subclass may
    #: swap it (one taking only (u, ns_steps) serves the seed's Newton–Schulz options)
    orthogonalize = staticmethod(zeropower)

    def __init__(self, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]], lr: float = _MUON.default("lr"),
                 momentum: float = _MUON.default("momentum"), nesterov: bool = _MUON.default("nesterov"),
                 ns_steps: int = _MUON.default("ns_steps"), *, ns_eps: float = _MUON.default("ns_eps"),
                 rows: str | None = _MUON.default("rows"), row_cut: str = _MUON.default("row_cut"),
                 normalisation: str = _MUON.default("normalisation"), safety: float = _MUON.default("safety"),
                 momentum_form: str = _MUON.default("momentum_form"), muoneq: bool = _MUON.default("muoneq"),
                 muon_plus: bool = _MUON.default("muon_plus"),
                 normuon_beta2: float | None = _MUON.default("normuon_beta2"),
                 lr_scale: str = _MUON.default("lr_scale"), weight_decay: float = _MUON.default("weight_decay"),
                 weight_decay_lr: str = _MUON.default("weight_decay_lr"),
                 weight_decay_mode: str = _MUON.default("weight_decay_mode"), collectives: str = "auto"):
        _require_group(self._who)
        if not isinstance(collectives, str) or collectives not in COLLECTIVE_LAYOUTS:
            raise ValueError(f"collectives must be one of {', '.join(map(repr, COLLECTIVE_LAYOUTS))}; "
                             f"got {collectives!r}")
        #: "stacked" or "chunked" (``collectives="auto"`` resolved for this process group's backend)
        self.collectives = collectives if collectives != "auto" else (
            "chunked" if dist.get_backend() == "gloo" else "stacked")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                        row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                        muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                        weight_decay=weight_decay, weight_decay_lr=weight_decay_lr,
                        weight_decay_mode=weight_decay_mode)
        self._check_hypers(defaults)
        groups, flat, tensors = grouped_params(params, "DistMuon", "shape", self._check_param, lambda p: tuple(p.shape))
        super().__init__(groups, defaults)
        #: input_order[j]: the position, in param_groups order, of the j-th parameter given (checkpoint keys)
        self.input_order = sorted(range(len(flat)), key=flat.__getitem__)
        self._check_device(tensors)

    @staticmethod
    def _check_param(label: str, p: object) -> None:
        if not isinstance(p, Tensor):
            raise ValueError(f"{label} must be a torch.Tensor; got {type(p).__name__}")
        if p.ndim != 2:
            raise ValueError(f"{label} must be 2-D (DistMuon orthogonalises matrices); got shape "
                             f"{tuple(p.shape)}: give 0-D/1-D parameters to DistAdamW")

    @classmethod
    def from_profile(cls, name: str, params: Iterable[Tensor] | Iterable[tuple[str, Tensor]], **overrides: Any
                     ) -> DistMuon:
        """DistMuon with profile ``name``'s S9.4 options; ``overrides``: options on top of the profile's, or other
        constructor keywords. Unknown profile -> ValueError listing them."""
        return cls(params, **profile_keywords("S9.4", name, overrides))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As ``torch.optim.Optimizer``'s, but a group must hold 2-D tensors of one shape and one dtype."""
        super().add_param_group(param_group)
        ps = self.param_groups[-1]["params"]
        if any(p.ndim != 2 or p.shape != ps[0].shape or p.dtype != ps[0].dtype for p in ps):
            self.param_groups.pop()
            raise ValueError("param_group['params'] must be 2-D tensors of one shape and one dtype")
        self._check_hypers(self.param_groups[-1])

    def _settings(self) -> dict[str, float]:
        return {"collectives": float(COLLECTIVE_LAYOUTS.index(self.collectives))}

    @torch.no_grad()
    def step(self, closure=None):
        """One DistMuon step on every rank (collective: all ranks must call it). Returns ``closure()``."""
        loss = run_closure(closure)
        rank, world = _require_group(self._who)
        self._preflight(rank, world)

        # [1] launch every reduce-scatter. A unit is a group's parameters (stacked) or W consecutive ones (chunked);
        # its member j (owner j % W) sits at slot (j % W)·k + j // W of W·k slots, k = ceil(members / W), so each
        # rank's piece is its own members in order; slots past the members are zeros. p.grad is only read.
        stacked = self.collectives == "stacked"
        pending = []
        for group in self.param_groups:
            ps = group["params"]
            units = [ps] if stacked else [ps[b:b + world] for b in range(0, len(ps), world)]
            for members in units:
                if members:
                    pending.append((group, members, *self._reduce_scatter(members, world, stacked)))

        # [2] as each reduce-scatter completes, the owner steps its members in ONE kernel call (one batched
        # Newton–Schulz per shape), writes them into its piece, and the unit's all-gather starts
        gathers = []
        for group, members, k, rs_in, mine, work in pending:
            work.wait()
            own = [members[j] for j in owned(len(members), rank, world)]
            if own:
                self._step_owned(group, own, [mine[c] for c in range(len(own))])
            if stacked:
                for c, p in enumerate(own):
                    mine[c].copy_(p)
                mine[len(own):].zero_()  # padding slots (all of them on a rank that owns none)
                ag_out = torch.empty_like(rs_in)
                work = _all_gather_single(ag_out, mine, async_op=True)
            else:  # one slot per rank: gather straight into the (contiguous) parameters
                ag_in = own[0] if own and own[0].is_contiguous() else mine[0]
                if own and ag_in is mine[0]:
                    mine[0].copy_(own[0])
                elif not own:
                    mine[0].zero_()
                ag_out = [q if q.is_contiguous() else torch.empty_like(q, memory_format=torch.contiguous_format)
                          for q in members] + [torch.empty_like(mine[0]) for _ in range(world - len(members))]
                work = dist.all_gather(ag_out, ag_in, async_op=True)
            gathers.append((work, members, k, rs_in, mine, ag_out))

        # [3] wait for every all-gather (all buffers referenced by `gathers` until here), copy back from the slots
        for work, members, k, _, _, ag_out in gathers:
            work.wait()
            for j, p in enumerate(members):
                buf = ag_out[_slot(j, world, k)]
                if buf is not p:
                    p.copy_(buf)
        return loss

    @staticmethod
    def _reduce_scatter(members: list[Tensor], world: int, stacked: bool
                        ) -> tuple[int, Tensor | list[Tensor], Tensor, Any]:
        """Launch the AVG reduce-scatter of a unit's gradients: (k, its input, this rank's (k, rows, cols) piece,
        the Work). Stacked: one ``reduce_scatter_tensor`` of a (W·k, rows, cols) copy; chunked (k = 1): the list
        form on the gradients themselves, zero matrices for missing members."""
        p0 = members[0]
        k = -(-len(members) // world)
        mine = p0.new_empty((k, *p0.shape))
        if stacked:
            stack = p0.new_empty((world * k, *p0.shape))
            for j, p in enumerate(members):
                stack[_slot(j, world, k)].copy_(p.grad)
            for j in range(len(members), world * k):
                stack[_slot(j, world, k)].zero_()
            return k, stack, mine, _reduce_scatter_single(mine, stack, op=dist.ReduceOp.AVG, async_op=True)
        zero = torch.zeros_like(p0, memory_format=torch.contiguous_format)
        rs_in = [p.grad.contiguous() for p in members] + [zero] * (world - len(members))
        return k, rs_in, mine, dist.reduce_scatter(mine[0], rs_in, op=dist.ReduceOp.AVG, async_op=True)

    def _step_owned(self, group: dict[str, Any], own: list[Tensor], grads: list[Tensor]) -> None:
        """The Muon kernel (S7.2) on this rank's parameters of one group, with their averaged gradients."""
        counted = group["momentum_form"] == "bias_corrected"
        steps, seconds = [], []
        for p in own:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["normuon_beta2"] is not None:
                if "second_momentum_buffer" not in state:
                    state["second_momentum_buffer"] = new_second_moment(p)
                seconds.append(state["second_momentum_buffer"])
            steps.append(int(state.get("step", 0)) + 1)
        muon_kernel(own, grads, [self.state[p]["momentum_buffer"] for p in own], lr=group["lr"],
                    momentum=group["momentum"], nesterov=group["nesterov"], ns_steps=group["ns_steps"],
                    orthogonalize=self.orthogonalize, steps=steps if counted else None,
                    second_momentum_buffers=seconds if group["normuon_beta2"] is not None else None,
                    **{k: group[k] for k in MUON_OPTIONS})
        if counted:
            for p, t in zip(own, steps, strict=True):
                self.state[p]["step"] = t

    def _check_loaded_state(self, rank: int, world: int) -> None:
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                st = self.state.get(p, {})
                if st and (owner(i, world) != rank or st["momentum_buffer"].shape != p.shape):
                    raise ValueError(f"state_dict holds a momentum buffer for {self._label(gi, i)}, which "
                                     f"rank {rank} does not own or whose shape differs")


class DistAdamW(_ZeRO2):
    """ZeRO-2 AdamW (S9.5): dim-0 row shards (chunk ceil(d0/W), zero-padded), reduce-scatter(AVG), owners run
    the AdamW kernel (S8.2, per-parameter ``p.lr_mul``/``p.wd_mul``) on their rows, all-gather of the rows.
    ``fused`` chooses the kernel as ``impl.adamw.adamw`` does (None: torch's fused kernel where it exists, one
    pass over memory). The fused kernel rounds a row shard's elements by their memory alignment (vectorised body,
    scalar tail), so its rows agree with the single-process fused step within float32 rounding; with
    ``fused=False`` (the ``_foreach`` chain) a rank's rows are bitwise what the single-process foreach kernel
    computes for them. Measured: figure 3 of BENCHMARKS.md (fused 4–5× faster than foreach on CPU)."""

    _who = "DistAdamW"
    _options = ADAMW_OPTIONS
    _hyper_names = ("lr", "betas[0]", "betas[1]", "eps", "weight_decay", *ADAMW_OPTIONS)
    _n_hypers = len(_hyper_names)

    def __init__(self, param_groups: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = _ADAMW.default("lr"),
                 betas: tuple[float, float] = _ADAMW.default("betas"), eps: float = _ADAMW.default("eps"),
                 weight_decay: float = _ADAMW.default("weight_decay"), *,
                 eps_placement: str = _ADAMW.default("eps_placement"), eps_root: float = _ADAMW.default("eps_root"),
                 param_muls: str = _ADAMW.default("param_muls"), fused: bool | None = None):
        _require_group(self._who)
        if fused is not None and not isinstance(fused, bool):
            raise ValueError(f"fused must be True, False or None; got {fused!r}")
        self._fused = fused
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_placement=eps_placement,
                        eps_root=eps_root, param_muls=param_muls)
        self._check_hypers(defaults)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            self._check_hypers(group)
        self._check_device([p for g in self.param_groups for p in g["params"]])

    @classmethod
    def from_profile(cls, name: str, param_groups: Iterable[Tensor] | Iterable[dict[str, Any]], **overrides: Any
                     ) -> DistAdamW:
        """DistAdamW with profile ``name``'s S9.5 options; ``overrides``: options on top of the profile's, or other
        constructor keywords (lr, weight_decay, …). Unknown profile -> ValueError listing them."""
        return cls(param_groups, **profile_keywords("S9.5", name, overrides))

    @staticmethod
    def _check_hypers(group: dict[str, Any]) -> list[float]:
        hypers = check_adamw_hyperparameters(lr=group["lr"], betas=group["betas"], eps=group["eps"],
                                             weight_decay=group["weight_decay"])
        options = check_adamw_options(**{k: group[k] for k in ADAMW_OPTIONS})
        return [*hypers, *(_as_float(v) for v in options)]

    @staticmethod
    def _rows(p: Tensor, world: int, rank: int) -> tuple[int, int, int, int]:
        """(dim0, chunk, start, stop) of S9.3 for ``p`` on ``rank``; a 0-D tensor counts as dim0 = 1."""
        d0 = p.shape[0] if p.ndim else 1
        chunk = math.ceil(d0 / world)
        return d0, chunk, min(rank * chunk, d0), min((rank + 1) * chunk, d0)

    @torch.no_grad()
    def step(self, closure=None):
        """One DistAdamW step on every rank (collective: all ranks must call it). Returns ``closure()``."""
        loss = run_closure(closure)
        rank, world = _require_group(self._who)
        self._preflight(rank, world)

        # [1] reduce-scatter every gradient, zero-padded to chunk·W rows; p.grad is only read
        pending = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.numel() == 0:
                    continue  # nothing to average or update; identical on every rank
                d0, chunk, start, stop = self._rows(p, world, rank)
                rest = tuple(p.shape[1:])
                g = p.grad.reshape((d0,) + rest)
                if chunk * world == d0 and g.is_contiguous():
                    rs_in = g
                else:
                    rs_in = g.new_zeros((chunk * world,) + rest)
                    rs_in[:d0].copy_(g)
                rs_out = g.new_empty((chunk,) + rest)
                work = _reduce_scatter_single(rs_out, rs_in, op=dist.ReduceOp.AVG, async_op=True)
                pending.append((group, p, d0, chunk, start, stop, rs_in, rs_out, work))

        # [2] owners step their rows, then all-gather the rows into a padded buffer
        gathers = []
        for group, p, d0, chunk, start, stop, rs_in, rs_out, work in pending:
            work.wait()
            rows = stop - start
            if rows > 0:
                p_rows = p if p.ndim == 0 else p[start:stop]
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p_rows, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p_rows, memory_format=torch.preserve_format)
                t = int(state["step"].item()) + 1
                beta1, beta2 = group["betas"]
                read = group["param_muls"] == "read"
                adamw_kernel([p_rows], [rs_out[:rows].view(p_rows.shape)], [state["exp_avg"]],
                             [state["exp_avg_sq"]], [t], lr=group["lr"], beta1=beta1, beta2=beta2,
                             eps=group["eps"], weight_decay=group["weight_decay"],
                             lr_muls=[getattr(p, "lr_mul", 1.0) if read else 1.0],
                             wd_muls=[getattr(p, "wd_mul", 1.0) if read else 1.0], fused=self._fused,
                             eps_placement=group["eps_placement"], eps_root=group["eps_root"])
                state["step"].fill_(float(t))
                rs_out[:rows].copy_(p_rows.reshape(rs_out[:rows].shape))
            rs_out[rows:].zero_()  # padding rows (all of them on a rank that owns none)
            ag_out = rs_out.new_empty((chunk * world,) + tuple(rs_out.shape[1:]))
            work = _all_gather_single(ag_out, rs_out, async_op=True)
            gathers.append((work, p, d0, rs_in, rs_out, ag_out))

        # [3] wait for every all-gather, then copy the d0 real rows back into the parameter
        for work, p, d0, _, _, ag_out in gathers:
            work.wait()
            p.copy_(ag_out[:d0].view(p.shape))
        return loss

    def _check_loaded_state(self, rank: int, world: int) -> None:
        for gi, group in enumerate(self.param_groups):
            for i, p in enumerate(group["params"]):
                st = self.state.get(p, {})
                if not st:
                    continue
                _, _, start, stop = self._rows(p, world, rank)
                want = tuple(p.shape) if p.ndim == 0 else (stop - start,) + tuple(p.shape[1:])
                if stop == start or tuple(st["exp_avg"].shape) != want:
                    raise ValueError(f"state_dict holds exp_avg of shape {tuple(st['exp_avg'].shape)} for "
                                     f"{self._label(gi, i)}; rank {rank} of {world} owns rows "
                                     f"[{start}, {stop})")
