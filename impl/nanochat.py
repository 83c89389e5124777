"""nanochat's optimizer setup and training step (S10), for a real training loop.

Typical use::

    optimizers = setup_optimizers(model, model_dim=cfg.n_embd)
    for it in range(num_iterations + 1):
        batches = [next(loader) for _ in range(grad_accum_steps)]
        info = train_step(model, optimizers, [partial(model, x, y) for x, y in batches],
                          it=it, num_iterations=num_iterations)

Single process: nanochat's AdamW + Muon (``optconform.impl.adamw`` / ``optconform.impl.muon``).
Multi-process (``torch.distributed`` initialised with world size > 1, or ``distributed=True``): the
ZeRO-2 ``DistAdamW`` / ``DistMuon`` of ``optconform.impl.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from optconform import spec
from optconform.spec.checks import require_bool

from .adamw import AdamW
from .clipping import clip_grad_norm
from .schedules import lr_multiplier, muon_momentum

__all__ = ["MATRIX_PREFIX", "EMBEDDING_PREFIX", "UNEMBEDDING_PREFIX", "dmodel_lr_scale", "setup_optimizers",
           "train_step"]

MATRIX_PREFIX = "transformer.h."        # Transformer blocks -> Muon
EMBEDDING_PREFIX = "transformer.wte."   # token embedding -> AdamW, lr embedding_lr
UNEMBEDDING_PREFIX = "lm_head."         # output projection -> AdamW, lr unembedding_lr

_SCALE, _GROUPS, _STEP = (spec.hyper(c) for c in ("S10.1", "S10.2", "S10.4"))
_ADAMW_KWARGS = {k: spec.hyper("S8.2").default(k) for k in ("betas", "eps")}  # nanochat's (gpt.py)
_MUON_MOMENTUM = spec.hyper("S7.2").default("momentum")


def dmodel_lr_scale(model_dim: int) -> float:
    """S10.1: ``(model_dim / 768) ** -0.5``, the AdamW learning-rate scale (model_dim integer >= 1)."""
    return (_SCALE.check(model_dim=model_dim)["model_dim"] / 768) ** -0.5


def _named(named_parameters: torch.nn.Module | Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]
           ) -> list[tuple[str, torch.Tensor]]:
    if isinstance(named_parameters, torch.nn.Module):
        return list(named_parameters.named_parameters())
    if isinstance(named_parameters, Mapping):
        return list(named_parameters.items())
    pairs = list(named_parameters)
    for item in pairs:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], torch.Tensor)):
            raise ValueError("named_parameters must be a module, a mapping name -> tensor, or (name, tensor) "
                             f"pairs; got an item {type(item).__name__}")
    return pairs


def _split(pairs: list[tuple[str, torch.Tensor]]) -> dict[str, list[torch.Tensor]]:
    """S10.2's partition by name prefix: nothing missing, nothing twice."""
    groups: dict[str, list[torch.Tensor]] = {"unembedding": [], "embedding": [], "matrix": []}
    seen_names: set[str] = set()
    seen_ids: dict[int, str] = {}
    for name, p in pairs:
        if name in seen_names:
            raise ValueError(f"named_parameters must name each parameter once; got {name!r} twice")
        if id(p) in seen_ids:
            raise ValueError(f"named_parameters must hold each tensor once; {name!r} is the same tensor as "
                             f"{seen_ids[id(p)]!r}")
        seen_names.add(name)
        seen_ids[id(p)] = name
        if name.startswith(MATRIX_PREFIX):
            if p.ndim < 2:
                raise ValueError(f"named_parameters: {name!r} is under {MATRIX_PREFIX!r} (Muon) and must be "
                                 f">= 2-D; got shape {tuple(p.shape)}")
            groups["matrix"].append(p)
        elif name.startswith(EMBEDDING_PREFIX):
            groups["embedding"].append(p)
        elif name.startswith(UNEMBEDDING_PREFIX):
            groups["unembedding"].append(p)
        else:
            raise ValueError(f"named_parameters: {name!r} belongs to no optimizer group; every name must start "
                             f"with {MATRIX_PREFIX!r}, {EMBEDDING_PREFIX!r} or {UNEMBEDDING_PREFIX!r}")
    for kind, prefix in (("unembedding", UNEMBEDDING_PREFIX), ("embedding", EMBEDDING_PREFIX),
                         ("matrix", MATRIX_PREFIX)):
        if not groups[kind]:
            raise ValueError(f"named_parameters must include at least one parameter named {prefix!r}*")
    return groups


