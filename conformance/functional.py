"""The functional target protocol: pure NumPy array functions, wrapped into the torch protocol by the suite.

Code that is not a torch optimizer (JAX/optax, MLX, a C++ kernel behind a binding) gets a verdict through this
protocol. A *functional target* is a module or object that declares ::

    optconform_capabilities = {"protocol": "functional", ...}   # the other keys as for any target

and provides any subset of these names (the signatures are checked before any case runs, as for the torch
protocol; a name that cannot be called so is a *signature mismatch*):

<!-- generated: functional protocol -->
```
# S3.5 sgd -> SGD
sgd_init(param: ndarray) -> dict[str, ndarray]   (optional; without it the state starts as {})
sgd_update(param: ndarray, grad: ndarray, state: dict[str, ndarray], *, lr: float, momentum: float,
           nesterov: bool) -> tuple[ndarray, dict[str, ndarray]]
# S4.2 step_decay_lr -> step_decay_lr
step_decay_lr(step: int, *, initial_lr: float, decay_rate: float, decay_steps: int) -> float
# S4.3 exponential_decay_lr -> exponential_decay_lr
exponential_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float
# S4.4 inverse_time_decay_lr -> inverse_time_decay_lr
inverse_time_decay_lr(step: int, *, initial_lr: float, decay_rate: float) -> float
# S4.5 lr_multiplier -> lr_multiplier
lr_multiplier(it: int, *, num_iterations: int, warmup_ratio: float, warmdown_ratio: float,
              final_lr_frac: float) -> float
# S4.6 muon_momentum -> muon_momentum
muon_momentum(it: int) -> float
# S5.1 clip_grad_norm -> clip_grad_norm
clip_grad_norm(grads: list[ndarray], max_norm: float) -> tuple[list[ndarray], float]
# S6.2 zeropower -> zeropower
zeropower(G: ndarray, steps: int) -> ndarray
# S7.2 muon -> Muon
muon_init(param: ndarray) -> dict[str, ndarray]   (optional; without it the state starts as {})
muon_update(param: ndarray, grad: ndarray, state: dict[str, ndarray], *, lr: float, momentum: float, nesterov: bool,
            ns_steps: int) -> tuple[ndarray, dict[str, ndarray]]
# S8.2 adamw -> AdamW
adamw_init(param: ndarray) -> dict[str, ndarray]   (optional; without it the state starts as {})
adamw_update(param: ndarray, grad: ndarray, state: dict[str, ndarray], *, lr: float, betas: tuple[float, float],
             eps: float, weight_decay: float) -> tuple[ndarray, dict[str, ndarray]]
```
<!-- end generated: functional protocol -->

Each functional name maps onto exactly one protocol name (the comment line: clause, then the protocol name its
cases are reported under), with the protocol's hyperparameters under the same keywords. Positional parameters
are passed positionally, keyword-only ones by keyword, exactly as above.

* **Arrays.** Every array argument is a fresh ``numpy.ndarray`` (the callee may keep or modify it) of the case's
  dtype: float32, or float64 where a case's values (or, for AdamW, their squares) leave float32's normal range
  (a target that computes only in float32 declares ``"dtypes": ["float32"]`` so such cases are *unsupported*
  rather than silently rounded). Results may be anything ``numpy.asarray`` accepts (a NumPy, JAX or DLPack-backed
  array); they are converted to the parameter's (or ``G``'s, the gradient's) dtype and must have its shape.
* **Optimizers** are one parameter at a time: ``<name>_update(param, grad, state, *, hyperparameters)`` returns
  ``(new param, new state)``; the suite calls it once per parameter per step, in parameter order, with that
  step's hyperparameters (the values it writes into ``group["lr"]`` / ``group["momentum"]`` between steps reach
  the next call). ``state`` is the dict the previous call returned for this parameter, or before the first step
  ``<name>_init(param)`` (``{}`` when the target has no init function). A state is a ``dict[str, array]``: the
  suite keeps each value as a torch tensor between calls and hands it back as a NumPy array of the same dtype and
  shape (0-d for scalars such as a step count), so the state must hold arrays or numbers only. The judges read
  torch.optim's key names, so use them: ``momentum_buffer`` (SGD, Muon), ``exp_avg``, ``exp_avg_sq`` (AdamW),
  ``step`` (the number of updates done, where the optimizer counts them); other keys are the target's own and
  are handed back untouched.
* **nanochat's per-parameter multipliers** (S8.2): where a case sets ``p.lr_mul`` / ``p.wd_mul`` on a parameter,
  they are passed to ``adamw_update`` as keywords ``lr_mul=`` / ``wd_mul=`` if it accepts them (a parameter of
  that name or ``**kwargs``); an ``adamw_update`` without them ignores the multipliers, as torch.optim.AdamW does
  (the ``param_muls='ignore'`` option).
* **Variant options** (``"options": [...]``, SPEC "Variant options and profiles") are passed as keywords to the
  update function (and to ``zeropower`` / ``clip_grad_norm``) on every call.
* ``clip_grad_norm(grads, max_norm)`` gets the gradients of every parameter that has one and returns the
  clipped gradients (same order, shapes) and the total norm before clipping; ``zeropower(G, steps)`` returns the
  Newton–Schulz output, of ``G``'s shape, for a ``(..., m, n)`` ``G``.
* Raise ``optconform.spec.Unsupported("why")`` (or any exception subclassing it) for an input the target does
  not handle; the case is then *unsupported* with that reason. Declared capabilities work as for torch targets;
  selectors may name the protocol name (``"Muon.nesterov=False"``) or the update function
  (``"muon_update.nesterov=False"``).
* **Distributed names** (``DistMuon``, ``DistAdamW``, ``DTensorMuon``, ``DTensorAdamW``, S9) are torch-only: they
  need torch.distributed process groups and the state each rank holds. A functional target does not provide them
  (reported *not provided*), even if it has attributes of those names.

:func:`as_torch_target` builds the torch-protocol object from a functional target: ``SGD`` / ``Muon`` / ``AdamW``
factories with the protocol's signatures, each returning a ``torch.optim.Optimizer`` subclass
(``FunctionalOptimizer``) whose ``step()`` converts each ``p`` / ``p.grad`` to NumPy, calls the update with the
group's current hyperparameters, writes the new parameter back and keeps the returned state in ``self.state[p]``
as torch tensors; ``zeropower`` / ``clip_grad_norm`` wrappers that convert tensors both ways (the clipped
gradients are written into ``p.grad``); the schedules as they are. ``load_target`` does this automatically for a
target that declares ``"protocol": "functional"``, so every case and judge, live and golden, applies unchanged,
with the same levels.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from optconform import spec
from optconform.spec.protocol import bind_problem, call_shape

__all__ = ["OPTIMIZERS", "TORCH_ONLY", "FUNCTIONAL_NAMES", "FunctionalTarget", "as_torch_target", "functional_names",
           "mismatch", "protocol_block", "render"]

#: protocol name -> (update function, init function) of a functional target
OPTIMIZERS = {"SGD": ("sgd_update", "sgd_init"), "Muon": ("muon_update", "muon_init"),
              "AdamW": ("adamw_update", "adamw_init")}
#: protocol names a functional target never provides (they need torch.distributed)
TORCH_ONLY = tuple(c.protocol_name for c in spec.CLAUSES if c.protocol and c.module == "zero2")
#: protocol name -> the functional function that provides it (the protocol's own name where not an optimizer)
FUNCTIONAL_NAMES = {name: OPTIMIZERS[name][0] if name in OPTIMIZERS else name
                    for name in spec.PROTOCOL if name not in TORCH_ONLY}
_STATE_POSITIONAL = ("param", "grad", "state")
_OPTIONAL_INIT = "   (optional; without it the state starts as {})"


def _annotation(a: Any) -> str:
    text = a if isinstance(a, str) else getattr(a, "__name__", "")
    return text.replace("Tensor", "ndarray")


def functional_names(name: str) -> tuple[str, ...]:
    """The functional functions that provide protocol name ``name`` (update first, then its optional init)."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    return (name,) if name in FUNCTIONAL_NAMES else ()


