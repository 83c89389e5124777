"""S6.2's variant options (normalisation, safety, rows, row_cut) and S6.4 ``equilibrate_rows`` (MuonEq)."""

from __future__ import annotations

import numpy as np
import pytest

from optconform import spec
from optconform.reference.orthogonalize import equilibrate_rows, ns_row_list, ns_singular_value_map, zeropower


def test_equilibrate_rows_gives_every_row_the_mean_row_norm(rng):
    G = rng.standard_normal((12, 40)) * np.logspace(-3, 2, 12)[:, None]
    X = equilibrate_rows(G)
    target = np.linalg.norm(G) / np.sqrt(12)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), target, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(X), np.linalg.norm(G), rtol=1e-14)  # no row below the floor
    # each row keeps its direction
    np.testing.assert_allclose(X / np.linalg.norm(X, axis=1, keepdims=True),
                               G / np.linalg.norm(G, axis=1, keepdims=True), rtol=1e-13)


def test_equilibrate_rows_keeps_zero_rows_and_floors_tiny_ones(rng):
    G = rng.standard_normal((4, 8))
    G[1] = 0.0
    G[2] *= 1e-9  # below the 1e-6 floor: scaled by target/1e-6, not to the target
    X = equilibrate_rows(G)
    assert np.all(X[1] == 0.0)
    target = np.linalg.norm(G) / 2.0
    np.testing.assert_allclose(np.linalg.norm(X[2]), np.linalg.norm(G[2]) * target / 1e-6, rtol=1e-12)


def test_clamp_equals_plus_eps_away_from_eps_and_differs_near_it(rng):
    G = rng.standard_normal((16, 32))
    big = G / np.linalg.norm(G)
    np.testing.assert_allclose(zeropower(big, 0, normalisation="clamp"), zeropower(big, 0), rtol=2e-7)
    tiny = big * 1e-8  # ‖G‖_F = 1e-8: ŝ = σ/1e-7 (clamp) against σ/1.1e-7 (+eps)
    np.testing.assert_allclose(zeropower(tiny, 0, normalisation="clamp") / zeropower(tiny, 0), 1.1, rtol=1e-12)


def test_safety_divides_the_normalised_input(rng):
    G = rng.standard_normal((8, 24))
    n = np.linalg.norm(G)
    np.testing.assert_allclose(zeropower(G, 0, safety=1.01, eps=1e-6), G / (1.01 * n + 1e-6), rtol=1e-14)


def test_named_rows_and_how_they_are_cut():
    pe = spec.NS_ROWS["polar_express"]
    assert ns_row_list(3, rows="polar_express") == pe[:3]
    assert ns_row_list(7, rows="polar_express") == pe + (pe[-1], pe[-1])
    assert ns_row_list(7, rows="polar_express", row_cut="truncate") == pe
    assert ns_row_list(2) == (spec.NS_COEFFICIENTS,) * 2


def test_polar_express_rows_act_on_singular_values_as_their_composed_map(rng):
    """zeropower with rows = the composed scalar map of the rows on each normalised singular value."""
    u, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    v, _ = np.linalg.qr(rng.standard_normal((32, 16)))
    s = np.logspace(0, -3, 16)
    G = (u * s) @ v.T
    Y = zeropower(G, 5, rows="polar_express")
    shat = s / (np.linalg.norm(G) + spec.NS_EPS)
    x = shat.copy()
    for a, b, c in spec.NS_ROWS["polar_express"]:
        x = a * x + b * x**3 + c * x**5
    np.testing.assert_allclose(np.linalg.svd(Y, compute_uv=False), np.sort(x)[::-1], rtol=1e-9)
    # and it is not the seed's map
    assert not np.allclose(x, ns_singular_value_map(shat, 5), rtol=1e-2)


@pytest.mark.parametrize("kwargs,name", [({"normalisation": "spectral"}, "normalisation"), ({"safety": 0.0}, "safety"),
                                          ({"rows": "nope"}, "rows"), ({"row_cut": "wrap"}, "row_cut")])
def test_bad_options_name_themselves_and_their_allowed_values(kwargs, name, rng):
    with pytest.raises(ValueError, match=rf"^{name}"):
        zeropower(rng.standard_normal((4, 4)), 5, **kwargs)
