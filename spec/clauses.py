"""The clause table: every function clause of SPEC.md, written once.

For each clause: its id, the reference functions its heading names, its title, its hyperparameters (name,
default, domain), the protocol name and typed signature a target provides for it (if any), its input
regimes with their verdict levels, and the ownership rule its layout checks judge. SPEC.md's headings,
clause index and protocol block, README's protocol block, the golden manifest's clause list, the
conformance case marks and the report's clause table are generated from this table or checked against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from . import protocol as P
from .hyper import (
    Hyper,
    HyperSet,
    Rule,
    boolean,
    choice,
    count,
    integer,
    nonnegative,
    optional,
    pair,
    per_parameter,
    positive,
    triple,
    unit_interval,
)
from .levels import (
    CORE,
    EVEN_ROWS,
    HARDENING,
    LAYOUT,
    NORM_OVERFLOW_REGIME,
    NORM_UNDERFLOW_REGIME,
    ORDINARY,
    ORDINARY_WITH_EPS,
    RANK_FAULT,
    UNEVEN_ROWS,
    Regime,
)

__all__ = ["Clause", "CLAUSES", "NS_COEFFICIENTS", "NS_EPS", "NS_ROWS", "OPTION_NAMES", "TORCH_CLIP_EPS"]

#: (a, b, c) of the seed's quintic p(s) = a·s + b·s³ + c·s⁵ (nanochat ``zeropower_via_newtonschulz5``).
NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
#: The seed's additive guard in X / (‖X‖_F + eps).
NS_EPS = 1e-7
#: The constant torch.nn.utils.clip_grad_norm_ adds to the total norm before dividing (S5.2; S5.1's clip_rule="torch").
TORCH_CLIP_EPS = 1e-6
#: Named per-iteration coefficient rows (S6.2's ``rows``). ``polar_express``: the five rows nanochat master and
#: modded-nanogpt use (Amsel et al. 2025, arXiv 2505.16932: 5 iterations, safety 2e-2, cushion 2), as printed in
#: nanochat/optim.py. Other projects' "Polar Express" rows differ; a profile names its rows exactly.
NS_ROWS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "polar_express": (
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.042929935166739, -2.808917465908714, 0.5000178451051316),
        (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
        (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
        (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
    ),
}


@dataclass(frozen=True)
class Clause:
    """One function clause ``S<section>.<k>`` of SPEC.md."""

    id: str
    functions: tuple[str, ...]  # the reference functions the heading names, in heading order
    title: str  # the heading's text after the function names
    module: str  # module under optconform.reference
    hyper: HyperSet = HyperSet()
    primary: str | None = None  # the function golden cases call (default: the first)
    protocol: tuple[str, type] | None = None  # (name a target provides, its typing.Protocol)
    regimes: tuple[Regime, ...] = ()  # input regimes of the conformance cases; () = one ordinary regime, core
    layout: str | None = None  # the clause whose ownership rule the layout checks judge

    @property
    def name(self) -> str:
        """The clause's function: what the report calls it."""
        return self.primary or self.functions[0]

    @property
    def reference(self) -> str:
        """``module.function`` under ``optconform.reference`` (the golden manifest's entry)."""
        return f"{self.module}.{self.name}"

    @property
    def protocol_name(self) -> str | None:
        return self.protocol[0] if self.protocol else None

    @cached_property
    def protocol_keywords(self) -> tuple[str, ...]:
        """The hyperparameters the suite passes the target by keyword."""
        return P.call_shape(self.protocol[1])[1] if self.protocol else ()

    @property
    def levels(self) -> tuple[str, ...]:
        """The verdict levels this clause's checks can belong to."""
        found = {r.level for r in self.regimes} | {CORE} | ({LAYOUT} if self.layout else set())
        return tuple(lv for lv in (CORE, HARDENING, LAYOUT) if lv in found)

    @property
    def heading(self) -> str:
        """SPEC.md's heading line for this clause (without the leading ``### ``)."""
        return f"{self.id} {', '.join(f'`{f}`' for f in self.functions)} — {self.title}"

    def regime(self, norms: float | list[float] | tuple[float, ...] = (), structural: tuple[str, ...] = ()
               ) -> Regime:
        """The input regime of a case whose governing norms (the norms the clause computes) are ``norms`` and
        which shows the structural regimes named in ``structural``.

        A structural hardening regime, or a norm in a norm-range hardening regime, makes the whole case that
        regime; zero norms are ordinary."""
        values = [norms] if isinstance(norms, (int, float)) else list(norms)
        ordinary = next((r for r in self.regimes if r.level == CORE), _ORDINARY_ONLY)
        by_name = {r.name: r for r in self.regimes}
        unknown = [s for s in structural if s not in by_name]
        if unknown:
            raise KeyError(f"{self.id} has no regime {unknown[0]!r}; its regimes: {list(by_name)}")
        for name in structural:
            if by_name[name].level != CORE:
                return by_name[name]
        for v in values:
            if not v or math.isnan(v):
                continue
            for r in self.regimes:
                if r.level != CORE and r.holds(abs(v)) and not ordinary.holds(abs(v)):
                    return r
        return ordinary


