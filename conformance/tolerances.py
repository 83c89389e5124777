"""The tolerance policy: every bound used to compare an implementation with the reference.

One place for the project's tests and the conformance suite. Each constant says where it comes
from (error analysis, then the measured spread on this machine kind) and what it lets through.
All comparisons are made in float64 against the float64 reference.
"""

from __future__ import annotations

# --- Newton–Schulz family (bf16 arithmetic): zeropower, Muon, DistMuon --------------------------
# (section owned by the Newton–Schulz/Muon work; keep it above the float32 section)
#
# WHAT IS MEASURED. A whole-matrix relative Frobenius error cannot judge bf16 Newton–Schulz: rounding
# noise in near-null directions is multiplied by up to p⁵'(0) = a⁵ ≈ 485 and ends up O(1), so correct
# bf16 code shows whole-matrix errors of 1.17 on rank-1 input and 0.34 on rank-8 input (below), while a
# real bug on well-spread input can hide under any bound that lets those through. Instead the metrics
# (conformance.metrics.ns_subspace_errors) use the SVD G = U diag(σ) Vᵀ and the normalised singular
# values ŝᵢ = σᵢ/(‖G‖_F + 1e-7), keep the directions S = {i : ŝᵢ >= NS_SUBSPACE_THRESHOLD} the iteration
# acts on, and bound, against the float64 reference output R:
#   direction = maxᵢ∈S |uᵢᵀ(Y − R)vᵢ|                    (per-direction response error, absolute)
#   subspace  = ‖U_Sᵀ(Y − R)V_S‖_F / ‖U_Sᵀ R V_S‖_F        (relative error inside the acted-on subspace)
#   acted     = every entry of Y − R touching S on either side (only near-null -> near-null left out)
#
# WHERE THE BOUNDS COME FROM. bf16 keeps 8 significant bits: unit roundoff u = 2^-8. The fused kernel
# rounds 16 times per direction: X after normalisation, then A, B and X in each of 5 steps (matmuls
# accumulate in float32, which is negligible next to u). In the scalar model every rounding multiplies
# the current value by (1 + εⱼ), |εⱼ| <= u; linearising p⁵ in the εⱼ gives an output error
# <= u · Σⱼ|∂p⁵/∂εⱼ| (all signs aligned) and ≈ u · sqrt(Σⱼ(∂p⁵/∂εⱼ)²) (independent signs). Maximised over
# ŝ in [1e-3, 1] (central differences, tests/impl/test_newton_schulz.py recomputes both):
#   NS_AMPLIFICATION_WORST = 84.95 and NS_AMPLIFICATION_RMS = 27.73, both at ŝ ≈ 0.63, where the iterates
#   pass the steep part of p near 1.2; the plain Lipschitz factor of the map for a relative input
#   perturbation, max ŝ|p⁵'(ŝ)|, is 8.63. Below ŝ = 1e-3 the absolute slope p⁵' approaches 485 and the
#   response p⁵(ŝ) < 0.47, i.e. NS has not yet acted on the direction: hence the threshold 1e-3.
# The per-direction error gets the worst-case factor (a single direction of a small matrix sees few,
# possibly aligned roundings); the subspace and acted errors average over directions and entries and get
# the rms factor.
#
# MEASURED (this machine, torch 2.13 CPU, impl.newton_schulz.zeropower vs reference zeropower, 20 seeds
# each unless said; "median / max" of the per-input value):
#   input                       direction        subspace         acted            whole
#   Gaussian 64×64              0.0104 / 0.0206  0.0130 / 0.0146  0.0130 / 0.0146  0.013 / 0.015
#   Gaussian 128×512, 512×128   0.0062 / 0.0108  0.0110 / 0.0118  0.0117 / 0.0124  0.012 / 0.012
#   Gaussian 256×256            0.0050 / 0.0083  0.0108 / 0.0111  0.0111 / 0.0114  0.011 / 0.011
#   power law σᵢ ∝ 1/i 256×512  0.0025 / 0.0033  0.0123 / 0.0124  0.0228 / 0.0229  0.023 / 0.023
#   cond 1e3 / 1e6 256×256      0.0089 / 0.0144  0.0184 / 0.0187  0.0319 / 0.0419  0.037 / 0.084
#   rank 1 128×512 / rank 8     0.0002 / 0.0013  0.0004 / 0.0007  0.0027 / 0.0033  1.16 / 1.17
#   ‖G‖_F = 1e-8, 128×256       0.0020 / 0.0032  0.0057 / 0.0061  0.0071 / 0.0074  0.007 / 0.007
#   ‖G‖_F = 1e30 and 1e36       0.0070 / 0.0091  0.0117 / 0.0126  0.0123 / 0.0131  0.012 / 0.013
#   batched 4×96×64             0.0111 / 0.0150  0.0141 / 0.0148  0.0145 / 0.0152  0.014 / 0.015
#   Gaussian 2×3 … 32×8 (200)   ≤ 0.129 (4×4)    ≤ 0.073 (4×4)    ≤ 0.073 (4×4)    ≤ 0.114
# The largest measured value is 39 % (direction), 67 % (subspace) and 67 % (acted) of its bound.
#
# WHAT GETS THROUGH. Gross mistakes fail on every input: 4 steps instead of 5 (direction >= 0.39,
# acted >= 0.31), a wrong transpose or normalisation (errors O(1)), an output that blows up
# (spectral bound). The norm().clamp(min=eps) convention of torch.optim.Muon (direction ≈ 0.10 at
# ‖G‖_F = 1e-8) and a 1.5 % change of c (acted 0.02–0.12) are NOT reliably caught: they are the size of
# the legitimate bf16 noise on small matrices. Use the strict bounds to separate those.
NS_UNIT_ROUNDOFF = 2.0**-8
NS_SUBSPACE_THRESHOLD = 1e-3
NS_AMPLIFICATION_WORST = 85.0  # 84.95 rounded up
NS_AMPLIFICATION_RMS = 27.8  # 27.73 rounded up
NS_DIRECTION_ATOL = NS_UNIT_ROUNDOFF * NS_AMPLIFICATION_WORST  # 0.332; measured max 0.129 (4×4), 0.021 (>= 64)
NS_SUBSPACE_RTOL = NS_UNIT_ROUNDOFF * NS_AMPLIFICATION_RMS  # 0.109; measured max 0.073 (4×4), 0.019
NS_ACTED_RTOL = NS_UNIT_ROUNDOFF * NS_AMPLIFICATION_RMS  # 0.109; measured max 0.073 (4×4), 0.042 (cond 1e6)
#: sup of p⁵ on [0, 1] (1.2023685) plus the last step's roundings (A, B, X, normalisation: 4u): the map is flat
#: at its maximum, so earlier roundings do not move it to first order. Measured max 1.2046 (16×16).
NS_P5_SUP = 1.20237  # 1.2023685 rounded up
NS_SPECTRAL_MAX = NS_P5_SUP + 4 * NS_UNIT_ROUNDOFF  # 1.218
#
# STRICT (a float32 Newton–Schulz, for a future --strict mode): u = 2^-24, and float32 matmuls also
# accumulate in float32 (inner products of length k add up to k·u, ≈ sqrt(k)·u typically), so the rms
# averaging is not available: all three bounds take the worst-case factor. Measured with a float32
# transcription of the same algorithm, same inputs: direction ≤ 1.4e-6 (>= 64) / 3.9e-6 (4×4, 200 seeds),
# subspace ≤ 1.4e-6 / 3.0e-6, acted ≤ 1.8e-6 (cond 1e6) / 3.0e-6 (2×3). Every bf16 error above exceeds it.
NS_STRICT_UNIT_ROUNDOFF = 2.0**-24
NS_STRICT_DIRECTION_ATOL = NS_STRICT_UNIT_ROUNDOFF * NS_AMPLIFICATION_WORST  # 5.07e-6
NS_STRICT_SUBSPACE_RTOL = NS_STRICT_UNIT_ROUNDOFF * NS_AMPLIFICATION_WORST  # 5.07e-6
NS_STRICT_ACTED_RTOL = NS_STRICT_UNIT_ROUNDOFF * NS_AMPLIFICATION_WORST  # 5.07e-6
#
# MUON TRAJECTORY. With the same gradients fed to both, the momentum buffers agree to the parameter
# dtype's rounding, so step k's update differs only by lr_k·scale·(O_impl − O_ref). When every direction
# of the NS input is acted on (min ŝ >= NS_SUBSPACE_THRESHOLD; true for Gaussian non-square gradients),
# ‖O_impl − O_ref‖_F <= NS_ACTED_RTOL·‖O_ref‖_F, and θ is rounded to its dtype once per step. Errors do not
# feed back (the gradients are given), so after K steps the triangle inequality gives the bound below.


