"""Golden cases for S6 (orthogonalization), S7 (Muon) and S8 (Adam / AdamW)."""

from __future__ import annotations

import numpy as np

from optconform.golden._case import (
    Case,
    conditioned,
    gaussian,
    low_rank,
    replay_single,
    run_trajectory,
    seeded,
    with_norm,
)
from optconform.reference import adam, muon, orthogonalize, schedules

T = 24  # optimizer trajectory length (>= 20)


# ------------------------------------------------------------------------------------------------ S6


def _matrix_inputs() -> list[tuple[str, str, np.ndarray, int, str]]:
    """(tag, regime, G, seed, tolerance class for the polar factor) for S6.1 / S6.2."""
    out = []

    def add(tag, regime, make, polar_tol="linalg"):
        seed, rng = seeded(f"orthogonalize.input.{tag}")
        out.append((tag, regime, make(rng), seed, polar_tol))

    add("gaussian_16x32", "wide 1:2", lambda r: gaussian(r, 16, 32))
    add("gaussian_32x16", "tall 2:1 (transposed inside NS)", lambda r: gaussian(r, 32, 16))
    add("gaussian_16x64_aspect_1to4", "nanochat-like 1:4", lambda r: gaussian(r, 16, 64))
    add("gaussian_64x16_aspect_4to1", "nanochat-like 4:1", lambda r: gaussian(r, 64, 16))
    add("gaussian_24x24_square", "square (singular values near 0)", lambda r: gaussian(r, 24, 24))
    add("batched_3x8x16", "batch of 3 wide matrices", lambda r: gaussian(r, 3, 8, 16))
    add("cond1e3_32x32", "ill-conditioned, cond 1e3", lambda r: conditioned(r, 32, 32, 1e3))
    add("cond1e6_32x32", "ill-conditioned, cond 1e6", lambda r: conditioned(r, 32, 32, 1e6), "linalg_ill")
    add("rank1_16x64", "rank 1", lambda r: low_rank(r, 16, 64, 1))
    add("rank8_32x32", "rank 8", lambda r: low_rank(r, 32, 32, 8))
    add("tiny_norm_1e-8_16x32", "Frobenius norm 1e-8", lambda r: with_norm(gaussian(r, 16, 32), 1e-8))
    add("huge_norm_1e30_16x32", "Frobenius norm 1e30", lambda r: with_norm(gaussian(r, 16, 32), 1e30))

    def zero_in_batch(r):
        g = gaussian(r, 2, 8, 8)
        g[1] = 0.0
        return g

    add("batch_with_zero_matrix_2x8x8", "one all-zero matrix next to a Gaussian one", zero_in_batch)
    return out


def orthogonalize_cases() -> list[Case]:
    cases = []
    inputs = _matrix_inputs()
    for tag, regime, g, seed, polar_tol in inputs:
        cases.append(Case(f"orthogonalize.polar_factor.{tag}", "S6.1", "orthogonalize.polar_factor", regime,
                          "Q = U_r V_rᵀ of each matrix", {}, {"G": g}, {"Q": orthogonalize.polar_factor(g)},
                          seed=seed, tolerance_class=polar_tol))
        cases.append(Case(f"orthogonalize.zeropower.{tag}", "S6.2", "orthogonalize.zeropower", regime,
                          "5-step Newton–Schulz quintic, default coefficients and eps", {"steps": 5}, {"G": g},
                          {"X": orthogonalize.zeropower(g, 5)}, seed=seed, tolerance_class="linalg"))
    for steps in (0, 1, 10):
        cid = f"orthogonalize.zeropower.steps{steps}_gaussian_16x32"
        seed, rng = seeded(cid)
        g = gaussian(rng, 16, 32)
        cases.append(Case(cid, "S6.2", "orthogonalize.zeropower", f"steps = {steps}",
                          "steps 0 = normalisation only", {"steps": steps}, {"G": g},
                          {"X": orthogonalize.zeropower(g, steps)}, seed=seed, tolerance_class="linalg"))
    cid = "orthogonalize.zeropower.gaussian_64x128"
    seed, rng = seeded(cid)
    g = gaussian(rng, 64, 128)
    cases.append(Case(cid, "S6.2", "orthogonalize.zeropower", "64×128 Gaussian (largest case)", "default steps",
                      {"steps": 5}, {"G": g}, {"X": orthogonalize.zeropower(g, 5)}, seed=seed,
                      tolerance_class="linalg"))
    s = np.concatenate([[0.0, 1e-6, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2], np.linspace(0.05, 1.2, 24)])
    for steps in (0, 1, 5, 10):
        cases.append(Case(f"orthogonalize.ns_singular_value_map.steps{steps}", "S6.3",
                          "orthogonalize.ns_singular_value_map", f"steps = {steps}",
                          "p∘…∘p(s), p(s) = a s + b s³ + c s⁵, default coefficients", {"steps": steps}, {"s": s},
                          {"value": orthogonalize.ns_singular_value_map(s, steps)}))
    coeffs = [1.875, -1.25, 0.375]
    cases.append(Case("orthogonalize.ns_singular_value_map.coefficients_1.875_-1.25_0.375", "S6.3",
                      "orthogonalize.ns_singular_value_map", "custom coefficients (fixed point 1)",
                      "p(s) = 1.875 s − 1.25 s³ + 0.375 s⁵", {"steps": 5, "coefficients": coeffs}, {"s": s},
                      {"value": orthogonalize.ns_singular_value_map(s, 5, coefficients=coeffs)}))
    return cases


