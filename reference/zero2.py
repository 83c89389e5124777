"""ZeRO-2 sharded Muon and AdamW (SPEC S9), modelled rank by rank in float64.

W ranks each hold a full replica of the parameters and their own gradients. One step is
reduce-scatter(AVG) of the gradients to the owners, an optimizer step by each owner on what it owns,
and all-gather of the updated pieces, so every rank ends with the same parameters. Each rank's
optimizer state holds only what that rank owns. In exact arithmetic the result equals the
single-process optimizer (S7.2 ``muon`` / S8.2 ``adamw``) stepped on the mean of the ranks' gradients.

Rank states: ``rank_states[r]`` is a dict ``{param_index: optimizer_state}`` holding an entry only for
the parameters (Muon) or non-empty row shards (AdamW) that rank ``r`` owns; ``[{}] * W`` at the start.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_int, require_same_shape
from .adam import adamw
from .muon import muon

__all__ = ["mean_gradient", "muon_shape_groups", "muon_owner", "adamw_row_shard", "dist_muon", "dist_adamw",
           "dtensor_shard", "dtensor_muon", "dtensor_adamw", "reshard", "LAYOUTS"]


_MUON, _ADAMW = spec.hyper("S9.4"), spec.hyper("S9.5")
_DT_MUON, _DT_ADAMW = spec.hyper("S9.7"), spec.hyper("S9.8")
#: S9.6's placements on a 1-D device mesh: ``Shard(d)`` for a dimension d of the parameter, or ``Replicate()``
REPLICATE = "Replicate()"


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, np.ndarray))


def mean_gradient(rank_grads: Sequence[Any]) -> np.ndarray:
    """S9.1 (1/W)·Σ_r g_r over the W >= 1 ranks' gradients of one parameter (sum in rank order, float64).

    This is what reduce-scatter / all-reduce with ``ReduceOp.AVG`` delivers (in exact arithmetic).
    """
    if not _is_list(rank_grads) or len(rank_grads) == 0:
        raise ValueError(f"rank_grads must be a non-empty list with one gradient per rank; got {rank_grads!r}")
    first = as_float64_array("rank_grads[0]", rank_grads[0])
    total = first.copy()
    for r in range(1, len(rank_grads)):
        g = as_float64_array(f"rank_grads[{r}]", rank_grads[r])
        require_same_shape(f"rank_grads[{r}]", g, "rank_grads[0]", first)
        total = total + g
    return np.asarray(total / len(rank_grads))


def _check_shape(name: str, shape: object) -> tuple[int, ...]:
    if not _is_list(shape) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"{name} must be a tuple of non-negative integers; got {shape!r}")
    return tuple(int(d) for d in shape)


def muon_shape_groups(shapes: Sequence[Sequence[int]]) -> list[tuple[tuple[int, ...], list[int]]]:
    """S9.2 Group parameter indices by shape, as DistMuon: groups sorted by shape (``sorted({p.shape})``,
    lexicographic on the tuples), indices within a group in their original order."""
    if not _is_list(shapes):
        raise ValueError(f"shapes must be a list of shapes; got {shapes!r}")
    checked = [_check_shape(f"shapes[{i}]", s) for i, s in enumerate(shapes)]
    return [(s, [i for i, t in enumerate(checked) if t == s]) for s in sorted(set(checked))]


def muon_owner(index_in_group: int, world_size: int) -> int:
    """S9.2 The rank that owns the ``index_in_group``-th parameter of a shape group: index mod W
    (DistMuon's block-cyclic assignment ``owner_idx = base_i + rank``, base_i a multiple of W)."""
    index_in_group = require_int("index_in_group", index_in_group, minimum=0)
    world_size = require_int("world_size", world_size, minimum=1)
    return index_in_group % world_size


def adamw_row_shard(dim0: int, world_size: int, rank: int) -> tuple[int, int]:
    """S9.3 Rows ``[start, stop)`` of dimension 0 owned by ``rank``: chunk = ceil(dim0 / W),
    start = min(rank·chunk, dim0), stop = min((rank+1)·chunk, dim0). Trailing ranks may own no rows.

    A 0-D parameter counts as ``dim0 = 1`` (rank 0 owns it). ``dim0 >= 0``, ``W >= 1``, ``0 <= rank < W``.
    """
    dim0 = require_int("dim0", dim0, minimum=0)
    world_size = require_int("world_size", world_size, minimum=1)
    rank = require_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}); got {rank}")
    chunk = math.ceil(dim0 / world_size) if dim0 else 0
    return min(rank * chunk, dim0), min((rank + 1) * chunk, dim0)