_ORDINARY_ONLY = Regime("ordinary", CORE, (0.0, math.inf), "every input (no hardening regime)")

# ------------------------------------------------------------------------------------ hyperparameters

_LR = Hyper("lr", nonnegative(), doc="learning rate η; 0 leaves the parameters unchanged")
_BETA = Hyper("beta", unit_interval(closed_right=False), doc="momentum β")
_MOMENTUM_SGD = Hyper("momentum", unit_interval(closed_right=False), 0.0, "momentum μ (0: plain SGD)")
_NESTEROV_SGD = Hyper("nesterov", boolean(), False, "torch's Nesterov form")
_NESTEROV_NEEDS_MOMENTUM = Rule(("momentum", "nesterov"), "nesterov=True needs momentum > 0",
                                lambda momentum, nesterov: not (nesterov and momentum == 0.0),
                                lambda momentum, nesterov: f"nesterov requires momentum > 0; got momentum={momentum!r}")
_STEP = Hyper("step", count(0), doc="the schedule's step counter")
_IT = Hyper("it", count(0), doc="the training iteration")
_INITIAL_LR = Hyper("initial_lr", positive(), doc="the learning rate at step 0")
_NUM_ITERATIONS = Hyper("num_iterations", count(0), doc="the run's length")
_IT_IN_RUN = Rule(("num_iterations", "it"), "it <= num_iterations",
                  lambda num_iterations, it: it <= num_iterations,
                  lambda num_iterations, it: f"it must be <= num_iterations ({num_iterations}); got {it!r}")
_LR_MULTIPLIER = HyperSet(
    _NUM_ITERATIONS, _IT,
    Hyper("warmup_ratio", unit_interval(), 0.0, "warmup length / num_iterations"),
    Hyper("warmdown_ratio", unit_interval(), 0.2, "warmdown length / num_iterations"),
    Hyper("final_lr_frac", unit_interval(), 0.0, "the multiplier at the end of the warmdown"),
    rules=[_IT_IN_RUN])
_MAX_NORM = HyperSet(Hyper("max_norm", positive(), doc="the largest total norm left unclipped"))
_CLIP_RULE = Hyper("clip_rule", choice("exact", "torch"), "exact",
                   "S5.1's coefficient max_norm/total, or S5.2's max_norm/(total + 1e-6) (torch.nn.utils)")
_NS_STEPS = Hyper("steps", integer(0), 5, "Newton–Schulz iterations")
_COEFFICIENTS = Hyper("coefficients", triple(), NS_COEFFICIENTS, "(a, b, c) of p(s) = a·s + b·s³ + c·s⁵")
# Variant options (SPEC "Variant options"): each default is the seed's (profile nanochat-2025-10).
_ROWS = Hyper("rows", optional(choice(*NS_ROWS)), None,
              "named per-iteration rows (NS_ROWS) instead of `coefficients` every iteration")
