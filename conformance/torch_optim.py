"""Alias of :mod:`optconform.conformance.adapters.torch_optim`, the torch.optim adapter target.

Kept so that ``--target optconform.conformance.torch_optim`` (README, tests, benchmarks) goes on working: it
re-exports every protocol name of the adapter and its capability declaration.
"""

from optconform.conformance.adapters.torch_optim import (  # noqa: F401 - re-exported
    NS_EPS,
    SEED_NS_COEFFICIENTS,
    SGD,
    AdamW,
    DistAdamW,
    Muon,
    clip_grad_norm,
    exponential_decay_lr,
    optconform_capabilities,
    step_decay_lr,
    zeropower,
)

__all__ = ["NS_EPS", "SEED_NS_COEFFICIENTS", "SGD", "AdamW", "DistAdamW", "Muon", "clip_grad_norm",
           "exponential_decay_lr", "optconform_capabilities", "step_decay_lr", "zeropower"]
