"""The context of one conformance case: the target, the case's verdict, and the run's options.

Every case reaches the target through :meth:`Case.require` (not provided / unsupported / signature
mismatch are reported as what they are before anything runs), checks a case's hyperparameters, dtype and
world size against the target's declared capabilities, and calls the target through :meth:`Case.call`, which
turns an ``optconform.spec.Unsupported`` raised by the target into an *unsupported* outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from optconform.spec import Unsupported

from .report import MISMATCH_PREFIX, NOT_PROVIDED_PREFIX, UNSUPPORTED_PREFIX, Verdict
from .stepping import Replayed, Trajectory, case_dtype, step_through
from .target import Target


def unsupported(reason: str) -> None:
    """End the case as *unsupported* with the target's reason (never passed, never failed)."""
    __tracebackhide__ = True
    pytest.skip(f"{UNSUPPORTED_PREFIX}: {reason}")


@dataclass
class Case:
    target: Target
    verdict: Verdict
    device: Any  # torch.device
    strict: bool
    rng: np.random.Generator  # seeded from --seed and the case's node id
    world_sizes: tuple[int, ...]
    dist_timeout: float

    def require(self, name: str) -> Any:
        """The target's ``name``; ends the case as not provided / unsupported / signature mismatch otherwise."""
        __tracebackhide__ = True
        problem = self.target.problem(name)
        if problem is None:
            return self.target.get(name)
        status, reason = problem
        if status == "not provided":
            pytest.skip(f"{NOT_PROVIDED_PREFIX}: {reason}")
        if status == "unsupported":
            unsupported(reason)
        if self.verdict.mismatch(reason):
            pytest.fail(f"{MISMATCH_PREFIX}: {reason}", pytrace=False)
        pytest.skip(f"{MISMATCH_PREFIX}: {reason}")

    def supports(self, name: str, values: Mapping[str, Any]) -> None:
        """End the case as unsupported when the target declared one of ``values`` (hyperparameter -> value)."""
        __tracebackhide__ = True
        reason = self.target.capabilities.value_reason(name, values)
        if reason is not None:
            unsupported(reason)

    def supports_dtype(self, dtype: Any) -> None:
        __tracebackhide__ = True
        reason = self.target.capabilities.dtype_reason(str(dtype).removeprefix("torch."))
        if reason is not None:
            unsupported(reason)

    def supports_world_size(self, world_size: int) -> None:
        __tracebackhide__ = True
        if world_size not in self.world_sizes:
            pytest.skip(f"world size {world_size} not selected (--world-sizes)")
        reason = self.target.capabilities.world_size_reason(world_size)
        if reason is not None:
            unsupported(reason)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` of the target; ``Unsupported`` ends the case as unsupported."""
        __tracebackhide__ = True
        try:
            return fn(*args, **kwargs)
        except Unsupported as exc:
            unsupported(str(exc) or type(exc).__name__)

    def replay(self, traj: Trajectory, *, squares: bool = False, dtype: Any = None) -> Replayed:
        """Replay ``traj`` through the target's ``traj.kind`` on this process, after checking that the target
        provides it and supports every hyperparameter value and the dtype the case needs (float32 unless the
        values, or with ``squares`` their squares, leave float32's normal range)."""
        __tracebackhide__ = True
        ctor = self.require(traj.kind)
        for values in traj.hyper_values():
            self.supports(traj.kind, values)
        dtype = dtype or case_dtype(traj.arrays(), squares=squares)
        self.supports_dtype(dtype)
        return self.call(step_through, ctor, traj, device=self.device, dtype=dtype)
