"""Newton–Schulz outputs (S6.2, and the updates S7.2 / S9.4 recover): subspace metrics against bounds that
follow the coefficient rows in use (``tolerances.ns_bounds``), and the input regime that decides the level."""

from __future__ import annotations

import math

import numpy as np

from optconform import spec
from optconform.conformance import tolerances as T
from optconform.conformance.evidence import compare, describe
from optconform.conformance.metrics import ns_bias, ns_compare, to_float64
from optconform.conformance.report import Verdict, thin


def bounds(steps: int, *, strict: bool, rows: str | None = None, row_cut: str = "repeat_last") -> T.NSBounds:
    """The bounds for ``steps`` iterations of the rows in use: S6.2's coefficients every iteration, or the named
    ``rows`` cut by ``row_cut`` (a profile's S6.2 options)."""
    from optconform.reference.orthogonalize import ns_row_list

    if rows is None:
        return T.ns_bounds(T.ns_rows(steps, spec.hyper("S6.2").default("coefficients")), strict=strict)
    return T.ns_bounds(ns_row_list(steps, rows=rows, row_cut=row_cut), strict=strict)


def matrix_norms(*arrays: np.ndarray) -> list[float]:
    """‖X‖_F of every matrix of every ``(..., m, n)`` array (the norm Newton–Schulz normalises by)."""
    out: list[float] = []
    for a in arrays:
        x = to_float64(a)
        if x.size:
            out += np.linalg.norm(x.reshape(-1, *x.shape[-2:]), axis=(-2, -1)).tolist()
    return out


def judge_ns(verdict: Verdict, actual, expected, G, b: T.NSBounds, *, case: str, rescaled: bool = False,
             zero_atol: float = 0.0) -> dict:
    """The family's checks of one output: direction, subspace, acted, spectral_max, the bias statistic (when at
    least 2·NS_BIAS_WINDOW directions are judged); zero in, zero out. A miss carries the kind of difference (all
    zeros, a constant factor, another direction, NaN; a systematic shift of the response).

    ``rescaled``: ``actual`` is an output that Muon+ / NorMuon rescaled and ``judges.muon.unscale`` brought back;
    the bias allowance grows by the factors' error (``tolerances.ns_bias_allowance``) and spectral_max is not
    checked (the fitted factors move the largest singular value; the map's supremum does not bound it).
    ``zero_atol``: what an all-zero input's output may hold (0 for a Newton–Schulz output; a Muon update recovered
    from decayed parameters carries the decay's rounding, ``tolerances.muon_decay_recovery_atol``)."""
    e, shat, signed = ns_compare(actual, expected, G, threshold=T.NS_SUBSPACE_THRESHOLD, noise_ratio=b.noise_ratio)
    limits = {"direction": b.direction, "subspace": b.subspace, "acted": b.acted, "spectral_max": b.spectral_max}
    if rescaled:
        del limits["spectral_max"]
    missed = any(not e[k] <= v for k, v in limits.items())
    evidence = describe(compare(actual, expected)) if missed else ""
    for metric, bound in limits.items():
        verdict.check(metric, e[metric], bound, case=case, evidence=evidence)
    point_bound = None
    if math.isfinite(e["acted"]) and shat.size and b.rows:
        point_bound = T.ns_direction_bound(shat, b, rescaled=rescaled)
        ratio = float(np.max(np.abs(signed) / point_bound))
        verdict.check("direction at its ŝ", ratio, 1.0, case=case, evidence=evidence)
        e["direction_at_shat"] = ratio
    if math.isfinite(e["acted"]) and shat.size:
        plot_ns(verdict, expected, G, b, shat, signed, point_bound, case=case, rescaled=rescaled)
    if math.isfinite(e["acted"]) and shat.size >= 2 * T.NS_BIAS_WINDOW:
        z = ns_bias(shat, signed, T.ns_bias_allowance(shat, b, rescaled=rescaled), window=T.NS_BIAS_WINDOW)
        verdict.check("bias", z["z"], T.NS_BIAS_Z, case=case, evidence=bias_evidence(z))
        e["bias"] = z["z"]
    g = to_float64(G)
    zero = np.all(g.reshape(-1, *g.shape[-2:]) == 0, axis=(1, 2))
    if zero.any():
        a = to_float64(actual).reshape(-1, *g.shape[-2:])[zero]
        verdict.check("max |output| for an all-zero input", float(np.max(np.abs(a))), zero_atol, case=case)
    return e


