"""The context of one conformance case: the target, the case's verdict, and the run's options.

Every case reaches the target through :meth:`Case.require` (not provided / unsupported / signature
mismatch are reported as what they are before anything runs), checks a case's hyperparameters, dtype and
world size against the target's declared capabilities, and calls the target through :meth:`Case.call`, which
turns an ``optconform.spec.Unsupported`` raised by the target into an *unsupported* outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pytest

from optconform.spec import Unsupported
from optconform.spec import options as O

from .report import MISMATCH_PREFIX, NOT_PROVIDED_PREFIX, UNSUPPORTED_PREFIX, Verdict
from .stepping import Replayed, Trajectory, case_dtype, step_through
from .target import Target


def golden_dir(clause_id: str, values: Mapping[str, Any]) -> Any:
    """The golden data folder whose ``clause_id`` cases were computed under the options ``values`` give that clause:
    the default data when they are the defaults, else ``<data>/<profile>`` of the first profile with exactly these
    options for the clause (None: no profile has them)."""
    from optconform.golden import store

    mine = O.clause_options(clause_id, values)
    for name, p in O.PROFILES.items():
        if O.clause_options(clause_id, p.values) == mine:
            if O.clause_options(clause_id, O.option_defaults()) == mine:
                return store.default_data_dir()
            return store.default_data_dir().joinpath(name)
    return None


def target_options(target: Target, name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The options of ``values`` (every option's value) that differ from the defaults, under the names the
    target's ``name`` takes; {} unless the target declares (capability ``options``) that ``name`` takes them."""
    if name not in target.capabilities.options:
        return {}
    from optconform.spec import PROTOCOL

    cid = PROTOCOL[name].clause.id
    defaults = O.clause_options(cid, O.option_defaults())
    return {k: v for k, v in O.clause_options(cid, values).items() if v != defaults[k]}


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
    options: dict[str, Any] = field(default_factory=O.option_defaults)  # every variant option's value (the profile's)
    profile: str = O.DEFAULT_PROFILE

    def reference_options(self, clause_id: str) -> dict[str, Any]:
        """The keyword arguments that make ``clause_id``'s reference function compute this run's variant."""
        return O.clause_options(clause_id, self.options)

    def target_options(self, name: str) -> dict[str, Any]:
        """The variant options passed to the target's ``name`` as keywords: those of a non-default value, and only
        when the target declares (capability ``options``) that ``name`` takes them."""
        return target_options(self.target, name, self.options)

    def golden(self, clause_id: str, case_id: str) -> Any:
        """The golden case ``case_id`` as the profile whose ``clause_id`` options are this run's computed it
        (``golden/data/<profile>/``, or the default's data); skips the case when no profile has these options."""
        __tracebackhide__ = True
        from optconform.golden import store

        where = golden_dir(clause_id, self.options)
        if where is None:
            defaults = O.clause_options(clause_id, O.option_defaults())
            differ = {k: v for k, v in self.reference_options(clause_id).items() if v != defaults[k]}
            pytest.skip(f"no goldens for these options ({', '.join(f'{k}={v!r}' for k, v in differ.items())}): "
                        "goldens exist per profile (golden/data/<profile>/); the live cases judge the variant")
        return store.load_case(case_id, where)

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

    def with_target_options(self, traj: Trajectory) -> Trajectory:
        """``traj`` with the target's variant options added to its constructor keywords (see target_options)."""
        extra = self.target_options(traj.kind)
        return replace(traj, hyper={**traj.hyper, **extra}) if extra else traj

    def replay(self, traj: Trajectory, *, squares: bool = False, dtype: Any = None) -> Replayed:
        """Replay ``traj`` through the target's ``traj.kind`` on this process, after checking that the target
        provides it and supports every hyperparameter value and the dtype the case needs (float32 unless the
        values, or with ``squares`` their squares, leave float32's normal range)."""
        __tracebackhide__ = True
        ctor = self.require(traj.kind)
        traj = self.with_target_options(traj)
        for values in traj.hyper_values():
            self.supports(traj.kind, values)
        dtype = dtype or case_dtype(traj.arrays(), squares=squares)
        self.supports_dtype(dtype)
        return self.call(step_through, ctor, traj, device=self.device, dtype=dtype)
