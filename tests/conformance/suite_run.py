"""Run the conformance suite on a target in a fresh interpreter and read its verdict (the project's tests of the
suite's machinery): the real plugin, the real target loading, hypothesis profile ``ci`` and ``--seed 0``.
``run_many`` runs several such sessions in one interpreter (``suite_batch.py``), one after another."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _args(target: str, report: Path, args: tuple[str, ...], select: str | None, world_sizes: str) -> list[str]:
    out = ["-p", "optconform.conformance.plugin", "-p", "no:cacheprovider", "--pyargs", "optconform.conformance.cases",
           "--target", target, "-q", "--seed", "0", f"--report-json={report}", "--world-sizes", world_sizes, *args]
    return out + (["-k", select] if select else [])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return dict(os.environ, OPTCONFORM_HYPOTHESIS_PROFILE="ci", PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])), **(extra or {}))


def _read(report: Path, output: str, returncode: int) -> dict:
    assert report.exists(), f"no report from the conformance run:\n{output[-6000:]}"
    return dict(json.loads(report.read_text()), output=output[-6000:], returncode=returncode)


def run_suite(target: str, tmp_path: Path, *args: str, select: str | None = None, world_sizes: str = "",
              timeout: float = 600, env: dict[str, str] | None = None) -> dict:
    """The JSON report of ``pytest --pyargs optconform.conformance.cases --target TARGET``, plus ``output``
    (the tail of the terminal output) and ``returncode``."""
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pytest", *_args(target, report, args, select, world_sizes)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(env), capture_output=True, text=True, timeout=timeout)
    return _read(report, proc.stdout + proc.stderr, proc.returncode)


def run_many(jobs: dict[str, dict], tmp_path: Path, timeout: float = 1200, env: dict[str, str] | None = None
             ) -> dict[str, dict]:
    """``{name: run_suite's report}`` for ``{name: dict(target=…, select=…, world_sizes=…, args=(…))}``, all
    sessions in one interpreter (``env``: extra environment variables, inherited by every rank process)."""
    specs = []
    for name, job in jobs.items():
        d = tmp_path / name
        d.mkdir()
        specs.append(dict(args=_args(job["target"], d / "report.json", tuple(job.get("args", ())), job.get("select"),
                                     job.get("world_sizes", "")), out=str(d / "out.txt"), rc=str(d / "rc")))
    (tmp_path / "jobs.json").write_text(json.dumps(specs))
    proc = subprocess.run([sys.executable, str(HERE / "suite_batch.py"), str(tmp_path / "jobs.json")], cwd=tmp_path,
                          env=_env(env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = {}
    for name in jobs:
        d = tmp_path / name
        text = (d / "out.txt").read_text() if (d / "out.txt").exists() else proc.stderr
        out[name] = _read(d / "report.json", text, int((d / "rc").read_text()) if (d / "rc").exists() else -1)
    return out


def rows(report: dict) -> dict[str, dict]:
    """clause -> summary row."""
    return {r["clause"]: r for r in report["summary"]}


def level(report: dict, clause: str, name: str) -> dict:
    """The summary cell of ``clause`` at level ``name`` (cases judged, failed, verdict, worst)."""
    return rows(report)[clause]["levels"][name]


def processes_with(marker: str) -> list[int]:
    """PIDs of live processes (other than this one) whose environment holds ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found
