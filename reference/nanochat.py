"""nanochat optimizer setup and training step (SPEC S10), float64 reference.

Parameters are addressed by their module names (``"transformer.h.0.attn.c_q.weight"`` …). Groups are
plain dicts: ``{"names": [...], "lr": float, "initial_lr": float, <optimizer hyperparameters>}``.
Optimizer states are ``{name: state}`` (S8.2 AdamW state or S7.2 Muon state; a missing name means ``{}``).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_nonnegative, require_same_shape
from .adam import NANOCHAT_ADAMW, adamw
from .clipping import clip_grad_norm
from .muon import muon
from .schedules import lr_multiplier, muon_momentum

__all__ = ["dmodel_lr_scale", "nanochat_param_groups", "apply_schedules", "train_step",
           "MUON_PREFIX", "EMBEDDING_PREFIX", "UNEMBEDDING_PREFIX"]

MUON_PREFIX = "transformer.h."
EMBEDDING_PREFIX = "transformer.wte."
UNEMBEDDING_PREFIX = "lm_head."

_SCALE, _GROUPS, _SCHED, _STEP = (spec.hyper(c) for c in ("S10.1", "S10.2", "S10.3", "S10.4"))
#: The Muon group's fixed hyperparameters: S7.2's defaults (the seed's Muon constructor).
_MUON_GROUP = {k: spec.hyper("S7.2").default(k) for k in ("momentum", "nesterov", "ns_steps")}


def dmodel_lr_scale(model_dim: int) -> float:
    """S10.1 (model_dim / 768) ** -0.5, the AdamW learning-rate scale of gpt.py (model_dim integer >= 1)."""
    model_dim = _SCALE.check(model_dim=model_dim)["model_dim"]
    return (model_dim / 768) ** -0.5


def nanochat_param_groups(shapes: Mapping[str, Sequence[int]], *, model_dim: int,
                          unembedding_lr: float = _GROUPS.default("unembedding_lr"),
                          embedding_lr: float = _GROUPS.default("embedding_lr"),
                          matrix_lr: float = _GROUPS.default("matrix_lr"),
                          weight_decay: float = _GROUPS.default("weight_decay")) -> dict[str, list[dict[str, Any]]]:
    """S10.2 Split named parameters as ``GPT.setup_optimizers``.

    ``lm_head.*`` -> AdamW lr = unembedding_lr·s; ``transformer.wte.*`` -> AdamW lr = embedding_lr·s
    (s = S10.1 ``dmodel_lr_scale(model_dim)``; betas (0.8, 0.95), eps 1e-10, weight_decay);
    ``transformer.h.*`` -> Muon lr = matrix_lr (unscaled), momentum 0.95, nesterov, 5 NS steps; these must be
    >= 2-D. Any other name raises; each group must be non-empty. Every group records initial_lr = lr.
    Returns ``{"adamw": [unembedding_group, embedding_group], "muon": [matrix_group]}``, names in input order.
    """
    if not isinstance(shapes, Mapping):
        raise ValueError(f"shapes must be a mapping name -> shape; got {type(shapes).__name__}")
    scale = dmodel_lr_scale(model_dim)
    _, unembedding_lr, embedding_lr, matrix_lr, weight_decay = _GROUPS.check(
        model_dim=model_dim, unembedding_lr=unembedding_lr, embedding_lr=embedding_lr, matrix_lr=matrix_lr,
        weight_decay=weight_decay).values()
    buckets: dict[str, list[str]] = {UNEMBEDDING_PREFIX: [], EMBEDDING_PREFIX: [], MUON_PREFIX: []}
    for name, shape in shapes.items():
        if not isinstance(name, str):
            raise ValueError(f"shapes keys must be parameter names (str); got {name!r}")
        if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ValueError(f"shapes[{name!r}] must be a tuple of non-negative integers; got {shape!r}")
        prefix = next((p for p in buckets if name.startswith(p)), None)
        if prefix is None:
            raise ValueError(f"shapes has parameter {name!r} outside every group: names must start with "
                             f"{MUON_PREFIX!r}, {EMBEDDING_PREFIX!r} or {UNEMBEDDING_PREFIX!r}")
        if prefix == MUON_PREFIX and len(shape) < 2:
            raise ValueError(f"shapes[{name!r}] must be >= 2-D for Muon; got {tuple(shape)}")
        buckets[prefix].append(name)
    for prefix, names in buckets.items():
        if not names:
            raise ValueError(f"shapes must contain at least one parameter named {prefix!r}*")
    adam_common = {"betas": tuple(NANOCHAT_ADAMW["betas"]), "eps": NANOCHAT_ADAMW["eps"],
                   "weight_decay": weight_decay}
    lr_u, lr_e = unembedding_lr * scale, embedding_lr * scale
    return {
        "adamw": [
            {"names": buckets[UNEMBEDDING_PREFIX], "lr": lr_u, "initial_lr": lr_u, **adam_common},
            {"names": buckets[EMBEDDING_PREFIX], "lr": lr_e, "initial_lr": lr_e, **adam_common},
        ],
        "muon": [{"names": buckets[MUON_PREFIX], "lr": matrix_lr, "initial_lr": matrix_lr, **_MUON_GROUP}],
    }


def _check_groups(groups: object) -> list[str]:
    """Structure check; returns every parameter name (each must appear once)."""
    if not isinstance(groups, Mapping) or set(groups) != {"adamw", "muon"}:
        raise ValueError("groups must be a dict with keys 'adamw' and 'muon' (S10.2 nanochat_param_groups)")
    names: list[str] = []
    for kind in ("adamw", "muon"):
        if isinstance(groups[kind], (str, bytes, Mapping)) or not isinstance(groups[kind], Sequence):
            raise ValueError(f"groups[{kind!r}] must be a list of group dicts")
        for j, g in enumerate(groups[kind]):
            if not isinstance(g, Mapping) or "initial_lr" not in g or "names" not in g:
                raise ValueError(f"groups[{kind!r}][{j}] must be a dict with 'names' and 'initial_lr'")
            require_nonnegative(f"groups[{kind!r}][{j}]['initial_lr']", g["initial_lr"])
            names.extend(g["names"])
    if len(set(names)) != len(names):
        raise ValueError("groups must list every parameter name once; some name appears twice")
    return names


def apply_schedules(groups: Mapping[str, list[dict[str, Any]]], it: int, *, num_iterations: int,
                    warmup_ratio: float = _SCHED.default("warmup_ratio"),
                    warmdown_ratio: float = _SCHED.default("warmdown_ratio"),
                    final_lr_frac: float = _SCHED.default("final_lr_frac")) -> dict[str, list[dict[str, Any]]]:
    """S10.3 Every group: lr = initial_lr · lr_multiplier(it) (S4.5); Muon groups: momentum = muon_momentum(it)
    (S4.6, 0.85 -> 0.95 over 300 iterations). Returns new groups; the input is not modified."""
    _check_groups(groups)
    lrm = lr_multiplier(it, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                        warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)
    mom = muon_momentum(it)
    out = copy.deepcopy({"adamw": list(groups["adamw"]), "muon": list(groups["muon"])})
    for kind in ("adamw", "muon"):
        for g in out[kind]:
            g["lr"] = g["initial_lr"] * lrm
    for g in out["muon"]:
        g["momentum"] = mom
    return out


def train_step(params: Mapping[str, Any], micro_grads: Sequence[Mapping[str, Any]], states: Mapping[str, Mapping],
               groups: Mapping[str, list[dict[str, Any]]], *, it: int, num_iterations: int,
               grad_clip: float = _STEP.default("grad_clip"), warmup_ratio: float = _STEP.default("warmup_ratio"),
               warmdown_ratio: float = _STEP.default("warmdown_ratio"),
               final_lr_frac: float = _STEP.default("final_lr_frac"), clip_rule: str = _STEP.default("clip_rule")
               ) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, Any]]:
    """S10.4 One base_train step.

    g = Σ_k (micro_grads[k] / K), summed in k order (each micro-loss divided by grad_accum_steps = K);
    if grad_clip > 0: S5.1 clip_grad_norm over ALL parameters (in ``params`` order) with max_norm = grad_clip
    (option ``clip_rule="torch"``: S5.2's rule, torch.nn.utils.clip_grad_norm_ as base_train.py calls it);
    groups = S10.3 apply_schedules(groups, it, ...); S8.2 adamw on every AdamW group, then S7.2 muon on the
    Muon group. Returns (params, states, info) with info = {"grad_norm": norm before clipping or None when
    grad_clip == 0, "lr_multiplier", "muon_momentum", "groups": the scheduled groups,
    "grads": {name: None}} (zero_grad(set_to_none=True)).
    """
    names = _check_groups(groups)
    grad_clip, clip_rule = _STEP.check(grad_clip=grad_clip, clip_rule=clip_rule).values()
    if not isinstance(params, Mapping) or set(params) != set(names):
        raise ValueError("params must be a dict with exactly the parameter names listed in groups")
    ps = {n: as_float64_array(f"params[{n!r}]", p) for n, p in params.items()}
    if isinstance(micro_grads, Mapping) or not isinstance(micro_grads, Sequence) or len(micro_grads) == 0:
        raise ValueError("micro_grads must be a non-empty list (one {name: grad} dict per micro-step)")
    k_steps = len(micro_grads)
    acc: dict[str, np.ndarray] = {}
    for k, mg in enumerate(micro_grads):
        if not isinstance(mg, Mapping) or set(mg) != set(ps):
            raise ValueError(f"micro_grads[{k}] must be a dict with exactly the parameter names of params")
        for n in ps:
            g = as_float64_array(f"micro_grads[{k}][{n!r}]", mg[n])
            require_same_shape(f"micro_grads[{k}][{n!r}]", g, f"params[{n!r}]", ps[n])
            acc[n] = g / k_steps if k == 0 else acc[n] + g / k_steps
    if not isinstance(states, Mapping) or set(states) - set(ps):
        raise ValueError("states must be a dict {name: optimizer state} with names from params only")

    order = list(ps)
    grad_norm = None
    if grad_clip > 0.0:
        clipped, grad_norm = clip_grad_norm([acc[n] for n in order], max_norm=grad_clip, clip_rule=clip_rule)
        acc = dict(zip(order, clipped, strict=True))
    sched = apply_schedules(groups, it, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                            warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)
    new_params = dict(ps)
    new_states = dict(states)
    for g in sched["adamw"]:
        for n in g["names"]:
            new_params[n], new_states[n] = adamw(ps[n], acc[n], states.get(n, {}), lr=g["lr"],
                                                 betas=g.get("betas", NANOCHAT_ADAMW["betas"]),
                                                 eps=g.get("eps", NANOCHAT_ADAMW["eps"]),
                                                 weight_decay=g.get("weight_decay", NANOCHAT_ADAMW["weight_decay"]))
    for g in sched["muon"]:
        for n in g["names"]:
            new_params[n], new_states[n] = muon(ps[n], acc[n], states.get(n, {}), lr=g["lr"],
                                                momentum=g["momentum"],
                                                nesterov=g.get("nesterov", _MUON_GROUP["nesterov"]),
                                                ns_steps=g.get("ns_steps", _MUON_GROUP["ns_steps"]))
    info = {"grad_norm": grad_norm, "lr_multiplier": lr_multiplier(it, num_iterations=num_iterations,
                                                                   warmup_ratio=warmup_ratio,
                                                                   warmdown_ratio=warmdown_ratio,
                                                                   final_lr_frac=final_lr_frac),
            "muon_momentum": muon_momentum(it), "groups": sched, "grads": dict.fromkeys(ps)}
    return new_params, new_states, info
