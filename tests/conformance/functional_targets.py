"""Functional targets (``optconform_capabilities = {"protocol": "functional"}``, pure NumPy array functions) for the
tests of the functional protocol (``optconform.conformance.functional``): ``--target functional_targets:<name>``.

``reference_f32``: the float64 reference (``optconform.reference``) behind the functional signatures, every result
and every state array rounded to the dtype the suite gave (float32 normally), as a float32 implementation would
hold them. ``nesterov_ignored``: the same with one mistake, Muon's Nesterov blend ignored (S7.2 must reject it).
``bad_protocol``: a declaration with an unknown protocol value. ``zeropower_without_steps``: a functional
``zeropower(G)`` (a signature mismatch of S6.2).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from optconform.reference import adam, clipping, momentum, muon, orthogonalize, schedules


def _like(x, ref: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=ref.dtype)


def _state_in(state: dict) -> dict:
    return {k: int(v) if k == "step" else np.asarray(v, np.float64) for k, v in state.items()}


def _state_out(state: dict, param: np.ndarray) -> dict:
    return {k: np.asarray(v, np.int64) if k == "step" else _like(v, param) for k, v in state.items()}


def _optimizer(fn, **fixed):
    def update(param, grad, state, **hyper):
        new, st = fn(np.asarray(param, np.float64), np.asarray(grad, np.float64), _state_in(state), **hyper, **fixed)
        return _like(new, param), _state_out(st, param)

    return update


def _muon_update(param, grad, state, *, lr, momentum, nesterov, ns_steps):
    return _optimizer(muon.muon)(param, grad, state, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)


def _muon_update_nesterov_ignored(param, grad, state, *, lr, momentum, nesterov, ns_steps):
    del nesterov  # the mistake: always plain momentum
    return _optimizer(muon.muon)(param, grad, state, lr=lr, momentum=momentum, nesterov=False, ns_steps=ns_steps)


def _adamw_update(param, grad, state, *, lr, betas, eps, weight_decay, lr_mul=1.0, wd_mul=1.0):
    return _optimizer(adam.adamw)(param, grad, state, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                  lr_mul=lr_mul, wd_mul=wd_mul)


def _sgd_update(param, grad, state, *, lr, momentum, nesterov):
    return _optimizer(momentum_sgd)(param, grad, state, lr=lr, momentum=momentum, nesterov=nesterov)


momentum_sgd = momentum.sgd


def _zeropower(G, steps):
    return _like(orthogonalize.zeropower(np.asarray(G, np.float64), steps), G)


def _clip_grad_norm(grads, max_norm):
    clipped, total = clipping.clip_grad_norm([np.asarray(g, np.float64) for g in grads], max_norm=max_norm)
    return [_like(c, g) for c, g in zip(clipped, grads, strict=True)], total


def _target(**overrides) -> SimpleNamespace:
    names = dict(
        optconform_capabilities={"protocol": "functional"},
        zeropower=_zeropower, clip_grad_norm=_clip_grad_norm,
        muon_update=_muon_update, adamw_update=_adamw_update, sgd_update=_sgd_update,
        step_decay_lr=schedules.step_decay_lr, exponential_decay_lr=schedules.exponential_decay_lr,
        inverse_time_decay_lr=schedules.inverse_time_decay_lr, lr_multiplier=schedules.lr_multiplier,
        muon_momentum=schedules.muon_momentum,
    )
    names.update(overrides)
    return SimpleNamespace(**{k: v for k, v in names.items() if v is not None})


reference_f32 = _target()
nesterov_ignored = _target(muon_update=_muon_update_nesterov_ignored)
bad_protocol = _target(optconform_capabilities={"protocol": "jax"})
zeropower_without_steps = _target(zeropower=lambda G: _zeropower(G, 5))