def _check_inputs(params: object, rank_grads: object, rank_states: object,
                  *, ndim: int | None) -> tuple[list[np.ndarray], int]:
    if not _is_list(params):
        raise ValueError(f"params must be a list of arrays; got {type(params).__name__}")
    ps = [as_float64_array(f"params[{i}]", p, ndim=ndim) for i, p in enumerate(params)]
    if not _is_list(rank_grads) or len(rank_grads) == 0:
        raise ValueError("rank_grads must be a non-empty list (one list of gradients per rank, W >= 1)")
    w = len(rank_grads)
    for r, grads in enumerate(rank_grads):
        if not _is_list(grads) or len(grads) != len(ps):
            raise ValueError(f"rank_grads[{r}] must be a list of {len(ps)} gradients, one per parameter")
    if not _is_list(rank_states) or len(rank_states) != w:
        raise ValueError(f"rank_states must be a list of {w} dicts, one per rank (len(rank_grads))")
    for r, st in enumerate(rank_states):
        if not isinstance(st, Mapping):
            raise ValueError(f"rank_states[{r}] must be a dict {{param_index: state}}; got {type(st).__name__}")
    return ps, w


def _check_owned(rank_states: Sequence[Mapping], owned: list[set[int]]) -> None:
    for r, st in enumerate(rank_states):
        extra = set(st) - owned[r]
        if extra:
            raise ValueError(f"rank_states[{r}] must hold state only for parameters rank {r} owns "
                             f"{sorted(owned[r])}; got keys {sorted(extra, key=repr)}")


def _rank_mean(rank_grads: Sequence[Sequence[Any]], i: int, shape: tuple[int, ...]) -> np.ndarray:
    gs = [as_float64_array(f"rank_grads[{r}][{i}]", rank_grads[r][i]) for r in range(len(rank_grads))]
    for r, g in enumerate(gs):
        require_same_shape(f"rank_grads[{r}][{i}]", g, f"params[{i}]", shape)
    return mean_gradient(gs)


