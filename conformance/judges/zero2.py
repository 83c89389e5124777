"""Distributed invariants (``core``) and the spec's ownership rule (``layout``) for S9.4 DistMuon and S9.5 DistAdamW.

core:
* every rank holds bit-identical parameters after every step;
* each step equals the single-process optimizer on the mean of the ranks' gradients (the Muon and float32
  family judges, on rank 0's parameters and the mean of the gradients the ranks were given);
* every optimizer-state element is held by exactly one rank and equals the reference's (and the golden)
  state: each rank's state tensor of a parameter is matched, flattened, to the contiguous run of the
  reference's flattened state it equals (a whole matrix, a block of rows, a block of elements), and the runs
  must tile the parameter's state exactly once;
* no rank holds more state elements than a balanced layout needs: the larger of the spec layout's own
  largest rank and a greedy whole-parameter partition's guarantee, total/W plus the largest parameter's state.

layout: the runs are where S9.2 (the owner of a Muon matrix) and S9.3 (ceil(dim0/W) rows per rank) put them.
"""

from __future__ import annotations

import math

import numpy as np

from optconform.conformance import tolerances as T
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.report import Verdict
from optconform.conformance.stepping import Replayed, Trajectory
from optconform.reference.zero2 import adamw_row_shard, muon_owner, muon_shape_groups
from optconform.spec import CORE, LAYOUT


def judge_identical_ranks(verdict: Verdict, traj: Trajectory, recs: list[dict]) -> None:
    worst = 0.0
    for r in range(1, len(recs)):
        for t in range(traj.steps):
            for a, b in zip(recs[r]["after"][t], recs[0]["after"][t], strict=True):
                worst = max(worst, float(np.max(np.abs(a - b))) if a.size else 0.0)
    verdict.check("max |θ_rank − θ_rank0| over steps", worst, 0.0, case=traj.case_id, level=CORE)


def mean_replay(traj: Trajectory, recs: list[dict]) -> Replayed:
    """Rank 0's parameters with the mean of the gradients the ranks were given (state judged separately)."""
    mean = [[np.mean([rec["grads"][t][i] for rec in recs], axis=0) for i in range(len(traj.params0))]
            for t in range(traj.steps)]
    return Replayed(recs[0]["before"], mean, recs[0]["after"])


def muon_layout(traj: Trajectory, world_size: int) -> dict[int, list[tuple[int, int]]]:
    """S9.2: param -> [(rank, flat offset)] of the one piece its owner holds."""
    out = {}
    for _, idx in muon_shape_groups([p.shape for p in traj.params0]):
        for j, i in enumerate(idx):
            out[i] = [(muon_owner(j, world_size), 0)]
    return out


def adamw_layout(traj: Trajectory, world_size: int) -> dict[int, list[tuple[int, int]]]:
    """S9.3: param -> [(rank, flat offset)] of every non-empty row block."""
    out = {}
    for i, p in enumerate(traj.params0):
        dim0 = p.shape[0] if p.ndim else 1
        row = int(np.prod(p.shape[1:])) if p.ndim > 1 else 1
        out[i] = []
        for r in range(world_size):
            start, stop = adamw_row_shard(dim0, world_size, r)
            if stop > start:
                out[i].append((r, start * row))
    return out


def _match(piece: np.ndarray, full: np.ndarray, preferred: int | None) -> tuple[int | None, float]:
    """The offset o where ``full[o:o+len(piece)]`` is closest to ``piece`` (flattened), and its relative error;
    ``preferred`` wins ties (e.g. all-zero rows). None when the piece is longer than the state."""
    p, f = piece.ravel(), full.ravel()
    k, n = p.size, f.size
    if k > n or k == 0:
        return None, math.inf
    windows = np.lib.stride_tricks.sliding_window_view(f, k)
    errs = np.linalg.norm(windows - p, axis=1)
    best = int(np.argmin(errs))
    if preferred is not None and 0 <= preferred <= n - k and errs[preferred] <= errs[best] * (1 + 1e-9):
        best = preferred
    return best, rel_fro_error(p, f[best:best + k])


def judge_state_partition(verdict: Verdict, traj: Trajectory, recs: list[dict], ref_states: list[dict],
                          keys: tuple[str, ...], layout: dict[int, list[tuple[int, int]]], tol: float,
                          golden_tol: float) -> None:
    """Every element of every state tensor held exactly once, equal to the reference's (and the golden's);
    where it is held, against the spec's layout."""
    w = len(recs)
    for i, p0 in enumerate(traj.params0):
        if p0.size == 0:
            continue
        want = sorted(layout[i])
        for key in keys:
            if key not in ref_states[i]:  # the parameter turned non-finite before its first step: reported there
                continue
            ref = np.asarray(ref_states[i][key], dtype=np.float64)
            preferred = dict(layout[i])
            placed: list[tuple[int, int]] = []
            cover = np.zeros(ref.size, dtype=np.int64)
            for r in range(w):
                got = recs[r]["state"][i].get(key)
                if got is None:
                    continue
                off, err = _match(got, ref, preferred.get(r))
                if off is None:
                    cover[:] += 2  # longer than the whole state: held more than once, by construction
                    continue
                cover[off:off + got.size] += 1
                placed.append((r, off))
                verdict.check(f"rank {r} {key} of param {i} vs live reference", err, tol, case=traj.case_id,
                              level=CORE)
                if traj.expected_state is not None:
                    gold = np.asarray(traj.expected_state[-1][i][key], dtype=np.float64).ravel()
                    verdict.check(f"rank {r} {key} of param {i} vs golden",
                                  rel_fro_error(got.ravel(), gold[off:off + got.size]), golden_tol,
                                  case=traj.case_id, level=CORE)
            twice, missing = int(np.sum(cover > 1)), int(np.sum(cover == 0))
            verdict.equal(f"{key} elements of param {i} held twice / by nobody", (twice, missing), (0, 0),
                          case=traj.case_id, level=CORE)
            verdict.equal(f"{key} of param {i}: (rank, first element) of each piece", sorted(placed), want,
                          case=traj.case_id, level=LAYOUT)


def judge_state_memory(verdict: Verdict, traj: Trajectory, recs: list[dict], per_param: float,
                       layout: dict[int, list[tuple[int, int]]]) -> None:
    """No rank above a balanced layout (core): max over ranks of its state elements <= the larger of the spec
    layout's own largest rank and total/W + the largest parameter's state (a greedy partition's guarantee)."""
    w = len(recs)
    sizes = [int(p.size) * per_param for p in traj.params0]
    total, largest = sum(sizes), max(sizes, default=0)
    spec_rank = [0] * w
    for i, pieces in layout.items():
        offsets = sorted(off for _, off in pieces) + [traj.params0[i].size]
        for r, off in pieces:
            nxt = min(o for o in offsets if o > off)
            spec_rank[r] += (nxt - off) * per_param
    bound = max(total / w + largest, max(spec_rank, default=0))
    held = max(rec["state_elements"] for rec in recs)
    verdict.check("largest rank's state elements / balanced-layout bound", held / bound if bound else held, 1.0,
                  case=traj.case_id, level=CORE, kind="structure")


def dist_state_tolerances(traj: Trajectory, world_size: int, *, strict: bool) -> tuple[float, float]:
    """(vs live reference, vs golden) bounds on a rank's state: the float32 trajectory bound plus the AVG
    reduction's rounding each step."""
    tol = T.f32_trajectory_rtol(traj.steps, strict=strict) + traj.steps * T.dist_average_rtol(world_size)
    return tol, tol