def _call(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positional, keyword) names of the call the wrapper makes to the functional provider of ``name``."""
    positional, keywords = call_shape(spec.PROTOCOL[name].protocol)
    if name in OPTIMIZERS:
        return _STATE_POSITIONAL, keywords
    if name == "clip_grad_norm":
        return ("grads", "max_norm"), keywords
    return positional, keywords


_WIDTH = 116  # the docstring block's lines stay within the project's 120 columns


def _wrap(head: str, args: list[str], tail: str) -> list[str]:
    """``head(args) tail`` on one line, or broken after a comma with the continuation under the first argument."""
    one = f"{head}({', '.join(args)}){tail}"
    if len(one) <= _WIDTH:
        return [one]
    lines, indent = [], " " * (len(head) + 1)
    current = f"{head}("
    for i, a in enumerate(args):
        piece = a + (", " if i < len(args) - 1 else f"){tail}")
        if len(current) + len(piece.rstrip()) > _WIDTH and current.strip() not in ("", f"{head}("):
            lines.append(current.rstrip())
            current = indent
        current += piece
    lines.append(current)
    return lines


def render(name: str) -> list[str]:
    """The functional signature lines of protocol name ``name`` (the docstring's block)."""
    proto = spec.PROTOCOL[name].protocol
    params = {p.name: p for p in inspect.signature(proto.__call__).parameters.values() if p.name != "self"}
    positional, keywords = _call(name)
    kw = [f"{k}: {_annotation(params[k].annotation)}" for k in keywords]
    if name in OPTIMIZERS:
        update, init = OPTIMIZERS[name]
        args = ["param: ndarray", "grad: ndarray", "state: dict[str, ndarray]", "*", *kw]
        return [f"{init}(param: ndarray) -> dict[str, ndarray]{_OPTIONAL_INIT}",
                *_wrap(update, args, " -> tuple[ndarray, dict[str, ndarray]]")]
    if name == "clip_grad_norm":
        return ["clip_grad_norm(grads: list[ndarray], max_norm: float) -> tuple[list[ndarray], float]"]
    args = [f"{p}: {_annotation(params[p].annotation)}" for p in positional] + (["*", *kw] if kw else [])
    ret = _annotation(inspect.signature(proto.__call__).return_annotation)
    return _wrap(name, args, f" -> {ret}")


def protocol_block() -> str:
    """The functional protocol block, clause by clause (what the module docstring shows between its markers)."""
    lines = []
    for name, entry in spec.PROTOCOL.items():
        if name in TORCH_ONLY:
            continue
        lines.append(f"# {entry.clause.id} {entry.clause.name} -> {name}")
        lines.extend(render(name))
    return "\n".join(lines)


_NOTE = " (functional protocol)"


def mismatch(functional: Any, name: str) -> str | None:
    """None when the functional target's provider of ``name`` (and its init function, if any) accepts the calls the
    wrapper makes, else one line naming the misfit (reported as the clause's *signature mismatch*)."""
    names = functional_names(name)
    if not names or getattr(functional, names[0], None) is None:
        return None
    positional, keywords = _call(name)
    shown = f"{names[0]}({', '.join([*positional, *(['*', *keywords] if keywords else [])])})"
    problem = bind_problem(getattr(functional, names[0]), names[0], positional, keywords, expected=shown,
                           note=_NOTE)
    if problem is None and len(names) > 1 and getattr(functional, names[1], None) is not None:
        problem = bind_problem(getattr(functional, names[1]), names[1], ("param",), (),
                               expected=f"{names[1]}(param)", note=_NOTE)
    return problem


# ---------------------------------------------------------------------------------------------- conversions


def _to_numpy(t: Any) -> np.ndarray:
    """A fresh NumPy copy of a tensor, of its dtype (float32 / float64) and shape."""
    return t.detach().to("cpu").numpy().copy()


def _result(value: Any, like: Any, what: str):
    """``value`` (anything ``np.asarray`` takes) as a tensor of ``like``'s dtype, device and shape."""
    import torch

    arr = np.asarray(value)
    if arr.shape != tuple(like.shape):
        raise ValueError(f"{what} has shape {arr.shape}; expected {tuple(like.shape)}")
    return torch.as_tensor(np.array(arr, copy=True)).to(device=like.device, dtype=like.dtype)


def _state_tensor(key: Any, value: Any, device: Any, what: str):
    import torch

    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"{what} returned state[{key!r}] of type {type(value).__name__}: a functional state holds "
                        "arrays or numbers only (optconform.conformance.functional)")
    return torch.as_tensor(np.array(arr, copy=True)).to(device)


