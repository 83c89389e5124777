"""The suite's own machinery: how checks become levels, case outcomes and the per-clause table."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from optconform import spec
from optconform.conformance.report import CaseRecord, Check, Report, Verdict, VerdictFailure, error_line
from optconform.conformance.spawn import RankFailure


def _verdict(required=("core",)) -> Verdict:
    return Verdict("S6.2", "zeropower", "case-1", required)


def test_a_miss_at_a_required_level_raises_and_elsewhere_is_only_recorded():
    v = _verdict()
    v.regime(spec.clause("S6.2").regime(1e30))  # hardening
    v.check("acted", 2.0, 0.25)  # recorded, not raised
    assert v.checks[-1].level == "hardening" and not v.checks[-1].passed
    with pytest.raises(VerdictFailure, match=r"\[core\] case-1: direction = 1 exceeds tolerance 0.5"):
        v.check("direction", 1.0, 0.5, level="core")
    strict = _verdict(required=("core", "hardening"))
    strict.regime(spec.clause("S6.2").regime(1e30))
    with pytest.raises(VerdictFailure, match=r"\[hardening\]"):
        strict.check("acted", 2.0, 0.25)


def test_nan_fails_and_a_trajectory_names_its_first_bad_step():
    v = _verdict(required=())
    v.check("x", math.nan, 1.0)
    assert not v.checks[-1].passed
    v.trajectory("per step", [0.1, 2.0, 3.0, 0.2], 1.0)
    c = v.checks[-1]
    assert (c.first_bad_step, c.steps, c.value) == (1, 4, 2.0) and "steps 1, 2 of 4" in c.describe()


def test_errors_count_at_the_cases_level():
    v = _verdict()
    assert v.error(ValueError("boom")) is True  # core required
    h = _verdict()
    h.regime(spec.clause("S6.2").regime(1e30))
    assert h.error(OverflowError("big")) is False
    assert h.checks[-1].kind == "error" and h.checks[-1].level == "hardening"
    assert h.checks[-1].message == "OverflowError: big"


def test_a_failed_rank_is_named_by_its_rank_and_its_exception():
    exc = RankFailure(1, "Traceback (most recent call last):\n  File x\nIndexError: tuple index out of range\n", {})
    assert error_line(exc) == "rank 1 failed: IndexError: tuple index out of range"


def _record(outcome, reason="", checks=(), nodeid="n"):
    return CaseRecord.build(nodeid, "S6.2", "zeropower", outcome, reason, "", [asdict(c) for c in checks])


@pytest.mark.parametrize("outcome,reason,checks,status", [
    ("passed", "", [Check("c", "m", 0.1, 1.0, True)], "passed"),
    ("passed", "", [Check("c", "m", 2.0, 1.0, False, "hardening")], "failed"),
    ("failed", "E boom", [Check("c", "m", 2.0, 1.0, False)], "failed"),
    ("failed", "x", [Check("c", "target raised", math.inf, 0.0, False, kind="error", message="ValueError")], "error"),
    ("failed", "x", [Check("c", "signature", math.inf, 0.0, False, kind="protocol", message="m")], "mismatch"),
    ("failed", "ZeroDivisionError: in the case itself", [], "error"),
    ("skipped", "unsupported: Muon.nesterov=False: always on", [], "unsupported"),
    ("skipped", "not provided: target t has no attribute 'SGD'", [], "not provided"),
    ("skipped", "signature mismatch: zeropower(G) ...", [], "mismatch"),
    ("skipped", "world size 3 not selected (--world-sizes)", [], "skipped"),
])
def test_case_status_from_outcome_and_checks(outcome, reason, checks, status):
    assert _record(outcome, reason, checks).status == status


def test_levels_of_a_case_and_the_reason_it_shows():
    rec = _record("passed", "", [Check("c", "a", 0.1, 1.0, True), Check("c", "b", 3.0, 1.0, False, "hardening"),
                                 Check("c", "own", 1.0, 0.0, False, "layout", kind="exact", message="got 1")])
    assert rec.levels == {"core": "passed", "hardening": "failed", "layout": "failed"}
    assert rec.reason.startswith("[hardening] c: b = 3 exceeds tolerance 1")


def test_the_table_gives_each_level_its_verdict_and_the_run_fails_only_on_required_levels():
    rep = Report("t", {"require": ["core"]})
    rep.add(_record("passed", "", [Check("a", "m", 0.5, 1.0, True)], nodeid="1"))
    rep.add(_record("passed", "", [Check("b", "m", 0.2, 1.0, True), Check("b", "m", 9.0, 1.0, False, "hardening")],
                    nodeid="2"))
    rep.add(_record("skipped", "unsupported: no batches", nodeid="3"))
    (row,) = rep.summary()
    assert row["levels"]["core"] == {**row["levels"]["core"], "cases": 2, "failed": 0, "verdict": "pass"}
    assert row["levels"]["hardening"]["verdict"] == "FAIL" and row["levels"]["hardening"]["worst"]["ratio"] == 9.0
    assert row["counts"]["unsupported"] == 1 and row["counts"]["failed"] == 1
    assert rep.passed() is True
    lines = rep.table_lines()
    assert any(ln.startswith("S6.2") and "pass 2" in ln and "FAIL 1/1" in ln and "1 unsupported" in ln for ln in lines)
    assert lines[-1].startswith("required levels: core — pass")
    all_levels = Report("t", {"require": ["core", "hardening", "layout"]})
    all_levels.records = rep.records
    assert all_levels.passed() is False
    data = json.loads(rep.to_json())
    assert data["passed"] is True and data["required"] == ["core"] and data["summary"][0]["clause"] == "S6.2"
    md = rep.to_markdown()
    assert "| S6.2 | `zeropower` | pass 2 | FAIL 1/1 |" in md and "unsupported: no batches" in md


def test_a_later_phase_never_hides_the_calls_evidence():
    rep = Report("t", {})
    rep.add(_record("passed", "", [Check("a", "m", 2.0, 1.0, False, "hardening")], nodeid="1"))
    rep.add(_record("failed", "teardown broke", [], nodeid="1"))  # a teardown error after the call
    rec = rep.records["1"]
    assert rec.status == "error" and rec.checks and rec.levels["hardening"] == "failed"
