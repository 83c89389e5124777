"""S6.2 in torch: the bf16 Newton–Schulz quintic that Muon uses to orthogonalise its update.

``zeropower(G, steps)`` equals ``optconform.reference.orthogonalize.zeropower`` in exact arithmetic
and differs from it only by bf16 rounding (bounds: ``optconform.conformance.tolerances``, NS section).
Differences from the seed's ``zeropower_via_newtonschulz5``, none of which changes the exact result:

* the Frobenius norm is computed in float32 (float64 for float64 input) where that can neither overflow nor
  underflow (``CHEAP_NORM_RANGE``, CPU), else on G pre-scaled by max|G|: it never overflows (the seed's bf16
  ``X.norm()`` is inf once ‖G‖_F ≳ 1.8e19 and it returns zeros) or underflows; X = G / (‖G‖_F + 1e-7) is then
  rounded to bf16 once;
* a tall 2-D G is transposed as a view (no copies), as torch.optim.Muon does; the result is then a view too;
* each step is two fused calls, B = b·A + c·A·A and X = a·X + B·X (``addmm``/``baddbmm``), as
  torch.optim.Muon does, instead of four separate bf16 roundings;
* G is never written into and never aliased by the result (pytorch #194664).

Variant options (S6.2, SPEC "Variant options"): ``eps``, ``rows``, ``row_cut``, ``normalisation``, ``safety`` as
keywords, defaults the seed's. Normalisation X/(safety·‖X‖_F + eps) or, with ``normalisation="clamp"``,
X/max(‖X‖_F, eps), with the same norm; then one quintic step per row of
``ns_row_list(steps, rows=..., row_cut=...)`` (``spec.NS_ROWS[rows]`` in order, past their end the last row
again or no further step). A call with any option changed runs the eager kernel (both entry points); the
default call is the seed's algorithm exactly as described below.

Gram-space path (``method="gram"``): the same polynomial iterated on the small Gram matrix. With X n×m (n <= m,
after the transpose), R = X·Xᵀ, and per row (a, b, c): B = b·R + c·R²; Q ← Q·(aI + B) (= a·Q + Q·B);
R ← (aI + B)·R·(aI + B) (= Z·(R·Z)); the output is Q·X. In bf16, R = XXᵀ rounds every direction to an absolute
u·‖R‖, so directions with s² ≲ u lose their spectrum (and can turn negative and diverge) unless X is re-formed:
the iteration restarts (X ← Q·X, R ← X·Xᵀ, Q ← I) so that a segment has at most two iterations, after
iterations 1 and 3 for T = 5 (``_gram_restarts``; a one-iteration segment is a standard step a·X + B·X). That is
(12α + 22)·n³ FLOPs for T = 5 against the standard (20α + 10)·n³, α = m/n: 0.78× at α = 4. All matrices are bf16
(float32 products cost 8× on CPUs with AMX); the normalisation is the standard path's (float32, overflow-safe).
``method="auto"`` would choose it for inputs at least ``GRAM_MIN_ASPECT`` times as long as wide with a side >=
``GRAM_MIN_SIDE``; that is disabled (``GRAM_MIN_ASPECT`` is inf) because it misses the suite's spectral bound on
some seeds. Measured against the suite's judge: ``tests/impl/test_gram_ns.py``; speed: bench/zeropower.py.

Path choice: ``zeropower`` runs a ``torch.compile``-d kernel on CUDA and the eager kernel elsewhere.
Override with the environment variable ``OPTCONFORM_NS_COMPILE`` = ``auto`` (default) | ``always`` |
``never``, read at every call. ``zeropower_eager`` and ``zeropower_compiled`` name a path explicitly.
The compiled kernel is built lazily, once per process; if compiling fails, a ``RuntimeWarning`` is
issued and the eager kernel is used from then on.
"""

from __future__ import annotations

import math
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
    "ns_row_list",
    "NS_METHODS",
    "GRAM_MIN_ASPECT",
    "GRAM_MIN_SIDE",
    "CHEAP_NORM_RANGE",
]

#: (a, b, c) of the quintic p(s) = a s + b s³ + c s⁵ (seed, S6.2), and the additive guard in X / (‖X‖_F + eps):
#: the registry's (``optconform.spec``).
NS_COEFFICIENTS: tuple[float, float, float] = spec.NS_COEFFICIENTS
NS_EPS: float = spec.NS_EPS
_H = spec.hyper("S6.2")
#: Environment variable choosing the path of ``zeropower``: auto | always | never.
COMPILE_ENV_VAR = "OPTCONFORM_NS_COMPILE"
_COMPILE_MODES = ("auto", "always", "never")