def bias_evidence(z: dict[str, float]) -> str:
    """What a bias miss found: the shift of the worst band against what rounding allows."""
    if not z["z"] > 0:
        return ""
    return (f"systematic: the {T.NS_BIAS_WINDOW} directions with ŝ in [{z['lo']:.3g}, {z['hi']:.3g}] all respond "
            f"{'too much' if z['mean'] > 0 else 'too little'}, mean signed error {z['mean']:+.3g} against "
            f"{z['allowance']:.3g} allowed for rounding (standard error {z['se']:.2g}): another map than the "
            f"spec's, e.g. other coefficients or normalisation")


def plot_ns(verdict: Verdict, expected, G, b: T.NSBounds, shat: np.ndarray, signed: np.ndarray,
            point_bound: np.ndarray | None, *, case: str, rescaled: bool) -> None:
    """Keep this output's per-direction response for the report's plot when it is the case's worst so far (by
    max |dᵢ| / bound(ŝᵢ)): ŝ, the reference's and the target's response uᵢᵀRvᵢ and uᵢᵀYvᵢ = uᵢᵀRvᵢ + dᵢ, the
    bound at each ŝ (``tolerances.ns_direction_bound``, or the family's direction bound without rows), and the map
    p(ŝ) of the rows in use with its band on a grid. Plot data only: no check, no verdict."""
    bound = point_bound if point_bound is not None else np.full(shat.shape, b.direction)
    ratio = np.abs(signed) / bound
    score = float(np.max(ratio))

    def finish(d: dict) -> dict:
        n = shat.size
        idx = np.asarray(thin(n, np.argsort(-ratio)[:60]), dtype=int)
        ref = None
        try:  # the reference's own response in the same directions: diag(Uᵀ(2R − R)V)
            s2, r2 = ns_compare(2.0 * to_float64(expected), expected, G, threshold=T.NS_SUBSPACE_THRESHOLD,
                                noise_ratio=b.noise_ratio)[1:]
            if r2.size == n and np.allclose(s2, shat):
                ref = r2
        except (ValueError, ZeroDivisionError, FloatingPointError):
            pass
        on_map = T.ns_map(shat, b.rows)
        if ref is None:  # e.g. a batch element the target made non-finite: the map itself
            ref = on_map
        lo = max(T.NS_SUBSPACE_THRESHOLD, float(np.min(shat)) / 1.5)
        grid = np.geomspace(lo, 1.0, 200)
        grid_bound = (T.ns_direction_bound(grid, b, rescaled=rescaled) if b.rows
                      else np.full(grid.shape, b.direction))
        return dict(kind="ns", case=case, shat=shat[idx], signed=signed[idx], bound=bound[idx],
                    reference=ref[idx], response=ref[idx] + signed[idx], grid=grid, curve=T.ns_map(grid, b.rows),
                    grid_bound=grid_bound, family_bound=b.direction, rows=len(b.rows), rescaled=rescaled,
                    strict=b.unit_roundoff != T.NS_UNIT_ROUNDOFF, directions=int(n), ratio=score,
                    # False where the reference is not p(ŝ) itself (another normalisation, e.g. clamp(min=eps)
                    # below eps, or a golden of another map): the band is then drawn around the reference's points
                    follows_map=bool(np.max(np.abs(ref - on_map)) <= 1e-3),
                    bound_kind="ns_direction_bound at ŝ" if b.rows else "family direction bound")

    verdict.plot("ns", score, {}, finish)
