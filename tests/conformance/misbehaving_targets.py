"""Targets that misbehave in the ways a person validating an optimizer meets, one per namespace
(``--target misbehaving_targets:<name>``); every other name is the production implementation's.

* ``zero_output``: zeropower returns zeros; ``double_output``: twice the right answer;
* ``ignores_lr_mul``: torch.optim.AdamW, which does not read ``p.lr_mul`` / ``p.wd_mul``;
* ``nan_at_step``: SGD whose parameters turn NaN at step 3;
* ``raising_step``: Muon whose ``step`` raises at its third call;
* ``never_returns``: an ``lr_multiplier`` that sleeps forever at ``it = 7``;
* ``dead_rank``: DistMuon whose rank 1 process dies (``os._exit``) in its second step;
* ``raising_rank``: DistMuon whose rank 1 raises in its second step, after the reduce-scatter and before the
  all-gather (rank 0 is then inside a collective its partner never joins);
* ``killed_rank``: DistMuon whose rank 1 is killed with SIGKILL in its second step while its collectives are in
  flight.
"""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import torch
import torch.distributed as dist

import optconform.impl as impl

_IMPL = {name: getattr(impl, name) for name in (
    "zeropower", "Muon", "DistMuon", "AdamW", "DistAdamW", "SGD", "lr_multiplier", "muon_momentum",
    "step_decay_lr", "exponential_decay_lr", "inverse_time_decay_lr", "clip_grad_norm")}


def _target(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{**_IMPL, **overrides})


def _zeros(G, steps):
    return torch.zeros_like(G)


def _double(G, steps):
    return 2 * impl.zeropower(G, steps).float()


def _adamw_ignoring_muls(param_groups, *, lr, betas, eps, weight_decay):
    return torch.optim.AdamW(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


class _NaNSGD(impl.SGD):
    def __init__(self, params, *, lr, momentum, nesterov):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov)
        self.calls = 0

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.calls += 1
        if self.calls == 4:  # after step 3 (0-based)
            self.param_groups[0]["params"][0].fill_(float("nan"))


class _RaisingMuon(impl.Muon):
    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        self.calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom: the optimizer gave up at its third step")
        return super().step(closure)


def _sleepy_lr_multiplier(it, *, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    if it == 7:
        time.sleep(10**6)
    return impl.lr_multiplier(it, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                              warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)


class _DyingDistMuon(impl.DistMuon):
    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)
        self.calls = 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == 2 and dist.get_rank() == 1:
            os._exit(3)  # the process dies without a word, as an OOM kill or a segfault would
        return super().step(closure)


class _RaisingRankDistMuon(_DyingDistMuon):
    def step(self, closure=None):
        self.calls += 1
        return impl.DistMuon.step(self, closure)

    def _step_owned(self, group, own, grads):
        if self.calls == 2 and dist.get_rank() == 1:
            raise FloatingPointError("rank 1 gave up between its reduce-scatter and its all-gather")
        return super()._step_owned(group, own, grads)


class _KilledRankDistMuon(_RaisingRankDistMuon):
    def _step_owned(self, group, own, grads):
        if self.calls == 2 and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would, with collectives in flight
        return impl.DistMuon._step_owned(self, group, own, grads)


zero_output = _target(zeropower=_zeros)
double_output = _target(zeropower=_double)
ignores_lr_mul = _target(AdamW=_adamw_ignoring_muls)
nan_at_step = _target(SGD=_NaNSGD)
raising_step = _target(Muon=_RaisingMuon)
never_returns = _target(lr_multiplier=_sleepy_lr_multiplier)
dead_rank = _target(DistMuon=_DyingDistMuon)
raising_rank = _target(DistMuon=_RaisingRankDistMuon)
killed_rank = _target(DistMuon=_KilledRankDistMuon)
