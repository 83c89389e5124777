"""S4 schedules: every schedule the target provides, against the golden tables and fuzzed against the live reference.

Each case draws valid arguments over the clause's whole domain (boundary-heavy strategies from
``optconform.conformance.strategies``) and requires agreement within ``SCHEDULE_RTOL``; hypothesis
shrinks a failure to a minimal counterexample, printed as the "Falsifying example".
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform.conformance import strategies as S
from optconform.conformance.tolerances import SCHEDULE_ATOL, SCHEDULE_RTOL
from optconform.golden import store
from optconform.reference import schedules as ref


def _rel_err(actual: object, expected: float) -> float:
    return abs(float(actual) - expected) / max(abs(expected), SCHEDULE_ATOL)


def _pop(args: dict, key: str) -> tuple[int, dict]:
    args = dict(args)
    return args.pop(key), args


@pytest.mark.clause("S4.2", "step_decay_lr")
@given(args=S.step_decay_lr_args())
def test_step_decay_lr(target, verdict, args):
    fn = target.require("step_decay_lr")
    step, kw = _pop(args, "step")
    verdict.check("rel_err", _rel_err(fn(step, **kw), ref.step_decay_lr(step, **kw)), SCHEDULE_RTOL, case="fuzz")


@pytest.mark.clause("S4.3", "exponential_decay_lr")
@given(args=S.exponential_decay_lr_args())
def test_exponential_decay_lr(target, verdict, args):
    fn = target.require("exponential_decay_lr")
    step, kw = _pop(args, "step")
    verdict.check("rel_err", _rel_err(fn(step, **kw), ref.exponential_decay_lr(step, **kw)), SCHEDULE_RTOL,
                  case="fuzz")


@pytest.mark.clause("S4.4", "inverse_time_decay_lr")
@given(args=S.inverse_time_decay_lr_args())
def test_inverse_time_decay_lr(target, verdict, args):
    fn = target.require("inverse_time_decay_lr")
    step, kw = _pop(args, "step")
    verdict.check("rel_err", _rel_err(fn(step, **kw), ref.inverse_time_decay_lr(step, **kw)), SCHEDULE_RTOL,
                  case="fuzz")


@pytest.mark.clause("S4.5", "lr_multiplier")
@given(args=S.lr_multiplier_args())
def test_lr_multiplier(target, verdict, args):
    fn = target.require("lr_multiplier")
    it, kw = _pop(args, "it")
    verdict.check("rel_err", _rel_err(fn(it, **kw), ref.lr_multiplier(it, **kw)), SCHEDULE_RTOL, case="fuzz")


@pytest.mark.clause("S4.5", "lr_multiplier")
@given(hp=S.lr_multiplier_hparams(max_iterations=2000))
def test_lr_multiplier_whole_run(target, verdict, hp):
    """Every iteration 0..num_iterations of one run, so a phase-boundary slip cannot hide between draws."""
    fn = target.require("lr_multiplier")
    worst = max((_rel_err(fn(it, **hp), ref.lr_multiplier(it, **hp)), it) for it in range(hp["num_iterations"] + 1))
    verdict.check("rel_err", worst[0], SCHEDULE_RTOL, case=f"whole run (worst at it={worst[1]})")


@pytest.mark.clause("S4.6", "muon_momentum")
@given(it=st.one_of(st.integers(0, 400), S.counts()))
def test_muon_momentum(target, verdict, it):
    fn = target.require("muon_momentum")
    verdict.check("rel_err", _rel_err(fn(it), ref.muon_momentum(it)), SCHEDULE_RTOL, case="fuzz")


_TABLE_CLAUSES = {"S4.2": "step_decay_lr", "S4.3": "exponential_decay_lr", "S4.4": "inverse_time_decay_lr",
                  "S4.5": "lr_multiplier", "S4.6": "muon_momentum"}
_GOLDEN = [(clause, c.id) for clause in _TABLE_CLAUSES for c in store.iter_cases(clause)
           if not (clause == "S4.6" and c.hyper)]  # the protocol's muon_momentum(it) has nanochat's defaults only


def _golden_table(target, verdict, clause: str, case_id: str) -> None:
    name = _TABLE_CLAUSES[clause]
    fn = target.require(name)
    c = store.load_case(case_id)
    (counter,) = c.inputs
    worst = max((_rel_err(fn(int(x), **c.hyper), float(v)), int(x))
                for x, v in zip(c.inputs[counter], c.outputs["value"], strict=True))
    verdict.check("rel_err", worst[0], SCHEDULE_RTOL, case=f"{case_id} (worst at {counter}={worst[1]})")


@pytest.mark.parametrize("clause,case_id", [pytest.param(c, i, id=i, marks=pytest.mark.clause(c, _TABLE_CLAUSES[c]))
                                            for c, i in _GOLDEN])
def test_schedule_golden_table(target, verdict, clause, case_id):
    """Every golden schedule table (boundaries, half-to-even rounding, overlapping phases), value by value."""
    _golden_table(target, verdict, clause, case_id)
