"""S9 ZeRO-2 reference: ownership rules against the seed's loops, dist_* against the single-process
optimizers stepped on hand-computed mean gradients, state shards partitioning the full state."""

from __future__ import annotations

import numpy as np
import pytest

from optconform.reference.adam import adamw
from optconform.reference.muon import muon
from optconform.reference.zero2 import (
    adamw_row_shard,
    dist_adamw,
    dist_muon,
    dtensor_adamw,
    dtensor_muon,
    dtensor_shard,
    mean_gradient,
    muon_owner,
    muon_shape_groups,
    reshard,
)

# The hand-computed mean below (np.mean over a stacked axis) may round differently from the reference's
# rank-order sum by 1 ulp. AdamW is elementwise (≈ 10 ulp per step, 5 steps): 1e-12 relative is ample.
ADAMW_RTOL = 1e-12
# Muon: a 1-ulp input change passes through float64 Newton–Schulz, whose singular-value map has slope
# ≤ a⁵ ≈ 485 (notes/numerics.md), so ≲ 1e-13 per step on O(1) outputs; 1e-10 leaves headroom over 5 steps
# and is still far below any change of lr, momentum, ownership or averaging (≥ 1e-3 here).
MUON_RTOL = 1e-10


def hand_mean(grads):
    return np.mean(np.stack([np.asarray(g, dtype=np.float64) for g in grads]), axis=0)


def rank_grads_for(rng, shapes, w):
    """Different gradients on every rank, with scales spread over decades and one low-rank matrix."""
    out = []
    for _ in range(w):
        gs = []
        for k, s in enumerate(shapes):
            g = rng.normal(size=s) * 10.0 ** rng.uniform(-3, 3)
            if len(s) == 2 and k == 0 and min(s) > 0:
                g = np.outer(rng.normal(size=s[0]), rng.normal(size=s[1]))  # rank 1
            gs.append(g)
        out.append(gs)
    return out


# ---------------------------------------------------------------- S9.1 / S9.2 / S9.3


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_mean_gradient(rng, w):
    gs = [rng.normal(size=(3, 2)) * 10.0 ** rng.uniform(-5, 5) for _ in range(w)]
    np.testing.assert_allclose(mean_gradient(gs), sum(gs) / w, rtol=1e-15, atol=0)  # same sum, ≤ 1 ulp
    assert mean_gradient([np.float64(2.5), 3.5]).shape == ()


def test_mean_gradient_errors(rng):
    with pytest.raises(ValueError, match="^rank_grads"):
        mean_gradient([])
    with pytest.raises(ValueError, match=r"^rank_grads\[1\]"):
        mean_gradient([rng.normal(size=3), rng.normal(size=4)])
    with pytest.raises(ValueError, match=r"^rank_grads\[1\]"):
        mean_gradient([rng.normal(size=3), np.array([1.0, np.inf, 0.0])])


def test_muon_shape_groups_example():
    shapes = [(4, 3), (2, 5), (4, 3), (2, 5), (3, 3), (4, 3), (2, 10)]
    assert muon_shape_groups(shapes) == [((2, 5), [1, 3]), ((2, 10), [6]), ((3, 3), [4]), ((4, 3), [0, 2, 5])]
    assert muon_shape_groups([]) == []


def seed_muon_owned(n, w, rank):
    """Transcription of DistMuon.step's loop: for base_i in range(0, len(params), W): owner_idx = base_i + rank."""
    return [base_i + rank for base_i in range(0, n, w) if base_i + rank < n]


@pytest.mark.parametrize("w", [1, 2, 3, 4, 5])
def test_muon_owner_matches_seed_loop(w):
    for n in range(0, 11):
        for r in range(w):
            assert [j for j in range(n) if muon_owner(j, w) == r] == seed_muon_owned(n, w, r)


