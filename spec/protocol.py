"""The target protocol as typed signatures: one ``typing.Protocol`` per name the suite looks up.

A target (the implementation under test) provides any subset of these names. The suite calls each exactly
as its ``__call__`` is declared here: positional parameters positionally, keyword-only parameters by
keyword. :func:`signature_mismatch` checks a target's object against its protocol before any case runs
and names what does not fit (a missing keyword, an extra required parameter, too few positional slots).
The first line of each docstring is the protocol block's comment in SPEC.md and README.md.

A protocol without ``__call__`` (``Checkpoint``) names methods instead: the target's object (a module will do)
provides each, called as declared (:func:`methods`).

Annotations are strings (no torch import here): ``Tensor`` is ``torch.Tensor``, ``Optimizer`` is
``torch.optim.Optimizer``.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor
    from torch.optim import Optimizer

__all__ = [
    "SGDFactory",
    "StepDecayLr",
    "ExponentialDecayLr",
    "InverseTimeDecayLr",
    "LrMultiplier",
    "MuonMomentum",
    "ClipGradNorm",
    "Zeropower",
    "MuonFactory",
    "AdamWFactory",
    "DistMuonFactory",
    "DistAdamWFactory",
    "DTensorMuonFactory",
    "DTensorAdamWFactory",
    "Checkpoint",
    "methods",
    "call_shape",
    "render_call",
    "signature_mismatch",
    "bind_problem",
]


@runtime_checkable
class SGDFactory(Protocol):
    """torch.optim-style SGD; the suite sets p.grad, group['lr'] between steps, and calls step()"""

    def __call__(self, params: Iterable[Tensor], *, lr: float, momentum: float, nesterov: bool) -> Optimizer: ...


@runtime_checkable
class StepDecayLr(Protocol):
    """the learning rate at `step`"""

    def __call__(self, step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float: ...


@runtime_checkable
class ExponentialDecayLr(Protocol):
    """the learning rate at `step`"""

    def __call__(self, step: int, *, initial_lr: float, decay_rate: float) -> float: ...


@runtime_checkable
class InverseTimeDecayLr(Protocol):
    """the learning rate at `step`"""

    def __call__(self, step: int, *, initial_lr: float, decay_rate: float) -> float: ...


@runtime_checkable
class LrMultiplier(Protocol):
    """nanochat's multiplier of every group's initial lr at iteration `it`"""

    def __call__(self, it: int, *, num_iterations: int, warmup_ratio: float, warmdown_ratio: float,
                 final_lr_frac: float) -> float: ...


@runtime_checkable
class MuonMomentum(Protocol):
    """nanochat's Muon momentum at iteration `it` (its own defaults: 0.85 -> 0.95 over 300)"""

    def __call__(self, it: int) -> float: ...


@runtime_checkable
class ClipGradNorm(Protocol):
    """clips every p.grad in place; returns the total norm before clipping"""

    def __call__(self, params: Iterable[Tensor], max_norm: float) -> float: ...


@runtime_checkable
class Zeropower(Protocol):
    """Newton–Schulz of a (..., m, n) tensor; returns a new tensor of G's shape"""

    def __call__(self, G: Tensor, steps: int) -> Tensor: ...


@runtime_checkable
class MuonFactory(Protocol):
    """torch.optim-style Muon over >= 2-D parameters; group['lr'], group['momentum'] may change between steps"""

    def __call__(self, params: Iterable[Tensor], *, lr: float, momentum: float, nesterov: bool,
                 ns_steps: int) -> Optimizer: ...