def muon_trajectory_bound(lrs, scale: float, ortho_ref_norms, param_norms, param_roundoff: float) -> float:
    """Σₖ (lrₖ·scale·NS_ACTED_RTOL·‖O_ref,k‖_F + param_roundoff·‖θₖ‖_F): the bound on ‖θ_impl − θ_ref‖_F
    after K Muon steps with shared gradients, each NS input fully acted on (see MUON TRAJECTORY above)."""
    return float(sum(lr * scale * NS_ACTED_RTOL * o + param_roundoff * t
                     for lr, o, t in zip(lrs, ortho_ref_norms, param_norms, strict=True)))
# NS-SECTION-END

# --- float32 family: AdamW, DistAdamW, SGD, clipping, schedules ----------------------------------
# (section owned by the AdamW/SGD/clipping work)
#
# Metric: rel_fro_error (conformance/metrics.py) of the float32 tensor against the float64 reference,
# both started from the same float32-representable values, with the same float32 gradients.
# u = 2^-24 is float32's unit roundoff. "strict" = what float32 arithmetic in the textbook op order
# achieves (the first-order bound below); the default admits any float32 evaluation order (fused
# kernels, FMA, torch.compile, a float32 bias correction) and still rejects formula mistakes.
#
# Per-step error analysis, AdamW (S8.2), θ' = θ(1 − ηλ) − η·m̂/(√v̂ + ε), η = lr·lr_mul:
#   final rounding of θ'                         u/2 · |θ'|
#   decay coefficient + product                   u   · |θ|
#   update: lerp/mul/addcmul/sqrt/div/add/addcdiv, each ≤ u/2 relative, ~8 in a chain → ≤ 4u · η|û|
# so ‖Δθ‖/‖θ‖ ≤ 1.5u + 4u·η‖û‖/‖θ‖ ≤ 4u wherever η‖û‖ ≤ ‖θ‖/2 (η ≤ 0.3, |û| ≲ 1.5 for the nanochat
# betas). Where ε enters: the update's relative sensitivity to relative errors is ≤ 1 in m and ≤ 1/2 in
# v (∂log û/∂log v̂ = −½·√v̂/(√v̂+ε)), so |g| ~ ε does NOT amplify rounding: float32 holds v ~ g² ~ 1e-20
# with full precision (its normals reach 1.2e-38), and once g² goes denormal (|g| ≲ 1e-19) √v̂ ≪ ε and the
# denominator is ε to 1e-9. What the division DOES amplify is an *absolute* error δ in g or m (a
# cancelling micro-batch sum, a denormal coefficient): it reaches the update as δ/(√v̂ + ε), i.e. ×1e10
# when |g| ~ ε. So: compare gradients relative to Σ|g_k| before blaming the optimizer, and cancellation
# in m (β1·m and (1−β1)·g of opposite signs) is bounded in absolute terms, u(β1|m| + (1−β1)|g|)/(√v̂+ε) ≤ u·O(1),
# not relative to |m|. The same ε regime is where a wrong formula shows (ε before bias correction changes û
# by O(1) at |g| ~ ε, nanochat #304), which the tests check these bounds reject.
# SGD (S3.5): θ' = θ − η(g + βb) with b = βb + g: ≤ u/2 + 2u·η‖update‖/‖θ‖ ≤ 4u on the same domain.
# Over k steps with precomputed gradients the per-step errors add (no feedback through a loss): ≤ k × the
# per-step bound; rounding errors being random, the measured growth is ≈ √k.
#
# Measured (this machine, 24 seeds, 16×24 float32 tensors, 30 steps, lr log-uniform in [1e-4, 0.2],
# gradients cycling Gaussian / ×1e-10 (≈ ε) / zero / magnitudes 1e-12..1e2; lr_mul, wd_mul random):
#   AdamW per step, θ: wd=0 median 0.47u max 0.51u; wd=0.1 median 0.82u max 0.87u
#   AdamW per step, exp_avg median 0.75u max 0.96u; √exp_avg_sq median 0.78u max 0.94u
#   AdamW 30-step trajectory, θ: wd=0 median 2.4u max 2.6u; wd=0.1 median 3.7u max 4.8u;
#        exp_avg max 1.8u; √exp_avg_sq max 2.1u (the EMAs forget old errors)
#   SGD per step: plain max 0.62u, momentum 0.9 max 0.93u, Nesterov max 1.47u;
#   SGD 30-step trajectory: plain max 2.3u, momentum max 4.8u, Nesterov max 4.2u
#   Ours vs torch.optim.AdamW (foreach=False, same op order): bitwise equal.

