"""A rank that fails mid-run must not take the run down with it: the rank-fault cases (``--faults``, regime
``rank_fault``, hardening).

The suite makes one rank (the last) fail just before one step of a distributed target's live trajectory
(``stepping.inject_fault``): it raises ``InjectedFault``, it is sent SIGKILL a few milliseconds into the step, or it
never calls the step (it sleeps). The other ranks are then inside the target's step, waiting in its collectives.
What is judged is what the run looks like from outside:

* the run ends (never a hang) within the process-group timeout plus the harness's kill grace, counted from the
  ranks' launch (the harness's fork server, started once per process, is not the target's time);
* raise / sigkill: the failure names the faulty rank, with the suite's exception or the signal (not a peer's
  "connection reset");
* absent: the timeout names every rank as still inside the trajectory; a peer that finished the step (and the
  rest) without the absent rank stepped without communicating: its step skipped a collective it needs;
* no rank process is alive afterwards.

A target fails these when its own code outlives the failure: a retry loop around a collective, a background thread
or process of its own that keeps a rank alive, or a step that does not communicate at all.
"""

from __future__ import annotations

from optconform.conformance.report import Verdict
from optconform.conformance.spawn import RankFailure, RankTimeout

__all__ = ["KILL_GRACE_S", "judge_rank_fault"]

#: Seconds the run may take beyond the timeout: the harness's kill grace (2 s), a stack dump (0.5 s) and what a
#: loaded 2-core machine adds to starting and stopping W processes: the slack tests/impl/test_spawn.py allows the
#: harness's own timeout test.
KILL_GRACE_S = 20.0


def judge_rank_fault(verdict: Verdict, what: str, faulty: int, world_size: int, outcome: object, elapsed: float,
                     timeout_s: float, alive: int, *, case: str) -> None:
    """``outcome``: what the harness raised (RankFailure, RankTimeout) or returned; ``alive``: rank processes still
    alive afterwards."""
    verdict.check("seconds until every rank stopped", elapsed, timeout_s + KILL_GRACE_S, case=case,
                  evidence="a rank's failure left the others running past the timeout")
    verdict.equal("rank processes alive after the run", alive, 0, case=case)
    if what == "absent":
        if isinstance(outcome, RankTimeout):
            finished = sorted(set(range(world_size)) - set(outcome.ranks))
            verdict.equal(f"ranks that finished the trajectory while rank {faulty} never stepped", finished, [],
                          case=case)
        else:
            verdict.equal("how the run ended", type(outcome).__name__, "RankTimeout", case=case)
        return
    if not isinstance(outcome, RankFailure):
        verdict.equal("how the run ended", type(outcome).__name__, "RankFailure", case=case)
        return
    verdict.equal("rank blamed for the failure", outcome.rank, faulty, case=case)
    sign = "InjectedFault" if what == "raise" else "SIGKILL"
    verdict.equal(f"the blamed rank's report names {sign}", sign in outcome.traceback, True, case=case)
