"""Building blocks of the generator: the in-memory case record, seeded inputs and trajectory runners.

Nothing here computes an expected value: outputs always come from ``optconform.reference``.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optconform.golden.store import CLAUSE_TARGETS

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_DTYPES = {"<f8", "<i8", "|b1"}
REF = "optconform.reference."


@dataclass
class Case:
    """One golden case before it is written: metadata plus named input and output arrays."""

    id: str
    clause: str
    function: str  # "module.name" under optconform.reference
    regime: str
    description: str
    hyper: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    seed: int | None = None
    steps: int | None = None
    world_size: int | None = None
    layout: str = "call"
    tolerance_class: str = "elementwise"
    extra: dict[str, Any] = field(default_factory=dict)

    def _checked(self) -> dict[str, dict[str, np.ndarray]]:
        if not _NAME.match(self.id):
            raise AssertionError(f"case id {self.id!r} must match {_NAME.pattern}")
        out: dict[str, dict[str, np.ndarray]] = {}
        for role in ("inputs", "outputs"):
            out[role] = {}
            for name, value in getattr(self, role).items():
                if not _NAME.match(name):
                    raise AssertionError(f"{self.id}: array name {name!r} must match {_NAME.pattern}")
                arr = np.asarray(value)
                if arr.dtype.kind == "f":
                    arr = arr.astype("<f8")
                elif arr.dtype.kind in "iu":
                    arr = arr.astype("<i8")
                elif arr.dtype.kind == "b":
                    arr = arr.astype("|b1")
                if arr.dtype.str not in _DTYPES:
                    raise AssertionError(f"{self.id}: {role}/{name} has unsupported dtype {arr.dtype}")
                out[role][name] = np.require(arr, requirements="C")
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Archive entries ``<id>/<role>/<name>`` -> array."""
        checked = self._checked()
        return {f"{self.id}/{role}/{name}": arr for role, d in checked.items() for name, arr in d.items()}

    def record(self, fname: str) -> dict[str, Any]:
        """The manifest record of this case (JSON-ready)."""
        checked = self._checked()
        meta = {role: {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in d.items()}
                for role, d in checked.items()}
        return {
            "id": self.id, "clause": self.clause, "function": REF + self.function, "regime": self.regime,
            "description": self.description, "hyper": _jsonable(self.hyper), "inputs": meta["inputs"],
            "outputs": meta["outputs"], "seed": self.seed, "steps": self.steps, "world_size": self.world_size,
            "layout": self.layout, "tolerance_class": self.tolerance_class, "file": fname,
            "target": CLAUSE_TARGETS.get(self.clause),
            "extra": _jsonable(self.extra),
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"{obj!r} is not JSON-able")


# ------------------------------------------------------------------------------------------- inputs


def seeded(case_id: str) -> tuple[int, np.random.Generator]:
    """(seed, generator) for a case: the seed is the CRC-32 of the case id, so it never depends on order."""
    seed = zlib.crc32(case_id.encode("utf-8"))
    return seed, np.random.default_rng(seed)


def gaussian(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def with_spectrum(rng: np.random.Generator, m: int, n: int, s: Sequence[float]) -> np.ndarray:
    """An m×n matrix U diag(s) Vᵀ with Haar-like random orthonormal U, V (len(s) <= min(m, n))."""
    k = len(s)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * np.asarray(s, dtype=np.float64)) @ v.T


def conditioned(rng: np.random.Generator, m: int, n: int, cond: float) -> np.ndarray:
    """Singular values log-spaced from 1 down to 1/cond."""
    return with_spectrum(rng, m, n, np.geomspace(1.0, 1.0 / cond, min(m, n)))


def low_rank(rng: np.random.Generator, m: int, n: int, r: int) -> np.ndarray:
    return rng.standard_normal((m, r)) @ rng.standard_normal((r, n))


def with_norm(x: np.ndarray, norm: float) -> np.ndarray:
    """x rescaled to Frobenius norm ``norm`` (scaled in two steps so 1e30 and 1e-8 stay exact-ish)."""
    return (x / np.linalg.norm(x)) * norm


def spd(rng: np.random.Generator, d: int, lo: float, hi: float) -> np.ndarray:
    """A symmetric positive definite d×d matrix with eigenvalues log-spaced in [lo, hi]."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = (q * np.geomspace(lo, hi, d)) @ q.T
    return (a + a.T) / 2.0


# -------------------------------------------------------------------------------------- trajectories

StepFn = Callable[..., tuple[np.ndarray, Mapping[str, Any]]]


def run_trajectory(step: StepFn, param0: np.ndarray, grads: np.ndarray, fixed: Mapping[str, Any],
                   per_step: Mapping[str, np.ndarray] | None = None,
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Step ``step(param, grads[t], state, **fixed, **{k: v[t]})`` for every t, starting from state {}.

    Returns (params after each step, stacked along axis 0; {"state.<key>": stacked state values}).
    """
    per_step = per_step or {}
    p = param0
    state: Mapping[str, Any] = {}
    params: list[np.ndarray] = []
    states: dict[str, list] = {}
    for t in range(grads.shape[0]):
        kw = {k: _scalar(v[t]) for k, v in per_step.items()}
        p, state = step(p, grads[t], state, **fixed, **kw)
        params.append(np.asarray(p))
        for k, v in state.items():
            states.setdefault(f"state.{k}", []).append(np.asarray(v))
    if any(len(v) != len(params) for v in states.values()):
        raise AssertionError("a state key appeared part way through the trajectory")
    return np.stack(params), {k: np.stack(v) for k, v in states.items()}


def _scalar(x: Any) -> Any:
    x = np.asarray(x)
    if x.dtype.kind == "b":
        return bool(x)
    if x.dtype.kind in "iu":
        return int(x)
    return float(x)


def replay_single(per_step: Sequence[str], state_keys: Sequence[str]) -> dict[str, Any]:
    """The ``extra.replay`` record of a single-parameter trajectory (what a torch consumer needs)."""
    return {"param0": "param0", "grads": "grads", "per_step": list(per_step), "expected_param": "param",
            "expected_state": [f"state.{k}" for k in state_keys]}
