"""S4 schedules: every schedule the target provides, against the golden tables and fuzzed against the live reference.

Each case draws valid arguments over the clause's whole domain (boundary-heavy strategies from
``optconform.conformance.strategies``) and requires agreement within ``SCHEDULE_RTOL``; hypothesis
shrinks a failure to a minimal counterexample, printed as the "Falsifying example".
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform import spec
from optconform.conformance import strategies as S
from optconform.conformance.judges.schedules import rel_err
from optconform.conformance.tolerances import SCHEDULE_RTOL
from optconform.golden import store
from optconform.reference import schedules as ref


def _fuzz(case, clause_id: str, args: dict, counter: str) -> None:
    name = spec.clause(clause_id).protocol_name
    fn = case.require(name)
    kw = dict(args)
    x = kw.pop(counter)
    expected = getattr(ref, spec.clause(clause_id).name)(x, **kw)
    got = case.call(fn, x, **kw)
    case.verdict.check("rel_err", rel_err(got, expected), SCHEDULE_RTOL, case="fuzz",
                       evidence=f"{name}({x}, {kw}) returned {got!r}, the reference {expected!r}")


@pytest.mark.clause("S4.2")
@given(args=S.step_decay_lr_args())
def test_step_decay_lr(case, args):
    _fuzz(case, "S4.2", args, "step")


@pytest.mark.clause("S4.3")
@given(args=S.exponential_decay_lr_args())
def test_exponential_decay_lr(case, args):
    _fuzz(case, "S4.3", args, "step")


@pytest.mark.clause("S4.4")
@given(args=S.inverse_time_decay_lr_args())
def test_inverse_time_decay_lr(case, args):
    _fuzz(case, "S4.4", args, "step")


@pytest.mark.clause("S4.5")
@given(args=S.lr_multiplier_args())
def test_lr_multiplier(case, args):
    _fuzz(case, "S4.5", args, "it")


@pytest.mark.clause("S4.5")
@given(hp=S.lr_multiplier_hparams(max_iterations=2000))
def test_lr_multiplier_whole_run(case, hp):
    """Every iteration 0..num_iterations of one run, so a phase-boundary slip cannot hide between draws."""
    fn = case.require("lr_multiplier")
    worst = max((rel_err(case.call(fn, it, **hp), ref.lr_multiplier(it, **hp)), it)
                for it in range(hp["num_iterations"] + 1))
    it = worst[1]
    case.verdict.check("rel_err", worst[0], SCHEDULE_RTOL, case=f"whole run (worst at it={it})",
                       evidence=f"lr_multiplier({it}, {hp}) returned {case.call(fn, it, **hp)!r}, "
                                f"the reference {ref.lr_multiplier(it, **hp)!r}")


@pytest.mark.clause("S4.6")
@given(it=st.one_of(st.integers(0, 400), S.counts()))
def test_muon_momentum(case, it):
    _fuzz(case, "S4.6", {"it": it}, "it")


_TABLE_CLAUSES = ("S4.2", "S4.3", "S4.4", "S4.5", "S4.6")
_GOLDEN = [(clause, cid) for clause in _TABLE_CLAUSES for cid in store.case_ids(clause)
           if not (clause == "S4.6" and store.load_case(cid).hyper)]  # muon_momentum(it): nanochat's defaults only


@pytest.mark.parametrize("clause_id,case_id", [pytest.param(c, i, id=i, marks=pytest.mark.clause(c))
                                               for c, i in _GOLDEN])
def test_schedule_golden_table(case, clause_id, case_id):
    """Every golden schedule table (boundaries, half-to-even rounding, overlapping phases), value by value."""
    fn = case.require(spec.clause(clause_id).protocol_name)
    c = store.load_case(case_id)
    (counter,) = c.inputs
    values = {int(x): float(v) for x, v in zip(c.inputs[counter], c.outputs["value"], strict=True)}
    worst = max((rel_err(case.call(fn, x, **c.hyper), v), x) for x, v in values.items())
    x = worst[1]
    case.verdict.check("rel_err", worst[0], SCHEDULE_RTOL, case=f"{case_id} (worst at {counter}={x})",
                       evidence=f"returned {case.call(fn, x, **c.hyper)!r} at {counter}={x}, the golden {values[x]!r}")
