"""The messages a person gets for each way a target can be wrong, in the terminal, the JSON and the Markdown
reports, and the run finishes: an all-zero output, a 2× output, ignored ``lr_mul``, a NaN at step k, a
raising ``step``, a target that never returns, a dead rank, a rank that raises between two collectives and a rank
killed inside them (``misbehaving_targets``)."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import pytest
from suite_run import processes_with, run_many

pytestmark = pytest.mark.distributed
MARKER = uuid.uuid4().hex

#: name -> (cases to run, world sizes)
RUNS = {
    "zero_output": ("zeropower_golden and gaussian_16x32", ""),
    "double_output": ("zeropower_golden and gaussian_16x32", ""),
    "ignores_lr_mul": ("adamw_golden and lr_mul2", ""),
    "nan_at_step": ("sgd_golden and momentum0.9_nesterov", ""),
    "raising_step": ("muon_golden and batched", ""),
    "never_returns": ("lr_multiplier_whole_run", ""),
    "dead_rank": ("dist_muon and live-2", "2"),
    "raising_rank": ("dist_muon and live-2", "2"),
    "killed_rank": ("dist_muon and live-2", "2"),
}
_README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
_BLOCK = _README.split("<!-- evidence -->", 1)[1].split("<!-- end evidence -->", 1)[0]
#: name -> (what the person must read, the case status): the README's table is the one copy
EXPECT = {m.group(1): (m.group(3), m.group(2))
          for m in re.finditer(r"\(`(\w+)`\) \| (failed|error) \| `([^`]+)` \|", _BLOCK)}


def test_the_readme_table_names_every_misbehaving_target():
    assert set(EXPECT) == set(RUNS)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    # 3 s ends never_returns quickly; the others keep the default, so that a loaded machine's slow case is not an
    # error in a run that expects a failure (double_output's zeropower case took over 3 s beside nox -s stress)
    jobs = {name: dict(target=f"misbehaving_targets:{name}", select=sel, world_sizes=ws,
                       args=(*(("--case-timeout", "3") if name == "never_returns" else ()),
                             f"--report-md={tmp_path_factory.getbasetemp()}/{name}.md"))
            for name, (sel, ws) in RUNS.items()}
    reports = run_many(jobs, tmp_path_factory.mktemp("evidence"), env={"OPTCONFORM_EVIDENCE_RUN": MARKER})
    return reports, tmp_path_factory.getbasetemp()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_misbehaviour_is_reported_as_what_it_is_everywhere(reports, name):
    reps, base = reports
    rep = reps[name]
    text, status = EXPECT[name]
    cases = [c for c in rep["cases"] if c["status"] != "skipped"]
    assert cases, rep["output"]
    bad = [c for c in cases if c["status"] == status]
    assert bad, (status, [(c["status"], c["reason"]) for c in cases])
    assert any(text in c["reason"] for c in bad), [c["reason"] for c in bad]  # the JSON's short reason
    assert text in rep["output"]  # the terminal's table footer
    assert text in (base / f"{name}.md").read_text()  # the Markdown report
    assert rep["returncode"] == 1 and "required levels: core — FAIL" in rep["output"]  # the run finished


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc to list processes")
def test_no_process_is_left_behind(reports):
    """Every rank of every run above, the dead, raising, killed and hung ones included, is gone once the runs end
    (each rank inherits the marker in its environment)."""
    deadline = time.monotonic() + 10  # a rank's exit is asynchronous to its parent's return
    while (left := processes_with(f"OPTCONFORM_EVIDENCE_RUN={MARKER}")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"processes left behind: {left}"


def test_a_crash_is_an_error_and_a_miss_is_a_failure_in_the_table(reports):
    reps, _ = reports
    raising = next(r for r in reps["raising_step"]["summary"] if r["clause"] == "S7.2")
    assert raising["counts"]["error"] >= 1 and raising["levels"]["core"]["worst"]["kind"] == "error"
    double = next(r for r in reps["double_output"]["summary"] if r["clause"] == "S6.2")
    assert double["counts"]["failed"] >= 1 and double["levels"]["core"]["worst"]["kind"] == "numeric"
