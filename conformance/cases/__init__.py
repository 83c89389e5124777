"""The conformance cases, one file per SPEC.md section; run with ``pytest --pyargs optconform.conformance.cases``."""
