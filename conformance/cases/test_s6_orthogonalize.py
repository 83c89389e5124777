"""S6.2 `zeropower`: the target's Newton–Schulz quintic against the goldens and the live float64 reference.

Errors are measured in the subspace the iteration acts on (``metrics.ns_subspace_errors``; policy in
``tolerances``, NS section): per-direction response, relative error inside the acted-on subspace and on
everything touching it, plus the output's largest singular value. Regimes: Gaussian tall/wide/square,
batched (with an all-zero matrix), ill-conditioned, rank 1 and 8, tiny (‖G‖ ≈ eps = 1e-7, where the
normalisation ``‖G‖_F + eps`` matters; with steps 0 and 1 so a different eps convention is an O(1)
error) and huge (1e30, where a bf16 norm overflows) norms, and steps 0, 1, 5, 10.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from optconform.conformance import tolerances as T
from optconform.conformance.metrics import ns_subspace_errors, to_float64
from optconform.golden import store
from optconform.reference.orthogonalize import ns_singular_value_map
from optconform.reference.orthogonalize import zeropower as ref_zeropower

GOLDEN = [c.id for c in store.iter_cases("S6.2")]


@functools.cache
def spectral_bound(steps: int) -> float:
    """sup of the steps-fold scalar map on [0, 1] (S6.3) plus the last step's bf16 roundings (4u)."""
    s = np.linspace(0.0, 1.0, 200001)
    return float(np.max(ns_singular_value_map(s, steps))) + 4 * T.NS_UNIT_ROUNDOFF


def judge_ns(verdict, actual, expected, G, steps: int, strict: bool, case: str) -> None:
    """The NS family's checks of one output (used by the zeropower and Muon cases)."""
    e = ns_subspace_errors(actual, expected, G, threshold=T.NS_SUBSPACE_THRESHOLD)
    if strict:
        bounds = (T.NS_STRICT_DIRECTION_ATOL, T.NS_STRICT_SUBSPACE_RTOL, T.NS_STRICT_ACTED_RTOL)
    else:
        bounds = (T.NS_DIRECTION_ATOL, T.NS_SUBSPACE_RTOL, T.NS_ACTED_RTOL)
    verdict.check("direction", e["direction"], bounds[0], case=case)
    verdict.check("subspace", e["subspace"], bounds[1], case=case)
    verdict.check("acted", e["acted"], bounds[2], case=case)
    verdict.check("spectral_max", e["spectral_max"], spectral_bound(steps), case=case)
    g = to_float64(G)
    zero = np.all(g.reshape(-1, *g.shape[-2:]) == 0, axis=(1, 2))
    if zero.any():
        a = to_float64(actual).reshape(-1, *g.shape[-2:])[zero]
        verdict.check("max |output| for an all-zero input", float(np.max(np.abs(a))), 0.0, case=case)


def _call(target, G: np.ndarray, steps: int, device):
    import torch

    zeropower = target.require("zeropower")
    x = torch.as_tensor(G, dtype=torch.float32, device=device)
    given = x.detach().cpu().double().numpy().copy()
    y = zeropower(x.clone(), steps)
    if tuple(y.shape) != G.shape:
        pytest.fail(f"zeropower returned shape {tuple(y.shape)} for input {G.shape}", pytrace=False)
    return given, to_float64(y)


@pytest.mark.clause("S6.2", "zeropower")
@pytest.mark.parametrize("case_id", GOLDEN)
def test_zeropower_golden(target, verdict, device, strict, case_id):
    c = store.load_case(case_id)
    steps = int(c.hyper["steps"])
    given, y = _call(target, c.inputs["G"], steps, device)
    judge_ns(verdict, y, c.outputs["X"], c.inputs["G"], steps, strict, case_id)
    judge_ns(verdict, y, ref_zeropower(given, steps), given, steps, strict, case_id + " (live, float32 input)")


def _gaussian(rng, shape, norm):
    g = rng.standard_normal(shape)
    return g * (norm / np.linalg.norm(g, axis=(-2, -1), keepdims=True))


@pytest.mark.clause("S6.2", "zeropower")
@pytest.mark.parametrize("shape", [(48, 96), (96, 48), (3, 32, 32)])
@pytest.mark.parametrize("norm", [1e-7, 1.0, 1e30])
@pytest.mark.parametrize("steps", [0, 1, 5])
def test_zeropower_live(target, verdict, device, strict, live_rng, shape, norm, steps):
    G = _gaussian(live_rng, shape, norm)
    given, y = _call(target, G, steps, device)
    judge_ns(verdict, y, ref_zeropower(given, steps), given, steps, strict, f"live {shape} ‖G‖={norm:g} steps={steps}")


@pytest.mark.clause("S6.2", "zeropower")
@pytest.mark.parametrize("kind", ["rank2", "cond1e4", "power_law"])
def test_zeropower_live_structured(target, verdict, device, strict, live_rng, kind):
    m, n = 64, 128
    u, _ = np.linalg.qr(live_rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(live_rng.standard_normal((n, m)))
    s = {"rank2": np.r_[1.0, 0.5, np.zeros(m - 2)], "cond1e4": np.logspace(0, -4, m),
         "power_law": 1.0 / np.arange(1, m + 1)}[kind]
    G = (u * s) @ v.T
    given, y = _call(target, G, 5, device)
    judge_ns(verdict, y, ref_zeropower(given, 5), given, 5, strict, f"live {kind} {m}x{n}")