def dist_muon(params: Sequence[Any], rank_grads: Sequence[Sequence[Any]], rank_states: Sequence[Mapping],
              *, lr: float = _MUON.default("lr"), momentum: float = _MUON.default("momentum"),
              nesterov: bool = _MUON.default("nesterov"),
              ns_steps: int = _MUON.default("ns_steps"), ns_eps: float = _MUON.default("ns_eps"),
              rows: str | None = _MUON.default("rows"), row_cut: str = _MUON.default("row_cut"),
              normalisation: str = _MUON.default("normalisation"), safety: float = _MUON.default("safety"),
              momentum_form: str = _MUON.default("momentum_form"), muoneq: bool = _MUON.default("muoneq"),
              muon_plus: bool = _MUON.default("muon_plus"),
              normuon_beta2: float | None = _MUON.default("normuon_beta2"),
              lr_scale: str = _MUON.default("lr_scale"), weight_decay: float = _MUON.default("weight_decay"),
              weight_decay_lr: str = _MUON.default("weight_decay_lr"),
              weight_decay_mode: str = _MUON.default("weight_decay_mode")) -> tuple[list[np.ndarray], list[dict]]:
    """S9.4 One DistMuon step on W = len(rank_grads) ranks (``options``: S7.2's variant options).

    Parameters must be 2-D (the seed asserts ``p.ndim == 2``). Ownership: within each shape group of
    S9.2, the j-th parameter belongs to rank j mod W; the owner applies S7.2 ``muon`` to the mean
    gradient (S9.1) with its momentum buffer; the all-gather gives every rank the owner's result.
    Returns (params held by every rank, rank_states) with ``rank_states[r] = {i: {"momentum_buffer": …}}``
    for exactly the parameters rank r owns (after the first step). Any number of parameters and any W >= 1.
    """
    ps, w = _check_inputs(params, rank_grads, rank_states, ndim=2)
    h = _MUON.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                    row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                    muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                    weight_decay=weight_decay, weight_decay_lr=weight_decay_lr, weight_decay_mode=weight_decay_mode)
    lr, momentum, nesterov, ns_steps = (h.pop(k) for k in ("lr", "momentum", "nesterov", "ns_steps"))
    owned: list[set[int]] = [set() for _ in range(w)]
    for _, idxs in muon_shape_groups([p.shape for p in ps]):
        for j, i in enumerate(idxs):
            owned[muon_owner(j, w)].add(i)
    _check_owned(rank_states, owned)

    pieces: dict[int, np.ndarray] = {}  # what each owner contributes to the all-gather
    new_states: list[dict] = [dict(st) for st in rank_states]
    for r in range(w):  # each rank updates only what it owns
        for i in sorted(owned[r]):
            g = _rank_mean(rank_grads, i, ps[i].shape)  # reduce-scatter(AVG) output on the owner
            pieces[i], new_states[r][i] = muon(ps[i], g, rank_states[r].get(i, {}), lr=lr, momentum=momentum,
                                               nesterov=nesterov, ns_steps=ns_steps, **h)
    return [pieces[i] for i in range(len(ps))], new_states  # all-gather


def dist_adamw(params: Sequence[Any], rank_grads: Sequence[Sequence[Any]], rank_states: Sequence[Mapping],
               *, lr: float = _ADAMW.default("lr"), betas: Sequence[float] = _ADAMW.default("betas"),
               eps: float = _ADAMW.default("eps"), weight_decay: float = _ADAMW.default("weight_decay"),
               lr_muls: Sequence[float] | None = _ADAMW.default("lr_muls"),
               wd_muls: Sequence[float] | None = _ADAMW.default("wd_muls"),
               eps_placement: str = _ADAMW.default("eps_placement"), eps_root: float = _ADAMW.default("eps_root"),
               param_muls: str = _ADAMW.default("param_muls")) -> tuple[list[np.ndarray], list[dict]]:
    """S9.5 One DistAdamW step on W = len(rank_grads) ranks (``options``: S8.2's variant options).

    Rank r owns rows ``adamw_row_shard(dim0, W, r)`` of every parameter (0-D parameters: dim0 = 1, the
    whole scalar belongs to rank 0). It applies S8.2 ``adamw`` (lr·lr_muls[i], weight_decay·wd_muls[i]) to
    those rows of the parameter and of the mean gradient; the all-gather concatenates the shards in rank
    order. ``rank_states[r] = {i: {"step", "exp_avg", "exp_avg_sq"}}`` holds the owned rows only, and only
    for parameters where rank r owns at least one row. dim0 need not be divisible by W; dim0 < W allowed.
    """
    ps, w = _check_inputs(params, rank_grads, rank_states, ndim=None)
    # validate the hyperparameters once even when no rank owns anything
    h = _ADAMW.check(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lr_muls=lr_muls, wd_muls=wd_muls,
                     eps_placement=eps_placement, eps_root=eps_root, param_muls=param_muls)
    opts = {k: h[k] for k in ("eps_placement", "eps_root", "param_muls")}
    lr_muls = _check_muls("lr_muls", h["lr_muls"], len(ps))
    wd_muls = _check_muls("wd_muls", h["wd_muls"], len(ps))
    shards = [[adamw_row_shard(p.shape[0] if p.ndim else 1, w, r) for r in range(w)] for p in ps]
    owned = [{i for i in range(len(ps)) if shards[i][r][1] > shards[i][r][0]} for r in range(w)]
    _check_owned(rank_states, owned)

    pieces: list[list[np.ndarray]] = [[] for _ in ps]
    new_states: list[dict] = [dict(st) for st in rank_states]
    for r in range(w):
        for i in sorted(owned[r]):
            start, stop = shards[i][r]
            g = _rank_mean(rank_grads, i, ps[i].shape)
            p_rows, g_rows = (ps[i], g) if ps[i].ndim == 0 else (ps[i][start:stop], g[start:stop])
            new_rows, new_states[r][i] = adamw(p_rows, g_rows, rank_states[r].get(i, {}), lr=lr, betas=betas,
                                               eps=eps, weight_decay=weight_decay, lr_mul=lr_muls[i],
                                               wd_mul=wd_muls[i], **opts)
            pieces[i].append(new_rows)
    out = []
    for i, p in enumerate(ps):  # all-gather: concatenate the owners' rows in rank order
        if p.ndim == 0 or p.shape[0] == 0:
            out.append(pieces[i][0] if pieces[i] else p.copy())
        else:
            out.append(np.concatenate(pieces[i], axis=0))
    return out, new_states


