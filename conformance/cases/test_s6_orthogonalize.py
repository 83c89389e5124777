"""S6.2 `zeropower`: the target's Newton–Schulz quintic against the goldens and the live float64 reference.

Errors are measured in the subspace the iteration acts on (``judges.ns``; policy in ``tolerances``, NS
section), with bounds computed from the coefficient rows the case uses: per-direction response, relative
error inside the acted-on subspace and on everything touching it, plus the output's largest singular value.
Regimes: Gaussian tall/wide/square, batched (with an all-zero matrix), ill-conditioned, rank 1 and 8, tiny
(‖G‖ ≈ eps = 1e-7, where the normalisation ``‖G‖_F + eps`` matters; with steps 0 and 1 so a different eps
convention is an O(1) error), large (1e12: still ``core``, where a float16 norm has long overflowed) and huge
(1e30, ``hardening``: a bf16 norm overflows) norms, and steps 0, 1, 5, 10. A 256×512 Gaussian at ‖G‖_F = 1 and
1e-8 feeds the bias statistic 256 directions: there another map (a coefficient 2 % off, other rows, a rescaled
output, ``clamp(min=eps)`` at 1e-8) is rejected by >= 13× its bound, where the size bounds cannot tell it from
bf16 rounding (``tolerances``, NS BIAS).
"""

from __future__ import annotations

import numpy as np
import pytest

from optconform import spec
from optconform.conformance.judges.ns import bounds, judge_ns, matrix_norms
from optconform.golden import store
from optconform.reference.orthogonalize import zeropower as ref_zeropower


def _call(case, G: np.ndarray, steps: int):
    import torch

    zeropower = case.require("zeropower")
    x = torch.as_tensor(G, dtype=torch.float32, device=case.device)
    given = x.detach().cpu().double().numpy().copy()
    case.verdict.regime(spec.clause("S6.2").regime(matrix_norms(given)))
    y = case.call(zeropower, x.clone(), steps, **case.target_options("zeropower"))
    case.verdict.equal("output shape", tuple(y.shape), G.shape)
    return given, (y.detach().cpu().double().numpy() if tuple(y.shape) == G.shape else None)


def _ref(case, G: np.ndarray, steps: int) -> np.ndarray:
    """The reference's zeropower under this run's options (the profile's S6.2 options)."""
    return ref_zeropower(G, steps, **case.reference_options("S6.2"))


def _bounds(case, steps: int):
    o = case.reference_options("S6.2")
    return bounds(steps, strict=case.strict, rows=o["rows"], row_cut=o["row_cut"])


@pytest.mark.clause("S6.2")
@pytest.mark.parametrize("case_id", store.case_ids("S6.2"))
def test_zeropower_golden(case, case_id):
    c = case.golden("S6.2", case_id)
    steps = int(c.hyper["steps"])
    given, y = _call(case, c.inputs["G"], steps)
    if y is None:
        return
    b = _bounds(case, steps)
    judge_ns(case.verdict, y, c.outputs["X"], c.inputs["G"], b, case=case_id)
    judge_ns(case.verdict, y, _ref(case, given, steps), given, b, case=case_id + " (live, float32 input)")


def _gaussian(rng, shape, norm):
    g = rng.standard_normal(shape)
    return g * (norm / np.linalg.norm(g, axis=(-2, -1), keepdims=True))


@pytest.mark.clause("S6.2")
@pytest.mark.parametrize("shape", [(48, 96), (96, 48), (3, 32, 32)])
@pytest.mark.parametrize("norm", [1e-7, 1.0, 1e12, 1e30])
@pytest.mark.parametrize("steps", [0, 1, 5])
def test_zeropower_live(case, shape, norm, steps):
    G = _gaussian(case.rng, shape, norm)
    given, y = _call(case, G, steps)
    if y is None:
        return
    judge_ns(case.verdict, y, _ref(case, given, steps), given, _bounds(case, steps),
             case=f"live {shape} ‖G‖={norm:g} steps={steps}")


@pytest.mark.clause("S6.2")
@pytest.mark.parametrize("kind", ["rank2", "cond1e4", "power_law"])
def test_zeropower_live_structured(case, kind):
    m, n = 64, 128
    u, _ = np.linalg.qr(case.rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(case.rng.standard_normal((n, m)))
    s = {"rank2": np.r_[1.0, 0.5, np.zeros(m - 2)], "cond1e4": np.logspace(0, -4, m),
         "power_law": 1.0 / np.arange(1, m + 1)}[kind]
    given, y = _call(case, (u * s) @ v.T, 5)
    if y is None:
        return
    judge_ns(case.verdict, y, _ref(case, given, 5), given, _bounds(case, 5),
             case=f"live {kind} {m}x{n}")


@pytest.mark.clause("S6.2")
@pytest.mark.parametrize("norm", [1.0, 1e-8])
def test_zeropower_live_large(case, norm):
    """256 judged directions, enough for the bias statistic to separate a different map from rounding."""
    G = _gaussian(case.rng, (256, 512), norm)
    given, y = _call(case, G, 5)
    if y is None:
        return
    judge_ns(case.verdict, y, _ref(case, given, 5), given, _bounds(case, 5),
             case=f"live 256x512 ‖G‖={norm:g}")
