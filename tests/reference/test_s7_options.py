"""S7.2's variant options composed from S7.1 (lr_scale), S7.3 ``muon_momentum_step``, S7.4 ``normuon``, S7.5
``muon_plus`` and S7.6 ``muon_weight_decay``; every profile's Muon."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.reference.muon import muon, muon_aspect_scale, muon_momentum_step, muon_plus, muon_weight_decay, normuon
from optconform.reference.orthogonalize import zeropower
from optconform.spec import options as O


def test_match_rms_adamw_scale():
    assert muon_aspect_scale((300, 100), "match_rms_adamw") == pytest.approx(0.2 * 300**0.5)
    assert muon_aspect_scale((100, 300), "match_rms_adamw") == pytest.approx(0.2 * 300**0.5)
    assert muon_aspect_scale((100, 300)) == 1.0


@pytest.mark.parametrize("nesterov", [True, False])
def test_sum_and_ema_differ_by_a_constant_factor_at_constant_beta(rng, nesterov):
    beta = 0.9
    be, bs = np.zeros((4, 6)), np.zeros((4, 6))
    for _ in range(5):
        g = rng.standard_normal((4, 6))
        be, ue = muon_momentum_step(be, g, momentum=beta, nesterov=nesterov)
        bs, us = muon_momentum_step(bs, g, momentum=beta, nesterov=nesterov, momentum_form="sum")
        np.testing.assert_allclose(us, ue / (1 - beta), rtol=1e-12)


def test_sum_and_ema_differ_in_direction_under_a_schedule(rng):
    be, bs = np.zeros((4, 6)), np.zeros((4, 6))
    for beta in (0.85, 0.9, 0.95):
        g = rng.standard_normal((4, 6))
        be, ue = muon_momentum_step(be, g, momentum=beta, nesterov=True)
        bs, us = muon_momentum_step(bs, g, momentum=beta, nesterov=True, momentum_form="sum")
    cos = np.sum(ue * us) / np.linalg.norm(ue) / np.linalg.norm(us)
    assert cos < 1 - 1e-4


def test_optax_bias_corrected_first_step_is_the_gradient(rng):
    """t = 1: buf = (1 − β)g; u = β(1 − β)g/(1 − β²) + (1 − β)g/(1 − β) = g·(β/(1 + β) + 1)."""
    g, beta = rng.standard_normal((3, 5)), 0.95
    buf, u = muon_momentum_step(np.zeros((3, 5)), g, momentum=beta, nesterov=True, momentum_form="bias_corrected")
    np.testing.assert_allclose(buf, (1 - beta) * g)
    np.testing.assert_allclose(u, g * (beta / (1 + beta) + 1), rtol=1e-14)
    _, u = muon_momentum_step(np.zeros((3, 5)), g, momentum=beta, nesterov=False, momentum_form="bias_corrected")
    np.testing.assert_allclose(u, g, rtol=1e-14)


@pytest.mark.parametrize("shape", [(24, 8), (8, 24)])
def test_normuon_keeps_the_frobenius_norm_and_equalises_rows_or_columns(rng, shape):
    O_ = zeropower(rng.standard_normal(shape), 5)
    D, v = normuon(O_, None, normuon_beta2=0.9)
    np.testing.assert_allclose(np.linalg.norm(D), np.linalg.norm(O_), rtol=1e-12)
    axis = 1 if shape[0] >= shape[1] else 0  # first step: v ∝ the mean square, so every row (column) ends equal
    norms = np.linalg.norm(D, axis=axis)
    np.testing.assert_allclose(norms, norms[0], rtol=1e-12)
    assert v.shape == ((shape[0], 1) if axis == 1 else (1, shape[1]))


def test_muon_plus_sets_the_semi_orthogonal_norm(rng):
    X = rng.standard_normal((2, 6, 10))
    np.testing.assert_allclose(np.linalg.norm(muon_plus(X), axis=(1, 2)), 6**0.5, rtol=1e-14)


def test_cautious_decay_only_where_update_and_parameter_agree_in_sign(rng):
    p, u = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    out = muon_weight_decay(p, u, lr=0.1, weight_decay=0.5, weight_decay_mode="cautious")
    agree = u * p >= 0
    np.testing.assert_allclose(out[agree], p[agree] * (1 - 0.05))
    np.testing.assert_array_equal(out[~agree], p[~agree])
    np.testing.assert_allclose(muon_weight_decay(p, u, lr=0.1, weight_decay=0.5), p * 0.95)


def test_muon_composes_the_option_clauses(rng):
    """nanochat-2026's step written out from the clauses equals ``muon`` under the profile."""
    p, g = rng.standard_normal((16, 8)), rng.standard_normal((16, 8))
    lr, beta = 0.02, 0.9
    opts = O.clause_options("S7.2", O.resolve("nanochat-2026"))
    got, st = muon(p, g, {}, lr=lr, momentum=beta, nesterov=True, ns_steps=5, **opts)
    buf, u = muon_momentum_step(np.zeros_like(g), g, momentum=beta, nesterov=True)
    from optconform.reference.orthogonalize import equilibrate_rows

    o = zeropower(equilibrate_rows(u), 5, eps=1e-6, rows="polar_express", row_cut="truncate", safety=1.01)
    o, v = normuon(muon_plus(o), None, normuon_beta2=0.9)
    s = muon_aspect_scale(p.shape)
    want = muon_weight_decay(p, o, lr=lr * s, weight_decay=0.28, weight_decay_mode="cautious") - lr * s * o
    np.testing.assert_allclose(got, want, rtol=1e-13)
    np.testing.assert_array_equal(st["second_momentum_buffer"], v)


@pytest.mark.parametrize("profile", list(O.PROFILES))
def test_every_profile_gives_a_finite_step_and_the_default_is_the_seed(rng, profile):
    p, g = rng.standard_normal((12, 20)), rng.standard_normal((12, 20))
    got, _ = muon(p, g, {}, lr=0.02, **O.clause_options("S7.2", O.resolve(profile)))
    assert np.all(np.isfinite(got))
    if profile == O.DEFAULT_PROFILE:
        np.testing.assert_array_equal(got, muon(p, g, {}, lr=0.02)[0])


@pytest.mark.parametrize("kwargs,name", [({"lr_scale": "spectral"}, "lr_scale"),
                                         ({"momentum_form": "x"}, "momentum_form"),
                                          ({"weight_decay_mode": "both"}, "weight_decay_mode"),
                                          ({"normuon_beta2": 1.0}, "normuon_beta2")])
def test_bad_options_name_themselves(kwargs, name, rng):
    with pytest.raises(ValueError, match=rf"^{name}"):
        muon(np.ones((2, 2)), np.ones((2, 2)), {}, lr=0.1, **kwargs)