def _check_muls(name: str, muls: Sequence[float] | None, n: int) -> list[float]:
    """The validated per-parameter multipliers (None: all 1.0) with their length checked against n."""
    if muls is None:
        return [1.0] * n
    if len(muls) != n:
        raise ValueError(f"{name} must be None or a list of {n} numbers, one per parameter; got {list(muls)!r}")
    return list(muls)


# ------------------------------------------------------------------------------------ DTensor (S9.6 - S9.8)


def _shard_dim(placement: object, ndim: int, name: str) -> int | None:
    """The dimension ``Shard(d)`` splits (None for ``Replicate()``); ValueError naming ``name`` otherwise."""
    if placement == REPLICATE:
        return None
    if isinstance(placement, str) and placement.startswith("Shard(") and placement.endswith(")"):
        text = placement[len("Shard("):-1]
        if text.isdigit() and int(text) < ndim:
            return int(text)
    raise ValueError(f"{name} must be 'Replicate()' or 'Shard(d)' with 0 <= d < {ndim} (the parameter's "
                     f"dimensions); got {placement!r}")


def dtensor_shard(shape: Sequence[int], placement: str, world_size: int, rank: int) -> tuple[tuple[int, int], ...]:
    """S9.6 The index range ``[start, stop)`` of every dimension that ``rank`` holds of a tensor of ``shape`` placed
    ``placement`` on a 1-D mesh of ``world_size`` ranks: ``Shard(d)`` splits dimension d as torch.chunk
    (c = ceil(n_d/W), rank r holds [min(r·c, n_d), min((r+1)·c, n_d)), S9.3's rule on dimension d), every other
    dimension whole; ``Replicate()``: everything on every rank."""
    shape = _check_shape("shape", shape)
    world_size = require_int("world_size", world_size, minimum=1)
    rank = require_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must be < world_size ({world_size}); got {rank}")
    d = _shard_dim(placement, len(shape), "placement")
    out = [(0, n) for n in shape]
    if d is not None:
        out[d] = adamw_row_shard(shape[d], world_size, rank)
    return tuple(out)


def _pieces(full: np.ndarray, placement: str, w: int) -> list[np.ndarray]:
    """Rank r's piece of ``full`` under ``placement`` (S9.6), for every r."""
    return [full[tuple(slice(a, b) for a, b in dtensor_shard(full.shape, placement, w, r))].copy() for r in range(w)]


