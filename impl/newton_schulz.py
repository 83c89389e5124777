"""S6.2 in torch: the bf16 Newton–Schulz quintic that Muon uses to orthogonalise its update.

``zeropower(G, steps)`` equals ``optconform.reference.orthogonalize.zeropower`` in exact arithmetic
and differs from it only by bf16 rounding (bounds: ``optconform.conformance.tolerances``, NS section).
Differences from the seed's ``zeropower_via_newtonschulz5``, none of which changes the exact result:

* the Frobenius norm is computed on G pre-scaled by max|G| (float32, or float64 for float64 input),
  so it cannot overflow (the seed's bf16 ``X.norm()`` is inf once ‖G‖_F ≳ 1.8e19 and it returns zeros)
  or underflow; X = G / (‖G‖_F + 1e-7) is then rounded to bf16 once;
* each step is two fused calls, B = b·A + c·A·A and X = a·X + B·X (``addmm``/``baddbmm``), as
  torch.optim.Muon does, instead of four separate bf16 roundings;
* G is never written into and never aliased by the result (pytorch #194664).

Path choice: ``zeropower`` runs a ``torch.compile``-d kernel on CUDA and the eager kernel elsewhere.
Override with the environment variable ``OPTCONFORM_NS_COMPILE`` = ``auto`` (default) | ``always`` |
``never``, read at every call. ``zeropower_eager`` and ``zeropower_compiled`` name a path explicitly.
The compiled kernel is built lazily, once per process; if compiling fails, a ``RuntimeWarning`` is
issued and the eager kernel is used from then on.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from optconform import spec

__all__ = [
    "NS_COEFFICIENTS",
    "NS_EPS",
    "COMPILE_ENV_VAR",
    "zeropower",
    "zeropower_eager",
    "zeropower_compiled",
    "compile_mode",
]

#: (a, b, c) of the quintic p(s) = a s + b s³ + c s⁵ (seed, S6.2), and the additive guard in X / (‖X‖_F + eps):
#: the registry's (``optconform.spec``).
NS_COEFFICIENTS: tuple[float, float, float] = spec.NS_COEFFICIENTS
NS_EPS: float = spec.NS_EPS
_H = spec.hyper("S6.2")
#: Environment variable choosing the path of ``zeropower``: auto | always | never.
COMPILE_ENV_VAR = "OPTCONFORM_NS_COMPILE"
_COMPILE_MODES = ("auto", "always", "never")


def _check_input(G: object, steps: object) -> int:
    if not isinstance(G, Tensor):
        raise ValueError(f"G must be a torch.Tensor; got {type(G).__name__}")
    if G.ndim < 2:
        raise ValueError(f"G must have at least 2 dimensions (..., m, n); got shape {tuple(G.shape)}")
    if not G.is_floating_point():
        raise ValueError(f"G must have a real floating dtype; got {G.dtype}")
    return _H.check(steps=steps)["steps"]


def _normalize(G: Tensor) -> Tensor:
    """X = G / (‖G‖_F + eps) per matrix, without overflow, rounded to bf16 once (a new tensor).

    With m = max|G| (per matrix), Y = G/m has entries in [-1, 1], so ‖Y‖_F <= sqrt(rows·cols) and
    G / (‖G‖_F + eps) = Y / (‖Y‖_F + eps/m) exactly. eps/m stays finite in float32 because m >= the
    smallest float32 subnormal (1.4e-45) whenever m > 0. A zero matrix gives zeros.
    """
    work = torch.float64 if G.dtype == torch.float64 else torch.float32
    g = G.to(work)  # may be G itself; only out-of-place ops below
    amax = g.abs().amax(dim=(-2, -1), keepdim=True)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    y = g / safe
    nrm = torch.linalg.vector_norm(y, dim=(-2, -1), keepdim=True)
    return (y / (nrm + NS_EPS / safe)).to(torch.bfloat16)


def _iterate(X: Tensor, steps: int) -> Tensor:
    """``steps`` quintic steps on a bf16 (m, n) or (B, m, n) X with m <= n; X is not modified."""
    a, b, c = NS_COEFFICIENTS
    if X.ndim == 2:
        for _ in range(steps):
            A = X @ X.mT
            B = torch.addmm(A, A, A, beta=b, alpha=c)  # b·A + c·A·A
            X = torch.addmm(X, B, X, beta=a)  # a·X + B·X
    else:
        for _ in range(steps):
            A = X @ X.mT
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)
            X = torch.baddbmm(X, B, X, beta=a)
    return X


def _kernel(G: Tensor, steps: int) -> Tensor:
    """Normalise, transpose to wide, iterate, transpose back (input already validated, non-empty)."""
    shape = G.shape
    m, n = shape[-2], shape[-1]
    transposed = m > n
    X = _normalize(G)
    if transposed:
        X = X.mT
    X = X.contiguous()
    if X.ndim > 3:
        X = X.reshape(-1, *X.shape[-2:])
    X = _iterate(X, steps)
    if transposed:
        X = X.mT
    return X.reshape(shape).contiguous()  # a new tensor: _normalize never returns G itself


def _run(kernel: Callable[[Tensor, int], Tensor], G: Tensor, steps: int) -> Tensor:
    if G.numel() == 0:
        return torch.zeros(G.shape, dtype=torch.bfloat16, device=G.device)
    return kernel(G, steps)


def zeropower_eager(G: Tensor, steps: int = _H.default("steps")) -> Tensor:
    """S6.2 bf16 Newton–Schulz quintic, eager kernel. See ``zeropower``."""
    steps = _check_input(G, steps)
    with torch.no_grad():
        return _run(_kernel, G, steps)


_compiled: Callable[[Tensor, int], Tensor] | None = None
_compile_failed = False
_compile_lock = threading.Lock()


def _compiled_kernel() -> Callable[[Tensor, int], Tensor] | None:
    global _compiled
    with _compile_lock:
        if _compiled is None and not _compile_failed:
            _compiled = torch.compile(_kernel, dynamic=None, fullgraph=True)
        return _compiled


def zeropower_compiled(G: Tensor, steps: int = _H.default("steps")) -> Tensor:
    """S6.2 bf16 Newton–Schulz quintic through ``torch.compile`` (built lazily, cached per process).

    If compiling or running the compiled kernel raises, a ``RuntimeWarning`` is issued, the compiled
    path is disabled for the rest of the process, and the eager result is returned.
    """
    global _compile_failed
    steps = _check_input(G, steps)
    kernel = _compiled_kernel()
    with torch.no_grad():
        if kernel is not None:
            try:
                return _run(kernel, G, steps)
            except Exception as exc:  # compile/backend failure: fall back, loudly, once
                _compile_failed = True
                warnings.warn(f"torch.compile of zeropower failed ({type(exc).__name__}: {exc}); "
                              "using the eager kernel from now on", RuntimeWarning, stacklevel=2)
        return _run(_kernel, G, steps)


def compile_mode() -> str:
    """The value of ``OPTCONFORM_NS_COMPILE`` (``auto`` when unset); anything else -> ValueError."""
    mode = os.environ.get(COMPILE_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in _COMPILE_MODES:
        raise ValueError(f"{COMPILE_ENV_VAR} must be one of {_COMPILE_MODES}; got {mode!r}")
    return mode


def zeropower(G: Tensor, steps: int = _H.default("steps")) -> Tensor:
    """S6.2 Newton–Schulz quintic in bf16: X = G/(‖G‖_F + 1e-7) (transposed when m > n), then
    ``steps`` times A = XXᵀ; B = bA + cA²; X = aX + BX, (a, b, c) = (3.4445, −4.7750, 2.0315).

    G: floating tensor (..., m, n), leading dimensions a batch; steps: int >= 0. Returns a new bf16
    tensor of G's shape on G's device; G is never modified. Compiled on CUDA, eager otherwise
    (``OPTCONFORM_NS_COMPILE``). Invalid G or steps -> ValueError naming it.
    """
    _check_input(G, steps)
    mode = compile_mode()
    use_compiled = mode == "always" or (mode == "auto" and G.is_cuda)
    if use_compiled and not _compile_failed:
        return zeropower_compiled(G, steps)
    return zeropower_eager(G, steps)
