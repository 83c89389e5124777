"""A built-in target: the seed's own code (nanochat, October 2025, as the seed documents print it), in torch.

Run it with ``nox -s conformance -- --target optconform.conformance.seed_code``. It answers "where does the
code the spec was written from differ from the spec, and what kind of difference is it?" (README, "The
seed's own code against the spec"). Each name is the seed's listing with its module globals turned into the
protocol's arguments; the changes needed to run it here are listed, none of them changes its arithmetic:

* ``zeropower``: ``zeropower_via_newtonschulz5`` without ``@torch.compile`` (eager on CPU).
* ``Muon``: ``Muon`` (its param groups by ``numel``); the Nesterov branch writes into ``p.grad`` as the seed does.
* ``DistMuon`` / ``DistAdamW``: the seed's ZeRO-2 classes; waits use the collective's ``Work`` handle instead
  of ``.get_future()`` (gloo implements no futures) and DistAdamW's step is not compiled.
* ``AdamW``: ``torch.optim.AdamW(fused=True)``, nanochat's single-GPU AdamW (it ignores ``p.lr_mul``).
* ``SGD``: ``torch.optim.SGD``; ``clip_grad_norm``: ``torch.nn.utils.clip_grad_norm_`` (nanochat's training loop).
* the schedules: ``get_lr_multiplier``, ``get_muon_momentum`` and the decay formulas of "Math 05", verbatim.
"""

from __future__ import annotations

from math import exp

import torch
import torch.distributed as dist
from torch import Tensor

from optconform.spec import NS_COEFFICIENTS

__all__ = ["zeropower", "Muon", "DistMuon", "AdamW", "DistAdamW", "SGD", "clip_grad_norm", "lr_multiplier",
           "muon_momentum", "step_decay_lr", "exponential_decay_lr", "inverse_time_decay_lr"]


def zeropower(G: Tensor, steps: int) -> Tensor:
    """nanochat/muon.py ``zeropower_via_newtonschulz5``."""
    assert G.ndim >= 2
    a, b, c = NS_COEFFICIENTS
    X = G.bfloat16()
    if G.size(-2) > G.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.size(-2) > G.size(-1):
        X = X.mT
    return X


