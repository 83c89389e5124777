"""Hypothesis profiles shared by the project's tests and the conformance suite.

Select one with the environment variable ``OPTCONFORM_HYPOTHESIS_PROFILE``:

==========  ===========  ============  ================================================
profile     max_examples derandomize   use
==========  ===========  ============  ================================================
dev         60           no            local runs of ``nox -s tests`` (the default)
quick       60           no            default for ``nox -s conformance``
ci          100          yes           CI: the same examples every run, never flaky
thorough    2000         no            before a release, or when hunting a bug
==========  ===========  ============  ================================================

Function-scoped fixtures are allowed under ``@given``: the conformance ``verdict`` fixture is
meant to accumulate every example's checks. No profile has a deadline: these are numerical
checks on a shared 2-core machine, and a timing-based failure would say nothing about correctness.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ENV_VAR = "OPTCONFORM_HYPOTHESIS_PROFILE"

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    print_blob=True,
)

PROFILES: dict[str, dict] = {
    "dev": dict(max_examples=60, derandomize=False),
    "quick": dict(max_examples=60, derandomize=False),
    "ci": dict(max_examples=100, derandomize=True),
    "thorough": dict(max_examples=2000, derandomize=False),
}

for _name, _kw in PROFILES.items():
    settings.register_profile(_name, **_COMMON, **_kw)


def load_profile(default: str) -> str:
    """Load the profile named by ``OPTCONFORM_HYPOTHESIS_PROFILE`` (or ``default``); return its name."""
    name = os.environ.get(ENV_VAR, default)
    if name not in PROFILES:
        raise ValueError(f"{ENV_VAR} must be one of {sorted(PROFILES)}; got {name!r}")
    settings.load_profile(name)
    return name
