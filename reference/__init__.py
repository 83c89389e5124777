"""optconform.reference: the float64 NumPy/SciPy reference, one pure function per SPEC.md clause.

No torch is imported anywhere in this package. Every function takes its state in and
returns its new state; inputs are never modified.
"""
