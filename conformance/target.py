"""The implementation under test: loading a target and asking what it provides, supports and accepts.

A target is a Python module or object named ``package.module`` or ``package.module:attribute``. The suite
looks up the names of the target protocol (``optconform.spec.PROTOCOL``); for each name it can say:

* *not provided* -- the attribute is missing;
* *unsupported* -- the target's capability declaration names it (``optconform_capabilities``);
* *signature mismatch* -- the attribute cannot be called as the protocol's ``typing.Protocol`` says;
* otherwise the object itself.

A malformed capability declaration is refused when the target is loaded (``TargetError``, naming the key).

A target whose declaration says ``"protocol": "functional"`` (pure NumPy array functions such as
``muon_update(param, grad, state, *, lr, ...)``; ``optconform.conformance.functional``) is wrapped into the torch
protocol here, so every case runs on it unchanged: ``--target my.jax_module`` just works. Its signature
mismatches are reported against the functional signatures. The distributed names (``DistMuon``, ``DistAdamW``, …)
are torch-only: a functional target does not provide them (*not provided*).
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field
from typing import Any

from optconform import spec
from optconform.spec import Capabilities, CapabilityError

ENV_VAR = "OPTCONFORM_TARGET"
DEFAULT_TARGET = "optconform.impl"

#: protocol name -> the hyperparameters the suite passes it by keyword (what a capability selector may name)
PROTOCOL_KEYWORDS = {name: e.clause.protocol_keywords for name, e in spec.PROTOCOL.items()}


class TargetError(ValueError):
    """The target specification cannot be resolved, or its capability declaration is malformed."""


@dataclass(frozen=True, eq=False)
class Target:
    """A resolved target: its specification string, the object the protocol names are read from, and what it
    declares it does not implement."""

    spec: str
    obj: Any
    capabilities: Capabilities = field(default_factory=Capabilities)
    functional: Any = None  # the functional target ``obj`` wraps (capability "protocol": "functional"), else None

    def get(self, name: str) -> Any | None:
        """The protocol attribute ``name``, or None when the target does not provide it."""
        if name not in spec.PROTOCOL:
            raise KeyError(f"name must be one of the protocol names {list(spec.PROTOCOL)}; got {name!r}")
        return getattr(self.obj, name, None)

    @functools.cache  # noqa: B019 - one Target per session; the check reads signatures once per name
    def problem(self, name: str) -> tuple[str, str] | None:
        """Why ``name`` cannot be judged, as ``(status, reason)`` with status ``not provided``, ``unsupported`` or
        ``signature mismatch``; None when the case can run."""
        reason = self.capabilities.name_reason(name)
        if reason is not None:
            return "unsupported", f"{name}: {reason}"
        obj = self.get(name)
        if obj is None:
            if self.functional is not None:
                from .functional import TORCH_ONLY, functional_names

                if name in TORCH_ONLY:
                    return "not provided", (f"target {self.spec} is functional (capability protocol='functional'); "
                                            f"{name} is torch-only (torch.distributed)")
                return "not provided", f"target {self.spec} (functional) has no attribute {functional_names(name)[0]!r}"
            return "not provided", f"target {self.spec} has no attribute {name!r}"
        if self.functional is not None:
            from .functional import mismatch

            problem = mismatch(self.functional, name)
            if problem is not None:
                return "signature mismatch", problem
        mismatch = spec.PROTOCOL[name].mismatch(obj)
        if mismatch is not None:
            return "signature mismatch", mismatch
        return None


def load_target(spec_text: str | None = None) -> Target:
    """Resolve ``spec_text`` (default: ``$OPTCONFORM_TARGET`` or ``optconform.impl``) to a :class:`Target`."""
    spec_text = spec_text or os.environ.get(ENV_VAR) or DEFAULT_TARGET
    module_name, _, attr = spec_text.partition(":")
    if not module_name or (":" in spec_text and not attr):
        raise TargetError(f"target must look like 'package.module' or 'package.module:attribute'; got {spec_text!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the target's module raises, the run cannot start
        raise TargetError(f"target {spec_text!r}: cannot import module {module_name!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    for part in filter(None, attr.split(".")):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise TargetError(f"target {spec_text!r}: module {module_name!r} has no attribute {attr!r}") from exc
    try:
        caps = Capabilities.declared_by(obj, PROTOCOL_KEYWORDS)
    except CapabilityError as exc:
        raise TargetError(f"target {spec_text!r}: {exc}") from exc
    if caps.protocol == "functional":
        from .functional import as_torch_target

        return Target(spec=spec_text, obj=as_torch_target(obj), capabilities=caps, functional=obj)
    return Target(spec=spec_text, obj=obj, capabilities=caps)
