"""nox sessions for optconform.

torch is always installed first, from ``OPTCONFORM_TORCH`` (default ``torch==2.13.0``, the
CPU build), so that installing optconform afterwards never pulls a CUDA build from the
registry. Bring your own build with, for example::

    OPTCONFORM_TORCH="torch==2.5.1 --index-url https://download.pytorch.org/whl/cu124" nox -s tests

Under CI (``CI`` set) the hypothesis profile defaults to ``ci`` (derandomized).
"""

from __future__ import annotations

import json
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
    _install(session, "test", "report")
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
    ``--report-md PATH``, ``--report-html PATH`` (plots: the ``report`` extra, installed here), ``--profile NAME``,
    ``--option name=value``, ``--diagnose`` (README, "Options").
    """
    _install(session, "report")
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
    """The multi-process tests (harness and fault cases, the suite's rank-fault cases, DistMuon/DistAdamW,
    DTensorMuon/DTensorAdamW with FSDP2, DCP checkpoints and their resharding, torchrun example) 50 times in a row
    (``-- N`` for another count), two test files at a time as CI runs them (``-n 2 --dist loadfile``: the process
    groups of two files start, fail and time out beside each other); outside CI."""
    _install(session, "test")
    runs = int(session.posargs[0]) if session.posargs else 50
    for i in range(runs):
        session.log(f"stress run {i + 1}/{runs}")
        session.run("pytest", "-q", "-x", "-n", "2", "--dist", "loadfile", "--durations", "15", "-m", "distributed",
                    "tests/impl/test_distributed.py",
                    "tests/impl/test_spawn.py", "tests/impl/test_checkpoint.py", "tests/impl/test_dtensor.py",
                    "tests/conformance/test_faults.py", "tests/test_examples.py",
                    env=_hypothesis_env("ci"))


#: The libraries ``nox -s ecosystem`` judges, pinned, installed with ``--no-deps`` (conformance/adapters/): the
#: adapters' docstrings name the source files these versions were read from.
ECOSYSTEM_LIBRARIES = [
    "pytorch-optimizer==4.1.0",  # needs numpy and torch only
    "timm==1.0.31",  # the adapter imports timm/optim/muon.py and adamw.py without timm/__init__.py: no torchvision,
    # huggingface_hub, safetensors or pyyaml needed (timm.layers imports torchvision, whose package-index build
    # is a CUDA one whose operators do not load against the CPU torch)
    "heavyball==3.2.1", "opt-einsum==3.4.0",  # heavyball needs opt-einsum and numpy>=2.3.4
    "muonium==0.2.0", "triton==3.9.0",  # muonium imports triton unconditionally (muonium/kernels/gram.py)
    "muon-fsdp2==0.3.0",  # one module, needs torch only
]
#: JAX and optax for the optax adapter: jax 0.10.2 is the newest JAX for Python 3.11 (0.11 and later need 3.12).
ECOSYSTEM_JAX = ["jax==0.10.2", "jaxlib==0.10.2", "optax==0.2.8", "chex==0.1.92", "ml-dtypes==0.6.0",
                 "absl-py==2.5.1", "toolz==1.2.0"]


def _torch_and_cuda_packages(session: nox.Session) -> tuple[str, list[str]]:
    """The installed torch version and every installed ``nvidia-*`` distribution."""
    out = session.run("python", "-c",
                      "import importlib.metadata as m, json; print(json.dumps([m.version('torch'), sorted("
                      "d.metadata['Name'] for d in m.distributions() if d.metadata['Name'].lower()"
                      ".startswith('nvidia-'))]))",
                      silent=True)
    torch_version, nvidia = json.loads(out.strip().splitlines()[-1])
    return torch_version, nvidia


@nox.session(python=PYTHON[0])
def ecosystem(session: nox.Session) -> None:
    """The suite on real optimizer libraries (torch.optim, pytorch-optimizer, timm, HeavyBall, muonium, muon-fsdp2,
    optax)
    through conformance/adapters/, each with ``--diagnose``; writes COMPATIBILITY.md and docs/ecosystem/*.json
    (full reports: reports/ecosystem/). Fails if installing the libraries changed torch or brought CUDA packages,
    or if a verdict no longer matches its hand-written explanation (conformance/ecosystem.py)."""
    _install(session)
    before = _torch_and_cuda_packages(session)
    session.install("--no-deps", *ECOSYSTEM_LIBRARIES, *ECOSYSTEM_JAX)
    after = _torch_and_cuda_packages(session)
    if after[0] != before[0]:
        session.error(f"installing the libraries changed torch from {before[0]} to {after[0]}")
    if after[1]:
        session.error(f"installing the libraries brought CUDA packages: {', '.join(after[1])}")
    session.log(f"torch {after[0]}, no nvidia-* packages")
    env = {**_hypothesis_env("quick"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    session.run("python", "-m", "optconform.conformance.ecosystem", "run", "--reports", "reports/ecosystem",
                *session.posargs, env=env)
    session.run("python", "-m", "optconform.conformance.ecosystem", "render", "--reports", "reports/ecosystem",
                "--summaries", "docs/ecosystem", "--out", "COMPATIBILITY.md", env=env)


@nox.session(python=PYTHON[0])
def bench(session: nox.Session) -> None:
    """Benchmarks (ratios measured in one run); rewrites BENCHMARKS.md. ``-- --quick`` for a short run."""
    _install(session)
    session.run("python", "-m", "bench.run", "--markdown", "BENCHMARKS.md", *session.posargs)