class Muon(torch.optim.Optimizer):
    """nanochat/muon.py ``Muon``."""

    def __init__(self, params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        params: list[Tensor] = [*params]
        param_groups = []
        for size in {p.numel() for p in params}:
            group = dict(params=[p for p in params if p.numel() == size])
            param_groups.append(group)
        super().__init__(param_groups, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            for p in params:
                g = p.grad
                assert g is not None
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                buf: Tensor = state["momentum_buffer"]
                buf.lerp_(g, 1 - group["momentum"])
                g = g.lerp_(buf, group["momentum"]) if group["nesterov"] else buf
                g = zeropower(g, steps=group["ns_steps"])
                p.add_(g, alpha=-group["lr"] * max(1, p.size(-2) / p.size(-1)) ** 0.5)


class DistMuon(torch.optim.Optimizer):
    """nanochat/muon.py ``DistMuon``."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        params = list(params)
        assert all(p.ndim == 2 for p in params), "Muon expects 2D parameters only"
        shapes = sorted({p.shape for p in params})
        param_groups = []
        for shape in shapes:
            group_params = [p for p in params if p.shape == shape]
            param_groups.append(dict(params=group_params, zero_buffer=torch.zeros_like(group_params[0])))
        super().__init__(param_groups, defaults)

    @torch.no_grad()
    def step(self):
        rank = dist.get_rank()
        world_size = dist.get_world_size()
        assert all(p.grad is not None for group in self.param_groups for p in group["params"])
        all_reduce_futures = []
        for group in self.param_groups:
            params = group["params"]
            zero_buffer = group["zero_buffer"]
            for base_i in range(0, len(params), world_size):
                owner_idx = base_i + rank
                rs_input = [p.grad for p in params[base_i:base_i + world_size]]
                rs_input.extend([zero_buffer] * (world_size - len(rs_input)))
                rs_output = params[owner_idx].grad if owner_idx < len(params) else torch.empty_like(zero_buffer)
                work = dist.reduce_scatter(rs_output, rs_input, op=dist.ReduceOp.AVG, async_op=True)
                all_reduce_futures.append(work)
        future_idx = 0
        all_gather_futures = []
        for group in self.param_groups:
            params = group["params"]
            zero_buffer = group["zero_buffer"]
            for base_i in range(0, len(params), world_size):
                owner_idx = base_i + rank
                all_reduce_futures[future_idx].wait()
                future_idx += 1
                if owner_idx < len(params):
                    p = params[owner_idx]
                    g = p.grad
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(g)
                    buf: Tensor = state["momentum_buffer"]
                    buf.lerp_(g, 1.0 - group["momentum"])
                    g = g.lerp_(buf, group["momentum"]) if group["nesterov"] else buf
                    g = zeropower(g, steps=group["ns_steps"])
                    scale = max(1.0, p.size(-2) / p.size(-1)) ** 0.5
                    p.add_(g, alpha=-group["lr"] * scale)
                ag_input = params[owner_idx] if owner_idx < len(params) else zero_buffer
                ag_output = params[base_i:base_i + world_size]
                ag_output.extend([torch.empty_like(zero_buffer) for _ in range(world_size - len(ag_output))])
                work = dist.all_gather(ag_output, ag_input, async_op=True)
                all_gather_futures.append(work)
        for work in all_gather_futures:
            work.wait()


class DistAdamW(torch.optim.Optimizer):
    """nanochat/adamw.py ``DistAdamW``."""

    def __init__(self, param_groups, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(param_groups, defaults)

    @torch.no_grad()
    def step(self):
        rank = dist.get_rank()
        world_size = dist.get_world_size()
        reduce_scatter_futures = []
        grad_slices = []
        for group in self.param_groups:
            params = group["params"]
            for base_i in range(len(params)):
                grad = params[base_i].grad
                rank_size = grad.shape[0] // world_size
                grad_slice = torch.empty_like(grad[:rank_size])
                reduce_scatter_futures.append(
                    dist.reduce_scatter_tensor(grad_slice, grad, op=dist.ReduceOp.AVG, async_op=True))
                grad_slices.append(grad_slice)
        idx = 0
        all_reduce_futures = []
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            eps = group["eps"]
            wd = group["weight_decay"]
            params = group["params"]
            for base in range(len(params)):
                reduce_scatter_futures[idx].wait()
                p = params[base]
                rank_size = p.shape[0] // world_size
                p_slice = p[rank * rank_size:(rank + 1) * rank_size]
                lr = group["lr"] * getattr(p, "lr_mul", 1.0)
                state = self.state[p]
                g_slice = grad_slices[idx]
                if not state:
                    state["step"] = torch.tensor(0, dtype=torch.int64, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p_slice)
                    state["exp_avg_sq"] = torch.zeros_like(p_slice)
                exp_avg = state["exp_avg"]
                exp_avg_sq = state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"]
                if wd != 0:
                    eff_weight_decay = lr * wd * getattr(p, "wd_mul", 1.0)
                    p_slice.mul_(1 - eff_weight_decay)
                exp_avg.mul_(beta1).add_(g_slice, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(g_slice, g_slice, value=1 - beta2)
                bias1 = 1 - beta1**t
                bias2 = 1 - beta2**t
                denom = exp_avg_sq.sqrt().add_(eps)
                step_size = lr * (torch.sqrt(bias2) / bias1)
                update = exp_avg.div(denom).mul_(step_size)
                p_slice.add_(other=update, alpha=-1.0)
                idx += 1
                all_reduce_futures.append(dist.all_gather_into_tensor(p, p_slice, async_op=True))
        for work in all_reduce_futures:
            work.wait()


def AdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float):
    """nanochat's single-GPU AdamW: torch.optim.AdamW(fused=True) (reads no p.lr_mul / p.wd_mul)."""
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)


def SGD(params, *, lr: float, momentum: float, nesterov: bool):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)


def clip_grad_norm(params, max_norm: float):
    """nanochat's training loop: ``torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)``."""
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def lr_multiplier(it, *, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    """base_train.py ``get_lr_multiplier``; its module globals are the arguments."""
    warmup_iters = round(warmup_ratio * num_iterations)
    warmdown_iters = round(warmdown_ratio * num_iterations)
    if it < warmup_iters:
        return (it + 1) / warmup_iters
    elif it <= num_iterations - warmdown_iters:
        return 1.0
    else:
        progress = (num_iterations - it) / warmdown_iters
        return progress * 1.0 + (1 - progress) * final_lr_frac


def muon_momentum(it):
    """base_train.py ``get_muon_momentum``."""
    frac = min(it / 300, 1)
    momentum = (1 - frac) * 0.85 + frac * 0.95
    return momentum


def step_decay_lr(step, *, initial_lr, decay_rate, decay_steps):
    return initial_lr * (decay_rate ** (step // decay_steps))


def exponential_decay_lr(step, *, initial_lr, decay_rate):
    return initial_lr * exp(-decay_rate * step)


def inverse_time_decay_lr(step, *, initial_lr, decay_rate):
    return initial_lr / (1 + decay_rate * step)
