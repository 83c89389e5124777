"""A target that adapts timm's optimizers (PyPI ``timm`` 1.0.31, ``timm/optim/muon.py``, ``timm/optim/adamw.py``).

Run it with ``--target optconform.conformance.adapters.timm``. Call signatures only, never the math; everything
the protocol does not pass stays at timm's own defaults. Read from the 1.0.31 wheel:

* ``zeropower`` -> ``timm.optim.muon.zeropower_via_newtonschulz(G, steps, coefficients)`` with timm's default
  coefficients, ``ns_coefficients="quintic"`` (five per-iteration rows from modded-nanogpt's
  ``train_gpt_medium.py``: (4.0848, −6.8946, 2.9270) … (2.8366, −3.0525, 1.2012), the list cut at ``steps`` or
  its last row repeated), ``X / clamp(‖X‖_F, min=1e-7)``, bfloat16, safety factor 1. It takes 2-D and 3-D
  inputs (an ``assert`` refuses others), so a 4-D or higher input raises ``Unsupported``.
* ``Muon`` -> ``timm.optim.Muon`` with timm's defaults: ``weight_decay=0`` (``p·(1 − lr·wd)`` first when set),
  ``ns_coefficients="quintic"``, ``eps=1e-7`` through ``clamp``, ``adjust_lr_fn="match_rms_adamw"``, i.e. the
  update scaled by ``0.2·sqrt(max(rows, cols))``, EMA momentum ``buf.lerp_(g, 1 − β)``, Nesterov
  ``g.lerp(buf, β)`` (timm's *default* is ``nesterov=False``; the suite passes it explicitly), state
  ``momentum_buffer``. The group is flagged ``use_muon=True``: timm otherwise routes a matrix whose smaller side is
  below 4 or whose aspect ratio exceeds 128 to its AdamW fallback (``_is_suitable_for_muon``), and the protocol's
  ``Muon`` is Muon on every matrix it is given. timm views a parameter of more than two dimensions as a
  convolution filter (``conv_mode="flatten"``: ``(out, in·k…)``), not as a batch of matrices as S7.2 does, so such
  a parameter raises ``Unsupported``.
* ``AdamW`` -> ``timm.optim.AdamWLegacy`` (``timm/optim/adamw.py``), timm's own AdamW (caution, corrected decay
  and update clipping off, their defaults). ``timm.optim.AdamW`` itself is ``torch.optim.AdamW`` re-exported
  (``timm/optim/__init__.py``), already judged by the torch.optim adapter. It knows no ``p.lr_mul`` / ``p.wd_mul``.

Profile: none declared: timm's quintic rows are no spec option, so no profile reproduces its Muon or its
Newton–Schulz (``--diagnose`` names the nearest and the cases say how far it is).

Importing: ``import timm`` runs ``timm/__init__.py``, which imports ``timm.layers`` and ``timm.models``, and those
import ``torchvision`` (``timm/layers/create_norm.py``, ``norm_act.py``). ``timm/optim/muon.py`` and
``adamw.py`` need nothing of it (only their siblings ``_helpers``, ``_types``, ``nadamw``), so when ``timm`` is
not imported yet this adapter registers ``timm`` and ``timm.optim`` as bare packages over the installed folders
and imports those two files from them, without running either ``__init__``. A run with a working torchvision
therefore computes the same code; none needs to be installed (the package index's torchvision 0.28.0 is a CUDA
build whose operators do not load against the CPU torch).

Left out: timm's AdaMuon (``algo="adamuon"``), other optimizers, and everything without a protocol name here
(SGD: timm re-exports torch's; schedules: timm's schedulers are not nanochat's; distributed names: none).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from importlib.metadata import version

import torch

from optconform.spec import Unsupported

from . import matrices_only

LIBRARY = "timm"
VERSION = version("timm")

optconform_capabilities = {
    "unsupported": {
        "DistMuon": "timm has no distributed Muon",
        "DistAdamW": "timm has no distributed AdamW",
    },
}


def _module(name: str):
    """``timm.optim.<name>``, imported without running ``timm/__init__.py`` (and so without torchvision)."""
    full = f"timm.optim.{name}"
    if full in sys.modules:
        return sys.modules[full]
    if "timm" not in sys.modules:
        found = importlib.util.find_spec("timm")
        if found is None or not found.submodule_search_locations:
            raise ImportError("timm is not installed")
        root = list(found.submodule_search_locations)[0]
        for pkg, path in (("timm", root), ("timm.optim", os.path.join(root, "optim"))):
            mod = types.ModuleType(pkg)
            mod.__path__ = [path]
            mod.__package__ = pkg
            sys.modules[pkg] = mod
    return importlib.import_module(full)


# fail at load time (a clear TargetError) when timm is missing
_muon = _module("muon")
_adamw = _module("adamw")


def zeropower(G: torch.Tensor, steps: int) -> torch.Tensor:
    if G.ndim not in (2, 3):
        raise Unsupported(f"timm's zeropower_via_newtonschulz takes 2-D and 3-D inputs only; got shape "
                          f"{tuple(G.shape)}")
    rows = _muon.resolve_ns_coefficients("quintic", _muon._COEFFICIENTS)
    return _muon.zeropower_via_newtonschulz(G, steps, rows)


def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
    params = matrices_only(params, "timm's Muon treats a parameter of more than two dimensions as a convolution "
                                   "filter (conv_mode 'flatten': (out, in*k...)), not as a batch of matrices")
    return _muon.Muon([dict(params=params, use_muon=True)], lr=lr, momentum=momentum, nesterov=nesterov,
                      ns_steps=ns_steps)


def AdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float) -> torch.optim.Optimizer:
    return _adamw.AdamWLegacy(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
