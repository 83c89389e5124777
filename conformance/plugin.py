"""The optconform pytest plugin (registered through the ``pytest11`` entry point).

It is inert in every pytest session that does not run the suite's cases: it adds its command-line options
only when the arguments name ``optconform.conformance.cases`` (``--pyargs``), a path inside that package,
or the plugin itself (``-p optconform.conformance.plugin``), so ``--target``, ``--device`` or ``--seed``
never clash with a user's own conftest in their own test runs. When the suite runs and another plugin or
conftest already owns one of the short names, that option is available as ``--optconform-<name>`` only
(every option always has that long form).

When active it gathers every case's verdict (per check: clause, level, metric, value, tolerance), prints
the per-clause table with one verdict per level, writes ``--report-json`` / ``--report-md`` / ``--report-html``
(plots: :mod:`.html_report`) and decides,
through ``--require``, which levels fail the run. A target's exception counts at the case's level;
``optconform.spec.Unsupported`` makes the case *unsupported*. The fixtures the cases use live in
``optconform/conformance/cases/conftest.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import secrets
import signal
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from optconform import spec
from optconform.spec import Unsupported
from optconform.spec import options as spec_options
from optconform.spec.levels import LEVELS, parse_levels

from .report import PLOTS_KEY, PROPERTY_KEY, UNSUPPORTED_PREFIX, CaseRecord, Report, Verdict, VerdictFailure
from .stepping import relax_recompile_limits
from .target import DEFAULT_TARGET, ENV_VAR, Target, TargetError, load_target

CLAUSE_KEY = "optconform_clause"
SUITE = "optconform.conformance.cases"
PLUGIN = "optconform.conformance.plugin"
_ACTIVE = pytest.StashKey[bool]()
_REPORT = pytest.StashKey[Report]()
_CLASHES = pytest.StashKey[list]()
_NOTES = pytest.StashKey[list]()
_TARGET = pytest.StashKey[Target]()
_VARIANT = pytest.StashKey[dict]()
_REPORT_OPTIONS = ("--report-json", "--report-md", "--report-html")

#: name -> (dest, argparse keyword arguments); each is registered as --<name> (when free) and --optconform-<name>
OPTIONS: dict[str, dict[str, Any]] = {
    "target": dict(default=None, metavar="SPEC",
                   help=f"implementation under test, 'package.module' or 'package.module:attribute' "
                        f"(default: ${ENV_VAR} or {DEFAULT_TARGET})"),
    "require": dict(default="core", metavar="LEVELS",
                    help=f"verdict levels that fail the run: 'all' or a comma-separated subset of {', '.join(LEVELS)} "
                         "(default core; the others are reported, with evidence, without failing it)"),
    "device": dict(default="cpu", choices=("cpu", "cuda"), help="device for tensors (default cpu)"),
    "world-sizes": dict(default="1,2,3,4",
                        help="comma-separated world sizes for the distributed cases (default 1,2,3,4; '' skips them)"),
    "dist-timeout": dict(type=float, default=120.0,
                         help="seconds before a distributed case's process group is declared hung (default 120)"),
    "case-timeout": dict(type=float, default=120.0,
                         help="seconds a single case may take before it is an error of the target's (a call that "
                              "never returns); the run goes on. 0 turns it off (default 120; distributed cases get "
                              "--dist-timeout on top)"),
    "faults": dict(action="store_true", default=False,
                   help="also run the rank-fault cases of the distributed clauses (hardening): one rank raises, is "
                        "SIGKILLed or never steps; each costs a process group, 'absent' waits for --fault-timeout"),
    "fault-timeout": dict(type=float, default=30.0,
                          help="the rank-fault cases' process-group timeout in seconds, counted from the ranks' "
                               "launch (default 30: starting W processes on a loaded 2-core machine took up to 16 s; "
                               "the 'absent' case ends there)"),
    "strict-numerics": dict(action="store_true", default=False,
                            help="demand float32-level agreement everywhere (bf16 Newton–Schulz targets fail)"),
    "seed": dict(type=int, default=None,
                 help="seed of the live random cases (default: fresh each run, fixed 0 under the 'ci' hypothesis "
                      "profile; printed in the header and the reports so a failure can be replayed)"),
    "profile": dict(default=None, metavar="NAME",
                    help="the spec profile the target is judged against (SPEC.md, 'Profiles'; default: the target's "
                         "declared profile, else nanochat-2025-10)"),
    "option": dict(action="append", default=[], metavar="NAME=VALUE",
                   help="override one variant option of the profile (repeatable), e.g. --option normalisation=clamp"),
    "diagnose": dict(action="store_true", default=False,
                     help="probe the target first, name the variant it computes (nearest profile and the options "
                          "that differ), then judge every case under the diagnosed options"),
    "report-json": dict(default=None, metavar="PATH", help="write the verdicts as JSON"),
    "report-md": dict(default=None, metavar="PATH",
                      help="write the verdicts as Markdown (with matplotlib, its plots: PNGs in <PATH's stem>_plots/)"),
    "report-html": dict(default=None, metavar="PATH",
                        help="write the verdicts as one self-contained HTML file with a plot per judged clause "
                             "(plots need matplotlib: pip install optconform[report])"),
}


def _dest(name: str) -> str:
    return "optconform_" + name.replace("-", "_")


def option(config: pytest.Config, name: str) -> Any:
    """The value of the suite's option ``name`` (e.g. ``"world-sizes"``)."""
    return config.getoption(_dest(name))


