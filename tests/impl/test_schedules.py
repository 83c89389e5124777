"""impl/schedules.py against the float64 reference (S4): same values, same domain, same ValueErrors.

Comparisons are EXACT (==): both evaluate the same IEEE float64 operations in the same order on Python
floats, so any difference is a different formula (SCHEDULE_RTOL is for implementations that reorder).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optconform.conformance import strategies as S
from optconform.impl import schedules as impl
from optconform.reference import schedules as ref


@given(S.constant_lr_args())
def test_constant_lr_matches_reference(kw):
    assert impl.constant_lr(**kw) == ref.constant_lr(**kw)


@given(S.step_decay_lr_args())
def test_step_decay_lr_matches_reference(kw):
    assert impl.step_decay_lr(**kw) == ref.step_decay_lr(**kw)


@given(S.exponential_decay_lr_args())
def test_exponential_decay_lr_matches_reference(kw):
    assert impl.exponential_decay_lr(**kw) == ref.exponential_decay_lr(**kw)


@given(S.inverse_time_decay_lr_args())
def test_inverse_time_decay_lr_matches_reference(kw):
    assert impl.inverse_time_decay_lr(**kw) == ref.inverse_time_decay_lr(**kw)


@given(S.lr_multiplier_args())
def test_lr_multiplier_matches_reference(kw):
    assert impl.lr_multiplier(**kw) == ref.lr_multiplier(**kw)


@given(S.muon_momentum_args())
def test_muon_momentum_matches_reference(kw):
    assert impl.muon_momentum(**kw) == ref.muon_momentum(**kw)


def test_lr_multiplier_seed_shape():
    # nanochat defaults over 1000 iterations: flat 1.0 through 800, then linear to 0 at 1000
    vals = [impl.lr_multiplier(it, num_iterations=1000) for it in range(1001)]
    assert vals[:801] == [1.0] * 801
    assert vals[900] == 0.5 and vals[1000] == 0.0
    assert impl.lr_multiplier(0, num_iterations=10, warmup_ratio=0.5) == 0.2   # (0 + 1) / 5


BAD = [
    (impl.constant_lr, (-1,), dict(lr=0.1), "step"),
    (impl.constant_lr, (0,), dict(lr=0.0), "lr"),
    (impl.constant_lr, (2**53 + 1,), dict(lr=0.1), "step"),
    (impl.constant_lr, (1.5,), dict(lr=0.1), "step"),
    (impl.step_decay_lr, (0,), dict(initial_lr=-1.0, decay_rate=0.5, decay_steps=10), "initial_lr"),
    (impl.step_decay_lr, (0,), dict(initial_lr=1.0, decay_rate=0.0, decay_steps=10), "decay_rate"),
    (impl.step_decay_lr, (0,), dict(initial_lr=1.0, decay_rate=1.5, decay_steps=10), "decay_rate"),
    (impl.step_decay_lr, (0,), dict(initial_lr=1.0, decay_rate=0.5, decay_steps=0), "decay_steps"),
    (impl.exponential_decay_lr, (0,), dict(initial_lr=1.0, decay_rate=-0.1), "decay_rate"),
    (impl.exponential_decay_lr, (0,), dict(initial_lr=float("nan"), decay_rate=0.1), "initial_lr"),
    (impl.inverse_time_decay_lr, (0,), dict(initial_lr=1.0, decay_rate=float("inf")), "decay_rate"),
    (impl.inverse_time_decay_lr, (-3,), dict(initial_lr=1.0, decay_rate=0.1), "step"),
    (impl.lr_multiplier, (11,), dict(num_iterations=10), "it"),
    (impl.lr_multiplier, (0,), dict(num_iterations=-1), "num_iterations"),
    (impl.lr_multiplier, (0,), dict(num_iterations=10, warmup_ratio=1.5), "warmup_ratio"),
    (impl.lr_multiplier, (0,), dict(num_iterations=10, warmdown_ratio=-0.1), "warmdown_ratio"),
    (impl.lr_multiplier, (0,), dict(num_iterations=10, final_lr_frac=2.0), "final_lr_frac"),
    (impl.muon_momentum, (-1,), {}, "it"),
    (impl.muon_momentum, (0,), dict(start=1.0), "start"),
    (impl.muon_momentum, (0,), dict(end=-0.1), "end"),
    (impl.muon_momentum, (0,), dict(ramp_steps=0), "ramp_steps"),
    (impl.muon_momentum, (True,), {}, "it"),
]


@pytest.mark.parametrize("fn,args,kw,name", BAD, ids=[f"{b[0].__name__}-{b[3]}-{i}" for i, b in enumerate(BAD)])
def test_invalid_arguments_raise_like_reference(fn, args, kw, name):
    with pytest.raises(ValueError, match=f"^{name} ") as got:
        fn(*args, **kw)
    with pytest.raises(ValueError) as want:
        getattr(ref, fn.__name__)(*args, **kw)
    assert str(got.value) == str(want.value)


@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_lr_multiplier_domain_edge_matches_reference(it, n):
    if it > n:
        with pytest.raises(ValueError, match="^it "):
            impl.lr_multiplier(it, num_iterations=n)
    else:
        assert impl.lr_multiplier(it, num_iterations=n) == ref.lr_multiplier(it, num_iterations=n)
