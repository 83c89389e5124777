"""The ecosystem run's generator (COMPATIBILITY.md from JSON reports), the torch.optim alias, and the adapters.

The generator is tested on fixture reports (no library needed). Each adapter test is skipped, with the reason,
where its library is not installed (CI's test environment has none of them; ``nox -s ecosystem`` installs them).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from optconform.conformance import ecosystem as eco
from optconform.spec import Unsupported


def _row(clause: str, name: str, levels: dict[str, tuple[int, int]], counts: dict[str, int],
         reasons: list[dict] | None = None) -> dict:
    """A report summary row: ``levels`` maps a level to (cases, failed)."""
    cells = {lv: dict(cases=n, failed=f, worst=None, verdict="—" if not n else "FAIL" if f else "pass",
                      required=lv == "core") for lv, (n, f) in levels.items()}
    full = {s: 0 for s in ("passed", "failed", "error", "mismatch", "unsupported", "not provided", "skipped")}
    return dict(clause=clause, name=name, clause_levels=list(levels), levels=cells, counts={**full, **counts},
                reasons=reasons or [])


def _report(target: str, rows: list[dict], diagnoses: list[dict] | None = None) -> dict:
    return dict(target=target, options=dict(device="cpu", world_sizes="", seed=0, require=["core"]),
                required=["core"], passed=True, diagnoses=diagnoses or [], summary=rows, cases=[{"big": 1}])


TIMM_ROWS = [
    _row("S3.5", "sgd", {"core": (0, 0)}, {"not provided": 8}),
    _row("S6.2", "zeropower", {"core": (32, 15), "hardening": (9, 9)}, {"passed": 17, "failed": 24},
         [dict(status="failed", levels="core", cases=15,
               reason="[core] live (48, 96) ‖G‖=1e-07 steps=1: direction = 0.77 exceeds tolerance 0.247")]),
    _row("S7.2", "muon", {"core": (8, 8), "hardening": (0, 0)}, {"failed": 8, "skipped": 10}),
    _row("S8.2", "adamw", {"core": (11, 0)}, {"passed": 11}),
    _row("S9.4", "dist_muon", {"core": (0, 0), "hardening": (0, 0), "layout": (0, 0)}, {"unsupported": 16}),
    _row("S9.5", "dist_adamw", {"core": (0, 0), "hardening": (0, 0), "layout": (0, 0)}, {"unsupported": 16}),
]
TIMM_DIAG = [dict(name="Muon", line="Muon: nanochat-2025-10 except lr_scale='match_rms_adamw' (residual 0.2)",
                  confirmation="not confirmed: S7.2 FAIL at core (8/8)")]


def test_renders_compatibility_from_fixture_reports():
    reports = {"timm": _report("optconform.conformance.adapters.timm", TIMM_ROWS, TIMM_DIAG)}
    text, flags = eco.render(reports, versions={"timm": "1.0.31"})
    assert flags == []
    assert text.startswith("# Compatibility of optimizer libraries")
    assert "`nox -s ecosystem`" in text and "timm 1.0.31" in text
    # one row per judged clause, with the verdicts, the explanation and the match column
    line = next(ln for ln in text.splitlines() if ln.startswith("| S6.2 `zeropower`"))
    assert "| FAIL 15/32 | FAIL 9/9 |" in line and "quintic" in line and line.endswith("| yes |")
    assert any(ln.startswith("| S9.4 `dist_muon` | — | — | — | 16 unsupported |") for ln in text.splitlines())
    # a clause the library does not have is listed once, not as a row
    assert "Not provided (no counterpart in the library): S3.5 `sgd`." in text
    # the diagnosis and one line per deviation, with its regime and evidence
    assert "- Muon: nanochat-2025-10 except lr_scale='match_rms_adamw'" in text
    assert "- S6.2 `zeropower`: failed ×15 [core]: [core] live (48, 96) ‖G‖=1e-07 steps=1" in text
    # libraries without a report are left out
    assert "## HeavyBall" not in text


def test_flags_an_explanation_that_contradicts_the_verdict():
    rows = copy.deepcopy(TIMM_ROWS)
    rows[3] = _row("S8.2", "adamw", {"core": (11, 2)}, {"passed": 9, "failed": 2})  # explained as pass
    rows[4] = _row("S9.4", "dist_muon", {"core": (16, 0), "hardening": (0, 0), "layout": (16, 0)},
                   {"passed": 16})  # explained as unsupported
    text, flags = eco.render({"timm": _report("t", rows)}, versions={"timm": "9.9"})
    assert any("S8.2 adamw: core: explained 'pass', ran 'FAIL'" in f for f in flags)
    assert any("S9.4 dist_muon: core: explained '—', ran 'pass'" in f for f in flags)
    assert any("S9.4 dist_muon: other: explained 'unsupported', ran 'nothing'" in f for f in flags)
    assert "**Verdicts that no longer match their explanation:**" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| S8.2 `adamw`"))
    assert "⚠ core: explained 'pass', ran 'FAIL'" in line


def test_flags_a_clause_without_explanation():
    rows = [_row("S5.1", "clip_grad_norm", {"core": (9, 0), "hardening": (2, 0)}, {"passed": 11})]
    _, flags = eco.render({"timm": _report("t", rows)}, versions={"timm": "1"})
    assert flags == ["timm S5.1 clip_grad_norm: no explanation in conformance/ecosystem.py EXPLANATIONS"]


def test_main_writes_the_document_and_compact_summaries(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "timm.json").write_text(json.dumps(_report("optconform.conformance.adapters.timm", TIMM_ROWS)))
    out, summaries = tmp_path / "COMPATIBILITY.md", tmp_path / "docs"
    rc = eco.main(["render", "--reports", str(reports), "--summaries", str(summaries), "--out", str(out)])
    assert rc == 0 and out.read_text().startswith("# Compatibility")
    compact = json.loads((summaries / "timm.json").read_text())
    assert "cases" not in compact and compact["summary"][1]["clause"] == "S6.2" and "versions" in compact
    # and a contradicted explanation makes the generator fail (after writing the document)
    bad = _report("t", [_row("S8.2", "adamw", {"core": (11, 3)}, {"passed": 8, "failed": 3})])
    (reports / "timm.json").write_text(json.dumps(bad))
    assert eco.main(["render", "--reports", str(reports), "--out", str(out)]) == 1
    assert "⚠" in out.read_text()


def test_every_explanation_names_a_known_library_and_levels():
    for (key, clause), exp in eco.EXPLANATIONS.items():
        assert key in eco.BY_KEY, key
        assert clause.startswith("S") and exp.text.strip()
        assert set(exp.expect) <= {"core", "hardening", "layout", "other"}, (key, clause)
        assert all(v in ("pass", "FAIL", "—") for lv, v in exp.expect.items() if lv != "other"), (key, clause)


def test_torch_optim_alias_still_works():
    from optconform.conformance import torch_optim
    from optconform.conformance.adapters import torch_optim as adapter
    from optconform.conformance.target import load_target

    assert torch_optim.optconform_capabilities == adapter.optconform_capabilities == {"profile": "torch-optim"}
    for name in ("zeropower", "Muon", "AdamW", "SGD", "clip_grad_norm", "step_decay_lr", "exponential_decay_lr",
                 "DistAdamW"):
        assert getattr(torch_optim, name) is getattr(adapter, name)
    target = load_target("optconform.conformance.torch_optim")
    assert target.capabilities.profile == "torch-optim" and target.problem("Muon") is None
    with pytest.raises(Unsupported):
        torch_optim.zeropower(torch.zeros(2, 4, 4), 5)


# --------------------------------------------------------------------------------- adapters (library installed)

#: what to import to know the library is there: timm's own package imports torchvision (timm/__init__.py), which the
#: adapter does without, so for timm the adapter itself is the probe (it raises ImportError when timm is missing)
PROBE = {"pytorch_optimizer": "pytorch_optimizer", "timm": "optconform.conformance.adapters.timm",
         "heavyball": "heavyball", "muon_fsdp2": "muon_fsdp2"}


def _needs(module: str):
    return pytest.importorskip(PROBE[module], reason=f"{module} is not installed (nox -s ecosystem installs it)")


def _step(opt, params, grads):
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()


@pytest.mark.parametrize("module", ["pytorch_optimizer", "timm", "heavyball"])
def test_adapter_muon_runs_and_declares(module):
    _needs(module)
    import importlib

    from optconform.conformance.target import load_target

    name = f"optconform.conformance.adapters.{module}"
    target = load_target(name)  # the capability declaration is valid
    adapter = importlib.import_module(name)
    assert target.problem("Muon") is None and target.problem("DistMuon")[0] == "unsupported"
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8, 16))
    before = p.detach().clone()
    opt = adapter.Muon([p], lr=0.02, momentum=0.95, nesterov=True, ns_steps=5)
    _step(opt, [p], [torch.randn(8, 16)])
    for g in opt.param_groups:  # the suite changes lr and momentum between steps
        g["lr"], g["momentum"] = 0.01, 0.9
    _step(opt, [p], [torch.randn(8, 16)])
    assert torch.isfinite(p).all() and not torch.equal(p, before)
    with pytest.raises(Unsupported):
        adapter.Muon([torch.nn.Parameter(torch.randn(2, 4, 8))], lr=0.02, momentum=0.95, nesterov=True, ns_steps=5)
    O = adapter.zeropower(torch.randn(16, 8), 5)
    assert O.shape == (16, 8) and torch.isfinite(O.float()).all()


@pytest.mark.parametrize("module", ["pytorch_optimizer", "timm"])
def test_adapter_adamw_matches_torch_where_the_library_computes_torchs_adamw(module):
    _needs(module)
    import importlib

    adapter = importlib.import_module(f"optconform.conformance.adapters.{module}")
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    kw = dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    mine, ref = adapter.AdamW([a], **kw), torch.optim.AdamW([b], **kw)
    for _ in range(3):
        g = torch.randn(5, 3, dtype=torch.float64)
        _step(mine, [a], [g])
        _step(ref, [b], [g])
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_heavyball_refuses_other_step_counts():
    _needs("heavyball")
    from optconform.conformance.adapters import heavyball as adapter

    with pytest.raises(Unsupported, match="steps == 5"):
        adapter.zeropower(torch.randn(4, 8), 3)


def test_muonium_runs_its_newton_schulz_and_refuses_cpu_muon():
    pytest.importorskip("triton", reason="muonium imports triton, which is not installed")
    pytest.importorskip("muonium", reason="muonium is not installed (nox -s ecosystem installs it)")
    from optconform.conformance.adapters import muonium as adapter
    from optconform.conformance.target import load_target

    assert load_target("optconform.conformance.adapters.muonium:normuon").problem("Muon") is None
    O = adapter.zeropower(torch.randn(2, 8, 16), 5)
    assert O.shape == (2, 8, 16)
    for Muon in (adapter.Muon, adapter.normuon.Muon):
        with pytest.raises(Unsupported, match="is_cuda"):
            Muon([torch.nn.Parameter(torch.randn(8, 16))], lr=0.02, momentum=0.95, nesterov=True, ns_steps=5)


def test_muon_fsdp2_adapter_fits_the_dtensor_protocol():
    _needs("muon_fsdp2")
    from optconform.conformance.target import load_target

    target = load_target("optconform.conformance.adapters.muon_fsdp2")
    assert target.problem("DTensorMuon") is None and target.problem("DTensorAdamW") is None
    assert target.problem("Checkpoint") is None  # torch's recipe (adapters.torch_dcp)
    assert target.problem("Muon") is not None  # its single-device path calls an undefined function: not adapted


def test_committed_compatibility_matches_its_committed_reports():
    """COMPATIBILITY.md is what ``render`` makes of docs/ecosystem/*.json with today's EXPLANATIONS (regenerate with
    ``nox -s ecosystem``, or without the libraries ``python -m optconform.conformance.ecosystem render --reports
    docs/ecosystem``)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc, summaries = root / "COMPATIBILITY.md", root / "docs" / "ecosystem"
    if not doc.exists() or not summaries.is_dir():
        pytest.skip("no COMPATIBILITY.md / docs/ecosystem in this checkout")
    reports = {p.stem: json.loads(p.read_text()) for p in summaries.glob("*.json")}
    text, flags = eco.render(reports)
    assert flags == []
    assert text == doc.read_text()
