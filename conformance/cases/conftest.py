"""Conformance-case configuration: the hypothesis profile (``quick`` unless OPTCONFORM_HYPOTHESIS_PROFILE)."""

from optconform.conformance.profiles import load_profile

PROFILE = load_profile(default="quick")


def pytest_report_header(config):
    return f"optconform hypothesis profile: {PROFILE}"
