"""``--diagnose`` names the variant a target computes: the catalog's known variants are diagnosed as those options
(not as bugs), its real mistakes as "no known variant", the built-in targets as their profiles; the plugin prints
the diagnosis and runs the cases under it."""

from __future__ import annotations

import pytest
from suite_run import run_suite

from optconform.conformance.diagnose import diagnose_target
from optconform.conformance.target import load_target
from optconform.spec import options as O

KNOWN = {  # catalog entry -> (protocol name, the diagnosis line's expected ending of its first part)
    "muon_polar_express": ("Muon", "nanochat-2025-10 except rows='polar_express'"),
    "muon_muon_plus": ("Muon", "nanochat-2025-10 except muon_plus=True"),
    "muon_normuon": ("Muon", "nanochat-2025-10 except normuon_beta2=0.9"),
    "muon_decoupled_weight_decay": ("Muon", "nanochat-2025-10 except weight_decay=0.1"),
    "muon_clamp_eps": ("Muon", "nanochat-2025-10 except normalisation='clamp'"),
    "zeropower_polar_express": ("zeropower", "nanochat-2025-10 except rows='polar_express'"),
    "zeropower_clamp_eps": ("zeropower", "torch-optim"),
    "adamw_eps_before_bias_correction": ("AdamW", "moonlight"),
    "control_muon": ("Muon", "nanochat-2025-10"),
}
BUGS = {"muon_nesterov_ignored": "Muon", "muon_aspect_inverted": "Muon", "muon_momentum_sum": "Muon",
        "adamw_ignores_lr_mul": "AdamW", "adamw_coupled_l2": "AdamW"}


def _diagnosis(target: str, name: str):
    return next(d for d in diagnose_target(load_target(target), O.resolve()) if d.name == name)


@pytest.mark.parametrize("entry", sorted(KNOWN))
def test_a_known_variant_is_diagnosed_as_that_variant(entry):
    name, expected = KNOWN[entry]
    d = _diagnosis(f"wrong_targets:{entry}", name)
    assert d.status == "reproduced" and d.line.startswith(f"{name}: {expected} ("), d.line


@pytest.mark.parametrize("entry", sorted(BUGS))
def test_a_mistake_is_no_known_variant(entry):
    d = _diagnosis(f"wrong_targets:{entry}", BUGS[entry])
    assert d.status == "unknown" and d.line.startswith(f"no known variant reproduces {BUGS[entry]}: closest "), d.line
    assert d.residual > d.bound


@pytest.mark.parametrize("target,profile", [("optconform.impl", "nanochat-2025-10"),
                                            ("optconform.conformance.torch_optim", "torch-optim")])
def test_the_built_in_targets_are_their_profiles(target, profile):
    for d in diagnose_target(load_target(target), O.resolve()):
        assert d.status == "reproduced" and d.profile == profile and not d.differs, d.line


def test_the_plugin_prints_the_diagnosis_and_judges_under_it(tmp_path):
    rep = run_suite("optconform.conformance.torch_optim", tmp_path, "--diagnose", select="muon or adamw")
    lines = [d["line"] for d in rep["diagnoses"]]
    assert any(line.startswith("Muon: torch-optim (") for line in lines), lines
    assert "diagnosis (--diagnose" in rep["output"]
    table = {r["clause"]: r for r in rep["summary"]}
    assert table["S7.2"]["levels"]["core"]["failed"] == 0 and table["S7.2"]["levels"]["core"]["cases"] > 0
    assert table["S8.2"]["levels"]["core"]["failed"] == 0 and table["S8.2"]["levels"]["core"]["cases"] > 0
    muon = next(d for d in rep["diagnoses"] if d["name"] == "Muon")
    assert muon["confirmation"].startswith("confirmed"), muon  # the cases that ran under it passed core
    assert "-> confirmed" in rep["output"]


def test_a_diagnosis_the_cases_refute_is_not_confirmed(tmp_path):
    """A mistake inside nanochat-2026 that the probes' size bound (2.25 with Polar Express rows) cannot tell from the
    variant: the diagnosis names the variant, the cases under it fail core, and the confirmation says so."""
    rep = run_suite("wrong_targets:variant_nanochat-2026_muon_plus_max", tmp_path, "--diagnose",
                    select="muon and not dist")
    muon = next(d for d in rep["diagnoses"] if d["name"] == "Muon")
    assert muon["confirmation"].startswith("not confirmed: S7.2 FAIL at core"), muon
    assert "a likely bug" in muon["confirmation"]

