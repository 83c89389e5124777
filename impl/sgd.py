"""SGD with optional (Nesterov) momentum (S3.5, torch.optim.SGD form, dampening 0, no weight decay).

Per parameter, with momentum β::

    β == 0:      θ ← θ − η·g
    otherwise:   b ← g on the first step, else b ← β·b + g
                 θ ← θ − η·(g + β·b)   if nesterov   else   θ ← θ − η·b
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, MutableSequence, Sequence
from typing import Any

import torch

from optconform import spec

from ._closure import run_closure

__all__ = ["sgd", "SGD", "check_sgd_hyperparameters"]


_H = spec.hyper("S3.5")


def check_sgd_hyperparameters(*, lr: object, momentum: object, nesterov: object) -> tuple[float, float, bool]:
    """Validate through S3.5's hyperparameters: lr >= 0, momentum in [0, 1), nesterov a bool that needs
    momentum > 0."""
    h = _H.check(lr=lr, momentum=momentum, nesterov=nesterov)
    return h["lr"], h["momentum"], h["nesterov"]


@torch.no_grad()
def sgd(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
        momentum_buffers: MutableSequence[torch.Tensor | None], *, lr: float,
        momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov")) -> None:
    """One SGD step (S3.5), in place on ``params``; ``grads`` are never written.

    ``momentum_buffers[i]`` is None before parameter i's first momentum step; the kernel then stores a
    fresh buffer (a copy of the gradient) in that slot, as torch.optim's functional SGD does. With
    ``momentum == 0`` the buffers are left untouched (use ``[None] * len(params)``).
    """
    lr, momentum, nesterov = check_sgd_hyperparameters(lr=lr, momentum=momentum, nesterov=nesterov)
    n = len(params)
    for name, seq in (("grads", grads), ("momentum_buffers", momentum_buffers)):
        if len(seq) != n:
            raise ValueError(f"{name} must have one entry per parameter ({n}); got {len(seq)}")
    for i, (p, g, b) in enumerate(zip(params, grads, momentum_buffers, strict=True)):
        if not p.is_floating_point():
            raise ValueError(f"params[{i}] must be a floating-point tensor; got dtype {p.dtype}")
        for name, t in (("grads", g), ("momentum_buffers", b)):
            if t is None and name == "momentum_buffers":
                continue
            if not isinstance(t, torch.Tensor) or t.is_sparse:
                raise ValueError(f"{name}[{i}] must be a dense tensor; got {type(t).__name__}")
            if t.shape != p.shape or t.device != p.device:
                raise ValueError(f"{name}[{i}] must match params[{i}] in shape {tuple(p.shape)} and device "
                                 f"{p.device}; got {tuple(t.shape)} on {t.device}")

    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        buckets[(p.device, p.dtype)].append(i)
    for (_, dtype), idx in buckets.items():
        ps = [params[i] for i in idx]
        gs = [grads[i] if grads[i].dtype == dtype else grads[i].to(dtype) for i in idx]
        if momentum == 0.0:
            torch._foreach_add_(ps, gs, alpha=-lr)
            continue
        old = [k for k, i in enumerate(idx) if momentum_buffers[i] is not None]
        if old:
            bufs = [momentum_buffers[idx[k]] for k in old]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [gs[k] for k in old])           # b ← β b + g
        for k, i in enumerate(idx):
            if momentum_buffers[i] is None:
                momentum_buffers[i] = gs[k].detach().clone()           # first step: b ← g
        bufs = [momentum_buffers[i] for i in idx]
        if nesterov:
            torch._foreach_add_(ps, torch._foreach_add(gs, bufs, alpha=momentum), alpha=-lr)
        else:
            torch._foreach_add_(ps, bufs, alpha=-lr)


class SGD(torch.optim.Optimizer):
    """SGD (S3.5) with optional momentum/Nesterov; state ``momentum_buffer`` per parameter when momentum > 0.

    A parameter whose ``grad`` is None is skipped (its buffer untouched), as torch.optim does. The state
    dict layout matches torch.optim.SGD's, so states interchange.
    """

    def __init__(self, params: Iterable[torch.Tensor] | Iterable[dict[str, Any]], lr: float,
                 momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov")):
        check_sgd_hyperparameters(lr=lr, momentum=momentum, nesterov=nesterov)
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        """Apply one SGD step to every parameter that has a gradient; returns ``closure()`` if given."""
        loss = run_closure(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            bufs = [self.state[p].get("momentum_buffer") for p in params]
            sgd(params, [p.grad for p in params], bufs, lr=group["lr"], momentum=group["momentum"],
                nesterov=group["nesterov"])
            if group["momentum"] != 0.0:
                for p, b in zip(params, bufs, strict=True):
                    self.state[p]["momentum_buffer"] = b
        return loss
