"""Golden cases of the variant-option clauses (SPEC "Variant options and profiles"): S6.4, S7.3–S7.6, S8.3.

They live in their own file (``options.npz``), so the seed profile's files stay byte for byte what they were."""

from __future__ import annotations

import numpy as np

from optconform.golden._case import Case, gaussian, seeded
from optconform.reference import adam, muon, orthogonalize


def option_cases() -> list[Case]:
    cases = []
    cid = "options.equilibrate_rows.graded_rows_12x40"
    seed, rng = seeded(cid)
    g = gaussian(rng, 12, 40) * np.logspace(-3, 2, 12)[:, None]
    g[3] = 0.0
    cases.append(Case(cid, "S6.4", "orthogonalize.equilibrate_rows", "row norms 1e-3 … 1e2 and a zero row",
                      "MuonEq", {}, {"G": g}, {"X": orthogonalize.equilibrate_rows(g)}, seed=seed))
    for form in ("ema", "sum", "bias_corrected"):
        for nesterov in (True, False):
            cid = f"options.muon_momentum_step.{form}_nesterov{int(nesterov)}_t3"
            seed, rng = seeded(cid)
            buf, grad = gaussian(rng, 6, 10), gaussian(rng, 6, 10)
            b, u = muon.muon_momentum_step(buf, grad, momentum=0.9, nesterov=nesterov, momentum_form=form, step=3)
            cases.append(Case(cid, "S7.3", "muon.muon_momentum_step", f"{form}, nesterov={nesterov}, step 3",
                              "buffer and Newton–Schulz input", {"momentum": 0.9, "nesterov": nesterov,
                                                                 "momentum_form": form, "step": 3},
                              {"buf": buf, "grad": grad}, {"buf": b, "u": u}, seed=seed))
    for shape in ((24, 8), (8, 24)):
        cid = f"options.normuon.{shape[0]}x{shape[1]}"
        seed, rng = seeded(cid)
        o = orthogonalize.zeropower(gaussian(rng, *shape), 5)
        v0 = np.abs(gaussian(rng, *((shape[0], 1) if shape[0] >= shape[1] else (1, shape[1]))))
        d, v = muon.normuon(o, v0, normuon_beta2=0.9)
        over = "columns" if shape[0] >= shape[1] else "rows"
        cases.append(Case(cid, "S7.4", "muon.normuon", f"{shape}: reduce over {over}",
                          "NorMuon from a non-zero second moment", {"normuon_beta2": 0.9}, {"O": o, "v": v0},
                          {"D": d, "v": v}, seed=seed))
    cid = "options.muon_plus.batched_3x6x10"
    seed, rng = seeded(cid)
    x = np.stack([gaussian(rng, 6, 10) for _ in range(3)])
    cases.append(Case(cid, "S7.5", "muon.muon_plus", "batched", "Muon+", {}, {"O": x}, {"D": muon.muon_plus(x)},
                      seed=seed))
    for mode in ("decoupled", "cautious"):
        cid = f"options.muon_weight_decay.{mode}"
        seed, rng = seeded(cid)
        p, u = gaussian(rng, 8, 12), gaussian(rng, 8, 12)
        cases.append(Case(cid, "S7.6", "muon.muon_weight_decay", mode, "θ − η·λ·θ·m",
                          {"lr": 0.05, "weight_decay": 0.28, "weight_decay_mode": mode}, {"param": p, "update": u},
                          {"param": muon.muon_weight_decay(p, u, lr=0.05, weight_decay=0.28, weight_decay_mode=mode)},
                          seed=seed))
    for placement in ("after", "before"):
        cid = f"options.adam_denominator.{placement}_t2"
        seed, rng = seeded(cid)
        v_hat = np.abs(gaussian(rng, 4, 16)) * 1e-18
        bc2 = 1 - 0.95**2
        cases.append(Case(cid, "S8.3", "adam.adam_denominator", f"ε {placement} bias correction, |g| ~ ε",
                          "√(v̂ + eps_root) + ε (or ε/√bc2)", {"eps": 1e-10, "bias_correction2": bc2,
                                                              "eps_placement": placement, "eps_root": 1e-20},
                          {"v_hat": v_hat},
                          {"denominator": adam.adam_denominator(v_hat, eps=1e-10, bias_correction2=bc2,
                                                                eps_placement=placement, eps_root=1e-20)},
                          seed=seed))
    return cases
