"""impl.newton_schulz's Gram-space path (``method="gram"``) against the float64 reference, judged by the suite's own
Newton–Schulz judge (``judges.ns.judge_ns`` with the default, non-strict bounds of the rows in use): seeded Gaussian,
ill-conditioned (cond 1e3, 1e6), low-rank, tiny-norm (1e-8) and huge-norm (1e30) inputs, wide and tall, at several
aspect ratios, with the seed's coefficients and with Polar Express's rows; the ``method`` switch and its validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_newton_schulz import _orth, _with_spectrum  # the seeded input builders, one copy (tests/impl/)

from optconform.conformance.judges.ns import bounds, judge_ns
from optconform.conformance.report import Verdict
from optconform.impl import newton_schulz as ns
from optconform.impl.newton_schulz import zeropower, zeropower_eager
from optconform.reference.orthogonalize import zeropower as ref_zeropower

SEEDS = 3
#: (m, n): wide and tall, aspect ratios 1 to 10; (128, 512) and (256, 512) are large enough for the bias statistic
SHAPES = [(64, 64), (48, 96), (96, 48), (64, 256), (256, 64), (128, 512), (512, 128), (48, 480), (256, 512)]




def _scaled(g, norm):
    return g * (norm / np.linalg.norm(g))


KINDS = {
    "gauss": lambda r, m, n: r.standard_normal((m, n)),
    "cond_1e3": lambda r, m, n: _with_spectrum(r, m, n, np.geomspace(1.0, 1e-3, min(m, n))),
    "cond_1e6": lambda r, m, n: _with_spectrum(r, m, n, np.geomspace(1.0, 1e-6, min(m, n))),
    "rank_4": lambda r, m, n: r.standard_normal((m, 4)) @ r.standard_normal((4, n)),
    "tiny_1e-8": lambda r, m, n: _scaled(r.standard_normal((m, n)), 1e-8),
    "huge_1e30": lambda r, m, n: _scaled(r.standard_normal((m, n)), 1e30),
}


def _judge(y: torch.Tensor, g: np.ndarray, steps: int, rows: str | None = None, row_cut: str = "repeat_last"
           ) -> Verdict:
    v = Verdict("S6.2", "zeropower", "gram", defer=True)
    judge_ns(v, y.double().numpy(), ref_zeropower(g, steps, rows=rows, row_cut=row_cut), g,
             bounds(steps, strict=False, rows=rows, row_cut=row_cut), case="gram")
    return v


def _failures(v: Verdict) -> list[str]:
    return [c.describe() for c in v.checks if not c.passed]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_gram_path_passes_the_suites_judge(kind, shape):
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, *shape, len(kind)])
        g = KINDS[kind](rng, *shape).astype(np.float32).astype(np.float64)  # the input exactly as received
        y = zeropower(torch.from_numpy(g).float(), 5, method="gram")
        assert y.dtype == torch.bfloat16 and y.shape == shape
        failed = _failures(_judge(y, g, 5))
        assert not failed, (seed, failed)


@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 6, 10])
@pytest.mark.parametrize("kind", ["gauss", "cond_1e6"])
def test_gram_path_other_step_counts(kind, steps):
    """Each step count's restart schedule (``_gram_restarts``) within the bounds of its rows."""
    for seed in range(SEEDS):
        g = KINDS[kind](np.random.default_rng([seed, steps]), 64, 256).astype(np.float32).astype(np.float64)
        failed = _failures(_judge(zeropower(torch.from_numpy(g).float(), steps, method="gram"), g, steps))
        assert not failed, (seed, failed)


