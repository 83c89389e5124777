"""Adapters: built-in targets that map real optimizer libraries onto the optconform protocol (call signatures only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from optconform.spec import Unsupported


def matrices_only(params: Iterable[Any], why: str) -> list:
    """``params`` as a list; raises Unsupported("{why}; got shapes [...]") naming every parameter that is not 2-D (a
    library that treats a 3-D parameter otherwise than as a batch of matrices, as the spec does)."""
    params = list(params)
    bad = [tuple(p.shape) for p in params if p.ndim != 2]
    if bad:
        raise Unsupported(f"{why}; got shapes {bad}")
    return params