Row = tuple[float, float, float]

#: the values of ``method``: ``auto`` (Gram where it passes the suite and is measured faster: nowhere yet),
#: ``standard``, ``gram``
NS_METHODS = ("auto", "standard", "gram")
#: ``method="auto"`` takes the Gram path for the seed's coefficients when max(m, n) >= GRAM_MIN_ASPECT·min(m, n) and
#: min(m, n) >= GRAM_MIN_SIDE. Disabled (inf): forced onto every Newton–Schulz call, the Gram path misses the suite's
#: spectral_max bound on 4 of 20 seeds (2, 10, 11, 17; one S7.2 case each, worst 1.2229 against 1.22, i.e. 1.01×),
#: so it is opt-in only. Also measured: the last iteration in standard form (segments [1], [2, 3], [4], [5]) fails the
#: bias check on seeds 0 and 1 (S7.2, S9.4: directions with ŝ ≈ 0.05 respond 1.3× too much), so it is not an option.
#: Where it would pay (CPU, 1 thread, bf16 with AMX): Gram / standard time 0.9–1.0 at aspect 2, 0.7–0.9 at 3–8,
#: slower on square matrices and below a side of ~128; 3.0 and 256 are the values to restore if it passes.
GRAM_MIN_ASPECT = math.inf
GRAM_MIN_SIDE = 256


def ns_row_list(steps: int, *, rows: str | None = _H.default("rows"), row_cut: str = _H.default("row_cut")
                ) -> tuple[Row, ...]:
    """S6.2 The (a, b, c) of each iteration: NS_COEFFICIENTS ``steps`` times when ``rows`` is None, else
    ``spec.NS_ROWS[rows]`` in order, past their end the last row again (``"repeat_last"``) or no further
    iteration (``"truncate"``). ValueError naming a bad argument."""
    h = _H.check(steps=steps, rows=rows, row_cut=row_cut)
    if h["rows"] is None:
        return (NS_COEFFICIENTS,) * h["steps"]
    named = spec.NS_ROWS[h["rows"]]
    if h["row_cut"] == "truncate":
        return tuple(named[:h["steps"]])
    return tuple(named[min(k, len(named) - 1)] for k in range(h["steps"]))


def _variant(steps: int, eps: object, rows: object, row_cut: object, normalisation: object, safety: object
             ) -> tuple[tuple[Row, ...], float, str, float] | None:
    """None for the seed's options (the default kernel), else (row list, eps, normalisation, safety), validated.
    ``row_cut`` without ``rows`` changes nothing."""
    if (rows is None and normalisation == "plus_eps" and type(safety) is float and safety == 1.0
            and type(eps) is float and eps == NS_EPS and row_cut in ("repeat_last", "truncate")):
        return None
    h = _H.check(eps=eps, rows=rows, row_cut=row_cut, normalisation=normalisation, safety=safety)
    if h["rows"] is None and h["normalisation"] == "plus_eps" and h["safety"] == 1.0 and h["eps"] == NS_EPS:
        return None
    return (ns_row_list(steps, rows=h["rows"], row_cut=h["row_cut"]), h["eps"], h["normalisation"],
            h["safety"])


def _check_input(G: object, steps: object) -> int:
    if not isinstance(G, Tensor):
        raise ValueError(f"G must be a torch.Tensor; got {type(G).__name__}")
    if G.ndim < 2:
        raise ValueError(f"G must have at least 2 dimensions (..., m, n); got shape {tuple(G.shape)}")
    if not G.is_floating_point():
        raise ValueError(f"G must have a real floating dtype; got {G.dtype}")
    return _H.check(steps=steps)["steps"]


#: CPU: the Frobenius norm is computed directly in float32 (float64 for float64 input) when every matrix's norm lies
#: in this range, where the sum of squares cannot overflow (<= 1e36 < 3.4e38) and entries whose squares underflow
#: are below 1e-19 and change ‖G‖² >= 1e-20 by at most 1e-9 relative for up to 1e8 entries; outside it (and on
#: CUDA / under torch.compile, where the passes fuse) the overflow-safe max|G| pre-scaled form is used.
#: Measured (1 thread, 768×3072 float32): two passes instead of five, 9–11 % of a Newton–Schulz call.
CHEAP_NORM_RANGE = (1e-10, 1e18)


