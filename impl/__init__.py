"""optconform.impl: the production torch implementation, and the suite's default target.

The names below are the target protocol (README "The target protocol"); each is documented in its
module: bf16 Newton–Schulz (``newton_schulz``), Muon (``muon``), AdamW (``adamw``), SGD (``sgd``),
the ZeRO-2 optimizers (``distributed``), schedules (``schedules``), clipping (``clipping``) and
nanochat's optimizer setup and training step (``nanochat``).
"""

from .adamw import AdamW
from .clipping import clip_grad_norm
from .distributed import DistAdamW, DistMuon
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

__all__ = [
    "AdamW",
    "DistAdamW",
    "DistMuon",
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
