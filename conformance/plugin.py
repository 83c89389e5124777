"""The optconform pytest plugin (registered through the ``pytest11`` entry point).

It adds the command-line options, the ``target`` / ``verdict`` / ``device`` fixtures used by the
conformance cases (``optconform.conformance.cases``), gathers every case's verdict, prints the
per-clause summary table, and writes ``--report-json`` / ``--report-md``. It is inert for test
items that carry no ``clause`` marker, so it does not disturb other test suites.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import asdict
from pathlib import Path

import pytest

from .report import NOT_PROVIDED_PREFIX, PROPERTY_KEY, CaseRecord, Report, Verdict
from .target import DEFAULT_TARGET, ENV_VAR, Target, load_target

CLAUSE_KEY = "optconform_clause"
_REPORT = pytest.StashKey[Report]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("optconform", "optconform conformance suite")
    g.addoption("--target", default=None,
                help=f"implementation under test, 'package.module' or 'package.module:attribute' "
                     f"(default: ${ENV_VAR} or {DEFAULT_TARGET})")
    g.addoption("--device", default="cpu", choices=("cpu", "cuda"), help="device for tensors (default cpu)")
    g.addoption("--world-sizes", default="1,2,3,4",
                help="comma-separated world sizes for the distributed cases (default 1,2,3,4; '' skips them)")
    g.addoption("--dist-timeout", type=float, default=120.0,
                help="seconds before a distributed case's process group is declared hung (default 120)")
    g.addoption("--strict-numerics", action="store_true", default=False,
                help="demand float32-level agreement everywhere (bf16 Newton–Schulz targets will fail); "
                     "pytest itself owns --strict")
    g.addoption("--seed", type=int, default=None,
                help="seed of the live random cases (default: fresh each run, fixed 0 under the 'ci' hypothesis "
                     "profile; printed in the header and the reports so a failure can be replayed)")
    g.addoption("--report-json", default=None, metavar="PATH", help="write the verdicts as JSON")
    g.addoption("--report-md", default=None, metavar="PATH", help="write the verdicts as Markdown")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "clause(id, name): the SPEC.md clause a conformance case checks")
    spec = config.getoption("target") or os.environ.get(ENV_VAR) or DEFAULT_TARGET
    seed = config.getoption("seed")
    if seed is None:
        seed = 0 if os.environ.get("OPTCONFORM_HYPOTHESIS_PROFILE") == "ci" else secrets.randbelow(2**31)
    options = dict(device=config.getoption("device"), world_sizes=config.getoption("world_sizes"),
                   strict=config.getoption("strict_numerics"), seed=seed)
    config.stash[_REPORT] = Report(spec, options)
    config.pluginmanager.register(_Collector(config.stash[_REPORT]), f"optconform-collector-{id(config)}")
    if options["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--device cuda was given but torch.cuda.is_available() is False")


def _clause(item: pytest.Item) -> tuple[str, str] | None:
    m = item.get_closest_marker("clause")
    return (m.args[0], m.args[1]) if m else None


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    """The implementation under test (``--target`` / ``$OPTCONFORM_TARGET`` / ``optconform.impl``)."""
    return load_target(pytestconfig.stash[_REPORT].target)


def pytest_report_header(config: pytest.Config) -> str:
    report = config.stash[_REPORT]
    return f"optconform target: {report.target}; live seed: {report.options['seed']} (replay with --seed)"


@pytest.fixture(scope="session")
def live_seed(pytestconfig: pytest.Config) -> int:
    """Seed of the live random cases (``--seed``); each case derives its own generator from it."""
    return int(pytestconfig.stash[_REPORT].options["seed"])


@pytest.fixture
def live_rng(live_seed: int, request: pytest.FixtureRequest):
    """A generator seeded from ``--seed`` and the case's node id."""
    import zlib

    import numpy as np

    return np.random.default_rng([live_seed, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config):
    import torch

    return torch.device(pytestconfig.getoption("device"))


@pytest.fixture(scope="session")
def strict(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("strict_numerics"))


@pytest.fixture(scope="session")
def world_sizes(pytestconfig: pytest.Config) -> list[int]:
    raw = pytestconfig.getoption("world_sizes").strip()
    try:
        sizes = [int(s) for s in raw.split(",") if s.strip()]
    except ValueError as exc:
        raise pytest.UsageError(f"--world-sizes must be comma-separated integers; got {raw!r}") from exc
    if any(w < 1 for w in sizes):
        raise pytest.UsageError(f"--world-sizes must all be >= 1; got {raw!r}")
    return sizes


@pytest.fixture
def verdict(request: pytest.FixtureRequest) -> Verdict:
    """Records the case's comparisons; see :class:`optconform.conformance.report.Verdict`."""
    clause = _clause(request.node)
    if clause is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the verdict fixture without a clause marker")
    return Verdict(clause[0], clause[1], request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    clause = _clause(item)
    if clause is None:
        return
    rep = outcome.get_result()
    rep.user_properties.append((CLAUSE_KEY, clause))
    v = getattr(item, "funcargs", {}).get("verdict")
    if isinstance(v, Verdict) and call.when == "call":
        rep.user_properties.append((PROPERTY_KEY, [asdict(c) for c in v.checks]))


def _status(rep: pytest.TestReport) -> tuple[str, str]:
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ")
        return ("not provided" if reason.startswith(NOT_PROVIDED_PREFIX) else "skipped"), reason
    if rep.failed:
        msg = getattr(rep, "longreprtext", "") or str(rep.longrepr)
        return ("failed" if rep.when == "call" else "error"), msg
    return "passed", ""


class _Collector:
    """Per-config collector: turns clause-marked test reports into :class:`CaseRecord` entries."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if CLAUSE_KEY not in props or (report.when != "call" and report.passed):
            return
        status, message = _status(report)
        clause, name = props[CLAUSE_KEY]
        self.report.add(CaseRecord(report.nodeid, clause, name, status, message,
                                   list(props.get(PROPERTY_KEY, []))))

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        report = self.report
        if not report.records:
            return
        tr = terminalreporter
        tr.section(f"optconform verdict per clause — target {report.target}")
        for line in report.table_lines():
            tr.write_line(line)
        for opt, render in (("report_json", report.to_json), ("report_md", report.to_markdown)):
            path = config.getoption(opt)
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(render())
                tr.write_line(f"wrote {path}")
