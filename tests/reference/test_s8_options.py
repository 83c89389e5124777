"""S8.3 ``adam_denominator`` (ε before / after bias correction, eps_root) and S8.2's ``param_muls`` option."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.reference.adam import adam_denominator, adamw


def test_eps_before_bias_correction_is_the_seeds_distadamw_form(rng):
    """(m/bc1)/(√v̂ + ε/√bc2) = step_size·m/(√v + ε) with step_size = √bc2/bc1 (nanochat #304's form)."""
    b1, b2, t, eps = 0.8, 0.95, 3, 1e-10
    m, v = rng.standard_normal(20) * 1e-10, rng.random(20) * 1e-20
    bc1, bc2 = 1 - b1**t, 1 - b2**t
    ours = (m / bc1) / adam_denominator(v / bc2, eps=eps, bias_correction2=bc2, eps_placement="before")
    seed = (np.sqrt(bc2) / bc1) * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(ours, seed, rtol=1e-13)
    after = (m / bc1) / adam_denominator(v / bc2, eps=eps, bias_correction2=bc2)
    assert np.max(np.abs(ours / after - 1)) > 0.1  # |g| ~ ε: O(1) apart


def test_eps_root_goes_inside_the_root():
    np.testing.assert_allclose(adam_denominator(np.array([4.0]), eps=1e-3, eps_root=5.0), 3.0 + 1e-3)


def test_param_muls_ignore_is_adamw_without_the_multipliers(rng):
    p, g = rng.standard_normal(6), rng.standard_normal(6)
    a, _ = adamw(p, g, {}, lr=0.1, weight_decay=0.1, lr_mul=2.0, wd_mul=0.5, param_muls="ignore")
    b, _ = adamw(p, g, {}, lr=0.1, weight_decay=0.1)
    c, _ = adamw(p, g, {}, lr=0.1, weight_decay=0.1, lr_mul=2.0, wd_mul=0.5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs,name", [({"eps_placement": "middle"}, "eps_placement"),
                                         ({"eps_root": -1.0}, "eps_root"),
                                          ({"param_muls": "sometimes"}, "param_muls")])
def test_bad_options_raise_naming_them(kwargs, name, rng):
    with pytest.raises(ValueError, match=rf"^{name}"):
        adamw(np.ones(3), np.ones(3), {}, lr=0.1, **kwargs)
