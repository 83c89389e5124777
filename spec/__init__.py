"""optconform.spec: the spec registry, the single source of truth about clauses.

* :data:`CLAUSES` / :func:`clause` -- every function clause of SPEC.md: id, title, reference function,
  hyperparameters (:mod:`.hyper`: name, default, domain), protocol name and typed signature
  (:mod:`.protocol`), input regimes and verdict levels (:mod:`.levels`), ownership rule;
* :data:`PROTOCOL` -- the target protocol, name -> :class:`ProtocolEntry`;
* :class:`Unsupported`, :class:`Capabilities` -- how a target declares what it does not implement;
* :mod:`.checks` -- the scalar validation shared by the reference and the implementation.

No torch and no NumPy are imported here: the reference, the implementation, the goldens and the suite
all import this package.
"""

from __future__ import annotations

from dataclasses import dataclass

from .capabilities import ATTRIBUTE as CAPABILITIES_ATTRIBUTE
from .capabilities import Capabilities, CapabilityError, Unsupported
from .clauses import CLAUSES, NS_COEFFICIENTS, NS_EPS, NS_ROWS, TORCH_CLIP_EPS, Clause
from .hyper import REQUIRED, Hyper, HyperSet
from .levels import CORE, HARDENING, LAYOUT, LEVELS, Regime
from .protocol import render_call, signature_mismatch

__all__ = [
    "CLAUSES",
    "PROTOCOL",
    "Clause",
    "ProtocolEntry",
    "clause",
    "hyper",
    "Hyper",
    "HyperSet",
    "REQUIRED",
    "Regime",
    "CORE",
    "HARDENING",
    "LAYOUT",
    "LEVELS",
    "NS_COEFFICIENTS",
    "NS_EPS",
    "NS_ROWS",
    "TORCH_CLIP_EPS",
    "Unsupported",
    "Capabilities",
    "CapabilityError",
    "CAPABILITIES_ATTRIBUTE",
    "signature_mismatch",
]

_BY_ID: dict[str, Clause] = {c.id: c for c in CLAUSES}


def clause(clause_id: str) -> Clause:
    """The clause ``clause_id`` (e.g. ``"S7.2"``); KeyError naming it when SPEC.md has no such clause."""
    try:
        return _BY_ID[clause_id]
    except KeyError:
        raise KeyError(f"unknown clause {clause_id!r}; SPEC.md has {', '.join(_BY_ID)}") from None


def hyper(clause_id: str) -> HyperSet:
    """The hyperparameters of clause ``clause_id``."""
    return clause(clause_id).hyper


@dataclass(frozen=True)
class ProtocolEntry:
    """A name of the target protocol: the clause it is judged under and its ``typing.Protocol``."""

    name: str
    clause: Clause
    protocol: type

    @property
    def doc(self) -> str:
        """One line on what the suite expects beyond the signature."""
        return (self.protocol.__doc__ or "").strip().splitlines()[0]

    def render(self, *, types: bool = True) -> str:
        return render_call(self.name, self.protocol, types=types)

    def mismatch(self, obj: object) -> str | None:
        """None when ``obj`` can be called as the protocol says, else why not."""
        return signature_mismatch(obj, self.name, self.protocol)


#: The target protocol in clause order: name -> entry.
PROTOCOL: dict[str, ProtocolEntry] = {c.protocol[0]: ProtocolEntry(c.protocol[0], c, c.protocol[1])
                                      for c in CLAUSES if c.protocol}