_ROW_CUT = Hyper("row_cut", choice("repeat_last", "truncate"), "repeat_last",
                 "past the end of `rows`: repeat the last row, or stop iterating (nanochat's rows[:ns_steps])")
_NORMALISATION = Hyper("normalisation", choice("plus_eps", "clamp"), "plus_eps",
                       "X/(safety·‖X‖_F + eps), or X/max(‖X‖_F, eps) (torch.optim.Muon)")
_SAFETY = Hyper("safety", positive(), 1.0, "factor on ‖X‖_F in the normalisation (nanochat master: 1.01)")
_NS_OPTIONS = (_ROWS, _ROW_CUT, _NORMALISATION, _SAFETY)
_MUON_OPTIONS = (
    Hyper("ns_eps", positive(), NS_EPS, "S6.2's eps in the normalisation"),
    *_NS_OPTIONS,
    Hyper("momentum_form", choice("ema", "sum", "bias_corrected"), "ema",
          "buf = β·buf + (1−β)·g, buf = β·buf + g (Nesterov g + β·buf), or optax's bias-corrected EMA"),
    Hyper("muoneq", boolean(), False, "MuonEq row equilibration before orthogonalisation (S6.4)"),
    Hyper("muon_plus", boolean(), False, "Muon+ rescale to ‖O‖_F = sqrt(min(rows, cols)) (S7.5)"),
    Hyper("normuon_beta2", optional(unit_interval(closed_left=False, closed_right=False)), None,
          "NorMuon's second-moment β₂ (S7.4); None: off"),
    Hyper("lr_scale", choice("original", "match_rms_adamw"), "original", "the shape factor rule (S7.1)"),
    Hyper("weight_decay", nonnegative(), 0.0, "Muon weight decay λ (S7.6); the seed has none"),
    Hyper("weight_decay_lr", choice("base", "adjusted"), "base",
          "decay with the group lr, or with lr × the shape factor (S7.6)"),
    Hyper("weight_decay_mode", choice("decoupled", "cautious"), "decoupled",
          "θ·(1 − η·λ) everywhere, or only where update·θ >= 0 (S7.6)"),
)
_MUON = HyperSet(
    Hyper("lr", nonnegative(), 0.02, "learning rate (the seed's Muon default)"),
    Hyper("momentum", unit_interval(closed_right=False), 0.95, "EMA coefficient β of the momentum buffer"),
    Hyper("nesterov", boolean(), True, "orthogonalise lerp(g, buf, β) instead of buf"),
    Hyper("ns_steps", integer(0), 5, "Newton–Schulz iterations"),
    *_MUON_OPTIONS)
_ADAM_COMMON = (Hyper("lr", nonnegative(), 1e-3, "learning rate"),)
_ADAM = HyperSet(
    *_ADAM_COMMON,
    Hyper("betas", pair(unit_interval(closed_right=False)), (0.9, 0.999), "(β1, β2) of the moment EMAs"),
    Hyper("eps", positive(), 1e-8, "added to √v̂"),
    Hyper("weight_decay", nonnegative(), 0.0, "coupled (L2) decay"))
_ADAM_OPTIONS = (
    Hyper("eps_placement", choice("after", "before"), "after",
          "ε after bias correction, m̂/(√v̂ + ε); or before it, m̂/(√v̂ + ε/√(1 − β₂ᵗ)) (S8.3)"),
    Hyper("eps_root", nonnegative(), 0.0, "optax's ε inside the root, √(v̂ + eps_root) (S8.3)"),
)
_ADAMW = HyperSet(
    *_ADAM_COMMON,
    Hyper("betas", pair(unit_interval(closed_right=False)), (0.8, 0.95), "(β1, β2); nanochat's values"),
    Hyper("eps", positive(), 1e-10, "added to √v̂ after bias correction; nanochat's value"),
    Hyper("weight_decay", nonnegative(), 0.0, "decoupled decay, θ·(1 − lr·lr_mul·wd·wd_mul)"),
    *_ADAM_OPTIONS)