def _use_distributed(distributed: bool | None) -> bool:
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if distributed is None:
        return initialised and torch.distributed.get_world_size() > 1
    if require_bool("distributed", distributed) and not initialised:
        raise RuntimeError("distributed=True needs an initialised torch.distributed process group "
                           "(call torch.distributed.init_process_group first)")
    return bool(distributed)


def setup_optimizers(named_parameters: torch.nn.Module | Mapping[str, torch.Tensor]
                     | Iterable[tuple[str, torch.Tensor]], *, model_dim: int,
                     unembedding_lr: float = _GROUPS.default("unembedding_lr"),
                     embedding_lr: float = _GROUPS.default("embedding_lr"),
                     matrix_lr: float = _GROUPS.default("matrix_lr"),
                     weight_decay: float = _GROUPS.default("weight_decay"),
                     distributed: bool | None = None) -> list[torch.optim.Optimizer]:
    """S10.2: ``[adamw, muon]`` for a nanochat-style GPT.

    Names under ``lm_head.`` form AdamW group 0 (lr ``unembedding_lr · s``), ``transformer.wte.`` group 1
    (lr ``embedding_lr · s``), with ``s = dmodel_lr_scale(model_dim)``, betas (0.8, 0.95), eps 1e-10 and
    ``weight_decay``; ``transformer.h.`` (>= 2-D) go to Muon (lr ``matrix_lr``, unscaled, momentum 0.95).
    Every group records ``initial_lr = lr`` for :func:`train_step`. Any other name, a name or tensor given
    twice, a < 2-D matrix or an empty group raises ValueError (as the reference). ``distributed=None`` picks
    DistAdamW/DistMuon iff torch.distributed is initialised with world size > 1; True/False force it.
    """
    scale = dmodel_lr_scale(model_dim)
    _, unembedding_lr, embedding_lr, matrix_lr, weight_decay = _GROUPS.check(
        model_dim=model_dim, unembedding_lr=unembedding_lr, embedding_lr=embedding_lr, matrix_lr=matrix_lr,
        weight_decay=weight_decay).values()
    groups = _split(_named(named_parameters))
    if _use_distributed(distributed):
        from .distributed import DistAdamW as adamw_cls
        from .distributed import DistMuon as muon_cls
    else:
        from .muon import Muon as muon_cls
        adamw_cls = AdamW
    adam_groups = [dict(params=groups["unembedding"], lr=unembedding_lr * scale),
                   dict(params=groups["embedding"], lr=embedding_lr * scale)]
    optimizers = [adamw_cls(adam_groups, weight_decay=weight_decay, **_ADAMW_KWARGS),
                  muon_cls(groups["matrix"], lr=matrix_lr, momentum=_MUON_MOMENTUM)]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def _muon_classes() -> tuple[type, ...]:
    from .muon import Muon
    try:
        from .distributed import DistMuon
    except ImportError:  # distributed support not importable in this build
        return (Muon,)
    return (Muon, DistMuon)


MicroStep = Callable[[], torch.Tensor] | Sequence[torch.Tensor | None]