#: float32 unit roundoff, 2^-24.
F32_U = 2.0**-24

#: Per-step relative Frobenius error of a float32 AdamW/SGD parameter (or state tensor) against the
#: float64 reference started from the same state — strict: the first-order bound above, 4u = 2.4e-7
#: (measured max 1.47u). Lets through: rounding of the textbook op order (and, on the test domain, the seed's
#: float32 bias correction: measured 0.19× this bound over 10 steps).
F32_STEP_RTOL_STRICT = 4 * F32_U

#: Default per-step bound, 16u = 9.5e-7: 4× strict, room for any float32 evaluation order and for a
#: float32 bias correction (1 − fl32(0.95)ᵗ loses ≈ 10–20u at t = 1, times η‖û‖/‖θ‖ ≤ 0.3 → ≤ 6u).
#: Rejects (tests/impl/test_adamw.py, 10 steps, lr 1e-2, lr_mul 2, half the gradients ≈ ε): ε before bias
#: correction (nanochat #304) by 5100×, no bias correction by 5400×, decay with lr instead of lr·lr_mul by
#: 1050× — worst-step error over f32_trajectory_rtol(t).
F32_STEP_RTOL = 16 * F32_U


def f32_trajectory_rtol(steps: int, *, strict: bool = False) -> float:
    """Bound on rel_fro_error after ``steps`` float32 steps on precomputed gradients: steps × per-step.

    Linear (worst-case) accumulation; measured growth is ≈ √steps (30 steps: max 4.8u against 120u strict).
    """
    if steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    return steps * (F32_STEP_RTOL_STRICT if strict else F32_STEP_RTOL)


