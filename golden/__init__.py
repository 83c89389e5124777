"""optconform.golden: checksummed float64 golden vectors generated from the reference (SPEC "Golden vectors").

``load_case(case_id)`` returns a :class:`GoldenCase` whose inputs and outputs are NumPy arrays;
``iter_cases(clause)`` walks the cases of one spec clause; ``python -m optconform.golden.generate``
regenerates the data (``--check`` compares a fresh run with the committed files).
"""

from optconform.golden.store import (
    CLAUSE_TARGETS,
    DATA_DIR_ENV,
    FORMAT_VERSION,
    REGEN_RTOL,
    SPEC_CLAUSES,
    GoldenCase,
    GoldenIntegrityError,
    case_ids,
    default_data_dir,
    iter_cases,
    load_case,
    load_manifest,
)

__all__ = [
    "CLAUSE_TARGETS",
    "DATA_DIR_ENV",
    "FORMAT_VERSION",
    "REGEN_RTOL",
    "SPEC_CLAUSES",
    "GoldenCase",
    "GoldenIntegrityError",
    "case_ids",
    "default_data_dir",
    "iter_cases",
    "load_case",
    "load_manifest",
]
