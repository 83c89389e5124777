"""Invariants of S9.7 DTensorMuon / S9.8 DTensorAdamW beyond S9.4's (``core``), and S9.6's placement (``layout``).

core:
* every parameter is still a DTensor of the placements it was given, on every rank (a target steps it in place);
* the whole optimizer state (``full_tensor()`` of a DTensor state, or the ranks' pieces joined along the
  parameter's Shard dimension) equals the reference's, on the mean gradient (and the golden state);
* the state is sharded: no rank holds more state elements than its own pieces of the parameters need
  (``per_param`` × the local parameter elements, plus NorMuon's per-row vector of every matrix): a target that
  keeps whole momentum buffers on every rank holds W times that.

layout (S9.6): every state tensor of a parameter's shape is a DTensor placed as its parameter (which makes its local
piece S9.6's), as torch.optim's ``zeros_like(p)`` gives and torch.distributed.checkpoint needs to reshard.
"""

from __future__ import annotations

import numpy as np

from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Trajectory
from optconform.spec import CORE, LAYOUT


def judge_placements_kept(verdict: Verdict, traj: Trajectory, recs: list[dict]) -> None:
    changed = [(r, i) for r, rec in enumerate(recs) for i, kept in enumerate(rec["placements_kept"]) if not kept]
    verdict.equal("(rank, param) whose DTensor placements changed during the run", changed, [], case=traj.case_id,
                  level=CORE)


def _whole(recs: list[dict], i: int, key: str, shape: tuple[int, ...], placement: str) -> np.ndarray | None:
    """Parameter i's whole ``key``: rank 0's full_tensor(), or the plain pieces joined along the Shard dim."""
    pieces = [rec["state_records"][i].get(key) for rec in recs]
    if any(p is None for p in pieces):
        return None
    if pieces[0]["dtensor"] or tuple(pieces[0]["whole"].shape) == shape or not placement.startswith("Shard("):
        return pieces[0]["whole"]
    try:
        return np.concatenate([p["whole"] for p in pieces], axis=int(placement[6:-1]))
    except ValueError:
        return None


def judge_dtensor_state(verdict: Verdict, traj: Trajectory, recs: list[dict], ref_states: list[dict],
                        keys: tuple[str, ...], tol: float, golden_tol: float) -> None:
    """The whole state against the reference's (core) and each rank's piece placed as its parameter (layout)."""
    assert traj.placements is not None
    for i, p0 in enumerate(traj.params0):
        if p0.size == 0:
            continue
        placement = "Shard(0)" if traj.placements[i] == "fully_shard" else traj.placements[i]
        for key in keys:
            if key not in ref_states[i]:  # the parameter turned non-finite before its first step: reported there
                continue
            lacking = [r for r, rec in enumerate(recs) if key not in rec["state_records"][i]]
            verdict.equal(f"ranks holding no {key} of param {i}", lacking, [], case=traj.case_id, level=CORE)
            whole = _whole(recs, i, key, p0.shape, placement)
            if whole is None:
                verdict.equal(f"{key} of param {i}: the ranks' pieces join into the parameter's shape "
                              f"{p0.shape} along {placement}", False, True, case=traj.case_id, level=CORE)
                continue
            ref = np.asarray(ref_states[i][key], dtype=np.float64)
            verdict.check(f"{key} of param {i} (whole) vs live reference", rel_fro_error(whole, ref), tol,
                          case=traj.case_id, level=CORE)
            if traj.expected_state is not None:
                gold = np.asarray(traj.expected_state[-1][i][key], dtype=np.float64)
                verdict.check(f"{key} of param {i} (whole) vs golden", rel_fro_error(whole, gold), golden_tol,
                              case=traj.case_id, level=CORE)
            misplaced = [r for r, rec in enumerate(recs) if key in rec["state_records"][i]
                         and not rec["state_records"][i][key]["placed_as_param"]]
            verdict.equal(f"ranks whose {key} of param {i} is not a DTensor placed {placement} as its parameter",
                          misplaced, [], case=traj.case_id, level=LAYOUT)


def judge_dtensor_memory(verdict: Verdict, traj: Trajectory, recs: list[dict], per_param: float,
                         extra_per_matrix: bool = False) -> None:
    """No rank above its own pieces: max over ranks of state elements / (per_param × its local parameter elements
    + NorMuon's vector of every matrix where ``extra_per_matrix``) <= 1."""
    extra = sum(max(p.shape[-2:]) for p in traj.params0 if p.ndim >= 2) if extra_per_matrix else 0
    worst = 0.0
    for rec in recs:
        bound = per_param * sum(rec["local_param_elements"]) + extra
        worst = max(worst, rec["state_elements"] / bound if bound else float(rec["state_elements"]))
    verdict.check("largest rank's state elements / its own pieces' bound", worst, 1.0, case=traj.case_id,
                  level=CORE, kind="structure")