def active(config: pytest.Config) -> bool:
    """Whether this session runs the suite (the plugin's options and hooks are live)."""
    return config.stash.get(_ACTIVE, False)


# --------------------------------------------------------------------------------------- activation


def _cases_dir() -> Path | None:
    import importlib.util

    found = importlib.util.find_spec(SUITE)
    return Path(next(iter(found.submodule_search_locations))).resolve() if found and found.submodule_search_locations \
        else None


def _suite_requested(config: pytest.Config, args: Sequence[str]) -> bool:
    ns = config.known_args_namespace
    if any(p.strip() == PLUGIN for p in (getattr(ns, "plugins", None) or [])):
        return True
    cases = None
    for arg in args:
        text = str(arg)
        if text.startswith("-"):
            continue
        head = text.split("::")[0]
        if head == SUITE or head.startswith(SUITE + "."):
            return True
        path = config.invocation_params.dir / head
        if path.exists():
            cases = cases or _cases_dir()
            if cases is not None and (path.resolve() == cases or cases in path.resolve().parents):
                return True
    return False


def _taken(parser: pytest.Parser) -> set[str]:
    groups = [parser._anonymous, *parser._groups]  # noqa: SLF001 - pytest has no public listing of options
    return {n for g in groups for o in g.options for n in o.names()}


def _add_options(parser: pytest.Parser) -> list[str]:
    """Register the suite's options; returns the short names that another plugin or conftest already owns."""
    taken = _taken(parser)
    group = parser.getgroup("optconform", "optconform conformance suite")
    clashes = []
    for name, kwargs in OPTIONS.items():
        flags = [f"--optconform-{name}"]
        if f"--{name}" in taken:
            clashes.append(f"--{name}")
        else:
            flags.insert(0, f"--{name}")
        group.addoption(*flags, dest=_dest(name), **kwargs)
    return clashes


def _split_report_values(args: Sequence[str]) -> list[str]:
    """Values given as ``--report-json PATH`` (with a space): pytest's first pass took them for test paths."""
    flags = set(_REPORT_OPTIONS) | {f"--optconform-{o[2:]}" for o in _REPORT_OPTIONS}
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in flags]


def _fix_rootdir(config: pytest.Config, args: Sequence[str]) -> str | None:
    """Undo the rootdir that pytest's first pass anchored on a report path given with a space.

    pytest determines the rootdir before plugins are loaded, from the arguments that look like existing paths;
    on a rerun the report file exists, so ``--report-json /elsewhere/r.json`` made ``/elsewhere`` the rootdir and
    every test id a ``../..`` path. The rootdir is recomputed from the real arguments (an explicit ``--rootdir``
    is left alone). Returns a note for the header when it changed: an ini file found only now is not read
    (pytest read its options before any plugin could speak), so ``--report-json=PATH`` is still the better form."""
    values = set(_split_report_values(args))
    ns = config.known_args_namespace
    file_or_dir = list(getattr(ns, "file_or_dir", None) or [])
    if not values or getattr(ns, "rootdir", None) or not values & set(file_or_dir):
        return None
    from _pytest.config import findpaths

    kwargs = dict(inifile=getattr(ns, "inifilename", None), override_ini=getattr(ns, "override_ini", None),
                  args=[a for a in file_or_dir if a not in values], rootdir_cmd_arg=None,
                  invocation_dir=config.invocation_params.dir)
    params = inspect.signature(findpaths.determine_setup).parameters
    try:
        rootpath, inipath, *_ = findpaths.determine_setup(**{k: v for k, v in kwargs.items() if k in params})
    except Exception:  # noqa: BLE001 - an unknown pytest version: leave pytest's own choice
        return None
    if rootpath == config.rootpath:
        return None
    config._rootpath = rootpath  # noqa: SLF001 - the only way to correct pytest's early choice
    config._parser.extra_info["rootdir"] = str(rootpath)  # noqa: SLF001
    note = f"optconform: rootdir reset to {rootpath} (pytest had taken the report path's folder)"
    if inipath != config.inipath:
        note += f"; give --report-json=PATH to let pytest read {inipath} too"
    return note


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]):
    """After the initial conftests are loaded (so their options are known): activate when the suite runs."""
    result = yield
    if _suite_requested(early_config, args):
        early_config.stash[_ACTIVE] = True
        early_config.stash[_CLASHES] = _add_options(parser)
        early_config.stash[_NOTES] = [n for n in (_fix_rootdir(early_config, args),) if n]
    return result