_PARAM_MULS = Hyper("param_muls", choice("read", "ignore"), "read",
                    "read nanochat's p.lr_mul / p.wd_mul, or ignore them (torch.optim.AdamW, nanochat master)")
#: the variant options (SPEC "Variant options"): hyperparameters a profile sets and the protocol never passes
OPTION_NAMES: tuple[str, ...] = tuple(h.name for h in (*_MUON_OPTIONS, *_ADAM_OPTIONS, _PARAM_MULS, _CLIP_RULE))
_MULS = (Hyper("lr_mul", nonnegative(), 1.0, "per-parameter lr multiplier (attribute p.lr_mul)"),
         Hyper("wd_mul", nonnegative(), 1.0, "per-parameter decay multiplier (attribute p.wd_mul)"))
_RANK_MULS = (Hyper("lr_muls", per_parameter(nonnegative()), None, "p.lr_mul of each parameter (None: all 1)"),
              Hyper("wd_muls", per_parameter(nonnegative()), None, "p.wd_mul of each parameter (None: all 1)"))
_MODEL_DIM = Hyper("model_dim", integer(1), doc="the model width d_model")

_NS_REGIMES = (ORDINARY_WITH_EPS, NORM_OVERFLOW_REGIME)

# ------------------------------------------------------------------------------------------- clauses