@pytest.mark.parametrize("shape", [(64, 256), (512, 128), (256, 512)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("kind", ["gauss", "cond_1e3", "cond_1e6"])
@pytest.mark.parametrize("row_cut", ["repeat_last", "truncate"])
def test_gram_path_uses_each_iterations_own_rows(kind, shape, row_cut):
    """Polar Express's rows (a different (a, b, c) per iteration) on the Gram path, judged with their own bounds;
    the seed's coefficients instead are rejected (the rows are really used)."""
    for seed in range(SEEDS):
        g = KINDS[kind](np.random.default_rng([seed, *shape]), *shape).astype(np.float32).astype(np.float64)
        x = torch.from_numpy(g).float()
        v = _judge(zeropower(x, 5, rows="polar_express", row_cut=row_cut, method="gram"), g, 5,
                   rows="polar_express", row_cut=row_cut)
        assert not _failures(v), (seed, _failures(v))
    assert _failures(_judge(zeropower(x, 5, method="gram"), g, 5, rows="polar_express"))


def test_gram_and_standard_agree_and_batches_match():
    g = torch.randn(2, 3, 40, 160, generator=torch.Generator().manual_seed(0))
    y = zeropower(g, 5, method="gram")
    assert y.shape == g.shape and y.dtype == torch.bfloat16
    one = torch.stack([zeropower(g[i, j], 5, method="gram") for i in range(2) for j in range(3)]).reshape(g.shape)
    assert torch.equal(y, one)
    std = zeropower(g, 5, method="standard").float()
    assert ((y.float() - std).norm() / std.norm()) < 0.05


def test_gram_path_never_writes_into_its_input_and_handles_zero_and_empty():
    g = torch.randn(32, 96)
    before = g.clone()
    y = zeropower(g, 5, method="gram")
    assert torch.equal(g, before) and y.data_ptr() != g.data_ptr()
    assert torch.count_nonzero(zeropower(torch.zeros(16, 64), 5, method="gram")) == 0
    assert zeropower(torch.zeros(0, 64), 5, method="gram").shape == (0, 64)


@pytest.mark.parametrize("options", [{"normalisation": "clamp"}, {"eps": 1e-3}, {"safety": 1.02}])
def test_gram_path_keeps_the_normalisation_options(options):
    """The options act before the iteration, so both paths see the same X: their outputs differ by rounding only,
    and each matches the reference's map of the option."""
    rng = np.random.default_rng(7)
    g = _scaled(rng.standard_normal((48, 192)), 1e-3).astype(np.float32).astype(np.float64)
    x = torch.from_numpy(g).float()
    ref = ref_zeropower(g, 5, **options)
    for method in ("gram", "standard"):
        y = zeropower(x, 5, method=method, **options).double().numpy()
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.05, (method, options)


def test_method_auto_takes_the_standard_path_while_gram_misses_the_suite(monkeypatch):
    chosen = []
    real = ns._iterate_gram
    monkeypatch.setattr(ns, "_iterate_gram", lambda *a: chosen.append(a[0].shape) or real(*a))
    assert ns.GRAM_MIN_ASPECT == float("inf")  # see its comment: restore 3.0 once the Gram path passes the suite
    for shape in [(256, 256), (256, 1024), (1024, 256), (256, 4096)]:
        zeropower(torch.randn(shape), 5)
    assert chosen == []
    zeropower(torch.randn(64, 64), 5, method="gram")
    zeropower(torch.randn(64, 256), 5, method="standard")
    zeropower_eager(torch.randn(64, 64), 5, rows="polar_express", method="gram")
    assert chosen == [(64, 64), (64, 64)]


def test_method_auto_rule_when_enabled(monkeypatch):
    monkeypatch.setattr(ns, "GRAM_MIN_ASPECT", 3.0)
    side = ns.GRAM_MIN_SIDE
    auto = [ns._use_gram(torch.empty(shape), "auto") for shape in
            [(side, side), (side, 3 * side), (3 * side, side), (side, 3 * side - 1), (side // 2, 8 * side)]]
    assert auto == [False, True, True, False, False]
    assert not ns._use_gram(torch.empty(side, 3 * side), "auto", rows="polar_express")  # the seed's rows only


@pytest.mark.parametrize("bad", ["fast", "Gram", "", None, 1, True])
def test_bad_method_raises_naming_method_and_the_allowed_values(bad):
    for f in (zeropower, zeropower_eager, ns.zeropower_compiled):
        with pytest.raises(ValueError, match=r"^method must be one of 'auto', 'standard', 'gram'; got "):
            f(torch.ones(4, 6), 5, method=bad)


def test_restart_schedule():
    seed = [sorted(ns._gram_restarts(ns.ns_row_list(t))) for t in range(8)]
    assert seed == [[], [], [], [1], [2], [1, 3], [2, 4], [1, 3, 5]]  # at most two iterations per segment
    assert sorted(ns._gram_restarts(ns.ns_row_list(5, rows="polar_express"))) == [1, 3]


#: the normalised spectrum of an 8×8 Muon input (golden muon.rank1_grads_8x8, step 23) on which R's rounding made a
#: small Gram eigenvalue negative and two R updates in one segment diverged (a singular value of 29.5)
DIVERGED_SPECTRUM = [0.735, 0.499, 0.349, 0.214, 0.191, 0.053, 0.0505, 0.0299]


def test_at_most_one_r_update_per_segment_keeps_small_eigenvalues_from_diverging(monkeypatch):
    """40 seeded 8×8 matrices with that spectrum pass the judge; with a single restart after iteration 3 (two R
    updates in the first segment) a third of them fail (measured 14/40)."""

    def failing() -> int:
        n = 0
        for seed in range(40):
            r = np.random.default_rng(seed)
            g = ((_orth(r, 8, 8) * DIVERGED_SPECTRUM) @ _orth(r, 8, 8).T).astype(np.float32).astype(np.float64)
            n += bool(_failures(_judge(zeropower(torch.from_numpy(g).float(), 5, method="gram"), g, 5)))
        return n

    assert failing() == 0
    monkeypatch.setattr(ns, "_gram_restarts", lambda rows: frozenset([3]))
    assert failing() >= 5
