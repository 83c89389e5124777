"""The judges: how the suite compares what a target computed with the reference and the goldens.

One module per family, each used by the cases of its clauses (``optconform.conformance.cases``) and by
nothing else's private copy: :mod:`.ns` (Newton–Schulz outputs: S6.2, S7.2, S9.4), :mod:`.muon` (Muon
trajectories: S7.2, S9.4), :mod:`.float_family` (SGD, AdamW, DistAdamW trajectories), :mod:`.zero2`
(distributed invariants and ownership: S9.4, S9.5), :mod:`.clipping` (S5.1), :mod:`.schedules` (S4).
Every bound they apply comes from :mod:`optconform.conformance.tolerances`.
"""