CLAUSES: tuple[Clause, ...] = (
    Clause("S2.1", ("gd_step",), "one gradient-descent step", "descent", HyperSet(_LR)),
    Clause("S2.2", ("linear_regression_loss", "linear_regression_grad"),
           "mean squared error of a linear model", "descent", primary="linear_regression_grad"),
    Clause("S2.3", ("batch_gd",), "full-batch gradient descent on S2.2's loss", "descent",
           HyperSet(_LR, Hyper("num_epochs", integer(0), doc="epochs (updates)"))),
    Clause("S2.4", ("sgd_epoch",), "one stochastic epoch, one sample per update", "descent", HyperSet(_LR)),
    Clause("S2.5", ("minibatch_epoch",), "one mini-batch epoch", "descent",
           HyperSet(_LR, Hyper("batch_size", integer(1), doc="rows per batch B"),
                    Hyper("drop_last", boolean(), False, "skip a final batch shorter than B"))),
    Clause("S2.6", ("converged", "gradient_descent"), "the seed's stopping rules", "descent",
           HyperSet(_LR, Hyper("max_iterations", integer(0), doc="update budget"),
                    Hyper("grad_tol", optional(positive()), None, "stop when ‖g‖ < grad_tol"),
                    Hyper("loss_tol", optional(positive()), None, "stop when |ΔL| < loss_tol")),
           primary="gradient_descent"),
    Clause("S3.1", ("heavy_ball",), "the seed's momentum (5.7.1)", "momentum", HyperSet(_LR, _BETA)),
    Clause("S3.2", ("nesterov_lookahead",), "the seed's Nesterov form (5.7.2)", "momentum", HyperSet(_LR, _BETA)),
    Clause("S3.3", ("nesterov_torch",), "torch.optim.SGD's Nesterov form", "momentum", HyperSet(_LR, _BETA)),
    Clause("S3.4", ("lookahead_to_torch", "torch_to_lookahead"), "the change of variables between S3.2 and S3.3",
           "momentum", HyperSet(_LR, _BETA)),
    Clause("S3.5", ("sgd",), "the SGD optimizer step (torch form)", "momentum",
           HyperSet(_LR, _MOMENTUM_SGD, _NESTEROV_SGD, rules=[_NESTEROV_NEEDS_MOMENTUM]),
           protocol=("SGD", P.SGDFactory)),
    Clause("S4.1", ("constant_lr",), "fixed learning rate", "schedules",
           HyperSet(_STEP, Hyper("lr", positive(), doc="the learning rate"))),
    Clause("S4.2", ("step_decay_lr",), "piecewise-constant decay", "schedules",
           HyperSet(_STEP, _INITIAL_LR, Hyper("decay_rate", unit_interval(closed_left=False), doc="factor per plateau"),
                    Hyper("decay_steps", count(1), doc="plateau length")),
           protocol=("step_decay_lr", P.StepDecayLr)),
    Clause("S4.3", ("exponential_decay_lr",), "exponential decay", "schedules",
           HyperSet(_STEP, _INITIAL_LR, Hyper("decay_rate", nonnegative(), doc="rate in exp(−rate·step)")),
           protocol=("exponential_decay_lr", P.ExponentialDecayLr)),
    Clause("S4.4", ("inverse_time_decay_lr",), "inverse-time decay", "schedules",
           HyperSet(_STEP, _INITIAL_LR, Hyper("decay_rate", nonnegative(), doc="rate in 1/(1 + rate·step)")),
           protocol=("inverse_time_decay_lr", P.InverseTimeDecayLr)),
    Clause("S4.5", ("lr_multiplier",), "nanochat warmup / constant / warmdown", "schedules", _LR_MULTIPLIER,
           protocol=("lr_multiplier", P.LrMultiplier)),
    Clause("S4.6", ("muon_momentum",), "Muon momentum warm-up", "schedules",
           HyperSet(_IT, Hyper("start", unit_interval(closed_right=False), 0.85, "momentum at it = 0"),
                    Hyper("end", unit_interval(closed_right=False), 0.95, "momentum from ramp_steps on"),
                    Hyper("ramp_steps", count(1), 300, "ramp length")),
           protocol=("muon_momentum", P.MuonMomentum)),
    Clause("S5.1", ("clip_grad_norm",), "exact norm clipping", "clipping", _MAX_NORM.extend(_CLIP_RULE),
           protocol=("clip_grad_norm", P.ClipGradNorm),
           regimes=(ORDINARY, NORM_OVERFLOW_REGIME, NORM_UNDERFLOW_REGIME)),
    Clause("S5.2", ("clip_grad_norm_torch",), "`torch.nn.utils.clip_grad_norm_`'s rule", "clipping", _MAX_NORM),
    Clause("S6.1", ("polar_factor",), "exact orthogonal polar factor", "orthogonalize"),
    Clause("S6.2", ("zeropower",),
           "Newton–Schulz quintic (nanochat `zeropower_via_newtonschulz5`), float64", "orthogonalize",
           HyperSet(_NS_STEPS, _COEFFICIENTS, Hyper("eps", positive(), NS_EPS, "X / (‖X‖_F + eps)"), *_NS_OPTIONS),
           protocol=("zeropower", P.Zeropower), regimes=_NS_REGIMES),
    Clause("S6.3", ("ns_singular_value_map",), "what Newton–Schulz does, and does not, converge to",
           "orthogonalize", HyperSet(_NS_STEPS, _COEFFICIENTS)),
    Clause("S6.4", ("equilibrate_rows",), "MuonEq row equilibration", "orthogonalize"),
    Clause("S7.1", ("muon_aspect_scale",), "shape factor of the Muon update", "muon",
           _MUON.only("lr_scale")),
    Clause("S7.2", ("muon",), "one Muon step (nanochat `Muon.step`, one parameter)", "muon", _MUON,
           protocol=("Muon", P.MuonFactory), regimes=_NS_REGIMES),
    Clause("S7.3", ("muon_momentum_step",), "momentum form and Nesterov blend", "muon",
           _MUON.only("momentum", "nesterov", "momentum_form")),
    Clause("S7.4", ("normuon",), "NorMuon per-row second moment", "muon", _MUON.only("normuon_beta2")),
    Clause("S7.5", ("muon_plus",), "Muon+ Frobenius renormalisation", "muon"),
    Clause("S7.6", ("muon_weight_decay",), "Muon weight decay: none, decoupled, cautious", "muon",
           _MUON.only("weight_decay", "weight_decay_mode")),
    Clause("S8.1", ("adam",), "Adam with optional coupled (L2) weight decay", "adam", _ADAM),
    Clause("S8.2", ("adamw",), "AdamW with decoupled weight decay (nanochat / torch.optim.AdamW)", "adam",
           _ADAMW.extend(*_MULS, _PARAM_MULS), protocol=("AdamW", P.AdamWFactory)),
    Clause("S8.3", ("adam_denominator",), "where ε enters Adam's step", "adam",
           _ADAMW.only("eps", *(h.name for h in _ADAM_OPTIONS))),
    Clause("S9.1", ("mean_gradient",), "the AVG reduction", "zero2"),
    Clause("S9.2", ("muon_shape_groups", "muon_owner"), "DistMuon ownership", "zero2"),
    Clause("S9.3", ("adamw_row_shard",), "DistAdamW ownership", "zero2"),
    Clause("S9.4", ("dist_muon",), "one DistMuon step", "zero2", _MUON,
           protocol=("DistMuon", P.DistMuonFactory), regimes=(*_NS_REGIMES, RANK_FAULT), layout="S9.2"),
    Clause("S9.5", ("dist_adamw",), "one DistAdamW step", "zero2", _ADAMW.extend(*_RANK_MULS, _PARAM_MULS),
           protocol=("DistAdamW", P.DistAdamWFactory), regimes=(EVEN_ROWS, UNEVEN_ROWS, RANK_FAULT), layout="S9.3"),
    Clause("S9.6", ("dtensor_shard",), "DTensor placements", "zero2"),
    Clause("S9.7", ("dtensor_muon",), "one Muon step on DTensor parameters", "zero2", _MUON,
           protocol=("DTensorMuon", P.DTensorMuonFactory), regimes=(*_NS_REGIMES, RANK_FAULT), layout="S9.6"),
    Clause("S9.8", ("dtensor_adamw",), "one AdamW step on DTensor parameters", "zero2",
           _ADAMW.extend(*_RANK_MULS, _PARAM_MULS), protocol=("DTensorAdamW", P.DTensorAdamWFactory),
           regimes=(RANK_FAULT,), layout="S9.6"),
    Clause("S9.9", ("reshard",), "a checkpoint saved on W ranks, resumed on W′", "zero2",
           protocol=("Checkpoint", P.Checkpoint)),
    Clause("S10.1", ("dmodel_lr_scale",), "AdamW learning-rate scale by model width", "nanochat",
           HyperSet(_MODEL_DIM)),
    Clause("S10.2", ("nanochat_param_groups",), "`GPT.setup_optimizers`", "nanochat",
           HyperSet(_MODEL_DIM, Hyper("unembedding_lr", nonnegative(), 0.004, "lm_head's lr before the d_model scale"),
                    Hyper("embedding_lr", nonnegative(), 0.2, "wte's lr before the d_model scale"),
                    Hyper("matrix_lr", nonnegative(), 0.02, "the Muon group's lr (unscaled)"),
                    Hyper("weight_decay", nonnegative(), 0.0, "the AdamW groups' weight decay"))),
    Clause("S10.3", ("apply_schedules",), "per-iteration hyperparameters (base_train.py)", "nanochat",
           _LR_MULTIPLIER),
    Clause("S10.4", ("train_step",), "one base_train.py step", "nanochat",
           _LR_MULTIPLIER.extend(Hyper("grad_clip", nonnegative(), 1.0, "max_norm of S5.1; 0 turns clipping off"),
                                 _CLIP_RULE)),
)
