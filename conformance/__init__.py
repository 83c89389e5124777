"""optconform.conformance: judges a target implementation against the goldens and the live reference.

The pytest plugin (``plugin``), the target protocol loader (``target``), the per-case context (``case``),
verdicts and reports (``report``), the stepping loop (``stepping``), the judges (``judges``), the tolerance
policy (``tolerances``), metrics, hypothesis strategies and profiles, the multi-process harness (``spawn``,
``distributed``), the cases (``cases``) and the torch.optim adapter target (``torch_optim``).
"""
