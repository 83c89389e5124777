"""The target protocol: what the suite looks up on an implementation under test.

A target is a Python module or object named ``package.module`` or ``package.module:attribute``.
The suite looks up the names in :data:`PROTOCOL`; a case whose name is missing is reported as
*not provided*, never as passed.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import pytest

ENV_VAR = "OPTCONFORM_TARGET"
DEFAULT_TARGET = "optconform.impl"

#: name -> the call the suite makes (documentation; see README "The target protocol").
PROTOCOL: dict[str, str] = {
    "zeropower": "zeropower(G: Tensor, steps: int) -> Tensor",
    "Muon": "Muon(params, *, lr, momentum, nesterov, ns_steps) -> torch.optim.Optimizer",
    "DistMuon": "DistMuon(params, *, lr, momentum, nesterov, ns_steps)  # on every rank of an initialised group",
    "AdamW": "AdamW(param_groups, *, lr, betas, eps, weight_decay)",
    "DistAdamW": "DistAdamW(param_groups, *, lr, betas, eps, weight_decay)",
    "SGD": "SGD(params, *, lr, momentum, nesterov)",
    "lr_multiplier": "lr_multiplier(it, *, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac) -> float",
    "muon_momentum": "muon_momentum(it) -> float",
    "step_decay_lr": "step_decay_lr(step, *, initial_lr, decay_rate, decay_steps) -> float",
    "exponential_decay_lr": "exponential_decay_lr(step, *, initial_lr, decay_rate) -> float",
    "inverse_time_decay_lr": "inverse_time_decay_lr(step, *, initial_lr, decay_rate) -> float",
    "clip_grad_norm": "clip_grad_norm(params, max_norm) -> float  # total norm before clipping",
}


class TargetError(ValueError):
    """The target specification cannot be resolved."""


@dataclass(frozen=True)
class Target:
    """A resolved target: its specification string and the object the protocol names are read from."""

    spec: str
    obj: Any

    def get(self, name: str) -> Any | None:
        """The protocol attribute ``name``, or None when the target does not provide it."""
        if name not in PROTOCOL:
            raise KeyError(f"name must be one of the protocol names {sorted(PROTOCOL)}; got {name!r}")
        return getattr(self.obj, name, None)

    def require(self, name: str) -> Any:
        """The protocol attribute ``name``; skips the calling case as *not provided* when missing."""
        value = self.get(name)
        if value is None:
            pytest.skip(f"not provided: target {self.spec} has no attribute {name!r}")
        return value

    def provided(self) -> dict[str, bool]:
        return {name: self.get(name) is not None for name in PROTOCOL}


def load_target(spec: str | None = None) -> Target:
    """Resolve ``spec`` (default: ``$OPTCONFORM_TARGET`` or ``optconform.impl``) to a :class:`Target`."""
    spec = spec or os.environ.get(ENV_VAR) or DEFAULT_TARGET
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise TargetError(f"target must look like 'package.module' or 'package.module:attribute'; got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"target {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in filter(None, attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise TargetError(f"target {spec!r}: module {module_name!r} has no attribute {attr!r}") from exc
    return Target(spec=spec, obj=obj)
