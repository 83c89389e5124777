"""The target protocol as typed signatures: one ``typing.Protocol`` per name the suite looks up.

A target (the implementation under test) provides any subset of these names. The suite calls each exactly
as its ``__call__`` is declared here: positional parameters positionally, keyword-only parameters by
keyword. :func:`signature_mismatch` checks a target's object against its protocol before any case runs
and names what does not fit (a missing keyword, an extra required parameter, too few positional slots).
The first line of each docstring is the protocol block's comment in SPEC.md and README.md.

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


def call_shape(protocol: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positional names, keyword names) of the call the suite makes through ``protocol``."""
    sig = inspect.signature(protocol.__call__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))
    keywords = tuple(p.name for p in params if p.kind == p.KEYWORD_ONLY)
    return positional, keywords


def render_call(name: str, protocol: type, *, types: bool = True) -> str:
    """``Muon(params: Iterable[Tensor], *, lr: float, …) -> Optimizer`` (or without the parameter types)."""
    sig = inspect.signature(protocol.__call__)
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
    return f"{name}({', '.join(parts)}) -> {ret}"


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
    positional, keywords = call_shape(protocol)
    return bind_problem(obj, name, positional, keywords, expected=render_call(name, protocol),
                        call=render_call(name, protocol, types=False))


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
