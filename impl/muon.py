"""S7 in torch: the Muon step as a functional kernel, and the ``Muon`` optimizer around it.

Per parameter θ (shape (..., rows, cols), leading dimensions a batch as in the seed) with gradient g, at the
seed's options (profile nanochat-2025-10):

    buf ← lerp(buf, g, 1 − β)                      (buf starts at zeros)
    u   = lerp(g, buf, β) if nesterov else buf
    O   = zeropower(u, ns_steps)                   (bf16 Newton–Schulz, S6.2)
    θ   ← θ − lr · sqrt(max(1, rows/cols)) · O

Variant options (SPEC "Variant options", ``MUON_OPTIONS``; defaults the seed's), in the reference's order:
(buf, u) by ``momentum_form`` (S7.3); u ← MuonEq(u) if ``muoneq`` (S6.4); O = zeropower(u, ns_steps, eps=ns_eps,
rows, row_cut, normalisation, safety) (S6.2); O ← Muon+(O) if ``muon_plus`` (S7.5); O ← NorMuon(O) if
``normuon_beta2`` (S7.4); s = aspect scale by ``lr_scale`` (S7.1); θ ← decay(θ, O) by ``weight_decay``,
``weight_decay_lr``, ``weight_decay_mode`` (S7.6); θ ← θ − lr·s·O. Muon+ / NorMuon / MuonEq run in float32
(float64 for float64 parameters) on the bf16 Newton–Schulz output.

Equal to ``optconform.reference.muon.muon`` in exact arithmetic. Differences from the seed's
``Muon.step``: the gradient is never modified (the seed's ``g.lerp_(buf, β)`` overwrites ``p.grad``);
parameters of one shape, dtype and device go through ONE batched ``zeropower`` call, except on CPU for
matrices with min(rows, cols) >= ``PER_MATRIX_MIN_DIM`` with the spec's ``zeropower``, where one 2-D call per
matrix is faster and bit-identical; ``Muon.step`` steps param groups whose hyperparameters agree together (one
batch per shape across them); the momentum update is one foreach call; the momentum buffer is kept in the
parameter's dtype (the seed: the gradient's dtype, which autograd makes equal).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from optconform import spec
from optconform.spec import options as spec_options
from optconform.spec.checks import require_int

from ._closure import run_closure
from .newton_schulz import zeropower, zeropower_eager

__all__ = ["MUON_OPTIONS", "muon_aspect_scale", "second_moment_shape", "new_second_moment", "profile_keywords", "muon",
           "Muon"]

_H = spec.hyper("S7.2")
_PROTOCOL = ("lr", "momentum", "nesterov", "ns_steps")
#: The variant options Muon takes as keywords (S7.2's hyperparameters beyond the protocol's), registry order.
MUON_OPTIONS: tuple[str, ...] = tuple(h.name for h in _H if h.name not in _PROTOCOL)
_D = {k: _H.default(k) for k in MUON_OPTIONS}
#: S6.2's keyword for each Newton–Schulz option
_NS_KEYWORDS = {"ns_eps": "eps", "rows": "rows", "row_cut": "row_cut", "normalisation": "normalisation",
                "safety": "safety"}
#: CPU, seed's ``zeropower``: same-shape matrices with min(rows, cols) >= this go through one call each rather than
#: one batched call (measured, 1 thread, torch 2.13, 12 matrices, per-matrix / batched time: 32²: 8.4, 128²: 3.3,
#: 512×128: 1.3, 256²: 1.05, 384²: 0.87, 512²: 0.89, 512×2048: 0.67, 768×3072: ~0.6; a call costs ~1 ms of
#: overhead, the batched GEMMs copy X.mT at every iteration)
PER_MATRIX_MIN_DIM = 384
#: floors of S6.4 (MuonEq row norm), S7.4 (NorMuon v and norm) and S7.5 (Muon+ norm), nanochat master's clamp_min
EQUILIBRATE_FLOOR, NORMUON_FLOOR, NORMUON_NORM_FLOOR, MUON_PLUS_FLOOR = 1e-6, 1e-10, 1e-10, 1e-6


def muon_aspect_scale(shape: Sequence[int], lr_scale: str = "original") -> float:
    """S7.1 ``"original"``: sqrt(max(1, rows/cols)); ``"match_rms_adamw"``: 0.2·sqrt(max(rows, cols)), with rows,
    cols = shape[-2], shape[-1]."""
    rows, cols = int(shape[-2]), int(shape[-1])
    if lr_scale != "original" and _H["lr_scale"].check(lr_scale) == "match_rms_adamw":
        return 0.2 * max(rows, cols) ** 0.5
    return max(1.0, rows / cols) ** 0.5


def second_moment_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """S7.4 The shape of NorMuon's ``second_momentum_buffer`` for a (..., rows, cols) parameter: (..., rows, 1)
    if rows >= cols (a mean over each row) else (..., 1, cols) (over each column)."""
    *lead, rows, cols = (int(d) for d in shape)
    return (*lead, rows, 1) if rows >= cols else (*lead, 1, cols)


def new_second_moment(p: Tensor) -> Tensor:
    """S7.4 NorMuon's ``second_momentum_buffer`` before the first step: zeros of ``second_moment_shape(p.shape)``,
    float32 (float64 for a float64 parameter), on p's device."""
    return torch.zeros(second_moment_shape(p.shape), dtype=_work_dtype(p.dtype), device=p.device)


