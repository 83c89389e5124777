"""Gradient-norm clipping, S5.1's exact rule, in place on ``p.grad``.

    total = √(Σ_p ‖p.grad‖²);   if total > max_norm:  p.grad ← p.grad · (max_norm / total)

Unlike ``torch.nn.utils.clip_grad_norm_`` (S5.2) there is no ``+ 1e-6`` in the denominator: a clipped
gradient has norm ``max_norm`` (to rounding), and ``total == max_norm`` is left alone.

The per-tensor norms are reduced with a float64 accumulator (``torch._foreach_norm(..., dtype=float64)``)
and combined in float64, so float32/bf16 gradients never overflow (|g| up to float32's max) or
underflow (|g| down to its denormals) in the squares, where torch's float32 norm returns inf / 0.
Float64 gradients are divided by their max |g| before the norm, so their squares neither overflow
nor underflow either. A NaN/inf gradient makes the total non-finite: RuntimeError, gradients untouched.
Tensors are grouped by (device, dtype), one host sync per group.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import torch

from optconform import spec

__all__ = ["clip_grad_norm"]


#: torch.nn.utils.clip_grad_norm_'s constant in max_norm/(total + 1e-6) (S5.2, clip_rule="torch"): the registry's
TORCH_CLIP_EPS = spec.TORCH_CLIP_EPS


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, *,
                   clip_rule: str = spec.hyper("S5.1").default("clip_rule")) -> float:
    """S5.1: clip the gradients of ``params`` to total 2-norm ``max_norm``; return the norm before clipping.

    ``params``: a tensor or an iterable of tensors (e.g. ``model.parameters()``); parameters whose
    ``grad`` is None are skipped. ``max_norm`` finite and > 0 (ValueError otherwise). Returns 0.0 when
    no parameter has a gradient. Raises RuntimeError (naming ``total_norm``) when the total is NaN or inf.
    Option ``clip_rule="torch"``: S5.2's coefficient max_norm/(total + 1e-6), applied when it is below 1.
    """
    h = spec.hyper("S5.1").check(max_norm=max_norm, clip_rule=clip_rule)
    max_norm, torch_rule = h["max_norm"], h["clip_rule"] == "torch"
    if isinstance(params, torch.Tensor):
        params = [params]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = defaultdict(list)
    for g in grads:
        if g.is_sparse:
            raise ValueError("params must have dense gradients; got a sparse grad")
        buckets[(g.device, g.dtype)].append(g)

    norms: list[float] = []
    for (_, dtype), gs in buckets.items():  # one device sync per (device, dtype)
        norms += _norms(gs, dtype)
    total = math.hypot(*norms)  # float64, no intermediate overflow of the squares
    if not math.isfinite(total):
        raise RuntimeError(f"total_norm of the gradients is non-finite ({total}); nothing was clipped "
                           "(a NaN/inf gradient, or float64 squares overflowing)")
    coef = max_norm / (total + TORCH_CLIP_EPS) if torch_rule else max_norm / total if total > 0 else 1.0
    if (coef < 1.0) if torch_rule else total > max_norm:  # Python float64
        for (_, dtype), gs in buckets.items():
            _scale_(gs, coef, dtype)
    return total


def _norms(gs: list[torch.Tensor], dtype: torch.dtype) -> list[float]:
    """Per-tensor 2-norms in float64, free of overflow and underflow in the squares.

    Squares of float32/bf16 values always fit a float64 accumulator. Float64 values do not (|g| < 1e-154
    underflows, > 1e154 overflows), so float64 tensors are divided by their max |g| first:
    ‖g‖ = m · ‖g / m‖.
    """
    if dtype != torch.float64:
        return torch.stack(torch._foreach_norm(gs, 2, dtype=torch.float64)).cpu().tolist()
    amax = torch.stack([g.abs().amax() if g.numel() else g.new_zeros(()) for g in gs])
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    scaled = torch._foreach_div([g for g in gs], list(safe.unbind()))
    return (torch.stack(torch._foreach_norm(scaled, 2)) * amax).cpu().tolist()


def _scale_(gs: list[torch.Tensor], coef: float, dtype: torch.dtype) -> None:
    """``g ← g · coef`` in place, with ``coef`` rounded once to the op's compute type.

    Low-precision ops compute in float32, so a ``coef`` below float32's smallest normal (max_norm/total
    < 1.2e-38) would itself round to a denormal and lose its digits: it is applied as a normal mantissa
    times exact powers of two instead.
    """
    tiny = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).tiny
    if coef >= tiny:
        torch._foreach_mul_(gs, coef)
        return
    mant, exp = math.frexp(coef)  # coef = mant · 2**exp, mant in [0.5, 1)
    torch._foreach_mul_(gs, mant)
    while exp < 0:
        chunk = max(exp, -120)  # 2**-120 is a normal float32: each multiply is exact until underflow
        torch._foreach_mul_(gs, 2.0 ** chunk)
        exp -= chunk
