"""Each reporting mechanism on a target made for it (``plain_targets``):

* a correct implementation in the seed's plain style passes ``core`` and is flagged only under ``hardening``
  and ``layout``, with the evidence; the run passes by default and fails under ``--require all``;
* a missing name, a signature mismatch, a declared-unsupported hyperparameter value and protocol name,
  declared world sizes and dtypes, an ``Unsupported`` raised by a constructor and an ordinary error in a
  hardening regime are each reported as what they are.
"""

from __future__ import annotations

import pytest
from suite_run import level, rows, run_many

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three sessions of this file, in one interpreter."""
    return run_many({
        # every clause the plain style changes, nothing else
        "plain": dict(target="plain_targets:plain", select="clip or zeropower or muon or dist", world_sizes="1,2"),
        "require_all": dict(target="plain_targets:plain", select="zeropower and huge_norm", args=("--require", "all")),
        "mechanisms": dict(target="plain_targets:mechanisms", world_sizes="1,2,3",
                           select="sgd_golden or zeropower_golden or muon_golden or muon_live or adamw_golden "
                                  "or clip_grad_norm_golden or dist"),
    }, tmp_path_factory.mktemp("levels"))


@pytest.fixture(scope="module")
def plain(runs):
    return runs["plain"]


@pytest.fixture(scope="module")
def mechanisms(runs):
    return runs["mechanisms"]


def test_plain_style_passes_core_and_the_run(plain):
    assert plain["returncode"] == 0, plain["output"]
    assert plain["passed"] is True and plain["required"] == ["core"]
    for clause in ("S5.1", "S6.2", "S7.2", "S9.4", "S9.5"):
        cell = level(plain, clause, "core")
        assert cell["verdict"] == "pass" and cell["cases"] > 0, (clause, cell)


@pytest.mark.parametrize("clause,metric", [
    ("S5.1", "total rel err"),  # the plain float64 sum of squares underflows at 1e-160
    ("S6.2", "acted"),  # the bf16 norm overflows at 1e30: the output is all zeros
    ("S7.2", "acted"),
])
def test_plain_style_is_flagged_under_hardening_with_evidence(plain, clause, metric):
    cell = level(plain, clause, "hardening")
    assert cell["verdict"] == "FAIL" and cell["worst"]["ratio"] > 1, cell
    failing = [c for case in plain["cases"] if case["clause"] == clause for c in case["checks"]
               if not c["passed"]]
    assert failing and all(c["level"] == "hardening" for c in failing), failing
    assert any(c["metric"] == metric for c in failing), [c["metric"] for c in failing]
    assert all(case["levels"].get("core") != "failed" for case in plain["cases"] if case["clause"] == clause)


@pytest.mark.parametrize("clause,what", [
    ("S9.4", "momentum_buffer"),  # rank j mod W over the global index, not S9.2's index within a shape group
    ("S9.5", "exp_avg"),  # whole parameters (ZeRO), not S9.3's rows
])
def test_plain_style_is_flagged_under_layout_only(plain, clause, what):
    assert level(plain, clause, "layout")["verdict"] == "FAIL"
    assert level(plain, clause, "core")["verdict"] == "pass"
    failing = [c for case in plain["cases"] if case["clause"] == clause for c in case["checks"] if not c["passed"]]
    assert failing and all(c["level"] == "layout" and what in c["metric"] for c in failing), failing
    assert any("expected" in c["message"] for c in failing)  # the evidence: where it is vs where S9 puts it


def test_require_all_turns_hardening_and_layout_into_failures(runs):
    rep = runs["require_all"]
    assert rep["returncode"] == 1 and rep["passed"] is False and rep["required"] == ["core", "hardening", "layout"]
    assert level(rep, "S6.2", "hardening")["verdict"] == "FAIL"
    assert "required levels: core, hardening, layout — FAIL" in rep["output"]


def _cases(report, clause):
    return [c for c in report["cases"] if c["clause"] == clause]


def test_a_missing_name_is_not_provided(mechanisms):
    cases = _cases(mechanisms, "S3.5")
    assert cases and all(c["status"] == "not provided" and "'SGD'" in c["reason"] for c in cases)
    assert rows(mechanisms)["S3.5"]["counts"]["not provided"] == len(cases)


def test_a_signature_mismatch_is_reported_as_such_and_fails_core(mechanisms):
    cases = _cases(mechanisms, "S6.2")
    assert cases and all(c["status"] == "mismatch" for c in cases)
    assert all("zeropower(G)" in c["reason"] and "steps" in c["reason"] for c in cases), cases[0]["reason"]
    assert level(mechanisms, "S6.2", "core")["verdict"] == "FAIL"
    assert mechanisms["returncode"] == 1  # core is required by default


def test_an_unsupported_hyperparameter_value_is_neither_passed_nor_failed(mechanisms):
    cases = {c["nodeid"].split("::")[-1]: c for c in _cases(mechanisms, "S7.2")}
    nesterov_off = [c for n, c in cases.items() if "nesterov_off" in n]
    assert len(nesterov_off) == 2 and all(c["status"] == "unsupported" for c in nesterov_off)
    assert all("Muon.nesterov=False: this Muon always uses Nesterov momentum" in c["reason"] for c in nesterov_off)
    raised = [c for n, c in cases.items() if "batched" in n]
    assert raised and raised[0]["status"] == "unsupported" and "2-D parameters only" in raised[0]["reason"]
    others = [c for c in cases.values() if c not in nesterov_off and c not in raised]
    assert others and all(c["status"] == "passed" for c in others)
    cell = level(mechanisms, "S7.2", "core")
    assert cell["verdict"] == "pass" and cell["cases"] == len([c for c in others if "huge" not in c["nodeid"]])
    assert rows(mechanisms)["S7.2"]["counts"]["unsupported"] == 3


def test_declared_names_world_sizes_and_dtypes_are_unsupported_with_the_targets_reason(mechanisms):
    dm = _cases(mechanisms, "S9.4")
    assert dm and all(c["status"] == "unsupported" and "no distributed Muon here" in c["reason"] for c in dm)
    da = {c["nodeid"].split("::")[-1]: c for c in _cases(mechanisms, "S9.5")}
    assert all(c["status"] == "unsupported" and "world size 3" in c["reason"] for n, c in da.items() if "-3]" in n)
    assert all(c["status"] == "passed" for n, c in da.items() if "-1]" in n or "-2]" in n)
    adamw = {c["nodeid"].split("[")[-1]: c for c in _cases(mechanisms, "S8.2")}
    assert adamw["adam.adamw.huge_grads_1e30_6x8]"]["status"] == "unsupported"
    assert "dtype float64" in adamw["adam.adamw.huge_grads_1e30_6x8]"]["reason"]


def test_an_error_in_a_hardening_regime_counts_there_and_not_at_core(mechanisms):
    clip = {c["nodeid"].split("[")[-1]: c for c in _cases(mechanisms, "S5.1")}
    huge = clip["clipping.clip_grad_norm.huge_1e30]"]
    assert huge["status"] == "error" and huge["levels"] == {"hardening": "failed"}
    assert "OverflowError: gradients above 1e20" in huge["reason"]
    assert level(mechanisms, "S5.1", "core")["verdict"] == "pass"
    assert level(mechanisms, "S5.1", "hardening")["verdict"] == "FAIL"
    assert clip["clipping.clip_grad_norm.tiny_1e-160_underflow_safe]"]["status"] == "unsupported"  # float64
