"""S2 Gradient descent: the plain update, linear regression, batch / stochastic / mini-batch epochs,
and the seed's three stopping rules.

Pure float64 functions: inputs are copied, never modified. Invalid arguments raise ``ValueError``
whose message starts with the parameter's name (S1.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np

from optconform import spec

from ._checks import as_float64_array, require_int, require_nonnegative, require_real, require_same_shape

__all__ = [
    "gd_step",
    "linear_regression_loss",
    "linear_regression_grad",
    "batch_gd",
    "sgd_epoch",
    "minibatch_epoch",
    "converged",
    "gradient_descent",
]

_GD, _BATCH, _SGD, _MINIBATCH, _STOP = (spec.hyper(c) for c in ("S2.1", "S2.3", "S2.4", "S2.5", "S2.6"))

Reason = Literal["grad_norm", "loss_change", "max_iterations"]


def gd_step(theta: np.ndarray, grad: np.ndarray, *, lr: float) -> np.ndarray:
    """S2.1: one gradient-descent step, ``θ ← θ − η·g``. ``lr`` finite and >= 0; any shape."""
    lr = _GD.check(lr=lr)["lr"]
    theta = as_float64_array("theta", theta)
    grad = as_float64_array("grad", grad)
    require_same_shape("grad", grad, "theta", theta)
    return theta - lr * grad


# --------------------------------------------------------------------------------------------- S2.2


def _check_regression(w: object, b: object, x: object, y: object) -> tuple[np.ndarray, float, np.ndarray,
                                                                            np.ndarray]:
    x = as_float64_array("x", x, ndim=2, allow_empty=False)
    n, d = x.shape
    y = as_float64_array("y", y, ndim=1)
    if y.shape != (n,):
        raise ValueError(f"y must have shape (n,) = ({n},) to match x {x.shape}; got {y.shape}")
    w = as_float64_array("w", w, ndim=1)
    if w.shape != (d,):
        raise ValueError(f"w must have shape (d,) = ({d},) to match x {x.shape}; got {w.shape}")
    b = require_real("b", b)
    return w, b, x, y


def _residual(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return y - x @ w - b


def _mean_grad(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    r = _residual(w, b, x, y)
    m = x.shape[0]
    return (-2.0 / m) * (x.T @ r), float((-2.0 / m) * np.sum(r))


def linear_regression_loss(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> float:
    """S2.2: mean squared error ``L(w, b) = (1/n) Σᵢ (yᵢ − xᵢ·w − b)²``.

    ``x`` is ``(n, d)`` with n, d >= 1, ``y`` is ``(n,)``, ``w`` is ``(d,)``, ``b`` a real scalar.
    """
    w, b, x, y = _check_regression(w, b, x, y)
    r = _residual(w, b, x, y)
    return float(np.mean(r * r))


def linear_regression_grad(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """S2.2: gradient of S2.2's loss, with ``r = y − x·w − b``:
    ``∂L/∂w = −(2/n) xᵀr``, ``∂L/∂b = −(2/n) Σᵢ rᵢ``. Returns ``(gw, gb)``."""
    w, b, x, y = _check_regression(w, b, x, y)
    return _mean_grad(w, b, x, y)


# ------------------------------------------------------------------------------------ S2.3 – S2.5


def batch_gd(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, *, lr: float,
             num_epochs: int) -> tuple[np.ndarray, float, np.ndarray]:
    """S2.3: ``num_epochs`` full-batch steps ``(w, b) ← (w, b) − η·∇L(w, b)`` on S2.2's loss.

    Returns ``(w, b, losses)`` where ``losses[k] = L(w_k, b_k)`` is the loss at the point epoch k's
    gradient is taken at (before its update); ``len(losses) == num_epochs``.
    """
    lr, num_epochs = _BATCH.check(lr=lr, num_epochs=num_epochs).values()
    w, b, x, y = _check_regression(w, b, x, y)
    losses = np.empty(num_epochs, dtype=np.float64)
    for k in range(num_epochs):
        r = _residual(w, b, x, y)
        losses[k] = np.mean(r * r)
        gw, gb = _mean_grad(w, b, x, y)
        w = w - lr * gw
        b = b - lr * gb
    return w, b, losses


def _check_order(order: object, n: int) -> np.ndarray:
    arr = np.array(order, copy=True)
    if arr.ndim != 1:
        raise ValueError(f"order must be a 1-D sequence of sample indices; got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.intp)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"order must hold integer sample indices; got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(f"order must hold indices in [0, n) = [0, {n}); got range "
                         f"[{arr.min()}, {arr.max()}]")
    return arr.astype(np.intp)


def sgd_epoch(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, *, lr: float,
              order: np.ndarray) -> tuple[np.ndarray, float]:
    """S2.4: one stochastic epoch: for each index ``i`` in ``order`` (in that order) step on the single
    sample's loss ``(yᵢ − xᵢ·w − b)²``: ``w ← w + 2η rᵢ xᵢ``, ``b ← b + 2η rᵢ``.

    ``order`` is a 1-D integer sequence with entries in ``[0, n)``; repeats are allowed and an empty
    order is a no-op (the seed shuffles, i.e. passes a permutation).
    """
    lr = _SGD.check(lr=lr)["lr"]
    w, b, x, y = _check_regression(w, b, x, y)
    idx = _check_order(order, x.shape[0])
    for i in idx:
        gw, gb = _mean_grad(w, b, x[i:i + 1], y[i:i + 1])
        w = w - lr * gw
        b = b - lr * gb
    return w, b


def minibatch_epoch(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, *, lr: float,
                    order: np.ndarray, batch_size: int,
                    drop_last: bool = _MINIBATCH.default("drop_last")) -> tuple[np.ndarray, float]:
    """S2.5: one mini-batch epoch. Batches are the consecutive slices
    ``order[k·B : (k+1)·B]``; each step uses the gradient MEAN over the batch's actual length m
    (S2.2's gradient on those rows). A short last batch (m < B) is used, or skipped when ``drop_last``.

    The seed divides the summed gradient by the nominal ``batch_size``; that equals this mean for every
    full batch and scales a short last batch's step by m/B.
    """
    lr, batch_size, drop_last = _MINIBATCH.check(lr=lr, batch_size=batch_size, drop_last=drop_last).values()
    w, b, x, y = _check_regression(w, b, x, y)
    idx = _check_order(order, x.shape[0])
    for start in range(0, idx.size, batch_size):
        batch = idx[start:start + batch_size]
        if drop_last and batch.size < batch_size:
            break
        gw, gb = _mean_grad(w, b, x[batch], y[batch])
        w = w - lr * gw
        b = b - lr * gb
    return w, b


# --------------------------------------------------------------------------------------------- S2.6


def _norm2(g: np.ndarray) -> float:
    """‖g‖₂ over all elements, scaled by max|g| first so that huge or tiny entries neither overflow
    nor underflow in the sum of squares."""
    scale = float(np.max(np.abs(g))) if g.size else 0.0
    if scale == 0.0:
        return 0.0
    return scale * float(np.sqrt(np.sum(np.square(g / scale))))


def converged(*, iteration: int, max_iterations: int, grad_norm: float | None = None,
              grad_tol: float | None = None, loss: float | None = None, prev_loss: float | None = None,
              loss_tol: float | None = None) -> Reason | None:
    """S2.6: the seed's stopping rules, checked in this order (the first that holds is returned):

    1. ``"grad_norm"``      if ``grad_tol`` is set and ``grad_norm < grad_tol``;
    2. ``"loss_change"``    if ``loss_tol`` is set, ``prev_loss`` is not None and
                            ``|loss − prev_loss| < loss_tol``;
    3. ``"max_iterations"`` if ``iteration >= max_iterations``;
    else ``None``. Comparisons are strict, as in the seed; tolerances must be > 0.
    ``iteration`` counts the updates already made.
    """
    iteration = require_int("iteration", iteration, minimum=0)
    max_iterations, grad_tol, loss_tol = _STOP.check(max_iterations=max_iterations, grad_tol=grad_tol,
                                                     loss_tol=loss_tol).values()
    if grad_tol is not None:
        if grad_norm is None:
            raise ValueError("grad_norm must be given when grad_tol is set")
    if grad_norm is not None:
        grad_norm = require_nonnegative("grad_norm", grad_norm)
    if loss_tol is not None:
        if loss is None:
            raise ValueError("loss must be given when loss_tol is set")
    if loss is not None:
        loss = require_real("loss", loss)
    if prev_loss is not None:
        prev_loss = require_real("prev_loss", prev_loss)

    if grad_tol is not None and grad_norm < grad_tol:
        return "grad_norm"
    if loss_tol is not None and prev_loss is not None and abs(loss - prev_loss) < loss_tol:
        return "loss_change"
    if iteration >= max_iterations:
        return "max_iterations"
    return None


def gradient_descent(loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]], theta0: np.ndarray,
                     *, lr: float, max_iterations: int, grad_tol: float | None = _STOP.default("grad_tol"),
                     loss_tol: float | None = _STOP.default("loss_tol")) -> tuple[np.ndarray, int, Reason]:
    """S2.6: gradient descent with the seed's stopping rules.

    For k = 0, 1, 2, …: ``(L_k, g_k) = loss_and_grad(θ_k)``; stop with
    ``converged(iteration=k, grad_norm=‖g_k‖₂, loss=L_k, prev_loss=L_{k−1} (None at k=0), …)``;
    otherwise ``θ_{k+1} = θ_k − η·g_k``. The checks run BEFORE the update, so the returned θ is the
    point that met the criterion and ``iterations`` is the number of updates made (≤ max_iterations).
    ``loss_and_grad`` is called ``iterations + 1`` times. ‖g‖₂ is over all elements (torch's
    ``grad.norm()``). A non-finite loss or gradient raises ``ValueError`` naming ``loss_and_grad``.
    Returns ``(theta, iterations, reason)``.
    """
    if not callable(loss_and_grad):
        raise ValueError("loss_and_grad must be callable, returning (loss, grad)")
    lr, max_iterations, grad_tol, loss_tol = _STOP.check(lr=lr, max_iterations=max_iterations, grad_tol=grad_tol,
                                                         loss_tol=loss_tol).values()
    theta = as_float64_array("theta0", theta0)
    prev_loss: float | None = None
    k = 0
    while True:
        out = loss_and_grad(theta.copy())
        try:
            loss_raw, grad_raw = out
            loss = float(loss_raw)
            grad = np.array(grad_raw, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError("loss_and_grad must return a (loss, grad) pair of a real and an array") from exc
        if grad.shape != theta.shape:
            raise ValueError(f"loss_and_grad must return a gradient of theta0's shape {theta.shape}; "
                             f"got {grad.shape}")
        if not (math.isfinite(loss) and np.all(np.isfinite(grad))):
            raise ValueError(f"loss_and_grad returned a non-finite loss or gradient at iteration {k} "
                             "(diverged?)")
        grad_norm = _norm2(grad)
        reason = converged(iteration=k, max_iterations=max_iterations, grad_norm=grad_norm,
                           grad_tol=grad_tol, loss=loss, prev_loss=prev_loss, loss_tol=loss_tol)
        if reason is not None:
            return theta, k, reason
        theta = theta - lr * grad
        prev_loss = loss
        k += 1
