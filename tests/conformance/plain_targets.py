"""Targets made to show each reporting mechanism of the suite (``--target plain_targets:<name>``).

``plain`` is a *correct* implementation written the way the seed's code is written, with none of the spec's
hardening and its own (valid) ownership rules:

* ``zeropower`` / ``Muon``: the seed's code (``optconform.conformance.seed_code``): cast to bf16 first, bf16
  Frobenius norm (it overflows from ‖G‖ ≈ 1.8e19 and the update becomes zeros);
* ``clip_grad_norm``: a plain float64 ``sqrt(Σ g²)`` (the squares underflow for gradients near 1e-160);
* ``DistMuon``: every gradient all-reduced (AVG); parameter j of the constructor's list belongs to rank
  j mod W (a global index, not S9.2's index within a shape group), which updates it and broadcasts it;
* ``DistAdamW``: torch's ZeroRedundancyOptimizer over the production AdamW behind an all-reduce (AVG): whole
  parameters, balanced by size, instead of S9.3's rows.

It must pass ``core`` everywhere and be flagged only under ``hardening`` (S5.1, S6.2, S7.2) and ``layout``
(S9.4, S9.5), with the evidence. ``mechanisms`` shows the other outcomes in one run: a missing name (SGD), a
signature mismatch (zeropower without ``steps``), a declared-unsupported hyperparameter value
(``Muon.nesterov=False``) and protocol name (DistMuon), declared world sizes and dtypes, an ``Unsupported``
raised by a constructor (3-D Muon parameters), and a target that raises an ordinary error in a hardening
regime (clipping refuses totals above 1e20).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.distributed as dist

import optconform.impl as impl
from optconform.conformance import seed_code, torch_optim
from optconform.spec import Unsupported

# ------------------------------------------------------------------------------------------ plain (correct)


def _seed_muon_update(p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, group: dict) -> None:
    """The seed's Muon.step body for one parameter (its Nesterov lerp writes into ``g``)."""
    buf.lerp_(g, 1 - group["momentum"])
    g = g.lerp_(buf, group["momentum"]) if group["nesterov"] else buf
    g = seed_code.zeropower(g, group["ns_steps"])
    p.add_(g.to(p.dtype), alpha=-group["lr"] * max(1, p.size(-2) / p.size(-1)) ** 0.5)


@torch.no_grad()
def plain_clip_grad_norm(params, max_norm):
    """A textbook global-norm clip with a plain float64 sum of squares (no pre-scaling)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total


class PlainDistMuon(torch.optim.Optimizer):
    """Correct ZeRO-style Muon with its own ownership: parameter j belongs to rank j mod W (global index)."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        rank, world = dist.get_rank(), dist.get_world_size()
        j = 0
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad.clone()
                dist.all_reduce(g, op=dist.ReduceOp.AVG)
                owner = j % world
                if owner == rank:
                    buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                    _seed_muon_update(p, g, buf, group)
                dist.broadcast(p, src=owner)
                j += 1


class PlainDistAdamW(torch_optim.DistAdamW):
    """ZeRO (whole parameters) over the production AdamW, which honours p.lr_mul / p.wd_mul."""

    optimizer_class = impl.AdamW


_IMPL = {name: getattr(impl, name) for name in (
    "zeropower", "Muon", "DistMuon", "AdamW", "DistAdamW", "SGD", "lr_multiplier", "muon_momentum",
    "step_decay_lr", "exponential_decay_lr", "inverse_time_decay_lr", "clip_grad_norm")}

plain = SimpleNamespace(**{**_IMPL, "zeropower": seed_code.zeropower, "Muon": seed_code.Muon,
                           "clip_grad_norm": plain_clip_grad_norm, "DistMuon": PlainDistMuon,
                           "DistAdamW": PlainDistAdamW})

# ------------------------------------------------------------------------------------------ mechanisms


def zeropower_without_steps(G):
    """Signature mismatch: the protocol passes ``steps``."""
    return impl.zeropower(G, 5)


class Muon2D(impl.Muon):
    """Raises Unsupported for batched parameters, as an adapter of a 2-D-only library would."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        params = list(params)
        if any(p.ndim != 2 for p in params):
            raise Unsupported("2-D parameters only")
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)


def clip_refusing_huge(params, max_norm):
    """Raises an ordinary error for gradients above 1e20 (a hardening regime): recorded there, not at core."""
    params = list(params)
    if any(p.grad is not None and p.grad.numel() and float(p.grad.double().abs().max()) > 1e20 for p in params):
        raise OverflowError("gradients above 1e20 are not supported by this clip")
    return impl.clip_grad_norm(params, max_norm)


mechanisms = SimpleNamespace(**{
    **{k: v for k, v in _IMPL.items() if k != "SGD"},  # SGD: not provided
    "zeropower": zeropower_without_steps,  # signature mismatch
    "Muon": Muon2D,  # Unsupported raised for 3-D parameters
    "clip_grad_norm": clip_refusing_huge,  # an error in the hardening regime only
    "optconform_capabilities": {
        "unsupported": {"Muon.nesterov=False": "this Muon always uses Nesterov momentum",
                        "DistMuon": "no distributed Muon here"},
        "world_sizes": [1, 2],
        "dtypes": ["float32"],
    },
})
