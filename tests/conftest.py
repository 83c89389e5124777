"""Project test configuration: hypothesis profile selection and shared fixtures."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.conformance.hypothesis_profiles import load_profile

PROFILE = load_profile(default="dev")


def pytest_report_header(config):
    return f"optconform hypothesis profile: {PROFILE}"


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A fresh generator seeded from the test's node id, so every test draws its own reproducible inputs."""
    seed = int.from_bytes(request.node.nodeid.encode(), "little") % (2**63)
    return np.random.default_rng(seed)
