"""A built-in target that adapts torch.optim to the optconform protocol (torch 2.13.0).

Run it with ``nox -s conformance -- --target optconform.conformance.adapters.torch_optim`` (or the older name
``optconform.conformance.torch_optim``, an alias of this module). It answers the question "does torch.optim's
version compute what nanochat's does?". Sources: ``torch/optim/_muon.py``, ``torch/optim/adamw.py``,
``torch/optim/sgd.py``, ``torch/nn/utils/clip_grad.py``, ``torch/optim/lr_scheduler.py``,
``torch/distributed/optim/zero_redundancy_optimizer.py`` (torch 2.13.0). It maps:

* ``zeropower``: ``torch.optim._muon._zeropower_via_newtonschulz`` (a private function) with the
  seed's coefficients and ``eps = 1e-7``; 2-D inputs only (torch's function takes matrices), so a batched
  ``(..., m, n)`` input raises ``optconform.spec.Unsupported``.
* ``Muon``: ``torch.optim.Muon`` at torch's defaults (weight decay 0.1 with the unadjusted lr, ``eps`` 1e-7
  through ``clamp(min=eps)``, ``adjust_lr_fn=None``, i.e. ``lr·sqrt(max(1, rows/cols))``) for everything the
  protocol does not pass; torch's Muon takes 2-D parameters only, so a batched parameter raises ``Unsupported``.
* ``AdamW``, ``SGD``: ``torch.optim.AdamW`` and ``torch.optim.SGD`` as they are.
* ``clip_grad_norm``: ``torch.nn.utils.clip_grad_norm_``.
* ``step_decay_lr`` / ``exponential_decay_lr``: the closed forms of ``torch.optim.lr_scheduler.StepLR``
  and ``ExponentialLR`` (with ``gamma = exp(-decay_rate)``), evaluated at ``last_epoch = step``.
* ``DistAdamW``: ``torch.distributed.optim.ZeroRedundancyOptimizer`` over ``torch.optim.AdamW``,
  with the gradients averaged by ``all_reduce`` first (what DDP does before it).

torch has no counterpart of ``lr_multiplier``, ``muon_momentum``, ``inverse_time_decay_lr`` or
``DistMuon``; they are absent here, so the suite reports them as *not provided*.

It declares the spec profile ``torch-optim`` (what torch computes at its defaults), so a plain run judges it
against that profile; ``--profile nanochat-2025-10`` asks how it differs from the seed, ``--diagnose`` finds out
without being told.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from optconform import spec
from optconform.spec import Unsupported

SEED_NS_COEFFICIENTS = spec.NS_COEFFICIENTS
NS_EPS = spec.NS_EPS

optconform_capabilities = {"profile": "torch-optim"}


def zeropower(G: torch.Tensor, steps: int) -> torch.Tensor:
    from torch.optim._muon import _zeropower_via_newtonschulz

    if G.ndim != 2:
        raise Unsupported(f"torch.optim's Newton–Schulz takes 2-D matrices only; got shape {tuple(G.shape)}")
    return _zeropower_via_newtonschulz(G, SEED_NS_COEFFICIENTS, steps, NS_EPS)


def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
    params = list(params)
    if any(p.ndim != 2 for p in params):
        raise Unsupported("torch.optim.Muon takes 2-D parameters only; got shapes "
                          f"{[tuple(p.shape) for p in params]}")
    return torch.optim.Muon(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)


def AdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def SGD(params, *, lr: float, momentum: float, nesterov: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)


def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> float:
    return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm))


def _closed_form_lr(scheduler_cls, step: int, initial_lr: float, **kwargs) -> float:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=initial_lr)
    sched = scheduler_cls(opt, **kwargs)
    sched.last_epoch = step
    return float(sched._get_closed_form_lr()[0])


def step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float:
    return _closed_form_lr(torch.optim.lr_scheduler.StepLR, step, initial_lr, step_size=decay_steps,
                           gamma=decay_rate)


def exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float:
    return _closed_form_lr(torch.optim.lr_scheduler.ExponentialLR, step, initial_lr,
                           gamma=math.exp(-decay_rate))


class DistAdamW(torch.optim.Optimizer):
    """ZeroRedundancyOptimizer(AdamW) behind an all_reduce(AVG) of the gradients, as DDP + ZeRO would run.

    ZeRO shards whole parameters (each rank's optimizer owns a set of parameters, balanced by size), not
    S9.3's dim-0 rows. ``optimizer_class`` is the local optimizer ZeRO wraps."""

    optimizer_class: type = torch.optim.AdamW

    def __init__(self, param_groups, *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> None:
        from torch.distributed.optim import ZeroRedundancyOptimizer

        groups = list(param_groups)
        if groups and not isinstance(groups[0], dict):
            groups = [dict(params=groups)]
        params = [p for g in groups for p in g["params"]]
        self._zero = ZeroRedundancyOptimizer(groups[0]["params"], optimizer_class=self.optimizer_class, lr=lr,
                                             betas=betas, eps=eps, weight_decay=weight_decay)
        for g in groups[1:]:
            self._zero.add_param_group(dict(g))
        self._params = params
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.param_groups = self._zero.param_groups
        self.state = self._zero.optim.state

    @torch.no_grad()
    def step(self, closure=None):
        import torch.distributed as dist

        for p in self._params:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
        return self._zero.step()

    def state_dict(self) -> dict:
        """This rank's shard: the state dict of the local optimizer ZeRO wraps (ZeRO's own ``state_dict`` needs a
        ``consolidate_state_dict`` onto one rank first)."""
        return self._zero.optim.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a shard saved by ``state_dict`` on the same rank into the local optimizer (torch.optim.Optimizer's
        own ``load_state_dict`` would rebind ``self.state`` away from it: the resume case caught that)."""
        self._zero.optim.load_state_dict(state_dict)
        self.state = self._zero.optim.state