def _joined(states: Sequence[Mapping], i: int, shape: tuple[int, ...], placement: str) -> dict:
    """The whole state of parameter i from the ranks' pieces (entries of the parameter's shape are split by
    ``placement``; every other entry, e.g. ``step``, is whole on every rank: rank 0's)."""
    w = len(states)
    if not any(i in st for st in states):
        return {}
    if not all(i in st for st in states):
        raise ValueError(f"rank_states must hold parameter {i}'s state on every rank (its pieces) or on none; "
                         f"ranks {[r for r in range(w) if i not in states[r]]} lack it")
    d = _shard_dim(placement, len(shape), f"placements[{i}]")
    want = [tuple(b - a for a, b in dtensor_shard(shape, placement, w, r)) for r in range(w)]
    out = {}
    for key in states[0][i]:
        parts = [np.asarray(st[i][key]) for st in states]
        split = d is not None and all(p.shape == s for p, s in zip(parts, want, strict=True))
        out[key] = np.concatenate(parts, axis=d).astype(np.float64) if split else states[0][i][key]
    return out


def _split(state: Mapping, shape: tuple[int, ...], placement: str, w: int) -> list[dict]:
    out: list[dict] = [{} for _ in range(w)]
    for key, v in state.items():
        whole = isinstance(v, np.ndarray) and v.shape == shape  # not a count (``step``) of a 0-D parameter
        pieces = _pieces(np.asarray(v, dtype=np.float64), placement, w) if whole else [v for _ in range(w)]
        for r in range(w):
            out[r][key] = pieces[r]
    return out


def _check_placements(placements: object, ps: list[np.ndarray]) -> list[str]:
    if not _is_list(placements) or len(placements) != len(ps):
        raise ValueError(f"placements must be a list of {len(ps)} placements ('Shard(d)' or 'Replicate()'), one "
                         f"per parameter; got {placements!r}")
    for i, (pl, p) in enumerate(zip(placements, ps, strict=True)):
        _shard_dim(pl, p.ndim, f"placements[{i}]")
    return list(placements)


def _dtensor_step(one, params, rank_grads, rank_states, placements, ndim):
    ps, w = _check_inputs(params, rank_grads, rank_states, ndim=ndim)
    pls = _check_placements(placements, ps)
    new_params, new_states = [], [{} for _ in range(w)]
    for i, p in enumerate(ps):
        g = _rank_mean(rank_grads, i, p.shape)
        new_p, st = one(i, p, g, _joined(rank_states, i, p.shape, pls[i]))
        new_params.append(new_p)
        for r, piece in enumerate(_split(st, p.shape, pls[i], w)):
            new_states[r][i] = piece
    return new_params, new_states


def dtensor_muon(params: Sequence[Any], rank_grads: Sequence[Sequence[Any]], rank_states: Sequence[Mapping],
                 placements: Sequence[str], *, lr: float = _DT_MUON.default("lr"),
                 momentum: float = _DT_MUON.default("momentum"), nesterov: bool = _DT_MUON.default("nesterov"),
                 ns_steps: int = _DT_MUON.default("ns_steps"), ns_eps: float = _DT_MUON.default("ns_eps"),
                 rows: str | None = _DT_MUON.default("rows"), row_cut: str = _DT_MUON.default("row_cut"),
                 normalisation: str = _DT_MUON.default("normalisation"), safety: float = _DT_MUON.default("safety"),
                 momentum_form: str = _DT_MUON.default("momentum_form"), muoneq: bool = _DT_MUON.default("muoneq"),
                 muon_plus: bool = _DT_MUON.default("muon_plus"),
                 normuon_beta2: float | None = _DT_MUON.default("normuon_beta2"),
                 lr_scale: str = _DT_MUON.default("lr_scale"), weight_decay: float = _DT_MUON.default("weight_decay"),
                 weight_decay_lr: str = _DT_MUON.default("weight_decay_lr"),
                 weight_decay_mode: str = _DT_MUON.default("weight_decay_mode")
                 ) -> tuple[list[np.ndarray], list[dict]]:
    """S9.7 One Muon step on 2-D DTensor parameters placed ``placements[i]`` on W = len(rank_grads) ranks
    (``options``: S7.2's variant options).

    Values: every parameter steps as S7.2 ``muon`` on the mean gradient (S9.1), the whole matrix orthogonalised
    (as S9.4: the placement changes where values live, never what they are). Storage: ``rank_states[r][i]`` holds
    rank r's S9.6 piece of every state entry of the parameter's shape (``momentum_buffer``) and the other entries
    whole; ``params`` in and out are the whole parameters (what ``full_tensor()`` gives every rank).
    """
    ps, _ = _check_inputs(params, rank_grads, rank_states, ndim=2)
    h = _DT_MUON.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                       row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                       muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                       weight_decay=weight_decay, weight_decay_lr=weight_decay_lr, weight_decay_mode=weight_decay_mode)
    lr, momentum, nesterov, ns_steps = (h.pop(k) for k in ("lr", "momentum", "nesterov", "ns_steps"))

    def one(i, p, g, st):
        return muon(p, g, st, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, **h)

    return _dtensor_step(one, ps, rank_grads, rank_states, placements, 2)


