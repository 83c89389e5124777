"""optconform.conformance: checks a target implementation against the goldens and the live reference.

Only the hypothesis profiles and strategies live here so far; the pytest plugin and the
target protocol arrive with the conformance suite (see README.md, "Status").
"""
