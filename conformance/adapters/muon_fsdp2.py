"""A target that adapts muon-fsdp2 (PyPI ``muon-fsdp2`` 0.3.0, one module ``muon_fsdp2.py``) to the optconform
protocol: an FSDP2 Muon, judged by S9.7 (``DTensorMuon``) and S9.8 (``DTensorAdamW``).

Run it with ``--target optconform.conformance.adapters.muon_fsdp2 --world-sizes 1,2``. Call signatures only, never
the math; read from the 0.3.0 wheel (line numbers of ``muon_fsdp2.py``):

* ``DTensorMuon`` -> ``Muon([{"params": ..., "use_muon": True, "lr", "momentum", "nesterov", "ns_steps",
  "weight_decay": 0, "rms_scale": False}])``. ``Muon.__init__`` (l. 247–266) takes only such group dicts and asserts
  their exact key set. ``rms_scale=False`` selects its Keller-Jordan scale ``max(1, rows/cols)**0.5`` (l. 75), the
  spec's S7.1 (its default ``True`` is Moonlight's ``0.2·sqrt(max(rows, cols))``, l. 71). Per parameter ``i`` of a
  group, ``Fsdp1dWork`` (l. 99–161): momentum ``buf.lerp_(g, 1 − μ)`` and Nesterov ``g.lerp_(buf, μ)`` written into
  ``p.grad`` (l. 62–63); ``gather`` of every rank's local piece to rank ``i % W`` into buffers shaped like the
  **destination's own** piece (l. 125–134); there ``torch.cat(pieces, dim=0)``, the seed's Newton–Schulz
  (``zeropower_via_newtonschulz5``: (3.4445, −4.7750, 2.0315), bf16, ``X / (‖X‖ + 1e-7)``, tall matrices transposed,
  l. 36–59), ``chunk(W, dim=0)`` and ``scatter`` back (l. 150–156); then ``θ ← θ(1 − lr·wd) − lr·scale·O``
  (l. 160–161). State ``momentum_buffer = zeros_like(p)``: a DTensor placed as its parameter.
  What follows for the suite: the whole matrix is orthogonalised once, by one rank, when every piece has the same
  shape and the pieces are rows (``Shard(0)``, dim 0 divisible by W: FSDP2's default on even shapes). Pieces of
  other shapes (dim 0 not divisible by W) make the gathers' sizes disagree: gloo aborts the process
  (``Received data size doesn't match expected size``). ``Shard(1)`` pieces are concatenated along dim 0 all the
  same (no placement is read), and ``Replicate()`` parameters are stacked W times: a different matrix, silently.
* ``DTensorAdamW`` -> the same class with ``use_muon=False`` groups (``lr``, ``betas``, ``eps``, ``weight_decay``;
  l. 259–265): ``adam_update`` (l. 78–83, lerp moments, bias-corrected, ``m̂ / (√v̂ + ε)``), decoupled decay
  ``θ(1 − lr·wd)`` (l. 326–327), elementwise on the local pieces. It reads no ``p.lr_mul`` / ``p.wd_mul``
  (torch.optim's convention, S8.2's ``param_muls="ignore"``).

``Checkpoint`` (S9.9) is torch's own recipe (``adapters.torch_dcp``: ``get_optimizer_state_dict`` / DCP /
``set_optimizer_state_dict``): muon-fsdp2 ships no checkpoint code, and its state is DTensors placed as the
parameters, which the recipe reshards.

``Muon.step`` wraps the Newton–Schulz loop in ``torch.compile(fullgraph=True)`` (l. 20); the adapter steps under
``torch.compiler.set_stance("force_eager")``: the same arithmetic, without an Inductor compile per matrix shape.
Plain tensors (``SingelDeviceWork``, l. 199) call an undefined ``muon_update`` (NameError): no single-process names.
"""

from __future__ import annotations

from importlib.metadata import version

import torch
from muon_fsdp2 import Muon as _Muon

from . import torch_dcp as Checkpoint  # noqa: F401, N812 - torch's recipe is its Checkpoint (module docstring)

LIBRARY = "muon-fsdp2"
VERSION = version("muon-fsdp2")

optconform_capabilities = {"world_sizes": [1, 2, 3, 4]}


class _Eager(_Muon):
    """muon_fsdp2.Muon stepped with torch.compile's stance "force_eager" (module docstring)."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        with torch.compiler.set_stance("force_eager"):
            return super().step(closure)


def DTensorMuon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int) -> torch.optim.Optimizer:
    return _Eager([dict(params=list(params), use_muon=True, lr=lr, momentum=momentum, nesterov=nesterov,
                        ns_steps=ns_steps, weight_decay=0.0, rms_scale=False)])


def DTensorAdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> torch.optim.Optimizer:
    items = list(param_groups)
    hyper = dict(use_muon=False, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
    if all(isinstance(g, dict) for g in items):  # the protocol's per-group lr / weight_decay win
        return _Eager([{**hyper, **{k: v for k, v in g.items() if k in hyper}, "params": list(g["params"])}
                       for g in items])
    return _Eager([dict(hyper, params=items)])