def _normalize(G: Tensor, eps: float = NS_EPS, normalisation: str = "plus_eps", safety: float = 1.0) -> Tensor:
    """X = G / (safety·‖G‖_F + eps) (``"clamp"``: G / max(‖G‖_F, eps)) per matrix, without overflow, rounded to
    bf16 once (a new contiguous tensor of G's shape).

    CPU, every ‖G‖_F in ``CHEAP_NORM_RANGE``: the norm in float32 (float64), then one division pass writing bf16.
    Otherwise, with m = max|G| (per matrix), Y = G/m has entries in [-1, 1], so ‖Y‖_F <= sqrt(rows·cols) and
    G / (‖G‖_F + eps) = Y / (‖Y‖_F + eps/m) exactly (clamp: Y / max(‖Y‖_F, eps/m)). eps/m stays finite in
    float32 because m >= the smallest float32 subnormal (1.4e-45) whenever m > 0. A zero matrix gives zeros.
    """
    work = torch.float64 if G.dtype == torch.float64 else torch.float32
    if G.device.type == "cpu" and not torch.compiler.is_compiling():
        nrm = torch.linalg.vector_norm(G, dim=(-2, -1), keepdim=True, dtype=work)
        lo, hi = CHEAP_NORM_RANGE
        if bool(((nrm >= lo) & (nrm <= hi)).all()):
            denom = torch.clamp_min(nrm, eps) if normalisation == "clamp" else safety * nrm + eps
            X = torch.empty(G.shape, dtype=torch.bfloat16, device=G.device)
            torch.div(G, denom, out=X)  # computed in the work dtype, rounded to bf16 once
            return X
    g = G.to(work)  # may be G itself; only out-of-place ops below
    amax = g.abs().amax(dim=(-2, -1), keepdim=True)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    y = g / safe
    nrm = torch.linalg.vector_norm(y, dim=(-2, -1), keepdim=True)
    if normalisation == "clamp":
        return (y / torch.maximum(nrm, eps / safe)).to(torch.bfloat16)
    if safety != 1.0:
        nrm = safety * nrm
    return (y / (nrm + eps / safe)).to(torch.bfloat16)


def _iterate(X: Tensor, steps: int, rows: tuple[Row, ...] | None = None) -> Tensor:
    """``steps`` quintic steps (or one per (a, b, c) of ``rows``) on a bf16 (m, n) or (B, m, n) X with m <= n;
    X is not modified."""
    row_list = (NS_COEFFICIENTS,) * steps if rows is None else rows
    if X.ndim == 2:
        for a, b, c in row_list:
            A = X @ X.mT
            B = torch.addmm(A, A, A, beta=b, alpha=c)  # b·A + c·A·A
            X = torch.addmm(X, B, X, beta=a)  # a·X + B·X
    else:
        for a, b, c in row_list:
            A = X @ X.mT
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)
            X = torch.baddbmm(X, B, X, beta=a)
    return X


def _gram_restarts(row_list: tuple[Row, ...]) -> frozenset[int]:
    """The iterations (1-based) after which the Gram path re-forms X and R: segments of at most two iterations
    counted from the end, so at most one R ← Z·R·Z per segment (T = 5: after 1 and 3, segments [1], [2, 3],
    [4, 5]; a one-iteration segment is a standard step). Why (measured, tests/impl/test_gram_ns.py and the
    suite): R = XXᵀ in bf16 carries an absolute rounding of about u·‖R‖, so a Gram eigenvalue s² below it (ŝ ≲ 0.05,
    still judged down to ŝ = 1e-3) can come out negative, and r ← r·z(r)² diverges for r < 0 (z grows with −r):
    with two R updates in a segment (a restart after 3 only) an 8×8 Muon input with ŝ ∈ [0.03, 0.74] got a
    singular value of 29.5. One update moves such an r by at most a factor z² ≈ a², which stays harmless."""
    T = len(row_list)
    return frozenset(k for k in range(1, T) if (T - k) % 2 == 0)


def _mm(C: Tensor, A: Tensor, B: Tensor, *, beta: float, alpha: float = 1.0) -> Tensor:
    """beta·C + alpha·A·B (addmm or baddbmm)."""
    if A.ndim == 2:
        return torch.addmm(C, A, B, beta=beta, alpha=alpha)
    return torch.baddbmm(C, A, B, beta=beta, alpha=alpha)