def _accepts(fn: Callable, names: Iterable[str]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return True
    have = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return set(names) <= have


# ---------------------------------------------------------------------------------------------- the wrapper


def _optimizer_class():
    import torch

    class FunctionalOptimizer(torch.optim.Optimizer):
        """A torch.optim ``Optimizer`` whose step calls a functional target's ``<name>_update`` per parameter.

        ``self.state[p]`` holds the functional state as torch tensors (torch.optim's key names where the target
        uses them); the group's hyperparameters are read at every step, so schedules written into
        ``group["lr"]`` / ``group["momentum"]`` reach the update."""

        def __init__(self, params: Any, *, functional: Any, name: str, hyper: dict, options: Mapping[str, Any]):
            update_name, init_name = OPTIMIZERS[name]
            self.functional_name = name
            self._update = getattr(functional, update_name)
            self._update_name = update_name
            self._init = getattr(functional, init_name, None)
            self._init_name = init_name
            self._hyper_names = tuple(hyper)
            self._options = dict(options)
            self._muls = name == "AdamW" and _accepts(self._update, ("lr_mul", "wd_mul"))
            self._started: set = set()
            super().__init__(params, dict(hyper))

        def _initial_state(self, param: np.ndarray) -> dict:
            if self._init is None:
                return {}
            state = self._init(param)
            if not isinstance(state, Mapping):
                raise TypeError(f"{self._init_name} must return a dict of arrays; got {type(state).__name__}")
            return dict(state)

        @torch.no_grad()
        def step(self, closure: Callable | None = None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                hyper = {k: group[k] for k in self._hyper_names}
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    param = _to_numpy(p)
                    if p in self._started or self.state.get(p):  # stepped here, or loaded by load_state_dict
                        state = {k: _to_numpy(v) if torch.is_tensor(v) else v for k, v in self.state[p].items()}
                    else:
                        state = self._initial_state(param.copy())
                    kw = dict(hyper, **self._options)
                    if self._muls:
                        kw.update({k: float(getattr(p, k)) for k in ("lr_mul", "wd_mul") if hasattr(p, k)})
                    out = self._update(param, _to_numpy(p.grad), state, **kw)
                    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], Mapping):
                        raise TypeError(f"{self._update_name} must return (new param, new state dict); got "
                                        f"{type(out).__name__}")
                    new_param, new_state = out
                    p.copy_(_result(new_param, p, f"the parameter {self._update_name} returned"))
                    self.state[p] = {k: _state_tensor(k, v, p.device, self._update_name) for k, v in new_state.items()}
                    self._started.add(p)
            return loss

    return FunctionalOptimizer


