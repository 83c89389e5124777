"""Declared capabilities: how a target says what it deliberately does not implement.

Two mechanisms, reported the same way (a case outcome ``unsupported`` with the target's reason, counted in
its own column, never passed and never failed):

1. **A declaration** read before any case runs: an attribute ``optconform_capabilities`` on the target (the
   module or object ``--target`` names), either a :class:`Capabilities` or a plain dict with the same keys,
   so a target need not import optconform::

       optconform_capabilities = {
           "unsupported": {
               "DistMuon": "no distributed Muon here",               # a protocol name
               "Muon.nesterov=False": "Nesterov is always on",        # a hyperparameter value (a Python literal)
           },
           "world_sizes": [1, 2],                                    # the distributed cases' world sizes
           "dtypes": ["float32"],                                    # parameter dtypes (float32, float64)
           "profile": "torch-optim",                                 # the spec profile it computes (SPEC, "Profiles")
           "options": ["Muon", "AdamW"],                             # names that take a profile's options as keywords
           "protocol": "torch",                                      # or "functional" (below)
       }

2. **An exception**: a constructor, ``step`` or function may raise :class:`Unsupported` (from
   ``optconform.spec``) for an input it does not handle, e.g. a 3-D parameter. The case is reported as
   unsupported with the exception's message. Any other exception stays a failure with its traceback.

A name declared unsupported differs from a missing name (reported *not provided*) only in carrying the
target's reason.

``"protocol"`` says which protocol the target's names follow: ``"torch"`` (the default: torch tensors and
``torch.optim.Optimizer`` factories, ``optconform.spec.protocol``) or ``"functional"`` (pure NumPy array
functions such as ``muon_update(param, grad, state, *, lr, ...)``, ``optconform.conformance.functional``), which
the suite wraps into the torch protocol when it loads the target. A functional target may name its update
functions in selectors (``"muon_update.nesterov=False"``, ``"options": ["adamw_update"]``); they are read as the
protocol names they map onto (:data:`FUNCTIONAL_ALIASES`). Any other ``"protocol"`` value is refused.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ATTRIBUTE", "DTYPES", "PROTOCOLS", "FUNCTIONAL_ALIASES", "Unsupported", "CapabilityError",
           "Capabilities"]

#: The attribute the suite reads from a target.
ATTRIBUTE = "optconform_capabilities"
#: The parameter dtypes a case can need (``float64`` where values, or Adam's squares, leave float32's range).
DTYPES = ("float32", "float64")
#: The protocols a target's names can follow (capability key ``"protocol"``; the first is the default).
PROTOCOLS = ("torch", "functional")
#: A functional target's update functions -> the protocol names they provide (for its capability selectors).
FUNCTIONAL_ALIASES = {"sgd_update": "SGD", "muon_update": "Muon", "adamw_update": "AdamW"}
_KEYS = ("unsupported", "world_sizes", "dtypes", "profile", "options", "protocol")


def _clause_of(name: str) -> str | None:
    from .clauses import CLAUSES

    return next((c.id for c in CLAUSES if c.protocol and c.protocol[0] == name), None)


class Unsupported(Exception):
    """Raised by a target for an input it deliberately does not implement; the message is the reason."""


class CapabilityError(ValueError):
    """A malformed capability declaration (names the offending key)."""


def _literal(selector: str, text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as exc:
        raise CapabilityError(f"{ATTRIBUTE}['unsupported'][{selector!r}]: the value after '=' must be a Python "
                              f"literal (False, 0, 0.0, (0.9, 0.999), …); got {text!r}") from exc


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


@dataclass(frozen=True)
class Capabilities:
    """What a target does not implement: ``unsupported`` maps a selector to the target's reason.

    Selectors: ``"Name"`` (a protocol name) or ``"Name.hyper=value"`` (one value of one of its hyperparameters).
    ``world_sizes`` / ``dtypes``: the supported ones (None: all)."""

    unsupported: Mapping[str, str] = field(default_factory=dict)
    world_sizes: frozenset[int] | None = None
    dtypes: frozenset[str] | None = None
    profile: str | None = None  # the spec profile the target computes (None: the default, or --profile)
    options: frozenset[str] = frozenset()  # protocol names that accept the profile's variant options as keywords
    protocol: str = PROTOCOLS[0]  # "torch", or "functional": NumPy array functions the suite wraps (see above)

    @classmethod
    def declared_by(cls, obj: Any, protocol_keywords: Mapping[str, Collection[str]]) -> Capabilities:
        """The declaration on ``obj`` (none: everything supported), validated against the protocol:
        ``protocol_keywords`` maps each protocol name to the hyperparameters the suite passes it."""
        raw = getattr(obj, ATTRIBUTE, None)
        if raw is None:
            return cls()
        if isinstance(raw, Capabilities):
            raw = {"unsupported": raw.unsupported, "world_sizes": raw.world_sizes, "dtypes": raw.dtypes,
                   "profile": raw.profile, "options": raw.options, "protocol": raw.protocol}
        if not isinstance(raw, Mapping):
            raise CapabilityError(f"{ATTRIBUTE} must be a dict or Capabilities; got {type(raw).__name__}")
        extra = set(raw) - set(_KEYS)
        if extra:
            raise CapabilityError(f"{ATTRIBUTE} has unknown keys {sorted(extra)}; allowed: {', '.join(_KEYS)}")
        protocol = raw.get("protocol")
        protocol = PROTOCOLS[0] if protocol is None else protocol
        if not isinstance(protocol, str) or protocol not in PROTOCOLS:
            raise CapabilityError(
                f"{ATTRIBUTE}['protocol'] must be one of {', '.join(repr(p) for p in PROTOCOLS)} ('torch': torch "
                "tensors and torch.optim-style optimizers; 'functional': NumPy array functions such as "
                "muon_update(param, grad, state, *, lr, ...), see optconform.conformance.functional); "
                f"got {protocol!r}")
        alias = FUNCTIONAL_ALIASES if protocol == "functional" else {}
        from .options import OPTION_CLAUSES, PROFILES

        profile = raw.get("profile")
        if profile is not None and profile not in PROFILES:
            raise CapabilityError(f"{ATTRIBUTE}['profile'] must be one of {', '.join(PROFILES)}; got {profile!r}")
        takes = raw.get("options") or ()
        if not isinstance(takes, (str, bytes)):
            takes = [alias.get(t, t) if isinstance(t, str) else t for t in takes]
        with_options = {name for name in protocol_keywords if _clause_of(name) in OPTION_CLAUSES}
        if isinstance(takes, (str, bytes)) or not set(takes) <= with_options:
            raise CapabilityError(f"{ATTRIBUTE}['options'] must be a list drawn from {sorted(with_options)} (the "
                                  f"protocol names that have variant options); got {takes!r}")
        unsupported = {}
        for selector, reason in dict(raw.get("unsupported") or {}).items():
            if not isinstance(selector, str) or not isinstance(reason, str) or not reason.strip():
                raise CapabilityError(f"{ATTRIBUTE}['unsupported'] must map selector strings to non-empty reasons; "
                                      f"got {selector!r}: {reason!r}")
            head, dot, tail = selector.partition(".")
            unsupported[alias.get(head, head) + dot + tail] = reason
        for selector in unsupported:
            name, _, rest = selector.partition(".")
            if name not in protocol_keywords:
                raise CapabilityError(f"{ATTRIBUTE}['unsupported'][{selector!r}]: {name!r} is not a protocol name "
                                      f"({', '.join(sorted(protocol_keywords))})")
            if rest:
                hyper, eq, value = rest.partition("=")
                if not eq or hyper.strip() not in protocol_keywords[name]:
                    raise CapabilityError(
                        f"{ATTRIBUTE}['unsupported'][{selector!r}] must look like '{name}.<hyper>=<value>' with "
                        f"<hyper> one of {sorted(protocol_keywords[name])}")
                _literal(selector, value)
        world_sizes = raw.get("world_sizes")
        if world_sizes is not None:
            if isinstance(world_sizes, (str, bytes)) or not all(
                    isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in world_sizes):
                raise CapabilityError(f"{ATTRIBUTE}['world_sizes'] must be a list of integers >= 1; "
                                      f"got {world_sizes!r}")
            world_sizes = frozenset(world_sizes)
        dtypes = raw.get("dtypes")
        if dtypes is not None:
            if isinstance(dtypes, (str, bytes)) or not set(dtypes) <= set(DTYPES):
                raise CapabilityError(f"{ATTRIBUTE}['dtypes'] must be a list drawn from {list(DTYPES)}; got {dtypes!r}")
            dtypes = frozenset(dtypes)
        return cls(unsupported=unsupported, world_sizes=world_sizes, dtypes=dtypes, profile=profile,
                   options=frozenset(takes), protocol=protocol)

    def name_reason(self, name: str) -> str | None:
        """The target's reason when ``name`` as a whole is declared unsupported."""
        return self.unsupported.get(name)

    def value_reason(self, name: str, values: Mapping[str, Any]) -> str | None:
        """The first declared-unsupported ``name.hyper=value`` among ``values`` (hyperparameter -> value)."""
        for selector, reason in self.unsupported.items():
            owner, _, rest = selector.partition(".")
            if owner != name or not rest:
                continue
            hyper, _, text = rest.partition("=")
            hyper = hyper.strip()
            if hyper in values and _same(values[hyper], _literal(selector, text)):
                return f"{selector}: {reason}"
        return None

    def world_size_reason(self, world_size: int) -> str | None:
        if self.world_sizes is not None and world_size not in self.world_sizes:
            return f"world size {world_size} not among the declared world_sizes {sorted(self.world_sizes)}"
        return None

    def dtype_reason(self, dtype: str) -> str | None:
        if self.dtypes is not None and dtype not in self.dtypes:
            return f"dtype {dtype} not among the declared dtypes {sorted(self.dtypes)}"
        return None
