"""Hyperparameters as data: name, default, valid domain, and the rules that tie several together.

A clause's :class:`HyperSet` is the one place its defaults and domains are written. The reference
functions and the production classes take their defaults from it (``H.default("momentum")``) and
validate through it (``H.check(lr=lr, momentum=momentum)``), and SPEC.md's clause index is rendered from it.
Every violation raises ``ValueError`` whose message starts with the parameter's name (SPEC S1.3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import checks as C

__all__ = [
    "REQUIRED",
    "Domain",
    "Hyper",
    "Rule",
    "HyperSet",
    "real",
    "positive",
    "nonnegative",
    "unit_interval",
    "integer",
    "count",
    "boolean",
    "pair",
    "triple",
    "optional",
    "per_parameter",
    "choice",
]


class _Required:
    """Marker of a hyperparameter without a default (the caller must pass it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Domain:
    """A valid domain: ``rule`` in words (for SPEC.md) and the check that enforces it.

    ``check(name, value)`` returns the value normalised (a Python float, int, bool or tuple) or raises
    ``ValueError`` naming ``name``.
    """

    rule: str
    _check: Callable[[str, Any], Any] = field(repr=False, compare=False)
    element: Domain | None = None  # the domain of each entry, for pair() and per_parameter()

    def check(self, name: str, value: Any) -> Any:
        return self._check(name, value)

    def admits(self, value: Any) -> bool:
        """Whether ``value`` lies in the domain."""
        try:
            self.check("value", value)
        except ValueError:
            return False
        return True


def real() -> Domain:
    return Domain("finite real", C.require_real)


def positive() -> Domain:
    return Domain("finite, > 0", C.require_positive)


def nonnegative() -> Domain:
    return Domain("finite, >= 0", C.require_nonnegative)


def unit_interval(*, closed_left: bool = True, closed_right: bool = True) -> Domain:
    rule = f"{'[' if closed_left else '('}0, 1{']' if closed_right else ')'}"
    return Domain(rule, lambda n, v: C.require_unit_interval(n, v, closed_left=closed_left,
                                                            closed_right=closed_right))


def integer(minimum: int) -> Domain:
    return Domain(f"integer >= {minimum}", lambda n, v: C.require_int(n, v, minimum=minimum))


def count(minimum: int) -> Domain:
    """An integer counter in [minimum, 2**53] (schedules, S4)."""
    return Domain(f"integer in [{minimum}, 2**53]", lambda n, v: C.require_count(n, v, minimum=minimum))


def boolean() -> Domain:
    return Domain("bool", C.require_bool)


def pair(element: Domain) -> Domain:
    """Two values, each in ``element`` (checked as ``name[0]``, ``name[1]``)."""

    def check(name: str, value: Any) -> tuple:
        first, second = C.require_pair(name, value)
        return element.check(f"{name}[0]", first), element.check(f"{name}[1]", second)

    return Domain(f"pair, each {element.rule}", check, element)


def triple() -> Domain:
    return Domain("3 finite reals (a, b, c)", C.require_triple)


def choice(*values: Any) -> Domain:
    """One of ``values`` (strings or bools): a variant option's allowed values (SPEC, "Variant options")."""

    def check(name: str, value: Any) -> Any:
        for v in values:
            if type(v) is type(value) and v == value:
                return v
        raise ValueError(f"{name} must be one of {', '.join(repr(v) for v in values)}; got {value!r}")

    return Domain(f"one of {', '.join(repr(v) for v in values)}", check)


def optional(element: Domain) -> Domain:
    """None (the rule is off) or a value in ``element``."""
    def check(name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            return element.check(name, value)
        except ValueError as exc:  # the message names the whole rule, None included
            raise ValueError(f"{name} must be None or {element.rule}; got {value!r}") from exc

    return Domain(f"None or {element.rule}", check)


def per_parameter(element: Domain) -> Domain:
    """None (every entry at its neutral value) or a list with one value per parameter, each in ``element``.

    The length is checked by the caller, who knows the number of parameters."""

    def check(name: str, value: Any) -> tuple | None:
        if value is None:
            return None
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be None or a list with one number per parameter; got {value!r}")
        return tuple(element.check(f"{name}[{i}]", v) for i, v in enumerate(value))

    return Domain(f"None or one value per parameter, each {element.rule}", check, element)


@dataclass(frozen=True)
class Hyper:
    """One hyperparameter: its name, domain, default (``REQUIRED`` when the caller must pass it) and meaning."""

    name: str
    domain: Domain
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: Any) -> Any:
        return self.domain.check(self.name, value)


@dataclass(frozen=True)
class Rule:
    """A constraint between hyperparameters, e.g. "nesterov requires momentum > 0" (checked after each of
    ``names`` passed its own domain). ``holds(**values)`` -> bool; ``message(**values)`` -> the error."""

    names: tuple[str, ...]
    doc: str
    holds: Callable[..., bool] = field(repr=False, compare=False)
    message: Callable[..., str] = field(repr=False, compare=False)


class HyperSet:
    """An ordered, immutable set of :class:`Hyper` with :class:`Rule` s between them."""

    def __init__(self, *hypers: Hyper, rules: Sequence[Rule] = ()) -> None:
        names = [h.name for h in hypers]
        if len(set(names)) != len(names):
            raise ValueError(f"hypers must have distinct names; got {names}")
        for rule in rules:
            missing = set(rule.names) - set(names)
            if missing:
                raise ValueError(f"rule {rule.doc!r} names unknown hyperparameters {sorted(missing)}")
        self._hypers: dict[str, Hyper] = {h.name: h for h in hypers}
        self.rules: tuple[Rule, ...] = tuple(rules)

    def __iter__(self) -> Iterator[Hyper]:
        return iter(self._hypers.values())

    def __len__(self) -> int:
        return len(self._hypers)

    def __contains__(self, name: object) -> bool:
        return name in self._hypers

    def __getitem__(self, name: str) -> Hyper:
        try:
            return self._hypers[name]
        except KeyError:
            raise KeyError(f"{name!r} is not one of the hyperparameters {self.names}") from None

    def __repr__(self) -> str:
        return f"HyperSet({', '.join(self.names)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._hypers)

    def default(self, name: str) -> Any:
        """The default of ``name``; KeyError when it has none (it is REQUIRED)."""
        h = self[name]
        if h.required:
            raise KeyError(f"hyperparameter {name!r} has no default: the caller must pass it")
        return h.default

    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter that has a default, with it."""
        return {h.name: h.default for h in self if not h.required}

    def extend(self, *hypers: Hyper, rules: Sequence[Rule] = ()) -> HyperSet:
        """A new set: these hyperparameters and rules, then the given ones (a name given again replaces it)."""
        merged = dict(self._hypers)
        merged.update({h.name: h for h in hypers})
        return HyperSet(*merged.values(), rules=(*self.rules, *rules))

    def only(self, *names: str) -> HyperSet:
        """A new set with just ``names`` (and the rules among them)."""
        return HyperSet(*(self[n] for n in names), rules=[r for r in self.rules if set(r.names) <= set(names)])

    def check(self, **values: Any) -> dict[str, Any]:
        """Validate the given values (in declaration order) and the rules among them; return them normalised.

        A name that is not a hyperparameter of the set raises ``ValueError`` naming it."""
        unknown = [n for n in values if n not in self._hypers]
        if unknown:
            raise ValueError(f"{unknown[0]} is not a hyperparameter here; expected one of {list(self.names)}")
        out: dict[str, Any] = {}
        for name, h in self._hypers.items():
            if name not in values:
                continue
            out[name] = h.check(values[name])
            for rule in self.rules:
                if name in rule.names and all(n in out for n in rule.names):
                    args = {n: out[n] for n in rule.names}
                    if not rule.holds(**args):
                        raise ValueError(rule.message(**args))
        return out