_OPTIMIZER_CLASS: list = []


def _optimizer(params: Any, functional: Any, name: str, hyper: dict, options: Mapping[str, Any]):
    if not _OPTIMIZER_CLASS:
        _OPTIMIZER_CLASS.append(_optimizer_class())
    return _OPTIMIZER_CLASS[0](params, functional=functional, name=name, hyper=hyper, options=options)


def _factories(functional: Any) -> dict[str, Callable]:
    """The torch-protocol factories of the optimizers ``functional`` provides (signatures exactly the protocol's)."""

    def SGD(params, *, lr: float, momentum: float, nesterov: bool, **options):
        return _optimizer(params, functional, "SGD", dict(lr=lr, momentum=momentum, nesterov=nesterov), options)

    def Muon(params, *, lr: float, momentum: float, nesterov: bool, ns_steps: int, **options):
        return _optimizer(params, functional, "Muon",
                          dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps), options)

    def AdamW(param_groups, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float, **options):
        return _optimizer(param_groups, functional, "AdamW",
                          dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), options)

    made = {"SGD": SGD, "Muon": Muon, "AdamW": AdamW}
    return {name: made[name] for name, (update, _) in OPTIMIZERS.items() if getattr(functional, update, None)}


def _zeropower(fn: Callable) -> Callable:
    def zeropower(G, steps: int, **options):
        return _result(fn(_to_numpy(G), steps, **options), G, "the output zeropower returned")

    return zeropower


def _clip_grad_norm(fn: Callable) -> Callable:
    def clip_grad_norm(params, max_norm: float, **options) -> float:
        import torch

        params = [params] if torch.is_tensor(params) else list(params)
        params = [p for p in params if p.grad is not None]
        out = fn([_to_numpy(p.grad) for p in params], max_norm, **options)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError(f"clip_grad_norm must return (clipped grads, total norm); got {type(out).__name__}")
        clipped, total = out
        clipped = list(clipped)
        if len(clipped) != len(params):
            raise ValueError(f"clip_grad_norm returned {len(clipped)} gradients for {len(params)}")
        for i, (p, c) in enumerate(zip(params, clipped, strict=True)):
            p.grad.copy_(_result(c, p.grad, f"clipped gradient {i}"))
        return float(np.asarray(total))

    return clip_grad_norm


class FunctionalTarget(SimpleNamespace):
    """The torch-protocol view of a functional target: one attribute per protocol name it provides, plus
    ``functional`` (the wrapped target) and its ``optconform_capabilities``."""

    def __repr__(self) -> str:
        provided = sorted(k for k in vars(self) if k in spec.PROTOCOL)
        return f"<functional target {self.functional!r} as the torch protocol: {', '.join(provided)}>"


def as_torch_target(functional: Any) -> FunctionalTarget:
    """Wrap a functional target (see the module docstring) into an object exposing the torch protocol's names.

    The capability declaration is carried over as it is (``Capabilities.declared_by`` reads the functional names in
    its selectors as the protocol names). The distributed names (``TORCH_ONLY``) are never provided."""
    out: dict[str, Any] = dict(functional=functional)
    caps = getattr(functional, spec.CAPABILITIES_ATTRIBUTE, None)
    if caps is not None:
        out[spec.CAPABILITIES_ATTRIBUTE] = caps
    out.update(_factories(functional))
    for name in FUNCTIONAL_NAMES:
        if name in OPTIMIZERS:
            continue
        fn = getattr(functional, name, None)
        if fn is None:
            continue
        if name == "zeropower":
            fn = _zeropower(fn) if callable(fn) else fn
        elif name == "clip_grad_norm":
            fn = _clip_grad_norm(fn) if callable(fn) else fn
        out[name] = fn
    return FunctionalTarget(**out)
