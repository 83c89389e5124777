"""A target that adapts pytorch-optimizer (PyPI ``pytorch-optimizer`` 4.1.0, kozistr) to the optconform protocol.

Run it with ``--target optconform.conformance.adapters.pytorch_optimizer``. Call signatures only, never the
math; everything the protocol does not pass stays at the library's own defaults. Read from the 4.1.0 wheel:

* ``zeropower`` -> ``pytorch_optimizer/optimizer/utils/matrix.py::zero_power_via_newton_schulz_5(G, num_steps=steps)``
  at its defaults: the seed's single row (3.4445, −4.7750, 2.0315) repeated, ``X / clamp_min(‖X‖_F, 1e-7)``,
  bfloat16, safety factor 1, batched over leading dimensions (returns bfloat16, as the library does).
* ``Muon`` -> ``pytorch_optimizer/optimizer/muon/muon.py::Muon`` with one group flagged ``use_muon=True`` (the
  library refuses a group without the flag). Defaults kept: ``weight_decay=0`` (decoupled ``p·(1 − lr·wd)``
  when set), ``ns_coeffs='original'`` (the seed's row), ``ns_method='newton_schulz'``,
  ``use_adjusted_lr=False``, i.e. ``lr·sqrt(max(1, rows/cols))`` (``muon/base.py::get_adjusted_lr``; the
  Moonlight factor 0.2·sqrt(max(A, B)) only with ``use_adjusted_lr=True``), EMA momentum
  ``buf.lerp_(g, 1 − β)`` and Nesterov ``g.lerp_(buf, β)`` (overwrites ``p.grad``), state ``momentum_buffer``.
  The library views a parameter of more than two dimensions as one ``(dim0, −1)`` matrix (``_orthogonalize``),
  not as a batch of matrices as S7.2 does, so such a parameter raises ``Unsupported``.
* ``AdamW`` -> the same ``Muon`` class with every group flagged ``use_muon=False``: its internal AdamW (the one
  the library uses for embeddings, heads, biases and gains): decoupled ``p·(1 − lr·wd)``, then
  ``m/bc1 / (sqrt(v)/sqrt(bc2) + eps)``: eps after bias correction, as torch does. pytorch-optimizer has no AdamW
  class of its own: ``pytorch_optimizer.AdamW`` is ``torch.optim.AdamW`` re-exported (``optimizer/__init__.py``)
  and ``StableAdamW`` (``optimizer/adamw.py``) is another algorithm (update clipping), so the internal one is
  adapted. It knows no ``p.lr_mul`` / ``p.wd_mul``.

Profile: none declared. Its Muon is the seed's but for ``normalisation='clamp'`` and its AdamW is torch's
(``param_muls='ignore'``); no single spec profile names both, so a plain run judges it as the seed and
``--diagnose`` finds each (``nox -s ecosystem`` runs it so; COMPATIBILITY.md has the result).

Left out: ``DistributedMuon`` (``muon/distributed_muon.py``, FSDP2/DTensor, not ZeRO-2 over a process group, and
``# pragma: no cover`` there), ``NorMuon``/``AdaMuon``/``AdaGO``/``MuonClip`` (other algorithms under other
protocol names the suite does not have), SGD, clipping and schedules (the library re-exports torch's SGD and
ships no nanochat schedule): absent, so *not provided*.
"""

from __future__ import annotations

from importlib.metadata import version

import torch

from . import matrices_only

LIBRARY = "pytorch-optimizer"
VERSION = version("pytorch-optimizer")

optconform_capabilities = {
    "unsupported": {
        "DistMuon": "pytorch-optimizer's DistributedMuon shards through FSDP2 DTensors, not ZeRO-2 over a process "
                    "group as S9.4 calls it",
        "DistAdamW": "pytorch-optimizer has no distributed AdamW",
    },
}


def _matrices_only(params, what: str) -> list:
    return matrices_only(params, f"{what} views a parameter of more than two dimensions as one (dim0, -1) matrix, "
                                 "not as a batch of matrices (muon/base.py::_orthogonalize)")


def zeropower(G: torch.Tensor, steps: int) -> torch.Tensor:
    from pytorch_optimizer.optimizer.utils.matrix import zero_power_via_newton_schulz_5

    return zero_power_via_newton_schulz_5(G, num_steps=steps)


def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
    from pytorch_optimizer.optimizer.muon.muon import Muon as _Muon

    params = _matrices_only(params, "pytorch-optimizer's Muon")
    return _Muon([dict(params=params, use_muon=True)], lr=lr, momentum=momentum, nesterov=nesterov,
                 ns_steps=ns_steps)


def AdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float) -> torch.optim.Optimizer:
    from pytorch_optimizer.optimizer.muon.muon import Muon as _Muon

    groups = list(param_groups)
    if groups and not isinstance(groups[0], dict):
        groups = [dict(params=groups)]
    groups = [{**g, "params": list(g["params"]), "use_muon": False} for g in groups]
    return _Muon(groups, adamw_lr=lr, adamw_betas=betas, adamw_eps=eps, adamw_wd=weight_decay)