def profile_keywords(clause_id: str, name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor keywords of ``from_profile``: profile ``name``'s options for ``clause_id`` (those of
    ``overrides`` that are options of that clause applied first), then the other ``overrides`` unchanged.
    Unknown profile -> ValueError listing the profiles."""
    names = spec_options.OPTION_CLAUSES.get(clause_id, ())
    opts = {k: v for k, v in overrides.items() if k in names}
    values = spec_options.resolve(name, opts)
    return {**{k: v for k, v in overrides.items() if k not in opts}, **spec_options.clause_options(clause_id, values)}


def _check_hyper(lr: object, momentum: object, nesterov: object, ns_steps: object, **options: object
                 ) -> dict[str, Any]:
    """Every hyperparameter of S7.2 validated (ValueError naming the first bad one), options filled in. An option
    that is the very default object is not re-checked (the step's hot path)."""
    changed = {k: v for k, v in options.items() if k not in _D or v is not _D[k]}
    return {**_D, **_H.check(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, **changed)}


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_triplet(i: int, p: object, g: object, buf: object) -> None:
    for name, t in (("params", p), ("grads", g), ("momentum_buffers", buf)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}[{i}] must be a torch.Tensor; got {type(t).__name__}")
    assert isinstance(p, Tensor) and isinstance(g, Tensor) and isinstance(buf, Tensor)
    if p.ndim < 2:
        raise ValueError(f"params[{i}] must have at least 2 dimensions (Muon orthogonalises matrices); "
                         f"got shape {tuple(p.shape)}")
    if not p.is_floating_point():
        raise ValueError(f"params[{i}] must have a real floating dtype; got {p.dtype}")
    if g.is_sparse:
        raise ValueError(f"grads[{i}] must be dense; Muon does not support sparse gradients")
    for name, t in (("grads", g), ("momentum_buffers", buf)):
        if t.shape != p.shape:
            raise ValueError(f"{name}[{i}] must have the shape of params[{i}] {tuple(p.shape)}; "
                             f"got {tuple(t.shape)}")
        if t.device != p.device:
            raise ValueError(f"{name}[{i}] must be on the device of params[{i}] ({p.device}); got {t.device}")
        if t.dtype != p.dtype:
            raise ValueError(f"{name}[{i}] must have the dtype of params[{i}] ({p.dtype}); got {t.dtype}")


def _check_state_lists(params: Sequence[Tensor], h: Mapping[str, Any], steps: Sequence[int] | None,
                       second_momentum_buffers: Sequence[Tensor] | None) -> None:
    n = len(params)
    if h["momentum_form"] == "bias_corrected":
        if steps is None or len(steps) != n:
            raise ValueError(f"steps must give each param's step count (1 on its first step) for "
                             f"momentum_form='bias_corrected': {n} integers >= 1; got {steps!r}")
        for i, t in enumerate(steps):
            require_int(f"steps[{i}]", t, minimum=1)
    if h["normuon_beta2"] is not None:
        if second_momentum_buffers is None or len(second_momentum_buffers) != n:
            raise ValueError(f"second_momentum_buffers must hold one tensor per param ({n}) when normuon_beta2 "
                             "is set")
        for i, (p, v) in enumerate(zip(params, second_momentum_buffers, strict=True)):
            want = second_moment_shape(p.shape)
            if not isinstance(v, Tensor) or tuple(v.shape) != want or v.device != p.device \
                    or v.dtype != _work_dtype(p.dtype):
                raise ValueError(f"second_momentum_buffers[{i}] must be a {_work_dtype(p.dtype)} tensor of shape "
                                 f"{want} on {p.device}; got {v!r:.80}")


def _ns_keywords(h: Mapping[str, Any]) -> dict[str, Any]:
    """The Newton–Schulz options of ``h`` that differ from the seed's, as S6.2 keywords (row_cut only with rows)."""
    return {_NS_KEYWORDS[k]: h[k] for k in _NS_KEYWORDS
            if h[k] != _D[k] and not (k == "row_cut" and h["rows"] is None)}


def _post_processed(h: Mapping[str, Any]) -> bool:
    """Whether Muon+ or NorMuon rescale O (in the work dtype) after Newton–Schulz."""
    return bool(h["muon_plus"]) or h["normuon_beta2"] is not None


def _update_momentum(h: Mapping[str, Any], bufs: list[Tensor], grads: list[Tensor]) -> None:
    """buf ← β·buf + g (sum) | lerp(buf, g, 1 − β), in place; g only read. One foreach call per form (on CPU the
    same per-tensor kernels, so the same bits as a loop of buf.lerp_ / buf.mul_().add_())."""
    if not bufs:
        return
    if h["momentum_form"] == "sum":
        torch._foreach_mul_(bufs, h["momentum"])
        torch._foreach_add_(bufs, grads)
    else:
        torch._foreach_lerp_(bufs, grads, 1.0 - h["momentum"])


def _step_sizes(h: Mapping[str, Any], shape: Sequence[int]) -> tuple[float, float]:
    """(alpha, decay) of ``_apply`` for a matrix of ``shape``: −lr·s and λ·(lr·s if weight_decay_lr="adjusted" else
    lr), s the S7.1 aspect scale."""
    scale = muon_aspect_scale(shape, h["lr_scale"])
    return -h["lr"] * scale, h["weight_decay"] * (h["lr"] * scale if h["weight_decay_lr"] == "adjusted" else h["lr"])


def _per_matrix(device: torch.device, shape: Sequence[int], orthogonalize: Callable[..., Tensor]) -> bool:
    """CPU, the spec's zeropower, min(rows, cols) >= PER_MATRIX_MIN_DIM: one 2-D call per matrix, not a batch."""
    return (device.type == "cpu" and min(shape[-2], shape[-1]) >= PER_MATRIX_MIN_DIM
            and (orthogonalize is zeropower or orthogonalize is zeropower_eager))


def _ns_input(h: Mapping[str, Any], g: Tensor, buf: Tensor, step: int | None) -> Tensor:
    """S7.3 u from the updated buffer: ema lerp(g, buf, β) | sum g + β·buf | bias_corrected
    β·buf/(1 − β^(t+1)) + (1 − β)·g/(1 − βᵗ) if nesterov, else buf (bias_corrected: buf/(1 − βᵗ)). A new tensor."""
    beta, form = h["momentum"], h["momentum_form"]
    if form == "bias_corrected":
        assert step is not None
        if h["nesterov"]:
            return torch.add(buf * (beta / (1.0 - beta ** (step + 1))), g, alpha=(1.0 - beta) / (1.0 - beta**step))
        return buf * (1.0 / (1.0 - beta**step))
    if not h["nesterov"]:
        return buf
    return torch.add(g, buf, alpha=beta) if form == "sum" else torch.lerp(g, buf, beta)


def _fro(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)


def _equilibrate_rows(u: Tensor) -> Tensor:
    """S6.4 MuonEq per matrix: row i ← u_i·(‖u‖_F/√rows)/max(‖u_i‖, 1e-6), norms in float64 on u/max|u|."""
    x = u.to(torch.float64)
    amax = x.abs().amax(dim=(-2, -1), keepdim=True)
    safe = torch.where(amax > 0, amax, torch.ones_like(amax))
    y = x / safe
    row = torch.linalg.vector_norm(y, dim=-1, keepdim=True) * safe
    target = _fro(y) * safe / math.sqrt(u.shape[-2])
    return u * (target / row.clamp_min(EQUILIBRATE_FLOOR)).to(u.dtype)


def _muon_plus(o: Tensor) -> Tensor:
    """S7.5 Muon+: O·sqrt(min(rows, cols))/max(‖O‖_F, 1e-6) per matrix."""
    return o * (math.sqrt(min(o.shape[-2], o.shape[-1])) / _fro(o).clamp_min(MUON_PLUS_FLOOR))


def _normuon(o: Tensor, v: Tensor, beta2: float) -> Tensor:
    """S7.4 NorMuon per matrix: q = mean of O² over each row (rows >= cols) or column; v ← lerp(v, q, 1 − β₂)
    in place; D = O/sqrt(max(v, 1e-10)), rescaled by ‖O‖_F/max(‖D‖_F, 1e-10)."""
    q = (o * o).mean(dim=-1 if o.shape[-2] >= o.shape[-1] else -2, keepdim=True)
    v.lerp_(q, 1.0 - beta2)
    d = o / v.clamp_min(NORMUON_FLOOR).sqrt()
    return d * (_fro(o) / _fro(d).clamp_min(NORMUON_NORM_FLOOR))


@torch.no_grad()
def muon(params: Sequence[Tensor], grads: Sequence[Tensor], momentum_buffers: Sequence[Tensor], *,
         lr: float, momentum: float, nesterov: bool, ns_steps: int,
         orthogonalize: Callable[..., Tensor] = zeropower, steps: Sequence[int] | None = None,
         second_momentum_buffers: Sequence[Tensor] | None = None,
         ns_eps: float = _D["ns_eps"], rows: str | None = _D["rows"], row_cut: str = _D["row_cut"],
         normalisation: str = _D["normalisation"], safety: float = _D["safety"],
         momentum_form: str = _D["momentum_form"], muoneq: bool = _D["muoneq"], muon_plus: bool = _D["muon_plus"],
         normuon_beta2: float | None = _D["normuon_beta2"], lr_scale: str = _D["lr_scale"],
         weight_decay: float = _D["weight_decay"], weight_decay_lr: str = _D["weight_decay_lr"],
         weight_decay_mode: str = _D["weight_decay_mode"]) -> None:
    """S7.2 One Muon step, in place on ``params``, ``momentum_buffers`` (and ``second_momentum_buffers``);
    ``grads`` are only read.

    Seed's options: buf ← lerp(buf, g, 1 − β); u = lerp(g, buf, β) if nesterov else buf;
    O = orthogonalize(u, ns_steps) (the spec's ``zeropower`` by default, as in ``reference.muon.muon``);
    θ ← θ − lr·sqrt(max(1, rows/cols))·O. The options change the steps as the module docstring says; the
    Newton–Schulz options that differ from the seed's are passed to ``orthogonalize`` as S6.2 keywords
    (``ns_eps`` as ``eps``). ``steps``: each parameter's step count after this step (1, 2, …), needed for
    ``momentum_form="bias_corrected"``; ``second_momentum_buffers``: NorMuon's v per parameter (zeros before the
    first step; shape ``second_moment_shape``, float32, float64 for float64 parameters), needed with
    ``normuon_beta2``. Same-shape (and dtype, device) parameters are stacked into one batched ``orthogonalize``
    call (u written straight into the stack), except on CPU with ``orthogonalize`` the spec's ``zeropower`` (or
    ``zeropower_eager``) for min(rows, cols) >= ``PER_MATRIX_MIN_DIM``: one call per parameter, no stack and no
    copy back (bit-identical on CPU, measured faster). Everything is validated before anything is written: bad
    hyperparameters, list lengths, shapes, devices or dtypes -> ValueError naming the argument.
    """
    h = _check_hyper(lr, momentum, nesterov, ns_steps, ns_eps=ns_eps, rows=rows, row_cut=row_cut,
                     normalisation=normalisation, safety=safety, momentum_form=momentum_form, muoneq=muoneq,
                     muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                     weight_decay=weight_decay, weight_decay_lr=weight_decay_lr, weight_decay_mode=weight_decay_mode)
    ns_steps = h["ns_steps"]
    n = len(params)
    if len(grads) != n or len(momentum_buffers) != n:
        raise ValueError(f"grads and momentum_buffers must have one entry per param ({n}); "
                         f"got {len(grads)} and {len(momentum_buffers)}")
    for i in range(n):
        _check_triplet(i, params[i], grads[i], momentum_buffers[i])
    _check_state_lists(params, h, steps, second_momentum_buffers)
    # the Newton–Schulz options that differ from the seed's (row_cut matters only with rows)
    ns_kw = _ns_keywords(h)
    post = _post_processed(h)

    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        if p.numel() == 0:  # nothing to update (the aspect scale of (.., r, 0) is undefined)
            continue
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(i)

    _update_momentum(h, list(momentum_buffers), list(grads))
    for (shape, dtype, device), idx in groups.items():
        alpha, decay = _step_sizes(h, shape)
        if _per_matrix(device, shape, orthogonalize):
            # CPU, large matrices: one call per parameter (2-D: addmm, as torch.optim.Muon). The batched call's
            # bmm/baddbmm copies its transposed operand X.mT at every iteration (~20 % of a nanochat d12 step,
            # torch 2.13) and the stack is one more pass over u; results are bit-identical. No stack, no copy
            # back: u, O and NorMuon's v are per-parameter tensors.
            for i in idx:
                u = _ns_input(h, grads[i], momentum_buffers[i], steps[i] if steps is not None else None)
                v = second_momentum_buffers[i] if second_momentum_buffers is not None else None
                o = _orthogonalized(h, u, ns_steps, ns_kw, orthogonalize, dtype, post, v)
                _apply(params[i], o, alpha, decay, h["weight_decay_mode"])
            continue
        # one batched call per shape: u written straight into the stack (no per-parameter temporaries)
        u = torch.empty((len(idx), *shape), dtype=dtype, device=device)
        for j, i in enumerate(idx):
            _ns_input_into(h, grads[i], momentum_buffers[i], steps[i] if steps is not None else None, u[j])
        v = None
        if h["normuon_beta2"] is not None:
            assert second_momentum_buffers is not None
            v = torch.stack([second_momentum_buffers[i] for i in idx])
        ortho = _orthogonalized(h, u, ns_steps, ns_kw, orthogonalize, dtype, post, v)
        if v is not None:
            assert second_momentum_buffers is not None
            for j, i in enumerate(idx):
                second_momentum_buffers[i].copy_(v[j])
        for j, i in enumerate(idx):
            _apply(params[i], ortho[j], alpha, decay, h["weight_decay_mode"])


def _ns_input_into(h: Mapping[str, Any], g: Tensor, buf: Tensor, step: int | None, out: Tensor) -> None:
    """``_ns_input`` written into ``out`` (a slice of the batch): the same arithmetic, one pass for the seed's
    form."""
    if h["momentum_form"] == "ema" and h["nesterov"]:
        torch.lerp(g, buf, h["momentum"], out=out)
    elif h["momentum_form"] == "ema":
        out.copy_(buf)
    else:
        out.copy_(_ns_input(h, g, buf, step))


def _orthogonalized(h: Mapping[str, Any], u: Tensor, ns_steps: int, ns_kw: Mapping[str, Any],
                    orthogonalize: Callable[..., Tensor], dtype: torch.dtype, post: bool, v: Tensor | None
                    ) -> Tensor:
    """O from u (one matrix or a batch): MuonEq, Newton–Schulz, Muon+, NorMuon (v updated in place)."""
    if h["muoneq"]:
        u = _equilibrate_rows(u)
    ortho = orthogonalize(u, ns_steps, **ns_kw)
    if post:
        ortho = ortho.to(_work_dtype(dtype))
        if h["muon_plus"]:
            ortho = _muon_plus(ortho)
        if h["normuon_beta2"] is not None:
            assert v is not None
            ortho = _normuon(ortho, v, h["normuon_beta2"])
    return ortho


def _apply(p: Tensor, o: Tensor, alpha: float, decay: float, mode: str) -> None:
    """S7.6 decay on θ before the step, then θ ← θ + alpha·O."""
    if decay != 0.0:
        if mode == "cautious":
            p.sub_(p * (o * p >= 0), alpha=decay)
        else:
            p.mul_(1.0 - decay)
    p.add_(o, alpha=alpha)


class Muon(torch.optim.Optimizer):
    """Muon (S7.2) over parameters of at least 2 dimensions; defaults are the seed's.

    Muon(params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5, *, <MUON_OPTIONS>). ``params``: tensors or
    param groups. Every variant option is a keyword stored in the param groups like ``lr`` (a group may set its
    own), validated by S7.2's registry at construction and at every step (ValueError naming the option and its
    allowed values). ``Muon.from_profile(name, params, **overrides)`` takes a profile's options. State per
    parameter: ``momentum_buffer`` (the parameter's dtype, created as zeros on the first step), ``step`` (int,
    only for ``momentum_form="bias_corrected"``), ``second_momentum_buffer`` (only with ``normuon_beta2``).
    ``group["lr"]``/``group["momentum"]`` may be changed between steps. ``step`` raises RuntimeError when a
    parameter has no gradient (the seed asserts; silently skipping it would desynchronise distributed ranks).
    ``load_state_dict`` copies the tensors it is given (it never shares momentum buffers with the source); a
    loaded group without an option takes this optimizer's value.
    """

    #: the Newton–Schulz map ``(u, ns_steps, **changed S6.2 options) -> O`` (S6.2's ``zeropower``); a subclass may
    #: swap it (one taking only (u, ns_steps) serves the seed's Newton–Schulz options)
    orthogonalize = staticmethod(zeropower)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = _H.default("lr"),
                 momentum: float = _H.default("momentum"), nesterov: bool = _H.default("nesterov"),
                 ns_steps: int = _H.default("ns_steps"), *, ns_eps: float = _D["ns_eps"],
                 rows: str | None = _D["rows"], row_cut: str = _D["row_cut"],
                 normalisation: str = _D["normalisation"], safety: float = _D["safety"],
                 momentum_form: str = _D["momentum_form"], muoneq: bool = _D["muoneq"],
                 muon_plus: bool = _D["muon_plus"], normuon_beta2: float | None = _D["normuon_beta2"],
                 lr_scale: str = _D["lr_scale"], weight_decay: float = _D["weight_decay"],
                 weight_decay_lr: str = _D["weight_decay_lr"], weight_decay_mode: str = _D["weight_decay_mode"]
                 ) -> None:
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_eps=ns_eps, rows=rows,
                        row_cut=row_cut, normalisation=normalisation, safety=safety, momentum_form=momentum_form,
                        muoneq=muoneq, muon_plus=muon_plus, normuon_beta2=normuon_beta2, lr_scale=lr_scale,
                        weight_decay=weight_decay, weight_decay_lr=weight_decay_lr,
                        weight_decay_mode=weight_decay_mode)
        _check_hyper(**defaults)
        self._n_seen = 0
        super().__init__(params, defaults)

    @classmethod
    def from_profile(cls, name: str, params: Iterable[Tensor] | Iterable[dict[str, Any]], **overrides: Any
                     ) -> Muon:
        """Muon with profile ``name``'s options (``spec.options.PROFILES``); ``overrides``: options applied on
        top of the profile's, or other constructor keywords (lr, …). Unknown profile -> ValueError listing them."""
        return cls(params, **profile_keywords("S7.2", name, overrides))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; rejects parameters with fewer than 2 dimensions, naming their index."""
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if isinstance(p, Tensor) and p.ndim < 2:
                raise ValueError(f"params[{self._n_seen}] must have at least 2 dimensions (Muon "
                                 f"orthogonalises matrices; use AdamW for it); got shape {tuple(p.shape)}")
            self._n_seen += 1
        _check_hyper(**{k: param_group.get(k, self.defaults[k]) for k in _H.names})
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``; its tensors are copied first. torch.optim's loader keeps the very
        buffer objects when dtype and device already match, so two optimizers loaded from one state dict
        (or the source and the copy) would silently share and double-update momentum buffers."""
        super().load_state_dict(copy.deepcopy(state_dict))
        for group in self.param_groups:
            for k in MUON_OPTIONS:
                group.setdefault(k, self.defaults[k])

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One Muon step over every group; returns the closure's loss when a closure is given."""
        loss = run_closure(closure)
        work = []  # validate every group and gradient before anything is written
        index = 0
        for group in self.param_groups:
            hyper = _check_hyper(**{k: group[k] for k in _H.names})
            for p in group["params"]:
                if p.grad is None:
                    raise RuntimeError(f"Muon.step: params[{index}] (shape {tuple(p.shape)}) has no gradient "
                                       "(p.grad is None); every Muon parameter needs one at every step")
                index += 1
            # groups whose hyperparameters agree are stepped together, so their same-shape parameters share
            # one batched Newton–Schulz call (type and repr in the key: True and 1.0, or 0.0 and -0.0, never merge)
            key = tuple((k, type(v), repr(v)) for k, v in hyper.items())
            for i, (k2, params, _) in enumerate(work):
                if k2 == key:
                    work[i] = (k2, params + list(group["params"]), hyper)
                    break
            else:
                work.append((key, list(group["params"]), hyper))
        state_of = self.state
        for _, params, hyper in work:
            bufs, steps, seconds = [], [], []
            counted = hyper["momentum_form"] == "bias_corrected"
            normuon = hyper["normuon_beta2"] is not None
            for p in params:
                state = state_of[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(buf)
                if counted:
                    steps.append(int(state.get("step", 0)) + 1)
                if normuon:
                    if "second_momentum_buffer" not in state:
                        state["second_momentum_buffer"] = new_second_moment(p)
                    seconds.append(state["second_momentum_buffer"])
            muon(params, [p.grad for p in params], bufs, orthogonalize=self.orthogonalize,
                 steps=steps if counted else None, second_momentum_buffers=seconds or None, **hyper)
            if counted:  # only after a successful kernel call
                for p, t in zip(params, steps, strict=True):
                    state_of[p]["step"] = t
        return loss