def dtensor_adamw(params: Sequence[Any], rank_grads: Sequence[Sequence[Any]], rank_states: Sequence[Mapping],
                  placements: Sequence[str], *, lr: float = _DT_ADAMW.default("lr"),
                  betas: Sequence[float] = _DT_ADAMW.default("betas"), eps: float = _DT_ADAMW.default("eps"),
                  weight_decay: float = _DT_ADAMW.default("weight_decay"),
                  lr_muls: Sequence[float] | None = _DT_ADAMW.default("lr_muls"),
                  wd_muls: Sequence[float] | None = _DT_ADAMW.default("wd_muls"),
                  eps_placement: str = _DT_ADAMW.default("eps_placement"),
                  eps_root: float = _DT_ADAMW.default("eps_root"),
                  param_muls: str = _DT_ADAMW.default("param_muls")) -> tuple[list[np.ndarray], list[dict]]:
    """S9.8 One AdamW step on DTensor parameters placed ``placements[i]`` on W = len(rank_grads) ranks: every
    parameter as S8.2 ``adamw`` (lr·lr_muls[i], weight_decay·wd_muls[i]) on the mean gradient; ``rank_states[r][i]``
    holds rank r's S9.6 piece of ``exp_avg`` / ``exp_avg_sq`` and ``step`` whole. Any parameter shape (a 0-D one
    only ``Replicate()``)."""
    ps, _ = _check_inputs(params, rank_grads, rank_states, ndim=None)
    h = _DT_ADAMW.check(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lr_muls=lr_muls, wd_muls=wd_muls,
                        eps_placement=eps_placement, eps_root=eps_root, param_muls=param_muls)
    opts = {k: h[k] for k in ("eps_placement", "eps_root", "param_muls")}
    lrm = _check_muls("lr_muls", h["lr_muls"], len(ps))
    wdm = _check_muls("wd_muls", h["wd_muls"], len(ps))

    def one(i, p, g, st):
        return adamw(p, g, st, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, lr_mul=lrm[i],
                     wd_mul=wdm[i], **opts)

    return _dtensor_step(one, ps, rank_grads, rank_states, placements, None)


# ------------------------------------------------------------------------------------ checkpoints (S9.9)

#: S9.9's layouts: the clause whose rule places the state on the ranks (DistMuon, DistAdamW, DTensor parameters)
LAYOUTS = ("S9.2", "S9.3", "S9.6")


def _whole_states(rank_states: Sequence[Mapping], shapes: list[tuple[int, ...]], layout: str,
                  placements: list[str] | None) -> list[dict]:
    """[param] the whole state from the ranks' pieces placed by ``layout`` at W = len(rank_states)."""
    w = len(rank_states)
    if layout == "S9.2":
        owners = {i: muon_owner(j, w) for _, idxs in muon_shape_groups(shapes) for j, i in enumerate(idxs)}
        _check_owned(rank_states, [{i for i, r in owners.items() if r == q} for q in range(w)])
        return [dict(rank_states[owners[i]].get(i, {})) for i in range(len(shapes))]
    if layout == "S9.3":
        rows = [[adamw_row_shard(s[0] if s else 1, w, r) for r in range(w)] for s in shapes]
        _check_owned(rank_states, [{i for i in range(len(shapes)) if rows[i][r][1] > rows[i][r][0]}
                                   for r in range(w)])
        out = []
        for i, s in enumerate(shapes):
            holders = [r for r in range(w) if i in rank_states[r]]
            whole: dict = {}
            for key in (rank_states[holders[0]][i] if holders else {}):
                parts = [np.asarray(rank_states[r][i][key]) for r in holders]
                sharded = len(s) >= 1 and all(p.ndim == len(s) for p in parts)
                whole[key] = np.concatenate(parts, axis=0).astype(np.float64) if sharded else rank_states[0][i][key]
            out.append(whole)
        return out
    return [_joined(rank_states, i, s, placements[i]) for i, s in enumerate(shapes)]