# ------------------------------------------------------------------------------------------------ S7


def _muon_case(tag: str, shape: tuple[int, ...], *, nesterov: bool = True, momentum: float | None = None,
               grad_kind: str = "gaussian", lr_zero: bool = False, ns_steps: int = 5) -> Case:
    cid = f"muon.muon.{tag}"
    seed, rng = seeded(cid)
    theta0 = gaussian(rng, *shape) * 0.1
    m, n = shape[-2:]
    if grad_kind == "rank1":
        grads = np.stack([low_rank(rng, m, n, 1) for _ in range(T)])
    elif grad_kind == "cond1e6":
        grads = np.stack([conditioned(rng, m, n, 1e6) for _ in range(T)])
    else:
        grads = gaussian(rng, T, *shape)
    if grad_kind == "tiny":
        grads = grads * 1e-8 / np.sqrt(m * n)
    if grad_kind == "huge":
        grads = grads * 1e30
    grads[5] = 0.0  # a zero-gradient step (the buffer still carries momentum)
    lr = 0.02 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmup_ratio=0.1, warmdown_ratio=0.4,
                                                  final_lr_frac=0.1) for t in range(T)])
    if lr_zero:
        lr[8:10] = 0.0
    if momentum is None:  # nanochat's ramp, shortened to fit the trajectory
        mom = np.array([schedules.muon_momentum(t, ramp_steps=12) for t in range(T)])
    else:
        mom = np.full(T, momentum)
    params, states = run_trajectory(muon.muon, theta0, grads, {"nesterov": nesterov, "ns_steps": ns_steps},
                                    {"lr": lr, "momentum": mom})
    return Case(cid, "S7.2", "muon.muon", tag,
                "per-step lr (warmup/warmdown) and momentum; a zero-grad step at t=5",
                {"nesterov": nesterov, "ns_steps": ns_steps},
                {"param0": theta0, "grads": grads, "lr": lr, "momentum": mom},
                {"param": params, **states}, seed=seed, steps=T, layout="trajectory", tolerance_class="linalg",
                extra={"replay": replay_single(["lr", "momentum"], ["momentum_buffer"])})


def muon_cases() -> list[Case]:
    shapes = [(4, 16), (16, 4), (8, 8), (1, 7), (7, 1), (3, 5, 2), (768, 3072), (3072, 768), (2, 1), (5, 5)]
    rows = np.array([s[-2] for s in shapes])
    cols = np.array([s[-1] for s in shapes])
    cases = [Case("muon.muon_aspect_scale.table", "S7.1", "muon.muon_aspect_scale", "tall, wide, square, batched",
                  "value[i] = muon_aspect_scale(shape) for shape = extra.shapes[i] (rows, cols = last two)", {},
                  {"rows": rows, "cols": cols},
                  {"value": np.array([muon.muon_aspect_scale(s) for s in shapes])}, layout="table",
                  extra={"shapes": [list(s) for s in shapes]})]
    cases += [
        _muon_case("nanochat_ramp_8x32_aspect_1to4", (8, 32)),
        _muon_case("ramp_16x4_aspect_4to1", (16, 4)),
        _muon_case("nesterov_off_4x16", (4, 16), nesterov=False, momentum=0.95),
        _muon_case("momentum0_8x8_lr0_steps", (8, 8), momentum=0.0, lr_zero=True),
        _muon_case("batched_2x4x8", (2, 4, 8)),
        _muon_case("rank1_grads_8x8", (8, 8), grad_kind="rank1"),
        _muon_case("cond1e6_grads_8x8", (8, 8), grad_kind="cond1e6"),
        _muon_case("tiny_grads_1e-8_4x16", (4, 16), grad_kind="tiny"),
        _muon_case("huge_grads_1e30_16x4", (16, 4), grad_kind="huge"),
        _muon_case("ns_steps3_8x8", (8, 8), ns_steps=3),
    ]
    return cases