@runtime_checkable
class AdamWFactory(Protocol):
    """torch.optim-style AdamW; reads nanochat's p.lr_mul / p.wd_mul where set"""

    def __call__(self, param_groups: Iterable[Any], *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> Optimizer: ...


@runtime_checkable
class DistMuonFactory(Protocol):
    """ZeRO-2 Muon, built on every rank of an initialised process group"""

    def __call__(self, params: Iterable[Tensor], *, lr: float, momentum: float, nesterov: bool,
                 ns_steps: int) -> Optimizer: ...


@runtime_checkable
class DistAdamWFactory(Protocol):
    """ZeRO-2 AdamW, built on every rank of an initialised process group"""

    def __call__(self, param_groups: Iterable[Any], *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> Optimizer: ...


@runtime_checkable
class DTensorMuonFactory(Protocol):
    """Muon over 2-D DTensor parameters (fully_shard / distribute_tensor on a 1-D mesh), built on every rank"""

    def __call__(self, params: Iterable[Tensor], *, lr: float, momentum: float, nesterov: bool,
                 ns_steps: int) -> Optimizer: ...


@runtime_checkable
class DTensorAdamWFactory(Protocol):
    """AdamW over DTensor parameters (fully_shard / distribute_tensor on a 1-D mesh), built on every rank"""

    def __call__(self, param_groups: Iterable[Any], *, lr: float, betas: tuple[float, float], eps: float,
                 weight_decay: float) -> Optimizer: ...


@runtime_checkable
class Checkpoint(Protocol):
    """an object (a module will do) with save and load, collective on every rank: saved on W ranks, loads on W′"""

    def save(self, optimizer: Optimizer, path: str) -> None: ...

    def load(self, optimizer: Optimizer, path: str) -> None: ...


def methods(protocol: type) -> tuple[str, ...]:
    """The methods a target's object provides for ``protocol``: ``("__call__",)`` for a callable protocol, else the
    protocol's own public methods in declaration order (``Checkpoint``: save, load)."""
    if "__call__" in vars(protocol):
        return ("__call__",)
    return tuple(k for k, v in vars(protocol).items() if callable(v) and not k.startswith("_"))


def call_shape(protocol: type, method: str = "__call__") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positional names, keyword names) of the call the suite makes through ``protocol`` (its ``method``); () for
    the keywords of a protocol of methods (it takes no hyperparameters)."""
    if method == "__call__" and methods(protocol) != ("__call__",):
        return (), ()
    sig = inspect.signature(getattr(protocol, method))
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    keywords = tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY)
    return positional, keywords


def render_call(name: str, protocol: type, *, types: bool = True) -> str:
    """``Muon(params: Iterable[Tensor], *, lr: float, …) -> Optimizer`` (or without the parameter types); a protocol
    of methods: one ``Name.method(…) -> …`` line per method."""
    names = methods(protocol)
    if names != ("__call__",):
        return "\n".join(_render(f"{name}.{m}", getattr(protocol, m), types) for m in names)
    return _render(name, protocol.__call__, types)


def _render(label: str, fn: Any, types: bool) -> str:
    sig = inspect.signature(fn)
    parts, star = [], False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind == p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        parts.append(f"{p.name}: {ann}" if types and ann else p.name)
    ret = sig.return_annotation
    ret = ret if isinstance(ret, str) else getattr(ret, "__name__", "")
    return f"{label}({', '.join(parts)}) -> {ret}"


class _Slot:
    """A placeholder argument for binding a signature (never called)."""

    def __repr__(self) -> str:
        return "<arg>"


def signature_mismatch(obj: Any, name: str, protocol: type) -> str | None:
    """None when ``obj`` accepts the call ``protocol`` declares, else one line naming the misfit.

    The check binds placeholders to ``inspect.signature(obj)``: every positional argument of the protocol
    positionally and every keyword-only one by keyword, exactly as the suite will call it; a class is
    checked through its constructor. Objects whose signature Python cannot read (some builtins) pass.
    """
    names = methods(protocol)
    if names == ("__call__",):
        positional, keywords = call_shape(protocol)
        return bind_problem(obj, name, positional, keywords, expected=render_call(name, protocol),
                            call=render_call(name, protocol, types=False))
    for m in names:
        fn = getattr(obj, m, None)
        expected = _render(f"{name}.{m}", getattr(protocol, m), True)
        if fn is None:
            return f"{name} has no {m!r} (got {type(obj).__name__}); expected {expected}"
        positional, keywords = call_shape(protocol, m)
        problem = bind_problem(fn, f"{name}.{m}", positional, keywords, expected=expected,
                               call=_render(f"{name}.{m}", getattr(protocol, m), False))
        if problem is not None:
            return problem
    return None


def bind_problem(obj: Any, label: str, positional: Iterable[str], keywords: Iterable[str], *, expected: str,
                 call: str | None = None, note: str = "") -> str | None:
    """None when ``obj`` binds placeholders for ``positional`` (by position) and ``keywords`` (by keyword), else one
    line: ``label`` is not callable (``expected``), or ``label(sig)`` cannot be called as ``call`` (default
    ``expected``) followed by ``note``. Objects whose signature Python cannot read pass."""
    if not callable(obj):
        return f"{label} is not callable (got {type(obj).__name__}); expected {expected}"
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*[_Slot() for _ in positional], **{k: _Slot() for k in keywords})
    except TypeError as exc:
        return f"{label}{sig} cannot be called as {call or expected}{note}: {exc}"
    return None