def _iterate_gram(X: Tensor, steps: int, rows: tuple[Row, ...] | None = None) -> Tensor:
    """The Gram-space form of ``_iterate`` (same polynomial, same input and output): X bf16 (m, n) or (B, m, n)
    with m <= n; X is not modified. See the module docstring."""
    row_list = (NS_COEFFICIENTS,) * steps if rows is None else rows
    T = len(row_list)
    if T == 0:
        return X
    restarts = _gram_restarts(row_list)
    R = X @ X.mT
    Q: Tensor | None = None  # None: the identity (a fresh segment)
    for k, (a, b, c) in enumerate(row_list, start=1):
        B = _mm(R, R, R, beta=b, alpha=c)  # b·R + c·R²
        if Q is None and (k == T or k in restarts):
            # a one-iteration segment: the standard step a·X + B·X (same cost as Z·X, and aI + B is not rounded:
            # near convergence Z ≈ I, whose diagonal would round coherently, a bias the suite detects)
            X = _mm(X, B, X, beta=a)
            if k == T:
                return X
            R = X @ X.mT
            continue
        if Q is None:
            Q = B.clone()
            Q.diagonal(dim1=-2, dim2=-1).add_(a)  # Z = aI + B
        else:
            Q = _mm(Q, Q, B, beta=a)  # Q·Z = a·Q + Q·B
        if k == T:
            break
        if k in restarts:
            X = Q @ X
            R = X @ X.mT
            Q = None
            continue
        RZ = _mm(R, R, B, beta=a)  # R·Z
        R = _mm(RZ, RZ, B, beta=a)  # Z·R·Z (polynomials in R commute)
    assert Q is not None
    return Q @ X


def _kernel(G: Tensor, steps: int, variant: tuple[tuple[Row, ...], float, str, float] | None = None,
            gram: bool = False) -> Tensor:
    """Normalise, transpose to wide, iterate, transpose back (input already validated, non-empty).
    ``variant``: (rows, eps, normalisation, safety) of ``_variant``, or None for the seed's; ``gram``: the
    Gram-space iteration."""
    shape = G.shape
    m, n = shape[-2], shape[-1]
    transposed = m > n
    X = _normalize(G) if variant is None else _normalize(G, variant[1], variant[2], variant[3])
    if transposed:  # 2-D: a view (the matmuls take transposed operands as they are, as torch.optim.Muon's does)
        X = X.mT
    if X.ndim > 2:  # batched: bmm/baddbmm would copy a transposed operand at every iteration
        X = X.contiguous().reshape(-1, *X.shape[-2:])
    X = (_iterate_gram if gram else _iterate)(X, steps, None if variant is None else variant[0])
    if transposed:
        X = X.mT
    return X.reshape(shape)  # a new tensor (_normalize never returns G); a transposed view for tall 2-D G


def _check_method(method: object) -> str:
    if not isinstance(method, str) or method not in NS_METHODS:
        raise ValueError(f"method must be one of {', '.join(repr(m) for m in NS_METHODS)}; got {method!r}")
    return method


def _use_gram(G: Tensor, method: str, rows: object = None) -> bool:
    """Whether ``method`` runs the Gram path on G: always for "gram", never for "standard"; "auto": the seed's
    coefficients (``rows`` None), rectangular enough (GRAM_MIN_ASPECT) and not small (GRAM_MIN_SIDE)."""
    if method != "auto":
        return method == "gram"
    if rows is not None:
        return False
    small, large = sorted(G.shape[-2:])
    return small >= GRAM_MIN_SIDE and large >= GRAM_MIN_ASPECT * small


def _run(kernel: Callable[..., Tensor], G: Tensor, steps: int, gram: bool = False) -> Tensor:
    if G.numel() == 0:
        return torch.zeros(G.shape, dtype=torch.bfloat16, device=G.device)
    return kernel(G, steps, None, gram)


def _run_variant(G: Tensor, steps: int, variant: tuple[tuple[Row, ...], float, str, float], gram: bool = False
                 ) -> Tensor:
    with torch.no_grad():
        if G.numel() == 0:
            return torch.zeros(G.shape, dtype=torch.bfloat16, device=G.device)
        return _kernel(G, steps, variant, gram)


def zeropower_eager(G: Tensor, steps: int = _H.default("steps"), *, eps: float = NS_EPS,
                    rows: str | None = _H.default("rows"), row_cut: str = _H.default("row_cut"),
                    normalisation: str = _H.default("normalisation"), safety: float = _H.default("safety"),
                    method: str = "auto") -> Tensor:
    """S6.2 bf16 Newton–Schulz quintic, eager kernel. See ``zeropower``."""
    steps = _check_input(G, steps)
    gram = _use_gram(G, _check_method(method), rows)
    variant = _variant(steps, eps, rows, row_cut, normalisation, safety)
    if variant is not None:
        return _run_variant(G, steps, variant, gram)
    with torch.no_grad():
        return _run(_kernel, G, steps, gram)


