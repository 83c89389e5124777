"""A target that adapts HeavyBall's Muon (PyPI ``heavyball`` 3.2.1) to the optconform protocol.

Run it with ``--target optconform.conformance.adapters.heavyball``. Call signatures only, never the math;
everything the protocol does not pass stays at HeavyBall's own defaults. Read from the 3.2.1 wheel:

* ``zeropower`` -> ``heavyball/utils.py::zeropower_via_newtonschulz5(G, steps)``: five fixed per-iteration
  "quintic" rows (4.0848, −6.8946, 2.9270) … (2.8366, −3.0525, 1.2012), ``G / clamp(‖G‖_F, min=1e-7)``, then
  the input *stochastically* rounded to bfloat16 (``stochastic_round_``), batched over leading dimensions,
  returned in G's dtype. It ``assert``s ``steps == 5``, so any other step count raises ``Unsupported``.
* ``Muon`` -> ``heavyball.Muon`` (``heavyball/__init__.py``): the chain ``(nesterov_ema, orthogonalize_update)``
  at ``nesterov=True``, ``(exp_avg, orthogonalize_update)`` at ``nesterov=False`` (an EMA whose β is debiased
  per step, ``utils.beta_debias``). The momentum is
  ``betas[0]`` (``utils.get_beta1``): the adapter passes ``betas=(momentum, 0.99)`` (0.99 is HeavyBall's default
  β₂, unused by Muon) and, because the suite changes ``group["momentum"]`` between steps, copies
  ``group["momentum"]`` into ``group["betas"][0]`` before each step (a subclass whose ``step`` does only that).
  Defaults kept: ``weight_decay=0`` (``p·(1 − lr·wd)`` with the same lr when set), no gradient or update
  clipping, ``warmup_steps=0``, ``caution=False``, ``zeroth_power_mode="newtonschulz"``. Nesterov here is
  ``update = g + EMA`` (``utils._compilable_nesterov_ema_``: ``ema.lerp_(g, 1 − β)``, then ``g += ema``), not
  ``g.lerp(buf, β)``; the shape factor is ``sqrt(max(1, rows/cols))`` (``OrthoScaleMode.scale``). Parameters of
  more than two dimensions are flattened to ``(dim0, −1)`` (``chainable.orthogonalize_update``), not batched as
  S7.2 does, so they raise ``Unsupported``; so does ``ns_steps != 5`` (five iterations are hard-coded in
  ``utils._compilable_orthogonal_``). Its state is nested per transform (``state[p][0]``), not under
  torch.optim's ``momentum_buffer``, so the suite's final-buffer checks have nothing to read and are skipped.

Profile: none declared: neither its quintic rows nor its ``g + EMA`` Nesterov is a spec option.

HeavyBall is compile-first: its kernels are wrapped by ``utils.decorator_knowngood``, which ``torch.compile``s
them unless ``heavyball.utils.compile_mode`` is None. This adapter sets ``compile_mode = None`` when it is
imported, so everything runs eagerly on CPU (the same arithmetic, without Inductor's fusions; this is a global
setting of the heavyball module in the suite's process).

Left out: HeavyBall's other optimizers (``MuonAdamW``, ``MuonLaProp``, its Adam variants: other algorithms or
other names), SGD, clipping and schedules (no protocol counterpart there), distributed names (none).
"""

from __future__ import annotations

from importlib.metadata import version

import heavyball
import heavyball.utils
import torch

from optconform.spec import Unsupported

from . import matrices_only

LIBRARY = "heavyball"
VERSION = version("heavyball")

heavyball.utils.compile_mode = None  # eager: see the module docstring

optconform_capabilities = {
    "unsupported": {
        "DistMuon": "HeavyBall has no ZeRO-2 distributed Muon",
        "DistAdamW": "HeavyBall has no ZeRO-2 distributed AdamW",
    },
}

_HEAVYBALL_BETA2 = 0.99  # heavyball.Muon's default betas[1]; Muon does not use it


def zeropower(G: torch.Tensor, steps: int) -> torch.Tensor:
    if steps != 5:
        raise Unsupported(f"HeavyBall's zeropower_via_newtonschulz5 asserts steps == 5; got steps={steps}")
    return heavyball.utils.zeropower_via_newtonschulz5(G, steps)


class _Muon(heavyball.Muon):
    """heavyball.Muon whose momentum is read from ``group["momentum"]`` (the protocol's key) into ``betas[0]``."""

    def step(self, closure=None):
        for group in self.param_groups:
            group["betas"] = (group["momentum"], group["betas"][1])
        return super().step(closure)


def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
    params = matrices_only(params, "HeavyBall's Muon flattens a parameter of more than two dimensions to (dim0, -1), "
                                   "not a batch of matrices (chainable.orthogonalize_update)")
    if ns_steps != 5:
        raise Unsupported(f"HeavyBall's Muon runs exactly five Newton–Schulz iterations; got ns_steps={ns_steps}")
    opt = _Muon(params, lr=lr, betas=(momentum, _HEAVYBALL_BETA2), nesterov=nesterov)
    for group in opt.param_groups:
        group["momentum"] = momentum
    return opt
