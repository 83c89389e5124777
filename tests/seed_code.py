"""Transcriptions of the seed documents' code listings, shared by the reference tests.

These are the independent side of the reference tests: the seed's own code (nanochat's base_train.py
schedules and muon.py's Newton–Schulz), written out here, never the reference's. Bodies are kept as the
seed prints them; only the module globals they read become arguments.
"""

from __future__ import annotations

import numpy as np


def seed_lr_multiplier_for(num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    """The seed's get_lr_multiplier, body verbatim, as a closure over the given 'globals'."""
    def get_lr_multiplier(it):
        warmup_iters = round(warmup_ratio * num_iterations)
        warmdown_iters = round(warmdown_ratio * num_iterations)

        if it < warmup_iters:
            return (it + 1) / warmup_iters
        elif it <= num_iterations - warmdown_iters:
            return 1.0
        else:
            progress = (num_iterations - it) / warmdown_iters
            return progress * 1.0 + (1 - progress) * final_lr_frac
    return get_lr_multiplier


def get_muon_momentum(it):
    frac = min(it / 300, 1)
    momentum = (1 - frac) * 0.85 + frac * 0.95
    return momentum


def seed_zeropower(G: np.ndarray, steps: int) -> np.ndarray:
    """Line-by-line float64 NumPy transcription of nanochat's zeropower_via_newtonschulz5 (2-D or batched)."""
    assert G.ndim >= 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.astype(np.float64)
    if G.shape[-2] > G.shape[-1]:
        X = np.swapaxes(X, -2, -1)
    X = X / (np.linalg.norm(X, axis=(-2, -1), keepdims=True) + 1e-7)
    for _ in range(steps):
        A = X @ np.swapaxes(X, -2, -1)
        B = b * A + c * A @ A
        X = a * X + B @ X
    if G.shape[-2] > G.shape[-1]:
        X = np.swapaxes(X, -2, -1)
    return X
