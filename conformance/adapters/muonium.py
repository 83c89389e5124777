"""A target that adapts muonium (PyPI ``muonium`` 0.2.0) to the optconform protocol, single-device path.

Run it with ``--target optconform.conformance.adapters.muonium`` (Muon) or
``--target optconform.conformance.adapters.muonium:normuon`` (the same with ``algorithm="normuon"``). Call
signatures only, never the math; everything the protocol does not pass stays at muonium's defaults. Read from
the 0.2.0 wheel:

* ``zeropower`` -> ``muonium/orthogonalize/orthogonalize.py::zeropower(G, steps, use_triton=False)`` at its other
  defaults: ``strategy="newton_schulz"`` (``orthogonalize/newton_schulz.py::ns_loop``: the seed's row
  (3.4445, −4.7750, 2.0315) × steps, ``X / (‖X‖_F + 1e-7)``), in bfloat16 (``G.bfloat16()``; the result is
  returned in bfloat16 as muonium does), batched over leading dimensions. ``use_triton=False`` selects muonium's
  plain-torch loop: the Triton loop computes the same iteration through ``kernels/gram.py::gram_``, which
  ``assert``s CUDA tensors. ``ns_loop`` is wrapped in ``torch.compile(fullgraph=True)``; the adapter calls it under
  ``torch.compiler.set_stance("force_eager")`` (the same arithmetic, without a compile per input shape).
* ``Muon`` -> ``muonium.Muon`` (``optim/optim.py``, ``optim/algorithms/muon.py``) at muonium's defaults:
  ``wd=0.1`` with ``use_cautious_wd=True`` (``u + wd·p·[u·p > 0]``, then scaled by the adjusted lr),
  ``orthogonalization_strategy="polar_express"`` (``orthogonalize/polar_express.py``: nanochat's five Polar
  Express rows, cut at ``ns_steps`` and at most 5, ``X / (1.02·‖X‖_F + 1e-6)``), momentum as a *sum*
  ``buf = μ·buf + g`` with Nesterov ``g + μ·buf``, shape factor ``sqrt(max(1, rows/cols))`` (``lr_ratio``), 3-D
  parameters batched over dim 0 (``flatten=False``), state ``momentum_buffer``. Its single-device step always
  reaches ``orthogonalize_single`` -> ``zeropower(..., use_triton=True)`` -> ``gram_``, which asserts
  ``d_in.is_cuda``: on CPU parameters it cannot run, so the adapter raises ``Unsupported`` for them (with
  ``--device cuda`` it runs, ``torch.compile``d as muonium does).
* ``normuon.Muon`` -> the same with the group's ``algorithm="normuon"`` (``optim/algorithms/normuon.py``:
  ``muon_beta2=0.95``, per-row second moment of the orthogonalized update, ``u / (sqrt(v) + 1e-8)``, rescaled to
  keep ``‖u‖_F``), on the same single-device path, so on CPU it is ``Unsupported`` for the same reason.

Profile: none declared: its ``zeropower`` is the seed's (the default profile); its Muon (Polar Express with
safety 1.02, sum momentum, cautious decay 0.1 with the adjusted lr) is near ``nanochat-2026`` but not it, and cannot
run on CPU anyway.

Import: ``import muonium`` imports ``muonium.kernels.gram``, which imports ``triton`` unconditionally, though
muonium's metadata lists only torch (a CUDA torch brings Triton along; the CPU torch does not): install
``triton`` next to it (``nox -s ecosystem`` does, ``--no-deps``).

Left out: muonium's AdamW groups (``algorithm="adamw"``) call ``torch.optim``'s functional ``adam`` (already judged
by the torch.optim adapter), ``MuonLP`` (low precision, needs torchao), the DTensor/FSDP path (not ZeRO-2 over a
process group as S9.4 calls it), and everything without a protocol name here.
"""

from __future__ import annotations

import types
from importlib.metadata import version

import muonium
import torch
from muonium.orthogonalize.orthogonalize import zeropower as _zeropower

from optconform.spec import Unsupported

LIBRARY = "muonium"
VERSION = version("muonium")

_UNSUPPORTED = {
    "DistMuon": "muonium distributes through DTensor/FSDP placements, not ZeRO-2 over a process group as S9.4 "
                "calls it",
}

optconform_capabilities = {"unsupported": dict(_UNSUPPORTED)}


def zeropower(G: torch.Tensor, steps: int) -> torch.Tensor:
    with torch.compiler.set_stance("force_eager"):
        return _zeropower(G, steps=steps, use_triton=False)


def _muon(algorithm: str):
    def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
        params = list(params)
        if not all(p.is_cuda for p in params):
            raise Unsupported(f"muonium's {algorithm} step orthogonalizes through its Triton gram kernel "
                              "(orthogonalize_single -> zeropower(use_triton=True) -> kernels/gram.py::gram_, which "
                              "asserts d_in.is_cuda): it cannot run on CPU parameters")
        return muonium.Muon([dict(params=params, algorithm=algorithm)], lr=lr, momentum=momentum,
                            nesterov=nesterov, ns_steps=ns_steps)

    Muon.__name__ = Muon.__qualname__ = "Muon"
    return Muon


Muon = _muon("muon")

#: ``--target optconform.conformance.adapters.muonium:normuon``: muonium's NorMuon under the protocol's ``Muon``.
normuon = types.SimpleNamespace(
    Muon=_muon("normuon"),
    zeropower=zeropower,
    LIBRARY=LIBRARY,
    VERSION=VERSION,
    optconform_capabilities={"unsupported": dict(_UNSUPPORTED)},
)
