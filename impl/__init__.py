"""optconform.impl: the production torch implementation, and the suite's default target.

The names below are the target protocol (README "The target protocol"); each is documented in its
module: bf16 Newton–Schulz (``newton_schulz``), Muon (``muon``), AdamW (``adamw``), SGD (``sgd``),
the ZeRO-2 optimizers (``distributed``), Muon and AdamW over DTensor / FSDP2 parameters (``dtensor``),
schedules (``schedules``), clipping (``clipping``) and nanochat's optimizer setup and training step
(``nanochat``). Checkpoints that reshard between world sizes (torch.distributed.checkpoint) are
``optconform.impl.checkpoint``, the protocol name ``Checkpoint`` (S9.9: its ``save`` and ``load``).

Variant options (SPEC "Variant options"): ``Muon``, ``AdamW``, ``DistMuon``, ``DistAdamW``, ``DTensorMuon``,
``DTensorAdamW`` take every option of their clause as a constructor keyword (and
``from_profile(name, params, **overrides)``), ``zeropower`` takes S6.2's (``eps``, ``rows``, ``row_cut``,
``normalisation``, ``safety``), ``clip_grad_norm`` S5.1's ``clip_rule``; declared in ``optconform_capabilities``.
"""

from typing import Any

from . import checkpoint as Checkpoint  # noqa: N812 - the module is the protocol's Checkpoint (save, load)
from .adamw import AdamW
from .clipping import clip_grad_norm
from .distributed import DistAdamW, DistMuon
from .dtensor import DTensorAdamW, DTensorMuon
from .muon import Muon
from .nanochat import setup_optimizers, train_step
from .newton_schulz import zeropower
from .schedules import (
    constant_lr,
    exponential_decay_lr,
    inverse_time_decay_lr,
    lr_multiplier,
    muon_momentum,
    step_decay_lr,
)
from .sgd import SGD

#: The capability declaration the conformance suite reads (spec/capabilities.py): the protocol names that accept
#: the profile's variant options as keywords.
optconform_capabilities: dict[str, Any] = {
    "options": ["Muon", "AdamW", "DistMuon", "DistAdamW", "DTensorMuon", "DTensorAdamW", "zeropower", "clip_grad_norm"],
}

__all__ = [
    "AdamW",
    "Checkpoint",
    "DistAdamW",
    "DistMuon",
    "DTensorAdamW",
    "DTensorMuon",
    "Muon",
    "SGD",
    "clip_grad_norm",
    "constant_lr",
    "exponential_decay_lr",
    "inverse_time_decay_lr",
    "lr_multiplier",
    "muon_momentum",
    "setup_optimizers",
    "step_decay_lr",
    "train_step",
    "zeropower",
]