# --------------------------------------------------------------------------------------- configuration


def pytest_configure(config: pytest.Config) -> None:
    if not active(config):
        return
    config.addinivalue_line("markers", "clause(id): the SPEC.md clause a conformance case checks (optconform.spec)")
    try:
        require = parse_levels(option(config, "require"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    target = option(config, "target") or os.environ.get(ENV_VAR) or DEFAULT_TARGET
    seed = option(config, "seed")
    if seed is None:
        seed = 0 if os.environ.get("OPTCONFORM_HYPOTHESIS_PROFILE") == "ci" else secrets.randbelow(2**31)
    options = dict(device=option(config, "device"), world_sizes=option(config, "world-sizes"),
                   strict=option(config, "strict-numerics"), seed=seed, require=list(require))
    try:
        config.stash[_TARGET] = load_target(target)
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    caps = config.stash[_TARGET].capabilities
    profile = option(config, "profile") or caps.profile or spec_options.DEFAULT_PROFILE
    try:
        overrides = dict(spec_options.parse_option(o) for o in option(config, "option"))
        values = spec_options.resolve(profile, overrides)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    options.update(profile=profile, option_overrides={k: repr(v) for k, v in overrides.items()})
    variant = {"profile": profile, "values": values, "per_name": {}, "diagnoses": []}
    config.stash[_VARIANT] = variant
    config.stash[_REPORT] = Report(target, options)
    if option(config, "diagnose"):
        from .diagnose import diagnose_target

        seed_ = int(seed)
        for d in diagnose_target(config.stash[_TARGET], values, device=option(config, "device"), seed=seed_):
            variant["diagnoses"].append(d)
            if d.values is not None:
                variant["per_name"][d.name] = d.values
        config.stash[_REPORT].diagnoses = [d.as_dict() for d in variant["diagnoses"]]
    config.pluginmanager.register(_Collector(config.stash[_REPORT]), f"optconform-collector-{id(config)}")
    if options["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError("--device cuda was given but torch.cuda.is_available() is False")


def variant_values(config: pytest.Config, clause: spec.Clause) -> tuple[str, dict]:
    """(profile, every option's value) this run judges ``clause`` under: the profile and ``--option`` overrides,
    or, after ``--diagnose``, what was diagnosed for the clause's protocol name (or for the single-process
    optimizer of a distributed one)."""
    v = config.stash[_VARIANT]
    name = clause.protocol_name
    per = v["per_name"]
    from .diagnose import SINGLE_PROCESS

    values = per.get(name) or per.get(SINGLE_PROCESS.get(name or "", "")) or v["values"]
    return v["profile"], values


def report_of(config: pytest.Config) -> Report:
    return config.stash[_REPORT]


def target_of(config: pytest.Config) -> Target:
    """The target, loaded (and its capability declaration validated) when the session was configured."""
    return config.stash[_TARGET]


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not active(config):
        return None
    report = config.stash[_REPORT]
    lines = [f"optconform target: {report.target}; live seed: {report.options['seed']} (replay with --seed); "
             f"required levels: {', '.join(report.required)}; profile: {report.options['profile']}"
             + "".join(f", {k}={v}" for k, v in report.options["option_overrides"].items())]
    lines += [f"optconform diagnosis: {d['line']}" for d in getattr(report, "diagnoses", [])]
    lines += config.stash.get(_NOTES, [])
    clashes = config.stash.get(_CLASHES, [])
    if clashes:
        lines.append(f"optconform: {', '.join(clashes)} belong to another plugin or conftest here; use "
                     + ", ".join(f"--optconform-{c[2:]}" for c in clashes))
    return lines


def clause_of(item: pytest.Item) -> spec.Clause | None:
    m = item.get_closest_marker("clause")
    return spec.clause(m.args[0]) if m else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A clause mark must name a registry clause that has a protocol name."""
    if not active(config):
        return
    for item in items:
        m = item.get_closest_marker("clause")
        if m is None:
            continue
        try:
            c = spec.clause(m.args[0])
        except (KeyError, IndexError) as exc:
            raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
        if c.protocol is None:
            raise pytest.UsageError(f"{item.nodeid}: clause {c.id} has no protocol name to judge a target by")


# --------------------------------------------------------------------------------------- running cases


def _verdict_of(item: pytest.Item) -> Verdict | None:
    v = getattr(item, "funcargs", {}).get("verdict")
    return v if isinstance(v, Verdict) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """A target's exception counts at the case's level; ``Unsupported`` makes the case unsupported."""
    if not active(item.config) or clause_of(item) is None:
        return (yield)
    relax_recompile_limits()
    v = _verdict_of(item)
    seconds = float(option(item.config, "case-timeout") or 0)
    if seconds and "dist_results" in getattr(item, "fixturenames", ()):
        seconds += float(option(item.config, "dist-timeout"))
    try:
        with case_timeout(seconds):
            result = yield
    except VerdictFailure:
        raise
    except Unsupported as exc:
        raise pytest.skip.Exception(f"{UNSUPPORTED_PREFIX}: {exc}") from None
    except CaseTimeout as exc:
        if v is None or v.error(exc):
            raise pytest.fail.Exception(f"{exc}", pytrace=False) from None
        result = None
    except Exception as exc:
        if v is None or v.error(exc):
            raise
        result = None  # recorded as an error at a level the run does not require
    if v is not None:
        v.finish()  # the required misses recorded while the case ran on
    return result


class CaseTimeout(BaseException):
    """A case ran past ``--case-timeout``: a target call that never returns. A BaseException, so that neither
    the case nor hypothesis (which would replay the example, and hang again) catches it."""


@contextlib.contextmanager
def case_timeout(seconds: float):
    """Raise :class:`CaseTimeout` in the main thread after ``seconds`` (SIGALRM; a no-op off the main thread,
    on platforms without it, or for 0). A call stuck inside one long C function is interrupted when it
    returns to Python; ``time.sleep`` and Python loops are interrupted at once."""
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def fire(signum, frame):
        raise CaseTimeout(f"no return within {seconds:g} s (--case-timeout): a target call that never returns")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    rep = yield
    c = clause_of(item) if active(item.config) else None
    if c is not None:
        rep.user_properties.append((CLAUSE_KEY, c.id))
        v = _verdict_of(item)
        if v is not None and call.when == "call":
            rep.user_properties.append((PROPERTY_KEY, [asdict(ch) for ch in v.checks]))
            # plot data only where a report draws it (finishing it costs an SVD per Newton–Schulz case)
            plots = v.plots() if option(item.config, "report-html") or option(item.config, "report-md") else []
            if plots:
                rep.user_properties.append((PLOTS_KEY, plots))
    return rep


def _outcome(rep: pytest.TestReport) -> tuple[str, str, str]:
    """(pytest outcome, one-line reason, full message)."""
    if rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        return "skipped", reason.removeprefix("Skipped: "), ""
    if rep.failed:
        msg = getattr(rep, "longreprtext", "") or str(rep.longrepr)
        first = next((ln.strip() for ln in msg.splitlines() if ln.startswith("E ")), "")
        first = first.removeprefix("E").strip() or (msg.strip().splitlines() or [""])[-1]
        return "failed", first, msg
    return "passed", "", ""


class _Collector:
    """Per-config collector: turns clause-marked test reports into :class:`CaseRecord` entries."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if CLAUSE_KEY not in props or (report.when != "call" and report.passed):
            return
        outcome, reason, message = _outcome(report)
        c = spec.clause(props[CLAUSE_KEY])
        self.report.add(CaseRecord.build(report.nodeid, c.id, c.name, outcome, reason, message,
                                         props.get(PROPERTY_KEY, []), props.get(PLOTS_KEY, [])))

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        report = self.report
        if not report.records:
            return
        tr = terminalreporter
        tr.section(f"optconform verdict per clause and level — target {report.target}")
        for line in report.table_lines():
            tr.write_line(line)
        html_path, md_path = option(config, "report-html"), option(config, "report-md")
        figures = None
        if html_path or md_path:
            from .html_report import PLOTS_HINT, render_figures

            figures = render_figures(report)
            if not figures.available:
                tr.write_line(f"optconform: no plots in the reports: {PLOTS_HINT}")
            for what, why in figures.failed.items():
                tr.write_line(f"optconform: the plot of {what} could not be drawn: {why}")
        for name, render in (("report-json", report.to_json), ("report-md", report.to_markdown),
                             ("report-html", None)):
            path = option(config, name)
            if path:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                if name == "report-html":
                    from .html_report import to_html

                    text = to_html(report, figures)
                elif name == "report-md":
                    from .html_report import markdown_plots

                    text = render() + markdown_plots(figures, path)
                else:
                    text = render()
                Path(path).write_text(text, encoding="utf-8")
                tr.write_line(f"wrote {path}")
