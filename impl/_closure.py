"""The closure convention shared by every optimizer's ``step`` (torch.optim's)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def run_closure(closure: Callable[[], object] | None) -> object:
    """``closure()`` evaluated with gradients enabled (``step`` runs under no_grad), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
