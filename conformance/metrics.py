"""Error metrics for comparing an implementation's output with the reference (float64, torch-free).

Every comparison in the project reports these numbers: relative Frobenius error, max abs error,
and, for orthogonalizers, the singular-value range of the output.
"""

from __future__ import annotations

import math

import numpy as np

from .tolerances import NS_INPUT_NOISE_RATIO as _NS_INPUT_NOISE_RATIO
from .tolerances import NS_INPUT_ROUNDINGS as _NS_INPUT_ROUNDINGS


def to_float64(x) -> np.ndarray:
    """Convert a NumPy array, a torch tensor (any dtype/device) or a scalar to a float64 ndarray."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def rel_fro_error(actual, expected) -> float:
    """‖actual − expected‖_F / ‖expected‖_F, over the whole array (batched inputs included).

    When ``expected`` is exactly zero the absolute error ‖actual‖_F is returned, so a
    zero expectation is never divided by.
    """
    a, e = to_float64(actual), to_float64(expected)
    if a.shape != e.shape:
        raise ValueError(f"actual must have the shape of expected {e.shape}; got {a.shape}")
    num = float(np.linalg.norm((a - e).ravel()))
    den = float(np.linalg.norm(e.ravel()))
    return num / den if den > 0.0 else num


def scaled_norm(arrays) -> float:
    """sqrt(Σ x²) over every element of every array, computed on x / max|x| so that no square over- or
    underflows (entries from 1e-300 to 1e300): the clipping total of S5.1."""
    xs = [to_float64(a).ravel() for a in arrays]
    amax = max((float(np.max(np.abs(x))) for x in xs if x.size), default=0.0)
    if amax == 0.0:
        return 0.0
    return amax * float(np.sqrt(sum(float(np.sum((x / amax) ** 2)) for x in xs)))


def max_abs_error(actual, expected) -> float:
    """max |actual − expected| over all elements (0.0 for empty arrays)."""
    a, e = to_float64(actual), to_float64(expected)
    if a.shape != e.shape:
        raise ValueError(f"actual must have the shape of expected {e.shape}; got {a.shape}")
    return float(np.max(np.abs(a - e))) if a.size else 0.0


def singular_value_range(x) -> tuple[float, float]:
    """(smallest, largest) singular value over every matrix of a (..., m, n) array."""
    s = np.linalg.svd(to_float64(x), compute_uv=False)
    return float(s.min()), float(s.max())


# --- Newton–Schulz: error measured in the subspace the iteration acts on (tolerances.py, NS section) ---


def ns_subspace_errors(actual, expected, G, *, threshold: float = 1e-3, eps: float = 1e-7,
                       input_roundings: float = _NS_INPUT_ROUNDINGS,
                       noise_ratio: float = _NS_INPUT_NOISE_RATIO) -> dict[str, float]:
    """:func:`ns_compare`'s errors alone."""
    return ns_compare(actual, expected, G, threshold=threshold, eps=eps, input_roundings=input_roundings,
                      noise_ratio=noise_ratio)[0]