def train_step(model: torch.nn.Module | Iterable[torch.Tensor], optimizers: Sequence[torch.optim.Optimizer],
               micro_steps: Sequence[MicroStep], *, it: int, num_iterations: int,
               grad_clip: float = _STEP.default("grad_clip"), warmup_ratio: float = _STEP.default("warmup_ratio"),
               warmdown_ratio: float = _STEP.default("warmdown_ratio"),
               final_lr_frac: float = _STEP.default("final_lr_frac")) -> dict[str, Any]:
    """S10.4: one nanochat training iteration, in the seed's order.

    1. Accumulate over the K = ``len(micro_steps)`` micro-steps. Each is either a zero-argument callable
       returning the scalar loss (then ``(loss / K).backward()``), or a precomputed gradient list aligned
       with the parameters (then ``p.grad += g / K``; None entries contribute nothing). Gradients add to
       whatever ``p.grad`` holds on entry, as ``backward`` does.
    2. If ``grad_clip > 0``: :func:`clip_grad_norm` (S5.1) over all parameters (0 disables; < 0 raises).
    3. ``group["lr"] = group["initial_lr"] · lr_multiplier(it, ...)`` in every group of every optimizer.
    4. ``group["momentum"] = muon_momentum(it)`` in every Muon / DistMuon group.
    5. ``opt.step()`` for each optimizer, in order; 6. every parameter's grad set to None.

    Returns ``{"loss": mean micro-step loss (float) or None, "grad_norm": norm before clipping or None,
    "lr_multiplier": float, "muon_momentum": float}``. Multi-process: clipping sees each rank's local
    gradients, as in the seed (the Dist optimizers average afterwards).
    """
    params = list(model.parameters()) if isinstance(model, torch.nn.Module) else list(model)
    grad_clip = _STEP.check(grad_clip=grad_clip)["grad_clip"]
    lrm = lr_multiplier(it, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                        warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)
    momentum = muon_momentum(it)
    if isinstance(micro_steps, (str, bytes)) or not isinstance(micro_steps, Sequence) or not micro_steps:
        raise ValueError("micro_steps must be a non-empty sequence of loss callables or gradient lists")
    for opt in optimizers:
        for group in opt.param_groups:
            if "initial_lr" not in group:
                raise ValueError("optimizers must have 'initial_lr' in every param group "
                                 "(setup_optimizers records it)")
    k = len(micro_steps)

    for i, step in enumerate(micro_steps):  # validate every precomputed list before touching any grad
        if callable(step):
            continue
        if isinstance(step, torch.Tensor) or not isinstance(step, Sequence) or len(step) != len(params):
            raise ValueError(f"micro_steps[{i}] must be a loss callable or hold one gradient (or None) per "
                             f"parameter ({len(params)})")
        for j, (p, g) in enumerate(zip(params, step, strict=True)):
            if g is not None and (not isinstance(g, torch.Tensor) or g.shape != p.shape):
                raise ValueError(f"micro_steps[{i}][{j}] must be None or a tensor of shape {tuple(p.shape)}; "
                                 f"got {getattr(g, 'shape', type(g).__name__)}")

    losses: list[float] = []
    for step in micro_steps:
        if callable(step):
            loss = step()
            losses.append(float(loss.detach()))
            (loss / k).backward()
            continue
        with torch.no_grad():
            for p, g in zip(params, step, strict=True):
                if g is None:
                    continue
                g = g.to(device=p.device, dtype=p.dtype) / k  # a new tensor: the caller's g is never aliased
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.add_(g)

    grad_norm = clip_grad_norm(params, grad_clip) if grad_clip > 0.0 else None
    muon_types = _muon_classes()
    for opt in optimizers:
        is_muon = isinstance(opt, muon_types)
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if is_muon:
                group["momentum"] = momentum
    for opt in optimizers:
        opt.step()
    for p in params:
        p.grad = None
    return {"loss": sum(losses) / len(losses) if losses else None, "grad_norm": grad_norm, "lr_multiplier": lrm,
            "muon_momentum": momentum}
