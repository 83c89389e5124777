"""Run the conformance suite on a target in a fresh interpreter and read its verdict (the project's tests of the
suite's machinery): the real plugin, the real target loading, hypothesis profile ``ci`` and ``--seed 0``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_suite(target: str, tmp_path: Path, *args: str, select: str | None = None, world_sizes: str = "",
              timeout: float = 600) -> dict:
    """The JSON report of ``pytest --pyargs optconform.conformance.cases --target TARGET``, plus ``output``
    (the tail of the terminal output) and ``returncode``."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "optconform.conformance.plugin", "-p", "no:cacheprovider",
           "--pyargs", "optconform.conformance.cases", "--target", target, "-q", "--seed", "0",
           f"--report-json={report}", "--world-sizes", world_sizes, *args]
    if select:
        cmd += ["-k", select]
    env = dict(os.environ, OPTCONFORM_HYPOTHESIS_PROFILE="ci", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
    assert report.exists(), f"no report from the conformance run:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return dict(json.loads(report.read_text()), output=proc.stdout[-6000:], returncode=proc.returncode)


def rows(report: dict) -> dict[str, dict]:
    """clause -> summary row."""
    return {r["clause"]: r for r in report["summary"]}


def level(report: dict, clause: str, name: str) -> dict:
    """The summary cell of ``clause`` at level ``name`` (cases judged, failed, verdict, worst)."""
    return rows(report)[clause]["levels"][name]