def ns_compare(actual, expected, G, *, threshold: float = 1e-3, eps: float = 1e-7,
               input_roundings: float = _NS_INPUT_ROUNDINGS,
               noise_ratio: float = _NS_INPUT_NOISE_RATIO) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Errors of a Newton–Schulz output ``actual`` against the float64 ``expected`` = NS(G), restricted to
    the directions NS acts on and a bf16 input resolves (policy: conformance.tolerances, NS section).

    Per matrix of a ``(..., m, n)`` batch: G = U diag(σ) Vᵀ (float64 SVD of G/max|G|, so any finite
    magnitude works), ŝᵢ = σᵢ / (‖G‖_F + eps) the normalised singular values, X̂ = G / (‖G‖_F + eps),
    νᵢ = sqrt(Σⱼₖ (Uⱼᵢ² + Vₖᵢ²) X̂ⱼₖ²) the rms size, in units of the unit roundoff, of an elementwise input
    rounding's part touching direction i, and
    S = {i : ŝᵢ >= threshold and input_roundings·νᵢ <= noise_ratio·ŝᵢ} (``input_roundings = 0``: the
    threshold alone), E = Y − R with Y = actual, R = expected. Returned (worst over the batch):

    * ``direction``: max over i in S of |uᵢᵀ E vᵢ| (the per-direction response error);
    * ``subspace``: ‖U_Sᵀ E V_S‖_F / ‖U_Sᵀ R V_S‖_F (relative error inside the judged subspace);
    * ``acted``: sqrt(‖U_Sᵀ E‖²_F + ‖E V_S‖²_F − ‖U_Sᵀ E V_S‖²_F) / ‖U_Sᵀ R V_S‖_F, every part of E that
      touches S on either side (only the unjudged -> unjudged block is left out);
    * ``whole``: ‖E‖_F / ‖R‖_F (reported; not bounded, it is O(1) for correct bf16 code on low-rank G);
    * ``spectral_max``: the largest singular value of Y;
    * ``n_directions``: the smallest |S| over the batch (0: nothing measured, e.g. G = 0; min(m, n): every
      direction judged).

    Also returned, over every judged direction of every finite matrix of the batch: ŝᵢ and the signed
    response error dᵢ = uᵢᵀ E vᵢ (the input of :func:`ns_bias`).
    """
    y, r, g = to_float64(actual), to_float64(expected), to_float64(G)
    if y.shape != g.shape or r.shape != g.shape:
        raise ValueError(f"actual and expected must have the shape of G {g.shape}; got {y.shape}, {r.shape}")
    if g.ndim < 2:
        raise ValueError(f"G must have at least 2 dimensions; got shape {g.shape}")
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(r))):
        raise ValueError("G and expected must be finite")
    m, n = g.shape[-2:]
    out = dict(direction=0.0, subspace=0.0, acted=0.0, whole=0.0, spectral_max=0.0,
               n_directions=float(min(m, n)))
    shats: list[np.ndarray] = []
    signed: list[np.ndarray] = []
    for yi, ri, gi in zip(y.reshape(-1, m, n), r.reshape(-1, m, n), g.reshape(-1, m, n), strict=True):
        if not np.all(np.isfinite(yi)):
            out.update(direction=np.inf, subspace=np.inf, acted=np.inf, whole=np.inf, spectral_max=np.inf)
            continue
        err = yi - ri
        if yi.size:
            out["spectral_max"] = max(out["spectral_max"], float(np.linalg.norm(yi, 2)))
        den_whole = float(np.linalg.norm(ri))
        out["whole"] = max(out["whole"], float(np.linalg.norm(err)) / den_whole if den_whole else
                           float(np.linalg.norm(err)))
        scale = float(np.max(np.abs(gi))) if gi.size else 0.0
        if scale == 0.0:
            out["n_directions"] = 0.0
            continue
        gn = gi / scale
        u, sig, vh = np.linalg.svd(gn, full_matrices=False)
        den_g = np.linalg.norm(gn) + eps / scale
        shat = sig / den_g
        keep = shat >= threshold
        if input_roundings:
            x2 = (gn / den_g) ** 2
            nu = np.sqrt(((u**2).T @ x2).sum(axis=1) + (x2 @ (vh.T**2)).sum(axis=0))
            keep &= input_roundings * nu <= noise_ratio * shat
        out["n_directions"] = min(out["n_directions"], float(keep.sum()))
        if not keep.any():
            continue
        us, vs = u[:, keep], vh[keep].T
        den = float(np.linalg.norm(us.T @ ri @ vs))
        left, right = us.T @ err, err @ vs
        both = left @ vs
        acted2 = float(np.sum(left**2) + np.sum(right**2) - np.sum(both**2))
        d = np.diag(both)
        shats.append(shat[keep])
        signed.append(d)
        out["direction"] = max(out["direction"], float(np.max(np.abs(d))))
        out["subspace"] = max(out["subspace"], float(np.linalg.norm(both)) / den)
        out["acted"] = max(out["acted"], float(np.sqrt(max(acted2, 0.0))) / den)
    if not shats:
        return out, np.zeros(0), np.zeros(0)
    return out, np.concatenate(shats), np.concatenate(signed)


def ns_bias(shat: np.ndarray, signed: np.ndarray, allowance: np.ndarray, *, window: int) -> dict[str, float]:
    """The bias statistic of Newton–Schulz outputs (policy: conformance.tolerances, NS BIAS).

    Sort the judged directions by ŝ; the noise of one response error is σ̂ = sqrt(mean((dᵢ₊₁ − dᵢ)²) / 2) over
    neighbours (a smooth systematic shift cancels in the differences); for each run of ``window`` consecutive
    directions w, z_w = max(|mean_w d| − mean_w allowance, 0) / (σ̂ / sqrt(window)). Returns the window with
    the largest z: ``z``, its ŝ range ``lo``/``hi``, ``mean``, ``allowance``, ``se``, and ``n`` the directions
    used (``z = 0`` and ``n < 2·window``: too few directions to judge).
    """
    shat, signed, allowance = (np.asarray(x, dtype=np.float64) for x in (shat, signed, allowance))
    out = dict(z=0.0, lo=math.nan, hi=math.nan, mean=math.nan, allowance=math.nan, se=math.nan,
               n=float(shat.size))
    if shat.size < 2 * window:
        return out
    order = np.argsort(shat, kind="stable")
    shat, signed, allowance = shat[order], signed[order], allowance[order]
    se = math.sqrt(float(np.mean(np.diff(signed) ** 2)) / 2) / math.sqrt(window)
    for w in range(0, shat.size - window + 1, window):
        sl = slice(w, w + window)
        mean, allow = float(signed[sl].mean()), float(allowance[sl].mean())
        excess = max(abs(mean) - allow, 0.0)
        z = excess / se if se > 0 else (math.inf if excess > 0 else 0.0)
        if z > out["z"]:
            out.update(z=z, lo=float(shat[w]), hi=float(shat[w + window - 1]), mean=mean, allowance=allow, se=se)
    return out
