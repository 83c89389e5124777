"""Plugin hygiene: the installed plugin stays out of a user's own pytest sessions, coexists with a conftest that
owns the same option names, and writes its reports to the same test ids whether a report path is given with or
without ``=``, on a first run and on a rerun."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

INSTALLED = any(ep.value == "optconform.conformance.plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
needs_entry_point = pytest.mark.skipif(
    not INSTALLED, reason="optconform is not installed here: these tests exercise its pytest11 entry point "
                          "(nox -s tests installs it)")

USER_CONFTEST = '''
import pytest

def pytest_addoption(parser):
    parser.addoption("--device", default="gpu0")
    parser.addoption("--seed", default="user-seed")
    parser.addoption("--target", default="user-target")

@pytest.fixture
def device(request):
    return request.config.getoption("device")
'''

USER_TEST = '''
def test_users_own_options(device, pytestconfig):
    assert device == "gpu1"
    assert pytestconfig.getoption("seed") == "7" and pytestconfig.getoption("target") == "mine"
'''


def _pytest(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS")}
    env["OPTCONFORM_HYPOTHESIS_PROFILE"] = "ci"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(USER_CONFTEST)
    (tmp_path / "test_mine.py").write_text(USER_TEST)
    return tmp_path


@needs_entry_point
def test_a_users_own_session_keeps_its_options_and_sees_no_suite(user_project):
    proc = _pytest(user_project, "--device", "gpu1", "--seed", "7", "--target", "mine", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "optconform" not in proc.stdout
    helptext = _pytest(user_project, "--help").stdout
    assert "--require" not in helptext and "--optconform-target" not in helptext


@needs_entry_point
def test_the_suite_runs_beside_a_conftest_that_owns_the_short_names(user_project):
    proc = _pytest(user_project, "--pyargs", "optconform.conformance.cases", "-k", "step_decay",
                   "--optconform-device", "cpu", "--optconform-seed", "3")  # not -q: the header is the evidence
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    clash = next(line for line in proc.stdout.splitlines() if "belong to another plugin or conftest here" in line)
    assert all(f"--{n}" in clash and f"--optconform-{n}" in clash for n in ("device", "seed", "target"))
    assert "live seed: 3" in proc.stdout


def test_require_rejects_an_unknown_level(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "optconform.conformance.plugin", "-p",
                           "no:cacheprovider", "--pyargs", "optconform.conformance.cases", "--require", "fast"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert proc.returncode == 4 and "--require must be 'all' or a comma-separated subset" in proc.stderr


def test_a_malformed_capability_declaration_stops_the_run_naming_the_key(tmp_path):
    (tmp_path / "bad_target.py").write_text("optconform_capabilities = {'unsupported': {'Adam': 'x'}}\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "optconform.conformance.plugin", "-p",
                           "no:cacheprovider", "--pyargs", "optconform.conformance.cases", "--target", "bad_target"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "'Adam' is not a protocol name" in proc.stderr


@needs_entry_point
def test_report_paths_keep_the_test_ids_on_a_rerun(tmp_path):
    """Run from the environment's prefix (the installed cases lie below it, as under nox) with a report in another
    folder: on the rerun the report exists, and pytest's first pass used to anchor the rootdir on it."""
    path = tmp_path / "reports" / "r.json"
    path.parent.mkdir()
    flag = ["--report-json", str(path)]  # with a space: the form that used to move the rootdir
    ids = []
    for _ in range(2):  # the second run finds the report file already there
        proc = _pytest(Path(sys.prefix), "--pyargs", "optconform.conformance.cases", "-k",
                       "golden_table and step_decay", "-q", *flag)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        ids.append(sorted(c["nodeid"] for c in json.loads(path.read_text())["cases"]))
    assert ids[0] == ids[1] and ids[0], ids
    assert not any(i.startswith("..") for i in ids[1]), ids[1]