# Clipping (S5.1). The total norm accumulates the float32 gradients' squares in float64 (exact squares,
# no overflow or underflow for any float32 value), so its error is float64 summation error:
# ≤ n·2^-53 for n elements summed recursively, ~log2(n)·2^-53 pairwise. Measured: median 0, max 1.09·2^-52
# (24 seeds, norms 1e-33..1e33). 1e-12 covers recursive summation up to ~9000 elements and any pairwise.
#: Relative error of the returned total norm against the float64 reference on the same float32 gradients,
#: for an implementation that accumulates in float64 (optconform.impl does; its tests use this bound).
CLIP_NORM_RTOL = 1e-12
#: Conformance bounds on the returned total for any float32-family target. A norm accumulated in float32
#: (torch.linalg.vector_norm does) has relative error <= (log2 n + 1)·u/2 with pairwise/blocked summation of
#: n squares, plus u for the square root and the combination of per-tensor norms: <= 12u for n <= 2^20.
#: Default 32u (1.9e-6) = that with ~3x margin; strict 4u: what a float32 sum achieves on the suite's sizes
#: (n <= 512 elements per tensor, measured <= 1.5u for torch). Both reject a wrong norm (per-tensor instead of
#: global, missing square root, mean instead of sum) by orders of magnitude.
CLIP_TOTAL_RTOL = 32 * F32_U
CLIP_TOTAL_RTOL_STRICT = 4 * F32_U
#: Clipped gradient, elementwise: |g̃ − g| ≤ rtol·|g| + atol. g·coef rounds coef (u/2) and the product
#: (u/2): ≤ u; strict 2u for the split path (coef < 1.2e-38 applied as mantissa × powers of two).
#: atol = two float32 denormal spacings (2^-148) for products that underflow into the denormal range.
#: Measured max 1.83 in units of (u|g| + 2^-149), 24 seeds, coefficients down to 6e-44.
CLIP_GRAD_RTOL_STRICT = 2 * F32_U
#: Default: 4× strict (8u = 4.8e-7), room for a coefficient computed in float32 from a float32 total (u/2 more
#: per rounding) or applied as a multiply-by-reciprocal. Rejects a coefficient off by > 5e-7 relative: per-tensor
#: instead of global norms, clipping below the threshold, and torch's max_norm/(total + 1e-6) wherever
#: 1e-6/total > 5e-7, i.e. total < 2 (S5.2; the conformance cases include totals of 1e-8 .. 1e-3).
CLIP_GRAD_RTOL = 8 * F32_U
CLIP_GRAD_ATOL = 2.0**-148
# F32-SECTION-END

# --- float64 family: schedules (S4) --------------------------------------------------------------
#: Schedules are float64 scalar formulas. Relative tolerance on the value (absolute below 1e-290):
#: a different but correct float64 evaluation order costs a few ulp (2.2e-16 each); the costliest
#: correct one we accept accumulates one rounding per step, as chainable schedulers do
#: (torch.optim.lr_scheduler.ExponentialLR computes gamma**step with gamma = exp(-rate) rounded once):
#: relative error <= step · 2^-53 <= 1.1e-10 over the fuzzed domain (step <= 1e6). 1e-9 covers that
#: with margin. What it rejects: every formula mistake we know of moves the value by far more — a
#: rounding-rule slip at a boundary changes warmdown_iters by one, i.e. the multiplier by >= 1/N >= 1e-6
#: for N <= 1e6; an off-by-one in warmup by 1/warmup_iters; integer vs float division by O(1).
SCHEDULE_RTOL = 1e-9
SCHEDULE_ATOL = 1e-290
