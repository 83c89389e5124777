"""The ecosystem run: the suite on real optimizer libraries through their adapters, and COMPATIBILITY.md.

``nox -s ecosystem`` installs the libraries (pinned, ``--no-deps``) next to torch, then::

    python -m optconform.conformance.ecosystem run --reports reports/ecosystem     # one suite run per adapter
    python -m optconform.conformance.ecosystem render --reports reports/ecosystem \\
        --summaries docs/ecosystem --out COMPATIBILITY.md                          # the table, with explanations

``run`` starts, for every entry of :data:`LIBRARIES` whose adapter imports, the suite with ``--diagnose`` (seed 0,
the world sizes the entry names) and ``--report-json reports/ecosystem/<key>.json``. ``render`` reads those
reports and writes COMPATIBILITY.md: per library, each clause's verdict per level, the diagnosis, one line per
deviation (its regime, case and evidence, as the suite reports them), the library versions, the command, and for
each row the hand-written statement of :data:`EXPLANATIONS` (what the library's source does, read from the pinned
version). Each statement names the verdicts it explains; where a run's verdict differs, the row is flagged
(``⚠``) and ``render`` exits 1, so a library update that changes a verdict cannot pass unnoticed. The full reports
(about 1 MB each: every check of every case) stay under ``reports/`` (not committed); ``--summaries`` writes a
compact copy of each (no per-case records) next to the documentation, which is committed.

Only the standard library is imported at module level: the generator needs none of the libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from optconform.spec.levels import LEVELS

from .report import level_cell

#: the counts that make up the ``other`` column (the statuses that are neither passed, failed nor skipped)
OTHER_STATUSES = ("error", "mismatch", "unsupported", "not provided")
SEED = 0
COMMAND = "nox -s ecosystem"


@dataclass(frozen=True)
class Library:
    """One adapter the ecosystem run judges."""

    key: str  # report file stem and EXPLANATIONS key
    title: str
    target: str  # the --target
    distributions: tuple[str, ...]  # whose versions the document names
    source: str  # where the explanations were read
    world_sizes: str = ""  # the distributed cases run ('' none)
    env: tuple[tuple[str, str], ...] = ()  # environment of its suite run (shown in the document)


LIBRARIES: tuple[Library, ...] = (
    Library("torch_optim", "torch.optim", "optconform.conformance.adapters.torch_optim", ("torch",),
            "torch/optim/_muon.py, adamw.py, sgd.py, lr_scheduler.py, nn/utils/clip_grad.py, "
            "distributed/optim/zero_redundancy_optimizer.py (torch 2.13.0)", "1,2"),
    Library("pytorch_optimizer", "pytorch-optimizer", "optconform.conformance.adapters.pytorch_optimizer",
            ("pytorch-optimizer",),
            "pytorch_optimizer/optimizer/muon/muon.py, muon/base.py, optimizer/utils/matrix.py (4.1.0 wheel)"),
    Library("timm", "timm", "optconform.conformance.adapters.timm", ("timm",),
            "timm/optim/muon.py, timm/optim/adamw.py (1.0.31 wheel)"),
    Library("heavyball", "HeavyBall", "optconform.conformance.adapters.heavyball", ("heavyball",),
            "heavyball/__init__.py (Muon), chainable.py, utils.py (3.2.1 wheel)"),
    Library("muonium", "muonium (Muon)", "optconform.conformance.adapters.muonium", ("muonium", "triton"),
            "muonium/optim/optim.py, optim/algorithms/muon.py, orthogonalize/*.py, kernels/gram.py (0.2.0 wheel)"),
    Library("muonium-normuon", "muonium (NorMuon)", "optconform.conformance.adapters.muonium:normuon",
            ("muonium", "triton"), "muonium/optim/algorithms/normuon.py and as above (0.2.0 wheel)"),
    Library("muon_fsdp2", "muon-fsdp2 (FSDP2 Muon)", "optconform.conformance.adapters.muon_fsdp2", ("muon-fsdp2",),
            "muon_fsdp2.py (0.3.0 wheel): Muon.__init__, Muon.step, Fsdp1dWork, zeropower_via_newtonschulz5, "
            "apply_momentum, apply_scaling, adam_update", "1,2"),
    Library("optax", "optax (JAX)", "optconform.conformance.adapters.optax_adapter", ("optax", "jax", "jaxlib"),
            "optax 0.2.8: optax/contrib/_muon.py (muon, orthogonalize_via_newton_schulz), optax/_src/alias.py "
            "(adamw, sgd), transforms/_clipping.py (clip_by_global_norm: `g_norm < max_norm` keeps, else "
            "t / g_norm · max_norm), schedules/_schedule.py (exponential_decay), read for the adapter and again "
            "for this table"),
)
BY_KEY = {lib.key: lib for lib in LIBRARIES}


@dataclass(frozen=True)
class Explanation:
    """What a library's source does for one clause, and the verdicts that follows: ``expect`` maps a level to
    ``pass`` / ``FAIL`` / ``—`` (levels not named are not checked) and ``other`` to the statuses of the other column
    (``unsupported``, ``not provided``, ``error``, ``mismatch``, comma-separated; "" for none)."""

    expect: Mapping[str, str]
    text: str


def _e(text: str, **expect: str) -> Explanation:
    return Explanation(expect, text)


_NS_BF16_OVERFLOW = ("hardening: the norm is taken after the cast to bfloat16, whose sum of squares overflows above "
                     "‖G‖ ≈ 1.8e19, so at ‖G‖ = 1e30 X/‖X‖ is 0 and the output all zeros")
_NO_DIST = "the library has no ZeRO-2 distributed {what}; declared unsupported by the adapter"

#: (library key, clause) -> the hand-written statement of what the library's source does (see each adapter's
#: docstring for the file and version). A clause every case of which is *not provided* needs no entry.
EXPLANATIONS: dict[tuple[str, str], Explanation] = {
    # torch.optim (torch 2.13.0)
    ("torch_optim", "S3.5"): _e("torch.optim.SGD is the spec's torch form (heavy ball, Nesterov g + μ·buf)",
                                core="pass", other=""),
    ("torch_optim", "S4.2"): _e("StepLR's closed form", core="pass", other=""),
    ("torch_optim", "S4.3"): _e("ExponentialLR with gamma = exp(−rate), within the 1e-9 schedule bound", core="pass",
                                other=""),
    ("torch_optim", "S5.1"): _e("clip_grad_norm_ divides by total + 1e-6; the diagnosis names it (clip_rule='torch', "
                                "profile torch-optim), so core passes under it. hardening: its float32 norm overflows "
                                "for gradients of 1e30 and its float64 norm underflows near 1e-160",
                                core="pass", hardening="FAIL", other=""),
    ("torch_optim", "S6.2"): _e("_zeropower_via_newtonschulz: the seed's row, max(‖G‖, eps) (normalisation='clamp', "
                                "diagnosed). " + _NS_BF16_OVERFLOW + ". unsupported: batched (…, m, n) inputs, "
                                "which torch's function does not take",
                                core="pass", hardening="FAIL", other="unsupported"),
    ("torch_optim", "S7.2"): _e("torch.optim.Muon at its defaults: clamp, weight decay 0.1 with the unadjusted lr "
                                "(profile torch-optim, diagnosed). hardening: the same bfloat16 overflow at "
                                "gradients of 1e30. unsupported: a 3-D parameter (torch's Muon takes 2-D only)",
                                core="pass", hardening="FAIL", other="unsupported"),
    ("torch_optim", "S8.2"): _e("torch.optim.AdamW: ε after bias correction as the spec; it ignores p.lr_mul / "
                                "p.wd_mul, which the diagnosis names (param_muls='ignore')", core="pass", other=""),
    ("torch_optim", "S9.5"): _e("ZeroRedundancyOptimizer(AdamW) behind an all_reduce AVG: the invariants hold "
                                "(identical ranks, state held once, balanced memory); layout: it shards whole "
                                "parameters, not S9.3's dim-0 rows",
                                core="pass", hardening="pass", layout="FAIL", other=""),
    # pytorch-optimizer 4.1.0
    ("pytorch_optimizer", "S6.2"): _e("zero_power_via_newton_schulz_5 at its defaults: the seed's row × steps, "
                                      "X / clamp_min(‖X‖_F, 1e-7) in bfloat16, batched over leading dims: the seed "
                                      "but for clamp, which the diagnosis names (torch-optim). " + _NS_BF16_OVERFLOW,
                                      core="pass", hardening="FAIL", other=""),
    ("pytorch_optimizer", "S7.2"): _e("Muon with use_muon=True at its defaults: EMA momentum buf.lerp_(g, 1−β), "
                                      "Nesterov g.lerp_(buf, β), the seed's row, clamp_min 1e-7, weight decay 0, "
                                      "use_adjusted_lr=False i.e. lr·sqrt(max(1, rows/cols)) (muon/base.py::"
                                      "get_adjusted_lr; the 0.2·sqrt(max(A, B)) factor only with "
                                      "use_adjusted_lr=True): the seed except normalisation='clamp', as diagnosed. "
                                      "The 1e30 case is a golden one, skipped under clamp (goldens exist per profile)",
                                      core="pass", other=""),
    ("pytorch_optimizer", "S8.2"): _e("the library has no AdamW class of its own (pytorch_optimizer.AdamW is torch's); "
                                      "its Muon's internal AdamW groups (use_muon=False): decoupled p·(1 − lr·wd), "
                                      "m/bc1 / (sqrt(v)/sqrt(bc2) + eps), eps after bias correction; p.lr_mul / "
                                      "p.wd_mul ignored (diagnosed param_muls='ignore')", core="pass", other=""),
    ("pytorch_optimizer", "S9.4"): _e(_NO_DIST.format(what="Muon") + " (DistributedMuon is FSDP2/DTensor)",
                                      core="—", other="unsupported"),
    ("pytorch_optimizer", "S9.5"): _e(_NO_DIST.format(what="AdamW"), core="—", other="unsupported"),
    # timm 1.0.31
    ("timm", "S6.2"): _e("zeropower_via_newtonschulz with timm's default ns_coefficients='quintic': five "
                         "per-iteration rows from modded-nanogpt's train_gpt_medium.py ((4.0848, −6.8946, 2.9270) … "
                         "(2.8366, −3.0525, 1.2012)), which no spec option names (SPEC's rows: the seed's and "
                         "nanochat's Polar Express). The diagnosis picks the nearest (Polar Express) and its cases "
                         "fail at core: the verdict is the rows, not a bug in timm; clamp(min=1e-7) is also diagnosed. "
                         + _NS_BF16_OVERFLOW, core="FAIL", hardening="FAIL", other=""),
    ("timm", "S7.2"): _e("timm.optim.Muon at its defaults: the same quintic rows (not a spec option, so core fails as "
                         "for S6.2), clamp 1e-7 and adjust_lr_fn='match_rms_adamw' (0.2·sqrt(max(rows, cols))), both "
                         "diagnosed, EMA momentum and Nesterov g.lerp(buf, β) as the seed, weight decay 0",
                         core="FAIL", other=""),
    ("timm", "S8.2"): _e("timm.optim.AdamWLegacy (torch's AdamW copied, with caution and update clipping off): ε "
                         "after bias correction; p.lr_mul / p.wd_mul ignored (diagnosed). timm.optim.AdamW is "
                         "torch.optim.AdamW itself", core="pass", other=""),
    ("timm", "S9.4"): _e(_NO_DIST.format(what="Muon"), core="—", other="unsupported"),
    ("timm", "S9.5"): _e(_NO_DIST.format(what="AdamW"), core="—", other="unsupported"),
    # HeavyBall 3.2.1
    ("heavyball", "S6.2"): _e("utils.zeropower_via_newtonschulz5: the same five quintic rows as timm (no spec option, "
                              "so core fails under the nearest, Polar Express), clamp(min=1e-7) in the input dtype, "
                              "then a stochastic rounding to bfloat16. hardening: the float32 norm overflows at "
                              "‖G‖ = 1e30 (inf), the output is all zeros. unsupported: steps ≠ 5 (it asserts 5)",
                              core="FAIL", hardening="FAIL", other="unsupported"),
    ("heavyball", "S7.2"): _e("heavyball.Muon = (nesterov_ema, orthogonalize_update): Nesterov is g + EMA "
                              "(ema.lerp_(g, 1−β); g += ema), not g.lerp(buf, β), and the quintic rows: neither is "
                              "a spec option, so no profile reproduces it and core fails (the diagnosed options "
                              "are the search's nearest, not what HeavyBall does). Shape factor "
                              "sqrt(max(1, rows/cols)), weight decay 0. unsupported: ns_steps ≠ 5",
                              core="FAIL", other="unsupported"),
    ("heavyball", "S9.4"): _e(_NO_DIST.format(what="Muon"), core="—", other="unsupported"),
    ("heavyball", "S9.5"): _e(_NO_DIST.format(what="AdamW"), core="—", other="unsupported"),
    # muonium 0.2.0
    ("muonium", "S6.2"): _e("orthogonalize.zeropower(use_triton=False) at its defaults: newton_schulz (ns_loop), the "
                            "seed's row, X / (‖X‖_F + 1e-7) in bfloat16: the seed, as diagnosed. "
                            + _NS_BF16_OVERFLOW, core="pass", hardening="FAIL", other=""),
    ("muonium", "S7.2"): _e("unsupported on CPU: every Muon step reaches zeropower(use_triton=True) -> "
                            "kernels/gram.py::gram_, which asserts CUDA tensors. From the source (not run here): sum "
                            "momentum with Nesterov g + μ·buf, nanochat's Polar Express rows with X/(1.02·‖X‖ + 1e-6), "
                            "cautious weight decay 0.1 with the adjusted lr (--device cuda would judge it)",
                            core="—", other="unsupported"),
    ("muonium", "S9.4"): _e("muonium distributes through DTensor/FSDP placements, not ZeRO-2 over a process group; "
                            "declared unsupported", core="—", other="unsupported"),
    ("muonium-normuon", "S6.2"): _e("the same zeropower as muonium's Muon (see above)", core="pass",
                                    hardening="FAIL", other=""),
    ("muonium-normuon", "S7.2"): _e("unsupported on CPU for the same reason (the Triton gram kernel). From the source "
                                    "(not run here): muonium's Muon plus NorMuon with muon_beta2 0.95, per-row mean "
                                    "of u², u/(sqrt(v) + 1e-8), rescaled to keep ‖u‖_F", core="—",
                                    other="unsupported"),
    ("muonium-normuon", "S9.4"): _e("as muonium's Muon", core="—", other="unsupported"),
    # muon-fsdp2 0.3.0
    ("muon_fsdp2", "S9.7"): _e("W = 1 passes: one rank holds every whole matrix, and the step is the seed's Muon "
                               "(lerp momentum, Nesterov, the seed's bf16 Newton–Schulz, max(1, rows/cols)^0.5 with "
                               "rms_scale=False). At W = 2 the fully_shard and resume cases pass (Shard(0), dim 0 "
                               "even: Fsdp1dWork gathers the rows on rank i % W, concatenates them along dim 0, "
                               "orthogonalises once and scatters back). The live case fails: its Shard(1) pieces and "
                               "Replicate() copies are concatenated along dim 0 too (no placement is read), a "
                               "different matrix. The golden case is an error: the gather buffers are shaped like the "
                               "destination rank's own piece, so its 5×3 matrix (pieces of 3 and 2 rows) makes gloo "
                               "abort the process (SIGABRT, 'Received data size doesn't match expected size')",
                               core="FAIL", other="error"),
    ("muon_fsdp2", "S9.8"): _e("its AdamW groups are S8.2's AdamW on the local pieces (bias-corrected, ε after the "
                               "correction, decoupled decay): the live, FSDP2 and resume cases pass at W = 1 and 2. "
                               "It reads no p.lr_mul / p.wd_mul (torch.optim's convention): the golden cases, which "
                               "carry nanochat's multipliers, fail by exactly the multiplier (param_muls='ignore')",
                               core="FAIL", other=""),
    ("muon_fsdp2", "S9.9"): _e("Checkpoint is torch's recipe (adapters.torch_dcp; muon-fsdp2 has no checkpoint code): "
                               "its DTensor state reshards, and DTensorAdamW passes 1 → 2 and 2 → 1. DTensorMuon's "
                               "reshard cases fail for S9.7's live reason, not the checkpoint's: the reshard "
                               "trajectory is the live one (Shard(1) and Replicate() parameters), whose steps on 2 "
                               "ranks are a different matrix's from the first step there (step 6 of 1 → 2, step 0 "
                               "of 2 → 1). DistMuon / DistAdamW: not provided", core="FAIL", other="not provided"),
    # optax 0.2.8 (JAX 0.10.2), through the functional protocol; not re-read here: from its adapter's docstring
    ("optax", "S3.5"): _e("optax.sgd's trace is torch's heavy ball (trace = g + μ·trace, Nesterov g + μ·trace)",
                          core="pass", other=""),
    ("optax", "S4.2"): _e("optax.exponential_decay(staircase=True) computes in JAX's default float32: lr 1e-3 comes "
                          "back as 0.0010000000475 (float32's nearest), a relative error of 4.7e-8 against the 1e-9 "
                          "schedule bound; the formula is the spec's", core="FAIL", other=""),
    ("optax", "S4.3"): _e("optax.exponential_decay(transition_steps=1, decay_rate=exp(−rate)) in float32 as S4.2: "
                          "e^(−0.1·1000) = 3.7e-45 comes back 0; and at rate 1000, exp(−1000) is 0.0, for which "
                          "optax/schedules/_schedule.py (line 296) returns a constant schedule, so lr stays 0.1 "
                          "where the spec decays to 0 (read in the installed 0.2.8)", core="FAIL", other=""),
    ("optax", "S4.4"): _e("optax.schedules has no inverse-time decay (its schedules: constant, exponential, "
                          "polynomial, cosine, warmup/join variants); declared unsupported by the adapter",
                          other="unsupported"),
    ("optax", "S4.5"): _e("no nanochat warmup / constant / warmdown multiplier (optax.join_schedules could build one, "
                          "which would be the user's code, not optax's); declared unsupported", other="unsupported"),
    ("optax", "S4.6"): _e("no Muon momentum ramp: optax.contrib.muon takes beta as a hyperparameter (the adapter "
                          "injects the suite's value each step); declared unsupported", other="unsupported"),
    ("optax", "S5.1"): _e("clip_by_global_norm: scale max_norm/‖g‖ unless ‖g‖ < max_norm, the seed's rule (diagnosed "
                          "nanochat-2025-10); hardening: its float32 global norm overflows at gradients of 1e30. "
                          "unsupported: the float64 cases (the adapter declares float32 only)",
                          core="pass", hardening="FAIL", other="unsupported"),
    ("optax", "S6.2"): _e("orthogonalize_via_newton_schulz, frobenius preconditioning X/(‖X‖_F + eps), the seed's "
                          "row; hardening: the float32 norm overflows at ‖G‖ = 1e30 (all-zero output)",
                          core="pass", hardening="FAIL", other=""),
    ("optax", "S7.2"): _e("optax.contrib.muon: bias-corrected momentum and eps 1e-8 (profile optax, diagnosed); "
                          "hardening: the same float32 overflow at gradients of 1e30", core="pass", hardening="FAIL",
                          other=""),
    ("optax", "S8.2"): _e("optax.adamw: m̂/(√v̂ + ε) + λθ, then ×(−lr): torch's step; no lr_mul / wd_mul "
                          "(diagnosed param_muls='ignore'). unsupported: a float64 case", core="pass",
                          other="unsupported"),
}


# ----------------------------------------------------------------------------------------------------------- run


def run(reports: Path, keys: Sequence[str] = (), python: str = sys.executable, extra: Sequence[str] = ()) -> int:
    """The suite on every library (or ``keys``) whose adapter imports; returns the number of runs that broke
    (pytest exit codes other than 0 and 1, i.e. not a verdict)."""
    reports.mkdir(parents=True, exist_ok=True)
    broken = 0
    for lib in LIBRARIES:
        if keys and lib.key not in keys:
            continue
        module = lib.target.partition(":")[0]
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        if probe.returncode:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            print(f"ecosystem: skipping {lib.key}: {module} does not import ({last})", flush=True)
            continue
        out = reports / f"{lib.key}.json"
        cmd = [python, "-m", "pytest", "--pyargs", "optconform.conformance.cases", "-q", "-p", "no:cacheprovider",
               "--target", lib.target, "--diagnose", "--seed", str(SEED), "--world-sizes", lib.world_sizes,
               "--report-json", str(out), *extra]
        env = "".join(f"{k}={v} " for k, v in lib.env)
        print(f"ecosystem: {lib.key}: {env}{shlex.join(cmd[1:])}", flush=True)
        rc = subprocess.run(cmd, env={**os.environ, **dict(lib.env)}).returncode
        if rc not in (0, 1):
            print(f"ecosystem: {lib.key}: pytest exited {rc}", flush=True)
            broken += 1
    return broken


# -------------------------------------------------------------------------------------------------------- render


def _others(counts: Mapping[str, int]) -> list[str]:
    return [s for s in OTHER_STATUSES if counts.get(s)]


def mismatches(key: str, row: Mapping) -> list[str]:
    """How ``row`` (a report summary row) departs from the explanation of (``key``, its clause); [] when it agrees,
    or when the row is entirely *not provided* and there is no explanation."""
    exp = EXPLANATIONS.get((key, row["clause"]))
    if exp is None:
        if _others(row["counts"]) == ["not provided"] and not row["counts"].get("passed") \
                and not row["counts"].get("failed"):
            return []
        return ["no explanation in conformance/ecosystem.py EXPLANATIONS"]
    out = []
    for lv, want in exp.expect.items():
        if lv == "other":
            got = ", ".join(_others(row["counts"]))
            if got != want:
                out.append(f"other: explained {want or 'nothing'!r}, ran {got or 'nothing'!r}")
            continue
        cell = row["levels"].get(lv)
        got = "" if cell is None else cell.get("verdict") or ("—" if not cell["cases"] else
                                                              "FAIL" if cell["failed"] else "pass")
        if got != want:
            out.append(f"{lv}: explained {want!r}, ran {got or 'no such level'!r}")
    return out


def _versions(lib: Library, versions: Mapping[str, str] | None, summary: Mapping | None) -> str:
    recorded = (summary or {}).get("versions", {})
    parts = []
    for d in lib.distributions:
        v = recorded.get(d) or (versions or {}).get(d)  # what the report ran with, else what is installed
        if v is None:
            try:
                v = metadata.version(d)
            except metadata.PackageNotFoundError:
                v = "not installed"
        parts.append(f"{d} {v}")
    return ", ".join(parts)


def compact(report: Mapping, versions: Mapping[str, str]) -> dict:
    """A report without its per-case records (what is committed), with the versions it ran with."""
    return {k: v for k, v in report.items() if k != "cases"} | {"versions": dict(versions)}


def render(reports: Mapping[str, Mapping], versions: Mapping[str, str] | None = None,
           command: str = COMMAND) -> tuple[str, list[str]]:
    """COMPATIBILITY.md from ``reports`` (library key -> a ``--report-json`` report, full or compact); returns the
    text and the flags (one per row whose verdict no longer matches its explanation)."""
    flags: list[str] = []
    body: list[str] = []
    index = ["| library | versions | target | run |", "|---|---|---|---|"]
    for lib in LIBRARIES:
        rep = reports.get(lib.key)
        if rep is None:
            continue
        opts = rep.get("options", {})
        ws = opts.get("world_sizes", lib.world_sizes)
        env = " ".join(f"{k}={v}" for k, v in lib.env)
        env = f"`{env}` " if env else ""
        index.append(f"| {lib.title} | {_versions(lib, versions, rep)} | `{rep.get('target', lib.target)}` | "
                     f"{env}`--diagnose --seed {opts.get('seed', SEED)} --world-sizes '{ws}'` on "
                     f"{opts.get('device', 'cpu')}, required {', '.join(rep.get('required', ['core']))}: "
                     f"{'pass' if rep.get('passed') else 'FAIL'} |")
        body += ["", f"## {lib.title}", "", f"Source read for the explanations: {lib.source}.", "",
                 "| clause | core | hardening | layout | other | what the library's source does (hand-written) | "
                 "matches |", "|---|---|---|---|---|---|---|"]
        absent = []
        deviations = []
        for row in rep.get("summary", []):
            counts = row["counts"]
            if _others(counts) == ["not provided"] and lib.key and (lib.key, row["clause"]) not in EXPLANATIONS \
                    and not counts.get("passed") and not counts.get("failed"):
                absent.append(f"{row['clause']} `{row['name']}`")
                continue
            cells = [level_cell(row["levels"].get(lv)) if lv in row["clause_levels"] else "" for lv in LEVELS]
            other = ", ".join(f"{counts[s]} {s}" for s in _others(counts))
            exp = EXPLANATIONS.get((lib.key, row["clause"]))
            bad = mismatches(lib.key, row)
            for b in bad:
                flags.append(f"{lib.title} {row['clause']} {row['name']}: {b}")
            mark = "yes" if not bad else "⚠ " + "; ".join(bad)
            text = exp.text if exp else "—"
            body.append(f"| {row['clause']} `{row['name']}` | {' | '.join(cells)} | {other} | {text} | {mark} |")
            for r in row.get("reasons", []):
                lv = f" [{r['levels']}]" if r.get("levels") else ""
                deviations.append(f"- {row['clause']} `{row['name']}`: {r['status']} ×{r['cases']}{lv}: "
                                  f"{r['reason']}")
        if absent:
            body += ["", f"Not provided (no counterpart in the library): {', '.join(absent)}."]
        diags = rep.get("diagnoses", [])
        if diags:
            body += ["", "Diagnosis (`--diagnose`; the cases above ran under the diagnosed options):", ""]
            body += [f"- {d['line']}  \n  → {d.get('confirmation', '')}" for d in diags]
        if deviations:
            body += ["", "Deviations (status ×cases [levels]: the first case's regime, check and evidence):", ""]
            body += deviations
    head = ["# Compatibility of optimizer libraries with the optconform spec", "",
            f"Generated by `{command}` (`python -m optconform.conformance.ecosystem render`) from the suite's JSON "
            "reports; do not edit by hand. Each library runs through an adapter in `conformance/adapters/` that maps "
            "call signatures only (its docstring says what it maps and what it leaves out), at the library's own "
            "defaults, with `--diagnose`: the suite finds the variant the library computes and judges every case "
            "under it, so a `FAIL` at core means no variant the spec knows reproduces the library there. Verdict "
            "cells as in README (\"What each verdict means\"): `pass N`, `FAIL k/N`, `—` (no case at that level). "
            "The last column says whether the verdicts match the hand-written explanation of what the library's "
            "source does (`conformance/ecosystem.py`, `EXPLANATIONS`); `⚠` marks a row where they no longer do.", ""]
    if flags:
        head += ["**Verdicts that no longer match their explanation:**", ""] + [f"- ⚠ {f}" for f in flags] + [""]
    return "\n".join(head + index + body) + "\n", flags


def _load_reports(folder: Path) -> dict[str, dict]:
    out = {}
    for lib in LIBRARIES:
        p = folder / f"{lib.key}.json"
        if p.exists():
            out[lib.key] = json.loads(p.read_text())
    return out


def _installed_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        for d in lib.distributions:
            try:
                out[d] = metadata.version(d)
            except metadata.PackageNotFoundError:
                pass
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m optconform.conformance.ecosystem", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the suite on every library whose adapter imports")
    r.add_argument("--reports", type=Path, default=Path("reports/ecosystem"))
    r.add_argument("--only", nargs="*", default=[], help="library keys (default: all)")
    g = sub.add_parser("render", help="write COMPATIBILITY.md from the reports")
    g.add_argument("--reports", type=Path, default=Path("reports/ecosystem"))
    g.add_argument("--summaries", type=Path, default=None, help="also write compact reports here (committed)")
    g.add_argument("--out", type=Path, default=Path("COMPATIBILITY.md"))
    args = ap.parse_args(argv)
    if args.cmd == "run":
        return 1 if run(args.reports, args.only) else 0
    reports = _load_reports(args.reports)
    if not reports:
        print(f"ecosystem: no reports under {args.reports}", file=sys.stderr)
        return 2
    versions = _installed_versions()
    if args.summaries is not None:
        args.summaries.mkdir(parents=True, exist_ok=True)
        for key, rep in reports.items():
            lib = BY_KEY[key]
            mine = {d: versions[d] for d in lib.distributions if d in versions}
            (args.summaries / f"{key}.json").write_text(json.dumps(compact(rep, mine), indent=1, default=str) + "\n")
    text, flags = render(reports, versions)
    args.out.write_text(text)
    print(f"ecosystem: wrote {args.out} ({len(reports)} libraries)")
    for f in flags:
        print(f"ecosystem: ⚠ {f}", file=sys.stderr)
    return 1 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
