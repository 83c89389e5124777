"""S7 in torch: the Muon step as a functional kernel, and the ``Muon`` optimizer around it.

Per parameter θ (shape (..., rows, cols), leading dimensions a batch as in the seed) with gradient g:

    buf ← lerp(buf, g, 1 − β)                      (buf starts at zeros)
    u   = lerp(g, buf, β) if nesterov else buf
    O   = zeropower(u, ns_steps)                   (bf16 Newton–Schulz, S6.2)
    θ   ← θ − lr · sqrt(max(1, rows/cols)) · O

Equal to ``optconform.reference.muon.muon`` in exact arithmetic. Differences from the seed's
``Muon.step``: the gradient is never modified (the seed's ``g.lerp_(buf, β)`` overwrites ``p.grad``);
parameters of one shape, dtype and device go through ONE batched ``zeropower`` call; the momentum
buffer is kept in the parameter's dtype (the seed: the gradient's dtype, which autograd makes equal).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from optconform import spec

from ._closure import run_closure
from .newton_schulz import zeropower

__all__ = ["muon_aspect_scale", "muon", "Muon"]


def muon_aspect_scale(shape: Sequence[int]) -> float:
    """S7.1 sqrt(max(1, rows/cols)) with rows, cols = shape[-2], shape[-1]."""
    rows, cols = int(shape[-2]), int(shape[-1])
    return max(1.0, rows / cols) ** 0.5


_H = spec.hyper("S7.2")


def _check_hyper(lr: object, momentum: object, nesterov: object, ns_steps: object) -> tuple[float, float,
                                                                                          bool, int]:
    h = _H.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
    return h["lr"], h["momentum"], h["nesterov"], h["ns_steps"]


def _check_triplet(i: int, p: object, g: object, buf: object) -> None:
    for name, t in (("params", p), ("grads", g), ("momentum_buffers", buf)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}[{i}] must be a torch.Tensor; got {type(t).__name__}")
    assert isinstance(p, Tensor) and isinstance(g, Tensor) and isinstance(buf, Tensor)
    if p.ndim < 2:
        raise ValueError(f"params[{i}] must have at least 2 dimensions (Muon orthogonalises matrices); "
                         f"got shape {tuple(p.shape)}")
    if not p.is_floating_point():
        raise ValueError(f"params[{i}] must have a real floating dtype; got {p.dtype}")
    if g.is_sparse:
        raise ValueError(f"grads[{i}] must be dense; Muon does not support sparse gradients")
    for name, t in (("grads", g), ("momentum_buffers", buf)):
        if t.shape != p.shape:
            raise ValueError(f"{name}[{i}] must have the shape of params[{i}] {tuple(p.shape)}; "
                             f"got {tuple(t.shape)}")
        if t.device != p.device:
            raise ValueError(f"{name}[{i}] must be on the device of params[{i}] ({p.device}); got {t.device}")
        if t.dtype != p.dtype:
            raise ValueError(f"{name}[{i}] must have the dtype of params[{i}] ({p.dtype}); got {t.dtype}")


@torch.no_grad()
def muon(params: Sequence[Tensor], grads: Sequence[Tensor], momentum_buffers: Sequence[Tensor], *,
         lr: float, momentum: float, nesterov: bool, ns_steps: int,
         orthogonalize: Callable[[Tensor, int], Tensor] = zeropower) -> None:
    """S7.2 One Muon step, in place on ``params`` and ``momentum_buffers``; ``grads`` are only read.

    buf ← lerp(buf, g, 1 − β); u = lerp(g, buf, β) if nesterov else buf; O = orthogonalize(u, ns_steps)
    (the spec's ``zeropower`` by default, as in ``reference.muon.muon``); θ ← θ − lr·sqrt(max(1, rows/cols))·O.
    Same-shape (and dtype, device) parameters are stacked into one batched ``orthogonalize`` call. Everything is
    validated before anything is written: bad hyperparameters, list lengths, shapes, devices or dtypes ->
    ValueError naming the argument.
    """
    lr, beta, nesterov, ns_steps = _check_hyper(lr, momentum, nesterov, ns_steps)
    n = len(params)
    if len(grads) != n or len(momentum_buffers) != n:
        raise ValueError(f"grads and momentum_buffers must have one entry per param ({n}); "
                         f"got {len(grads)} and {len(momentum_buffers)}")
    for i in range(n):
        _check_triplet(i, params[i], grads[i], momentum_buffers[i])

    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        if p.numel() == 0:  # nothing to update (the aspect scale of (.., r, 0) is undefined)
            continue
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(i)

    for buf, g in zip(momentum_buffers, grads, strict=True):
        buf.lerp_(g, 1.0 - beta)  # g is only read
    for (shape, _, _), idx in groups.items():
        if nesterov:
            u = torch.stack([torch.lerp(grads[i], momentum_buffers[i], beta) for i in idx])
        else:
            u = torch.stack([momentum_buffers[i] for i in idx])  # a copy: buffers are not aliased
        ortho = orthogonalize(u, ns_steps)
        alpha = -lr * muon_aspect_scale(shape)
        for j, i in enumerate(idx):
            params[i].add_(ortho[j], alpha=alpha)


class Muon(torch.optim.Optimizer):
    """Muon (S7.2) over parameters of at least 2 dimensions; defaults are the seed's.

    Muon(params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5). ``params``: tensors or param
    groups. State per parameter: ``momentum_buffer`` (the parameter's dtype, created as zeros on the
    first step). ``group["lr"]``/``group["momentum"]`` may be changed between steps (they are
    re-validated at every step). ``step`` raises RuntimeError when a parameter has no gradient (the
    seed asserts; silently skipping it would desynchronise distributed ranks). ``load_state_dict`` copies
    the tensors it is given (it never shares momentum buffers with the source).
    """

    #: the Newton–Schulz map ``(u, ns_steps) -> O`` (S6.2's ``zeropower``); a subclass may swap it
    orthogonalize = staticmethod(zeropower)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = _H.default("lr"),
                 momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov"),
                 ns_steps: int = _H.default("ns_steps")) -> None:
        _check_hyper(lr, momentum, nesterov, ns_steps)
        self._n_seen = 0
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; rejects parameters with fewer than 2 dimensions, naming their index."""
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if isinstance(p, Tensor) and p.ndim < 2:
                raise ValueError(f"params[{self._n_seen}] must have at least 2 dimensions (Muon "
                                 f"orthogonalises matrices; use AdamW for it); got shape {tuple(p.shape)}")
            self._n_seen += 1
        _check_hyper(*(param_group.get(k, self.defaults[k]) for k in ("lr", "momentum", "nesterov", "ns_steps")))
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``; its tensors are copied first. torch.optim's loader keeps the very
        buffer objects when dtype and device already match, so two optimizers loaded from one state dict
        (or the source and the copy) would silently share and double-update momentum buffers."""
        super().load_state_dict(copy.deepcopy(state_dict))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One Muon step over every group; returns the closure's loss when a closure is given."""
        loss = run_closure(closure)
        work = []  # validate every group and gradient before anything is written
        index = 0
        for group in self.param_groups:
            hyper = _check_hyper(group["lr"], group["momentum"], group["nesterov"], group["ns_steps"])
            for p in group["params"]:
                if p.grad is None:
                    raise RuntimeError(f"Muon.step: params[{index}] (shape {tuple(p.shape)}) has no gradient "
                                       "(p.grad is None); every Muon parameter needs one at every step")
                index += 1
            work.append((group["params"], hyper))
        for params, (lr, beta, nesterov, ns_steps) in work:
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
            muon(params, [p.grad for p in params], bufs, lr=lr, momentum=beta, nesterov=nesterov,
                 ns_steps=ns_steps, orthogonalize=self.orthogonalize)
        return loss
