"""nox sessions for optconform.

torch is always installed first, from ``OPTCONFORM_TORCH`` (default ``torch==2.13.0``, the
CPU build), so that installing optconform afterwards never pulls a CUDA build from the
registry. Bring your own build with, for example::

    OPTCONFORM_TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" nox -s tests

Under CI (``CI`` set) the hypothesis profile defaults to ``ci`` (derandomized).
"""

from __future__ import annotations

import os
import shlex

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = ["3.11", "3.12", "3.10"]
DEFAULT_TORCH = "torch==2.13.0"


def _hypothesis_env(default: str) -> dict[str, str]:
    if "OPTCONFORM_HYPOTHESIS_PROFILE" in os.environ:
        return {"OPTCONFORM_HYPOTHESIS_PROFILE": os.environ["OPTCONFORM_HYPOTHESIS_PROFILE"]}
    return {"OPTCONFORM_HYPOTHESIS_PROFILE": "ci" if os.environ.get("CI") else default}


def _install(session: nox.Session, *extras: str) -> None:
    """Install torch (overridable), then optconform itself (non-editable) with ``extras``."""
    session.install(*shlex.split(os.environ.get("OPTCONFORM_TORCH", DEFAULT_TORCH)))
    spec = f".[{','.join(extras)}]" if extras else "."
    # --force-reinstall of our own package only: the checkout changes between runs.
    session.install("--no-deps", "--force-reinstall", ".")
    session.install(spec)


@nox.session(python=PYTHON[0])
def tests(session: nox.Session) -> None:
    """The project's own tests (reference, impl, conformance machinery), in parallel."""
    _install(session, "test")
    session.run(
        # --timeout: pytest-timeout's last guard against a hang anywhere; the multi-process tests have shorter ones
        # --dist loadfile: a file's tests share one worker, so a module's batched suite runs
        # (tests/conformance) happen once
        "pytest", "-n", "auto", "--dist", "loadfile", "--timeout", "900", *session.posargs,
        # one BLAS/OpenMP thread per process: the workers and the suite runs they start already fill the cores,
        # and oversubscribed OpenBLAS threads spin (two 2-thread pytest processes on 2 cores ran 25x slower,
        # 479 s against 18 s, tests/conformance/test_ns_bias.py)
        env={**_hypothesis_env("dev"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )


@nox.session(python=PYTHON[0])
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON[0])
def conformance(session: nox.Session) -> None:
    """The main job: the conformance suite against a target (default optconform.impl).

    Pass options after ``--``: ``nox -s conformance -- --target optconform.conformance.torch_optim``,
    ``--require all``, ``--device cuda``, ``--world-sizes 1,2``, ``--strict-numerics``, ``--report-json PATH``,
    ``--report-md PATH`` (README, "Options").
    """
    _install(session)
    session.run(
        "pytest", "--pyargs", "optconform.conformance.cases", "-p", "no:cacheprovider", *session.posargs,
        env=_hypothesis_env("quick"),
    )


@nox.session(python=PYTHON[0])
def golden(session: nox.Session) -> None:
    """Regenerate golden/data from the reference (then commit the result), or ``-- --check`` to compare."""
    _install(session)
    session.run("python", "-m", "optconform.golden.generate", "--out", "golden/data", *session.posargs)


@nox.session(python=PYTHON[0])
def docs(session: nox.Session) -> None:
    """Re-render the registry's generated blocks in SPEC.md and README.md (``-- --check`` to compare only)."""
    session.install("--no-deps", "--force-reinstall", ".")
    check = "--check" in session.posargs
    session.run("python", "-m", "optconform.spec.docs", "--check" if check else "--write", "SPEC.md", "README.md")


@nox.session(python=PYTHON[0])
def stress(session: nox.Session) -> None:
    """The multi-process tests (harness, DistMuon/DistAdamW, torchrun example) 50 times in a row
    (``-- N`` for another count); outside CI."""
    _install(session, "test")
    runs = int(session.posargs[0]) if session.posargs else 50
    for i in range(runs):
        session.log(f"stress run {i + 1}/{runs}")
        session.run("pytest", "-q", "-x", "-m", "distributed", "tests/impl/test_distributed.py",
                    "tests/impl/test_spawn.py", "tests/test_examples.py", env=_hypothesis_env("ci"))


@nox.session(python=PYTHON[0])
def bench(session: nox.Session) -> None:
    """Benchmarks (ratios measured in one run); rewrites BENCHMARKS.md. ``-- --quick`` for a short run."""
    _install(session)
    session.run("python", "-m", "bench.run", "--markdown", "BENCHMARKS.md", *session.posargs)
