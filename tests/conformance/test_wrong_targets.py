"""The verdict is trustworthy in both directions: every wrong target in the catalog is rejected by a case
of the clause it breaks, and every family's mistake-free control passes the same cases.

Each entry runs the conformance cases of its clause in a fresh interpreter (the real plugin, the real
target loading, hypothesis profile ``ci`` and ``--seed 0`` so the run is reproducible) and reads the
verdict from ``--report-json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wrong_targets import CATALOG, CONTROLS

HERE = Path(__file__).resolve().parent


def _verdict(name: str, k: str, extra: tuple[str, ...], tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    args = [sys.executable, "-m", "pytest", "-p", "optconform.conformance.plugin", "-p", "no:cacheprovider",
            "--pyargs", "optconform.conformance.cases", "--target", f"wrong_targets:{name}", "-k", k, "-q",
            "--seed", "0", "--report-json", str(report), *(extra or ("--world-sizes", ""))]
    env = dict(os.environ, OPTCONFORM_HYPOTHESIS_PROFILE="ci", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"no report from the conformance run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(json.loads(report.read_text()), output=proc.stdout[-4000:])


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_wrong_target_is_rejected_by_its_clause(name, tmp_path):
    clause, k, extra, _ = CATALOG[name]
    rep = _verdict(name, k, extra, tmp_path)
    rows = {r["clause"]: r for r in rep["summary"]}
    assert clause in rows, f"{name}: no case of {clause} ran\n{rep['output']}"
    assert rows[clause]["failed"] >= 1, f"{name} was not rejected by {clause}:\n{rep['output']}"


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_mistake_free_control_passes(name, tmp_path):
    clause, k, extra, _ = CONTROLS[name]
    rep = _verdict(name, k, extra, tmp_path)
    rows = {r["clause"]: r for r in rep["summary"]}
    assert rows.get(clause, {}).get("passed", 0) >= 1, rep["output"]
    failed = [r for r in rep["summary"] if r["failed"]]
    assert not failed, f"control {name} failed:\n{rep['output']}"


def test_catalog_has_at_least_15_mistakes_over_distinct_clauses():
    assert len(CATALOG) >= 15
    assert len({c for c, *_ in CATALOG.values()}) >= 9