def _placed_states(whole: list[dict], shapes: list[tuple[int, ...]], layout: str, w: int,
                   placements: list[str] | None) -> list[dict]:
    """[rank] {param: piece} of the whole states placed by ``layout`` at ``w`` ranks (S9.2 / S9.3 / S9.6)."""
    out: list[dict] = [{} for _ in range(w)]
    if layout == "S9.2":
        for _, idxs in muon_shape_groups(shapes):
            for j, i in enumerate(idxs):
                if whole[i]:
                    out[muon_owner(j, w)][i] = dict(whole[i])
        return out
    for i, (st, s) in enumerate(zip(whole, shapes, strict=True)):
        if not st:
            continue
        if layout == "S9.6":
            for r, piece in enumerate(_split(st, s, placements[i], w)):
                out[r][i] = piece
            continue
        for r in range(w):
            start, stop = adamw_row_shard(s[0] if s else 1, w, r)
            if stop > start:
                out[r][i] = {k: (np.asarray(v, dtype=np.float64)[start:stop] if np.ndim(v) == len(s) >= 1 else v)
                             for k, v in st.items()}
    return out


def reshard(rank_states: Sequence[Mapping], shapes: Sequence[Sequence[int]], world_size: int, *, layout: str,
            placements: Sequence[str] | None = None) -> list[dict]:
    """S9.9 The rank states a checkpoint written on W = len(rank_states) ranks gives ``world_size`` = W′ ranks: the
    whole state of every parameter joined from the W ranks' pieces, then placed by the same ``layout`` at W′.

    ``layout``: "S9.2" (DistMuon: parameter i's whole state on its owner, muon_owner within its shape group),
    "S9.3" (DistAdamW: rows adamw_row_shard of every entry with the parameter's ndim, the others (``step``) whole on
    each row holder) or "S9.6" (DTensor parameters placed ``placements[i]``: each rank its piece of every entry of
    the parameter's shape, the others whole). ``shapes``: the parameters' shapes. A resharded state is the same
    state: stepping on from it equals stepping on from the W ranks' (the load is not a step)."""
    if not _is_list(rank_states) or not rank_states or not all(isinstance(st, Mapping) for st in rank_states):
        raise ValueError("rank_states must be a non-empty list of dicts {param_index: state}, one per rank (W >= 1)")
    if not _is_list(shapes):
        raise ValueError(f"shapes must be a list of shapes, one per parameter; got {shapes!r}")
    checked = [_check_shape(f"shapes[{i}]", s) for i, s in enumerate(shapes)]
    world_size = require_int("world_size", world_size, minimum=1)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} (the clause whose rule places the state); "
                         f"got {layout!r}")
    pls = None
    if layout == "S9.6":
        pls = _check_placements(placements, [np.zeros(s) for s in checked])
    elif placements is not None:
        raise ValueError(f"placements must be None for layout {layout} (only S9.6 places by placements)")
    unknown = sorted({i for st in rank_states for i in st if not (isinstance(i, int) and 0 <= i < len(checked))},
                     key=repr)
    if unknown:
        raise ValueError(f"rank_states' keys must be parameter indices 0..{len(checked) - 1}; got {unknown}")
    whole = _whole_states(rank_states, checked, layout, pls)
    return _placed_states(whole, checked, layout, world_size, pls)