_compiled: Callable[..., Tensor] | None = None
_compile_failed = False
_compile_lock = threading.Lock()


def _compiled_kernel() -> Callable[..., Tensor] | None:
    global _compiled
    with _compile_lock:
        if _compiled is None and not _compile_failed:
            _compiled = torch.compile(_kernel, dynamic=None, fullgraph=True)
        return _compiled


def zeropower_compiled(G: Tensor, steps: int = _H.default("steps"), *, eps: float = NS_EPS,
                       rows: str | None = _H.default("rows"), row_cut: str = _H.default("row_cut"),
                       normalisation: str = _H.default("normalisation"), safety: float = _H.default("safety"),
                       method: str = "auto") -> Tensor:
    """S6.2 bf16 Newton–Schulz quintic through ``torch.compile`` (built lazily, cached per process).

    Only the seed's options are compiled: a call with any option changed runs the eager kernel. If compiling
    or running the compiled kernel raises, a ``RuntimeWarning`` is issued, the compiled path is disabled for
    the rest of the process, and the eager result is returned.
    """
    global _compile_failed
    steps = _check_input(G, steps)
    gram = _use_gram(G, _check_method(method), rows)
    variant = _variant(steps, eps, rows, row_cut, normalisation, safety)
    if variant is not None:
        return _run_variant(G, steps, variant, gram)
    kernel = _compiled_kernel()
    with torch.no_grad():
        if kernel is not None:
            try:
                return _run(kernel, G, steps, gram)
            except Exception as exc:  # compile/backend failure: fall back, loudly, once
                _compile_failed = True
                warnings.warn(f"torch.compile of zeropower failed ({type(exc).__name__}: {exc}); "
                              "using the eager kernel from now on", RuntimeWarning, stacklevel=2)
        return _run(_kernel, G, steps, gram)


def compile_mode() -> str:
    """The value of ``OPTCONFORM_NS_COMPILE`` (``auto`` when unset); anything else -> ValueError."""
    mode = os.environ.get(COMPILE_ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in _COMPILE_MODES:
        raise ValueError(f"{COMPILE_ENV_VAR} must be one of {_COMPILE_MODES}; got {mode!r}")
    return mode


def zeropower(G: Tensor, steps: int = _H.default("steps"), *, eps: float = NS_EPS,
              rows: str | None = _H.default("rows"), row_cut: str = _H.default("row_cut"),
              normalisation: str = _H.default("normalisation"), safety: float = _H.default("safety"),
              method: str = "auto") -> Tensor:
    """S6.2 Newton–Schulz quintic in bf16: X = G/(safety·‖G‖_F + eps) (transposed when m > n), then for each
    (a, b, c) of ``ns_row_list(steps, rows=rows, row_cut=row_cut)`` A = XXᵀ; B = bA + cA²; X = aX + BX.
    Defaults (the seed's): eps 1e-7, safety 1, (a, b, c) = (3.4445, −4.7750, 2.0315) every step;
    ``normalisation="clamp"``: X = G/max(‖G‖_F, eps).

    ``method``: ``"standard"`` (the iteration above), ``"gram"`` (the same polynomial on the Gram matrix R = XXᵀ,
    fewer FLOPs for rectangular G; module docstring) or ``"auto"`` (Gram where max(m, n) >= GRAM_MIN_ASPECT·min(m, n)
    and min(m, n) >= GRAM_MIN_SIDE, the seed's coefficients only; GRAM_MIN_ASPECT is inf for now, so the standard
    path); any other value -> ValueError naming ``method``.

    G: floating tensor (..., m, n), leading dimensions a batch; steps: int >= 0. Returns a new bf16
    tensor of G's shape on G's device (for a tall 2-D G a transposed view of new memory); G is never modified.
    At the default options: compiled on CUDA, eager otherwise (``OPTCONFORM_NS_COMPILE``); with any option changed:
    always eager. Invalid G, steps or
    option -> ValueError naming it.
    """
    steps = _check_input(G, steps)
    method = _check_method(method)
    variant = _variant(steps, eps, rows, row_cut, normalisation, safety)
    if variant is not None:
        return _run_variant(G, steps, variant, _use_gram(G, method, rows))
    mode = compile_mode()
    use_compiled = mode == "always" or (mode == "auto" and G.is_cuda)
    if method == "auto":  # the plain call (what a monkeypatched path sees)
        return zeropower_compiled(G, steps) if use_compiled and not _compile_failed else zeropower_eager(G, steps)
    if use_compiled and not _compile_failed:
        return zeropower_compiled(G, steps, method=method)
    return zeropower_eager(G, steps, method=method)