# ------------------------------------------------------------------------------------------------ S8


def _adam_case(fn, tag: str, shape: tuple[int, ...], hyper: dict, *, grad_scale: float = 1.0,
               lr0: float = 1e-3, mixed: bool = False, lr_zero: bool = False) -> Case:
    name = fn.__name__
    cid = f"adam.{name}.{tag}"
    seed, rng = seeded(cid)
    theta0 = gaussian(rng, *shape)
    grads = (gaussian(rng, T, *shape) + 0.3) * grad_scale
    if mixed and len(shape) >= 1:  # entries comparable to eps next to O(1) ones
        grads[:, : shape[0] // 2] *= 1e-10
    grads[3] = 0.0  # a zero-gradient step
    if len(shape) >= 2:
        grads[:, 1] = 0.0 if not mixed else grads[:, 1]
    lr = lr0 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmup_ratio=0.1, warmdown_ratio=0.3)
                         for t in range(T)])
    if lr_zero:
        lr[10] = 0.0
    params, states = run_trajectory(fn, theta0, grads, hyper, {"lr": lr})
    clause = "S8.1" if name == "adam" else "S8.2"
    return Case(cid, clause, f"adam.{name}", tag, "per-step lr (warmup/warmdown); zero-grad step at t=3",
                hyper, {"param0": theta0, "grads": grads, "lr": lr}, {"param": params, **states}, seed=seed,
                steps=T, layout="trajectory",
                extra={"replay": replay_single(["lr"], ["step", "exp_avg", "exp_avg_sq"])})


def adam_cases() -> list[Case]:
    a, w = adam.adam, adam.adamw
    nano = {"betas": [0.8, 0.95], "eps": 1e-10, "weight_decay": 0.0}
    return [
        _adam_case(a, "defaults_6x8", (6, 8), {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}),
        _adam_case(a, "l2_weight_decay0.1_6x8", (6, 8), {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}),
        _adam_case(a, "grads_1e-8_eps_regime_16", (16,), {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
                   grad_scale=1e-8),
        _adam_case(a, "betas0_0_sign_like_6x8", (6, 8), {"betas": [0.0, 0.0], "eps": 1e-8, "weight_decay": 0.0}),
        _adam_case(w, "nanochat_6x8_lr0_step", (6, 8), nano, lr0=0.004, lr_zero=True),
        _adam_case(w, "nanochat_grads_1e-10_eps_regime_6x8", (6, 8), nano, grad_scale=1e-10, lr0=0.004),
        _adam_case(w, "nanochat_mixed_1e-10_and_O1_6x8", (6, 8), nano, mixed=True, lr0=0.004),
        _adam_case(w, "huge_grads_1e30_6x8", (6, 8), nano, grad_scale=1e30, lr0=0.004),
        _adam_case(w, "weight_decay0.1_lr_mul0.5_wd_mul0_6x8", (6, 8),
                   {**nano, "weight_decay": 0.1, "lr_mul": 0.5, "wd_mul": 0.0}, lr0=0.01),
        _adam_case(w, "weight_decay0.1_lr_mul2_wd_mul1_5x3x2", (5, 3, 2),
                   {**nano, "weight_decay": 0.1, "lr_mul": 2.0, "wd_mul": 1.0}, lr0=0.01),
        _adam_case(w, "torch_defaults_vector_16", (16,), {"betas": [0.9, 0.999], "eps": 1e-8,
                                                           "weight_decay": 0.01}, lr0=1e-3),
        _adam_case(w, "scalar_0d", (), nano, lr0=0.2),
    ]
