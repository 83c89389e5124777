"""S3 Momentum: heavy ball, Nesterov in the seed's look-ahead form and in torch.optim.SGD's form, the
change of variables between them, and the SGD optimizer step.

Pure float64 functions: inputs are copied, never modified. Invalid arguments raise ``ValueError``
whose message starts with the parameter's name (S1.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_same_shape

__all__ = [
    "heavy_ball",
    "nesterov_lookahead",
    "nesterov_torch",
    "lookahead_to_torch",
    "torch_to_lookahead",
    "sgd",
]

GradFn = Callable[[np.ndarray], np.ndarray]


_LR_BETA = spec.hyper("S3.1")  # S3.1-S3.4 share (lr, beta)
_SGD = spec.hyper("S3.5")


def _hyper(lr: object, beta: object) -> tuple[float, float]:
    h = _LR_BETA.check(lr=lr, beta=beta)
    return h["lr"], h["beta"]


def _pair(name: str, a: object, other_name: str, other: object) -> tuple[np.ndarray, np.ndarray]:
    x = as_float64_array(name, a)
    y = as_float64_array(other_name, other)
    require_same_shape(other_name, y, name, x)
    return x, y


def _call_grad(grad_fn: GradFn, point: np.ndarray) -> np.ndarray:
    g = as_float64_array("grad_fn return value", grad_fn(point.copy()))
    require_same_shape("grad_fn return value", g, "theta", point)
    return g


def _check_grad_fn(grad_fn: object) -> None:
    if not callable(grad_fn):
        raise ValueError("grad_fn must be callable (theta -> gradient array)")


def heavy_ball(theta: np.ndarray, v: np.ndarray, grad: np.ndarray, *, lr: float,
               beta: float) -> tuple[np.ndarray, np.ndarray]:
    """S3.1: heavy-ball momentum (seed 5.7.1): ``v ← β·v + g``; ``θ ← θ − η·v`` (with the new v).

    ``lr`` finite and >= 0, ``beta`` in [0, 1); ``v`` and ``grad`` have ``theta``'s shape.
    """
    lr, beta = _hyper(lr, beta)
    theta, v = _pair("theta", theta, "v", v)
    grad = as_float64_array("grad", grad)
    require_same_shape("grad", grad, "theta", theta)
    v_new = beta * v + grad
    return theta - lr * v_new, v_new


def nesterov_lookahead(theta: np.ndarray, v: np.ndarray, grad_fn: GradFn, *, lr: float,
                       beta: float) -> tuple[np.ndarray, np.ndarray]:
    """S3.2: Nesterov momentum in the seed's look-ahead form (5.7.2):
    ``g = ∇L(θ − η·β·v)``; ``v ← β·v + g``; ``θ ← θ − η·v``.

    ``grad_fn`` maps a point (a copy) to ∇L there, same shape. Domain as S3.1.
    """
    _check_grad_fn(grad_fn)
    lr, beta = _hyper(lr, beta)
    theta, v = _pair("theta", theta, "v", v)
    g = _call_grad(grad_fn, theta - lr * beta * v)
    v_new = beta * v + g
    return theta - lr * v_new, v_new


def nesterov_torch(theta: np.ndarray, b: np.ndarray, grad_fn: GradFn, *, lr: float,
                   beta: float) -> tuple[np.ndarray, np.ndarray]:
    """S3.3: Nesterov momentum as torch.optim.SGD(nesterov=True) writes it:
    ``g = ∇L(θ)``; ``b ← β·b + g``; ``θ ← θ − η·(g + β·b)`` (with the new b). Domain as S3.1.
    """
    _check_grad_fn(grad_fn)
    lr, beta = _hyper(lr, beta)
    theta, b = _pair("theta", theta, "b", b)
    g = _call_grad(grad_fn, theta)
    b_new = beta * b + g
    return theta - lr * (g + beta * b_new), b_new


def lookahead_to_torch(theta: np.ndarray, v: np.ndarray, *, lr: float,
                       beta: float) -> tuple[np.ndarray, np.ndarray]:
    """S3.4: map a look-ahead state (θ, v) of S3.2 to the torch-form state (φ, b) of S3.3:
    ``φ = θ − η·β·v``, ``b = v``. With constant η, β the two trajectories then correspond step by step.
    """
    lr, beta = _hyper(lr, beta)
    theta, v = _pair("theta", theta, "v", v)
    return theta - lr * beta * v, v.copy()


def torch_to_lookahead(phi: np.ndarray, b: np.ndarray, *, lr: float,
                       beta: float) -> tuple[np.ndarray, np.ndarray]:
    """S3.4: the inverse map, ``θ = φ + η·β·b``, ``v = b``."""
    lr, beta = _hyper(lr, beta)
    phi, b = _pair("phi", phi, "b", b)
    return phi + lr * beta * b, b.copy()


def sgd(param: np.ndarray, grad: np.ndarray, state: Mapping[str, np.ndarray], *, lr: float,
        momentum: float = _SGD.default("momentum"),
        nesterov: bool = _SGD.default("nesterov")) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """S3.5: one torch.optim.SGD step (dampening 0, no weight decay).

    momentum == 0: ``θ ← θ − η·g``; the state is returned unchanged (a copy; a stored buffer is
    neither used nor updated).
    momentum > 0: ``buf ← g`` on the first step (no ``"momentum_buffer"`` in state), else
    ``buf ← μ·buf + g``; ``u = g + μ·buf`` if ``nesterov`` else ``buf``; ``θ ← θ − η·u``;
    new state ``{"momentum_buffer": buf}``.
    ``lr`` finite and >= 0; ``momentum`` in [0, 1); ``nesterov`` needs ``momentum > 0``; ``state`` is
    ``{}`` or ``{"momentum_buffer": array of param's shape}``.
    """
    h = _SGD.check(lr=lr, momentum=momentum, nesterov=nesterov)
    lr, momentum, nesterov = h["lr"], h["momentum"], h["nesterov"]
    param, grad = _pair("param", param, "grad", grad)
    if not isinstance(state, Mapping):
        raise ValueError(f"state must be a mapping ({{}} or {{'momentum_buffer': array}}); "
                         f"got {type(state).__name__}")
    unknown = set(state) - {"momentum_buffer"}
    if unknown:
        raise ValueError(f"state must hold only 'momentum_buffer'; got keys {sorted(map(str, unknown))}")
    buf = state.get("momentum_buffer")
    if buf is not None:
        buf = as_float64_array("state['momentum_buffer']", buf)
        require_same_shape("state['momentum_buffer']", buf, "param", param)

    if momentum == 0.0:
        new_state = {} if buf is None else {"momentum_buffer": buf}
        return param - lr * grad, new_state
    buf = grad.copy() if buf is None else momentum * buf + grad
    update = grad + momentum * buf if nesterov else buf
    return param - lr * update, {"momentum_buffer": buf}
