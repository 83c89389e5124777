"""Transcriptions of the seed documents' code listings, shared by the reference tests.

These are the independent side of the reference tests: the seed's own code (nanochat's base_train.py
schedules and muon.py's Newton–Schulz), never the reference's. Bodies are kept as the seed prints them; only
the module globals they read become arguments. The schedules are the seed-code target's own
(``optconform.conformance.seed_code``), one transcription for both; Newton–Schulz is written out here again in
float64 NumPy, which the torch target cannot provide.
"""

from __future__ import annotations

import functools

import numpy as np

from optconform.conformance import seed_code as _seed


def seed_lr_multiplier_for(num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
    """The seed's get_lr_multiplier (its body verbatim in optconform.conformance.seed_code, the suite's target
    of the seed's code) as a closure over the given 'globals'."""
    return functools.partial(_seed.lr_multiplier, num_iterations=num_iterations, warmup_ratio=warmup_ratio,
                             warmdown_ratio=warmdown_ratio, final_lr_frac=final_lr_frac)


#: The seed's get_muon_momentum, verbatim there too.
get_muon_momentum = _seed.muon_momentum


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
