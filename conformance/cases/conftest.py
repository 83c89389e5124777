"""Fixtures of the conformance cases (they exist only here, never in a user's own test session) and the
hypothesis profile (``quick`` unless ``OPTCONFORM_HYPOTHESIS_PROFILE`` says otherwise)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from optconform.conformance.case import Case
from optconform.conformance.hypothesis_profiles import load_profile
from optconform.conformance.plugin import clause_of, option, report_of, target_of, variant_values
from optconform.conformance.report import Verdict
from optconform.conformance.target import Target

PROFILE = load_profile(default="quick")


def pytest_report_header(config):
    return f"optconform hypothesis profile: {PROFILE}"


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    """The implementation under test (``--target`` / ``$OPTCONFORM_TARGET`` / ``optconform.impl``)."""
    return target_of(pytestconfig)


@pytest.fixture(scope="session")
def live_seed(pytestconfig: pytest.Config) -> int:
    """Seed of the live random cases (``--seed``); each case derives its own generator from it."""
    return int(report_of(pytestconfig).options["seed"])


@pytest.fixture
def live_rng(live_seed: int, request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from ``--seed`` and the case's module and name (not its node id, which depends on the
    rootdir: the same ``--seed`` replays the same inputs from any folder)."""
    key = f"{request.node.module.__name__}::{request.node.name}"
    return np.random.default_rng([live_seed, zlib.crc32(key.encode())])


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config):
    import torch

    return torch.device(option(pytestconfig, "device"))


@pytest.fixture(scope="session")
def strict(pytestconfig: pytest.Config) -> bool:
    return bool(option(pytestconfig, "strict-numerics"))


@pytest.fixture(scope="session")
def world_sizes(pytestconfig: pytest.Config) -> tuple[int, ...]:
    raw = option(pytestconfig, "world-sizes").strip()
    try:
        sizes = tuple(int(s) for s in raw.split(",") if s.strip())
    except ValueError as exc:
        raise pytest.UsageError(f"--world-sizes must be comma-separated integers; got {raw!r}") from exc
    if any(w < 1 for w in sizes):
        raise pytest.UsageError(f"--world-sizes must all be >= 1; got {raw!r}")
    return sizes


@pytest.fixture
def verdict(request: pytest.FixtureRequest) -> Verdict:
    """Records the case's comparisons; see :class:`optconform.conformance.report.Verdict`."""
    c = clause_of(request.node)
    if c is None:
        raise pytest.UsageError(f"{request.node.nodeid} uses the verdict fixture without a clause marker")
    # hypothesis cases raise at the first required miss (to shrink it); every other case runs to its end
    hypothesis = getattr(getattr(request.node, "obj", None), "is_hypothesis_test", False)
    return Verdict(c.id, c.name, request.node.nodeid, report_of(request.config).required, defer=not hypothesis)


@pytest.fixture
def case(target, verdict, device, strict, live_rng, world_sizes, pytestconfig, request) -> Case:
    """Everything one case needs (:class:`optconform.conformance.case.Case`), with the variant options its clause is
    judged under (``--profile`` / ``--option`` / ``--diagnose``)."""
    profile, values = variant_values(pytestconfig, clause_of(request.node))
    return Case(target, verdict, device, strict, live_rng, world_sizes, float(option(pytestconfig, "dist-timeout")),
                options=dict(values), profile=profile)