def test_adamw_row_shard_examples():
    assert [adamw_row_shard(10, 4, r) for r in range(4)] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [adamw_row_shard(2, 4, r) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    assert [adamw_row_shard(9, 4, r) for r in range(4)] == [(0, 3), (3, 6), (6, 9), (9, 9)]  # rank 3: none
    assert [adamw_row_shard(0, 3, r) for r in range(3)] == [(0, 0)] * 3
    assert adamw_row_shard(1, 1, 0) == (0, 1)


def test_adamw_row_shard_partition_and_seed_divisible_case():
    for w in range(1, 7):
        for dim0 in range(0, 25):
            shards = [adamw_row_shard(dim0, w, r) for r in range(w)]
            rows = [i for a, b in shards for i in range(a, b)]
            assert rows == list(range(dim0))  # every row exactly once, in rank order
            chunk = -(-dim0 // w)
            assert all(b - a <= chunk for a, b in shards)
            if dim0 % w == 0:  # the seed's DistAdamW slicing: rank_size = dim0 // W
                rs = dim0 // w
                assert shards == [(r * rs, (r + 1) * rs) for r in range(w)]


@pytest.mark.parametrize("call,name", [
    (lambda: adamw_row_shard(-1, 2, 0), "dim0"), (lambda: adamw_row_shard(4, 0, 0), "world_size"),
    (lambda: adamw_row_shard(4, 2, 2), "rank"), (lambda: adamw_row_shard(4, 2, -1), "rank"),
    (lambda: adamw_row_shard(4.0, 2, 0), "dim0"), (lambda: muon_owner(-1, 2), "index_in_group"),
    (lambda: muon_owner(1, 0), "world_size"), (lambda: muon_shape_groups([(2, -1)]), r"shapes\[0\]"),
    (lambda: muon_shape_groups([(2, 2.5)]), r"shapes\[0\]"), (lambda: muon_shape_groups("ab"), "shapes"),
])
def test_ownership_errors(call, name):
    with pytest.raises(ValueError, match=f"^{name}"):
        call()


# ---------------------------------------------------------------- S9.4 dist_muon

MUON_SHAPES = [(4, 3), (3, 5), (4, 3), (6, 2), (3, 5), (4, 3), (4, 3), (3, 5), (6, 2), (1, 7), (4, 3)]


@pytest.mark.parametrize("w", [1, 2, 3, 4])
@pytest.mark.parametrize("nesterov", [True, False])
def test_dist_muon_equals_muon_on_mean_gradient(rng, w, nesterov):
    params = [rng.normal(size=s) for s in MUON_SHAPES]
    ref = [p.copy() for p in params]
    ref_states = [{} for _ in params]
    states = [{} for _ in range(w)]
    momenta = [0.85, 0.9, 0.95, 0.0, 0.5]  # a scheduler may change momentum between steps
    for step in range(5):
        rg = rank_grads_for(rng, MUON_SHAPES, w)
        kw = dict(lr=0.02 * (step + 1), momentum=momenta[step], nesterov=nesterov, ns_steps=5)
        params, states = dist_muon(params, rg, states, **kw)
        for i in range(len(ref)):
            ref[i], ref_states[i] = muon(ref[i], hand_mean([rg[r][i] for r in range(w)]), ref_states[i], **kw)
            np.testing.assert_allclose(params[i], ref[i], rtol=MUON_RTOL, atol=MUON_RTOL)
        # state shards: every parameter's buffer on exactly its owner (j-th of its shape group -> rank j % W)
        groups = {s: [i for i, t in enumerate(MUON_SHAPES) if t == s] for s in set(MUON_SHAPES)}
        for idxs in groups.values():
            for j, i in enumerate(idxs):
                holders = [r for r in range(w) if i in states[r]]
                assert holders == [j % w]
                np.testing.assert_allclose(states[j % w][i]["momentum_buffer"],
                                           ref_states[i]["momentum_buffer"], rtol=ADAMW_RTOL, atol=0)
        assert sum(len(s) for s in states) == len(MUON_SHAPES)


def test_dist_muon_fewer_params_than_ranks(rng):
    # 2 params, W = 4: ranks 2 and 3 own nothing and keep empty state
    shapes = [(3, 3), (2, 4)]
    params = [rng.normal(size=s) for s in shapes]
    rg = rank_grads_for(rng, shapes, 4)
    out, states = dist_muon(params, rg, [{}] * 4, lr=0.1)
    assert [sorted(s) for s in states] == [[0, 1], [], [], []]  # each is index 0 of its shape group
    for i in range(2):
        expected, _ = muon(params[i], hand_mean([g[i] for g in rg]), {}, lr=0.1)
        np.testing.assert_allclose(out[i], expected, rtol=MUON_RTOL, atol=MUON_RTOL)


def test_dist_muon_only_the_mean_matters(rng):
    # same mean gradient split differently over 1 and 3 ranks -> same parameters
    shapes = [(5, 3), (5, 3), (2, 6)]
    params = [rng.normal(size=s) for s in shapes]
    a = [rng.normal(size=s) for s in shapes]
    b = [rng.normal(size=s) for s in shapes]
    three = [a, b, [2 * x - y for x, y in zip(a, b, strict=True)]]  # mean = a
    p1, _ = dist_muon(params, [a], [{}], lr=0.05)
    p3, _ = dist_muon(params, three, [{}] * 3, lr=0.05)
    for x, y, p0 in zip(p1, p3, params, strict=True):
        np.testing.assert_allclose(x, y, rtol=MUON_RTOL, atol=MUON_RTOL)
        assert np.max(np.abs(x - p0)) > 1e-3  # it did move


# ---------------------------------------------------------------- S9.5 dist_adamw

ADAMW_SHAPES = [(10, 3), (3,), (), (2, 4), (7,), (1, 5), (0, 3), (9, 2, 2), (4, 4)]


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_dist_adamw_equals_adamw_on_mean_gradient(rng, w):
    params = [rng.normal(size=s) for s in ADAMW_SHAPES]
    ref = [p.copy() for p in params]
    ref_states = [{} for _ in params]
    states = [{} for _ in range(w)]
    lr_muls = [1.0, 0.5, 2.0, 1.0, 0.0, 1.0, 1.0, 3.0, 1.0]
    wd_muls = [1.0, 0.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.5, 1.0]
    for step in range(6):
        rg = rank_grads_for(rng, ADAMW_SHAPES, w)
        if step == 2:  # one step with |g| ~ ε, where the ε placement shows
            rg = [[g * 1e-12 for g in gs] for gs in rg]
        kw = dict(lr=0.01 * (step + 1), betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
        params, states = dist_adamw(params, rg, states, lr_muls=lr_muls, wd_muls=wd_muls, **kw)
        for i in range(len(ref)):
            ref[i], ref_states[i] = adamw(ref[i], hand_mean([rg[r][i] for r in range(w)]), ref_states[i],
                                          lr_mul=lr_muls[i], wd_mul=wd_muls[i], **kw)
            assert params[i].shape == ADAMW_SHAPES[i]
            np.testing.assert_allclose(params[i], ref[i], rtol=ADAMW_RTOL, atol=ADAMW_RTOL)
        check_adamw_shards(states, ref_states, w, step + 1)


def check_adamw_shards(states, ref_states, w, t):
    """Rank r holds exactly rows adamw_row_shard(...) of exp_avg/exp_avg_sq; the union is the full state."""
    for i, s in enumerate(ADAMW_SHAPES):
        dim0 = s[0] if s else 1
        chunk = -(-dim0 // w)
        holders = []
        for r in range(w):
            a, b = min(r * chunk, dim0), min((r + 1) * chunk, dim0)  # S9.3 written out
            if b > a:
                holders.append(r)
                assert states[r][i]["step"] == t
            else:
                assert i not in states[r]
        if not s:
            assert holders == [0]
            np.testing.assert_allclose(states[0][i]["exp_avg"], ref_states[i]["exp_avg"], rtol=ADAMW_RTOL)
            continue
        if dim0 == 0:
            assert holders == []
            continue
        for key in ("exp_avg", "exp_avg_sq"):
            full = np.concatenate([states[r][i][key] for r in holders], axis=0)
            np.testing.assert_allclose(full, ref_states[i][key], rtol=ADAMW_RTOL, atol=0)


def test_dist_adamw_dim0_smaller_than_world(rng):
    p = [rng.normal(size=(2, 3))]
    rg = [[rng.normal(size=(2, 3))] for _ in range(4)]
    out, states = dist_adamw(p, rg, [{}] * 4, lr=0.1, weight_decay=0.2)
    assert [sorted(s) for s in states] == [[0], [0], [], []]
    assert states[0][0]["exp_avg"].shape == (1, 3) and states[1][0]["exp_avg"].shape == (1, 3)
    expected, _ = adamw(p[0], hand_mean([g[0] for g in rg]), {}, lr=0.1, weight_decay=0.2)
    np.testing.assert_allclose(out[0], expected, rtol=ADAMW_RTOL)


def test_dist_adamw_equals_seed_slicing_when_divisible(rng):
    # W divides dim0: rank r's state holds the seed's slice [r·(dim0//W), (r+1)·(dim0//W)); after one
    # step exp_avg = (1 − β1)·ḡ = 0.2·ḡ on those rows
    w, dim0 = 4, 8
    p = [rng.normal(size=(dim0, 3))]
    rg = [[rng.normal(size=(dim0, 3))] for _ in range(w)]
    _, states = dist_adamw(p, rg, [{}] * w, lr=0.1)
    g = hand_mean([x[0] for x in rg])
    rs = dim0 // w
    for r in range(w):
        np.testing.assert_allclose(states[r][0]["exp_avg"], 0.2 * g[r * rs:(r + 1) * rs], rtol=ADAMW_RTOL)


# ---------------------------------------------------------------- validation and purity


def test_dist_errors(rng):
    m2 = [rng.normal(size=(3, 2))]
    g2 = [[rng.normal(size=(3, 2))], [rng.normal(size=(3, 2))]]
    for bad, name in [(rng.normal(size=3), r"params\[0\]"), (rng.normal(size=(2, 2, 2)), r"params\[0\]")]:
        with pytest.raises(ValueError, match=f"^{name}"):
            dist_muon([bad], [[bad]], [{}], lr=0.1)  # DistMuon: 2-D only
    for fn in (dist_muon, dist_adamw):
        with pytest.raises(ValueError, match="^rank_grads"):
            fn(m2, [], [], lr=0.1)
        with pytest.raises(ValueError, match=r"^rank_grads\[1\]"):
            fn(m2, [g2[0], []], [{}, {}], lr=0.1)
        with pytest.raises(ValueError, match=r"^rank_grads\[1\]\[0\]"):
            fn(m2, [g2[0], [rng.normal(size=(2, 3))]], [{}, {}], lr=0.1)
        with pytest.raises(ValueError, match="^rank_states"):
            fn(m2, g2, [{}], lr=0.1)
        one = [rng.normal(size=(1, 2))]  # one row / the only matrix of its shape: rank 0 owns it
        with pytest.raises(ValueError, match=r"^rank_states\[1\]"):
            fn(one, [one, one], [{}, {0: {}}], lr=0.1)
        with pytest.raises(ValueError, match=r"^rank_states\[0\]"):
            fn(m2, g2, [{5: {}}, {}], lr=0.1)
        with pytest.raises(ValueError, match="^lr"):
            fn(m2, g2, [{}, {}], lr=-0.1)
        with pytest.raises(ValueError, match="^params"):
            fn(rng.normal(size=(3, 2)), g2, [{}, {}], lr=0.1)
    with pytest.raises(ValueError, match="^momentum"):
        dist_muon(m2, g2, [{}, {}], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="^ns_steps"):
        dist_muon(m2, g2, [{}, {}], lr=0.1, ns_steps=-1)
    with pytest.raises(ValueError, match="^nesterov"):
        dist_muon(m2, g2, [{}, {}], lr=0.1, nesterov=1)
    with pytest.raises(ValueError, match=r"^betas\[1\]"):
        dist_adamw([], [[], []], [{}, {}], lr=0.1, betas=(0.9, 1.0))  # checked even with nothing to own
    with pytest.raises(ValueError, match="^eps"):
        dist_adamw(m2, g2, [{}, {}], lr=0.1, eps=0.0)
    with pytest.raises(ValueError, match="^lr_muls"):
        dist_adamw(m2, g2, [{}, {}], lr=0.1, lr_muls=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^wd_muls\[0\]"):
        dist_adamw(m2, g2, [{}, {}], lr=0.1, wd_muls=[-1.0])


def test_dist_inputs_not_modified(rng):
    shapes = [(3, 2), (3, 2), (4, 1)]
    params = [rng.normal(size=s) for s in shapes]
    rg = rank_grads_for(rng, shapes, 2)
    _, st_m = dist_muon(params, rg, [{}, {}], lr=0.1)
    _, st_a = dist_adamw(params, rg, [{}, {}], lr=0.1)
    snap = [x.copy() for x in params] + [g.copy() for gs in rg for g in gs]
    buf = {k: v["momentum_buffer"].copy() for k, v in st_m[0].items()}
    avg = {k: v["exp_avg"].copy() for k, v in st_a[0].items()}
    dist_muon(params, rg, st_m, lr=0.1)
    dist_adamw(params, rg, st_a, lr=0.1)
    for a, b in zip(snap, params + [g for gs in rg for g in gs], strict=True):
        np.testing.assert_array_equal(a, b)
    for k in buf:
        np.testing.assert_array_equal(buf[k], st_m[0][k]["momentum_buffer"])
    for k in avg:
        np.testing.assert_array_equal(avg[k], st_a[0][k]["exp_avg"])
        assert st_a[0][k]["step"] == 1


# ---------------------------------------------------------------- S9.6 / S9.7 / S9.8 DTensor


def test_dtensor_shard_is_torch_chunk_on_its_dimension():
    """Shard(d) as torch.chunk along d (ceil split, trailing ranks empty), other dimensions whole; Replicate whole."""
    for shape, d in (((7, 3), 0), ((7, 3), 1), ((2, 9), 0), ((3, 5, 4), 2), ((0, 4), 0)):
        for w in range(1, 5):
            c = -(-shape[d] // w)
            for r in range(w):
                got = dtensor_shard(shape, f"Shard({d})", w, r)
                assert got[d] == (min(r * c, shape[d]), min((r + 1) * c, shape[d]))
                assert got[d] == adamw_row_shard(shape[d], w, r)
                assert all(got[k] == (0, n) for k, n in enumerate(shape) if k != d)
    assert dtensor_shard((2, 9), "Shard(0)", 4, 2) == ((2, 2), (0, 9))  # empty piece
    assert dtensor_shard((), "Replicate()", 3, 1) == ()
    assert dtensor_shard((4, 4), "Replicate()", 3, 1) == ((0, 4), (0, 4))


@pytest.mark.parametrize("call,name", [
    (lambda: dtensor_shard((4, 4), "Shard(2)", 2, 0), "placement"),
    (lambda: dtensor_shard((), "Shard(0)", 2, 0), "placement"),
    (lambda: dtensor_shard((4, 4), "Partial()", 2, 0), "placement"),
    (lambda: dtensor_shard((4, 4), "Shard(0)", 0, 0), "world_size"),
    (lambda: dtensor_shard((4, 4), "Shard(0)", 2, 2), "rank"),
    (lambda: dtensor_shard((4, -1), "Shard(0)", 2, 0), "shape"),
])
def test_dtensor_shard_errors(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_dtensor_muon_equals_muon_on_mean_gradient_with_state_in_pieces(rng, w):
    shapes = [(5, 3), (3, 5), (6, 6), (2, 8)]
    placements = ["Shard(0)", "Shard(1)", "Replicate()", "Shard(0)"]
    params = [rng.normal(size=s) for s in shapes]
    single = [(p.copy(), {}) for p in params]
    states = [{} for _ in range(w)]
    for _ in range(4):
        rg = rank_grads_for(rng, shapes, w)
        params, states = dtensor_muon(params, rg, states, placements, lr=0.02, momentum=0.9)
        single = [muon(p, hand_mean([g[i] for g in rg]), st, lr=0.02, momentum=0.9)
                  for i, (p, st) in enumerate(single)]
    for i, (p, st) in enumerate(single):
        np.testing.assert_allclose(params[i], p, rtol=MUON_RTOL, atol=MUON_RTOL * np.max(np.abs(p)))
        pieces = [states[r][i]["momentum_buffer"] for r in range(w)]
        d = None if placements[i] == "Replicate()" else int(placements[i][6])
        whole = pieces[0] if d is None else np.concatenate(pieces, axis=d)
        np.testing.assert_allclose(whole, st["momentum_buffer"], rtol=MUON_RTOL, atol=1e-14)
        for r in range(w):
            want = tuple(b - a for a, b in dtensor_shard(shapes[i], placements[i], w, r))
            assert pieces[r].shape == want


def test_dtensor_muon_orthogonalises_the_whole_matrix_not_the_pieces(rng):
    """Newton–Schulz of a piece is not a piece of Newton–Schulz: the per-piece update differs by O(1)."""
    p = rng.normal(size=(8, 6))
    rg = [[rng.normal(size=(8, 6))] for _ in range(2)]
    (whole,), _ = dtensor_muon([p], rg, [{}, {}], ["Shard(0)"], lr=0.1)
    g = hand_mean([x[0] for x in rg])
    halves = [muon(p[a:b], g[a:b], {}, lr=0.1)[0] for a, b in ((0, 4), (4, 8))]
    assert np.max(np.abs(np.concatenate(halves) - whole)) > 1e-3


@pytest.mark.parametrize("w", [1, 2, 3])
def test_dtensor_adamw_equals_adamw_on_mean_gradient(rng, w):
    shapes = [(7, 3), (3, 7), (13,), (), (4, 2, 2)]
    placements = ["Shard(0)", "Shard(1)", "Shard(0)", "Replicate()", "Shard(2)"]
    params = [rng.normal(size=s) for s in shapes]
    lr_muls, wd_muls = [1.0, 0.5, 2.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0, 0.5]
    single = [(p.copy(), {}) for p in params]
    states = [{} for _ in range(w)]
    kw = dict(lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    for _ in range(3):
        rg = rank_grads_for(rng, shapes, w)
        params, states = dtensor_adamw(params, rg, states, placements, lr_muls=lr_muls, wd_muls=wd_muls, **kw)
        single = [adamw(p, hand_mean([g[i] for g in rg]), st, lr_mul=lr_muls[i], wd_mul=wd_muls[i], **kw)
                  for i, (p, st) in enumerate(single)]
    for i, (p, st) in enumerate(single):
        np.testing.assert_allclose(params[i], p, rtol=ADAMW_RTOL, atol=1e-300)
        assert all(states[r][i]["step"] == st["step"] == 3 for r in range(w))
        for r in range(w):
            want = tuple(b - a for a, b in dtensor_shard(shapes[i], placements[i], w, r))
            assert np.shape(states[r][i]["exp_avg"]) == want


def test_dtensor_errors(rng):
    m = [rng.normal(size=(4, 4))]
    g = [[rng.normal(size=(4, 4))], [rng.normal(size=(4, 4))]]
    with pytest.raises(ValueError, match="placements"):
        dtensor_muon(m, g, [{}, {}], ["Shard(0)", "Shard(1)"], lr=0.1)
    with pytest.raises(ValueError, match=r"placements\[0\]"):
        dtensor_adamw(m, g, [{}, {}], ["Shard(5)"], lr=0.1)
    with pytest.raises(ValueError, match=r"params\[0\]"):
        dtensor_muon([rng.normal(size=4)], [[rng.normal(size=4)]], [{}], ["Shard(0)"], lr=0.1)
    _, st = dtensor_muon(m, g, [{}, {}], ["Shard(0)"], lr=0.1)
    with pytest.raises(ValueError, match="on every rank"):
        dtensor_muon(m, g, [st[0], {}], ["Shard(0)"], lr=0.1)


# ---------------------------------------------------------------------------------------------- S9.9 reshard

#: layout -> (the step on W ranks, shapes, placements)
RESHARD = {
    "S9.2": (lambda ps, rg, st, pl: dist_muon(ps, rg, st, lr=0.02), [(4, 6), (6, 4), (4, 6), (4, 6), (3, 3)], None),
    "S9.3": (lambda ps, rg, st, pl: dist_adamw(ps, rg, st, lr=0.004, weight_decay=0.1),
             [(7, 3), (2, 5), (13,), (), (3, 2, 2)], None),
    "S9.6": (lambda ps, rg, st, pl: dtensor_muon(ps, rg, st, pl, lr=0.02), [(7, 3), (2, 5), (5, 9)],
             ["Shard(0)", "Shard(1)", "Replicate()"]),
}


def _walk(layout, params, states, w, steps, rng):
    step, shapes, pl = RESHARD[layout]
    for _ in range(steps):
        params, states = step(params, rank_grads_for(rng, shapes, w), states, pl)
    return params, states


@pytest.mark.parametrize("layout", list(RESHARD))
@pytest.mark.parametrize("worlds", [(2, 3), (3, 2), (4, 1), (1, 4)], ids=lambda w: f"W{w[0]}to{w[1]}")
def test_reshard_then_continue_equals_continuing_at_w(layout, worlds, rng):
    """The clause's promise: 3 steps on W ranks, reshard, 3 steps on W′ ranks = 6 steps on W ranks (gradients with
    the same means: each rank of W′ gets the mean the W ranks had), and the resharded state's pieces sit where the
    layout puts them at W′."""
    w, w2 = worlds
    _, shapes, pl = RESHARD[layout]
    params0 = [rng.normal(size=s) for s in shapes]
    params, states = _walk(layout, params0, [{} for _ in range(w)], w, 3, rng)
    later = [rank_grads_for(rng, shapes, w) for _ in range(3)]
    moved = reshard(states, shapes, w2, layout=layout, placements=pl)
    step = RESHARD[layout][0]
    a, sa = params, states
    b, sb = params, moved
    for rg in later:
        a, sa = step(a, rg, sa, pl)
        mean = [hand_mean([g[i] for g in rg]) for i in range(len(shapes))]
        b, sb = step(b, [mean] * w2, sb, pl)
    rtol = MUON_RTOL if layout != "S9.3" else ADAMW_RTOL
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-14)
    # where the pieces are at W′
    for r in range(w2):
        for i, st in moved[r].items():
            if layout == "S9.3":
                start, stop = adamw_row_shard(shapes[i][0] if shapes[i] else 1, w2, r)
                assert stop > start and np.shape(st["exp_avg"]) == (stop - start, *shapes[i][1:]) or not shapes[i]
            elif layout == "S9.6":
                want = tuple(b - a for a, b in dtensor_shard(shapes[i], pl[i], w2, r))
                assert np.shape(st["momentum_buffer"]) == want
    if layout == "S9.2":
        owners = {i: muon_owner(j, w2) for _, idxs in muon_shape_groups(shapes) for j, i in enumerate(idxs)}
        assert {i: r for r in range(w2) for i in moved[r]} == owners


@pytest.mark.parametrize("layout", list(RESHARD))
def test_reshard_there_and_back_is_the_identity(layout, rng):
    _, shapes, pl = RESHARD[layout]
    _, states = _walk(layout, [rng.normal(size=s) for s in shapes], [{} for _ in range(3)], 3, 2, rng)
    back = reshard(reshard(states, shapes, 2, layout=layout, placements=pl), shapes, 3, layout=layout, placements=pl)
    assert [sorted(st) for st in back] == [sorted(st) for st in states]
    for r in range(3):
        for i, st in states[r].items():
            for k, v in st.items():
                assert np.array_equal(back[r][i][k], v), (r, i, k)


def test_reshard_errors(rng):
    shapes = RESHARD["S9.2"][1]
    _, states = _walk("S9.2", [rng.normal(size=s) for s in shapes], [{}, {}], 2, 1, rng)
    with pytest.raises(ValueError, match="layout must be one of S9.2, S9.3, S9.6"):
        reshard(states, shapes, 3, layout="S9.4")
    with pytest.raises(ValueError, match="placements must be None for layout S9.2"):
        reshard(states, shapes, 3, layout="S9.2", placements=["Shard(0)", "Shard(0)"])
    with pytest.raises(ValueError, match="world_size"):
        reshard(states, shapes, 0, layout="S9.2")
    with pytest.raises(ValueError, match=r"rank_states\[0\] must hold state only for parameters rank 0 owns"):
        reshard([states[1], states[0]], shapes, 3, layout="S9.2")
    with pytest.raises(ValueError, match="parameter indices"):
        reshard([{5: {}}, {}], shapes, 3, layout="S9.2")
    with pytest.raises(ValueError, match="placements must be a list of 5"):
        reshard([{}, {}], shapes, 3, layout="S9.6", placements=["Shard(0)"])
    with pytest.raises(ValueError, match="rank_states must be a non-empty list"):
        reshard([], shapes, 3, layout="S9.2")
