"""DTensorMuon / DTensorAdamW (impl/dtensor.py, S9.6–S9.8) on real gloo process groups with DTensor parameters.

Every rank body runs in its own process (conformance/spawn.py). The gradients are "dyadic" (integers / 1024,
see tests/impl/test_distributed.py): their mean over up to 4 ranks is the same float32 number however it is
summed, so the parent gives every rank ``distribute_tensor(mean, placements)`` as ``p.grad`` (what FSDP2's
backward leaves) and the result must be **bitwise** the single-process ``Muon`` / ``AdamW`` stepped on that mean:
every piece updated in place, every whole matrix orthogonalised once, nothing lost or misrouted. Then: the float64
reference ``optconform.reference.zero2.dtensor_muon`` within the Muon trajectory bound, the state's pieces where
S9.6 puts them, FSDP2's ``fully_shard`` with a real backward, the communication the module docstring states
(counted), and bad input raising on every rank.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from test_distributed import _catch  # the ranks' error-check helper

from optconform.conformance import tolerances as tol
from optconform.conformance.collectives import count_collectives
from optconform.conformance.metrics import rel_fro_error, to_float64
from optconform.conformance.spawn import run_distributed
from optconform.impl import AdamW, DTensorAdamW, DTensorMuon, Muon
from optconform.impl.dtensor import local_range, step_elements
from optconform.reference.zero2 import dtensor_muon, dtensor_shard

pytestmark = [pytest.mark.distributed]

SPAWN_TIMEOUT_S = 240
TEST_TIMEOUT_S = 2 * SPAWN_TIMEOUT_S + 60

#: (shape, placement): both Shard dimensions, Replicate, dims W does not divide or smaller than W, and one shape
#: under two placements (two groups)
MUON_PARAMS = [((6, 4), "Shard(0)"), ((6, 4), "Shard(1)"), ((5, 3), "Shard(0)"), ((3, 5), "Shard(1)"),
               ((4, 4), "Replicate()"), ((2, 7), "Shard(0)"), ((6, 4), "Shard(0)"), ((6, 4), "Shard(0)"),
               ((4, 4), "Replicate()")]
ADAMW_PARAMS = [((7, 3), "Shard(0)"), ((3, 7), "Shard(1)"), ((13,), "Shard(0)"), ((), "Replicate()"),
                ((2, 2, 5), "Shard(2)")]
LRS = [0.02, 0.018, 0.015, 0.01, 0.005]
MOMENTA = [0.85, 0.875, 0.9, 0.925, 0.95]
STEPS = 5


def _init(shapes, seed=12345):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) for s in shapes]


def _rank_grads(shapes, step: int, rank: int):
    gen = torch.Generator().manual_seed(7919 * step + 104729 * rank + 17)
    return [torch.randint(-4096, 4096, s, generator=gen).float() / 1024 for s in shapes]


def _mean(shapes, step, world):
    per = [_rank_grads(shapes, step, r) for r in range(world)]
    return [torch.stack([per[r][i] for r in range(world)]).mean(0) for i in range(len(shapes))]


def _placement(name: str):
    from torch.distributed.tensor import Replicate, Shard

    return Replicate() if name == "Replicate()" else Shard(int(name[6:-1]))


def _distributed(spec, world):
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    params = [torch.nn.Parameter(distribute_tensor(t, mesh, [_placement(pl)]))
              for t, (_, pl) in zip(_init([s for s, _ in spec]), spec, strict=True)]
    return mesh, params


def _state_of(opt, params, keys):
    """(whole value, local shape, placement, param's local shape) of each state tensor, per parameter."""
    from torch.distributed.tensor import DTensor

    out = []
    for p in params:
        st = {}
        for k in keys:
            v = opt.state[p][k]
            st[k] = (v.full_tensor().clone() if isinstance(v, DTensor) else None,
                     tuple(v.to_local().shape) if isinstance(v, DTensor) else tuple(v.shape),
                     str(getattr(v, "placements", None)) == str(p.placements), tuple(p.to_local().shape))
        out.append(st)
    return out


def _run(opt, params, shapes, world, per_step):
    from torch.distributed.tensor import distribute_tensor

    traj, sent = [], []
    for t in range(STEPS):
        for p, g in zip(params, _mean(shapes, t, world), strict=True):
            p.grad = distribute_tensor(g, p.device_mesh, p.placements)
        for group in opt.param_groups:
            group.update(per_step(t))
        with count_collectives() as calls:
            opt.step()
        sent.append(dict(calls))
        traj.append([p.full_tensor().clone() for p in params])
    return traj, sent


def _muon_rank(rank, world, profile):
    mesh, params = _distributed(MUON_PARAMS, world)
    shapes = [s for s, _ in MUON_PARAMS]
    opt = (DTensorMuon.from_profile(profile, params, lr=LRS[0]) if profile
           else DTensorMuon(params, lr=LRS[0], momentum=MOMENTA[0]))
    traj, calls = _run(opt, params, shapes, world, lambda t: {"lr": LRS[t], "momentum": MOMENTA[t]})
    state = _state_of(opt, params, ("momentum_buffer",))
    # elements this rank sent in one step, counted on the tensors each collective was given
    sizes = []
    import optconform.impl.dtensor as impl_dt

    orig_a2a, orig_ag = dist.all_to_all_single, impl_dt._all_gather_single

    def a2a(out, inp, out_splits=None, in_splits=None, **kw):
        sizes.append(int(inp.numel()) - (in_splits[rank] if in_splits else 0))
        return orig_a2a(out, inp, out_splits, in_splits, **kw)

    def ag(out, inp, **kw):
        sizes.append(int(inp.numel()))
        return orig_ag(out, inp, **kw)

    from torch.distributed.tensor import distribute_tensor

    for p, g in zip(params, _mean(shapes, 0, world), strict=True):
        p.grad = distribute_tensor(g, p.device_mesh, p.placements)
    dist.all_to_all_single, impl_dt._all_gather_single = a2a, ag
    try:
        opt.step()
    finally:
        dist.all_to_all_single, impl_dt._all_gather_single = orig_a2a, orig_ag
    return {"traj": traj, "state": state, "calls": calls[0],
            "sent": sum(sizes), "groups": len(opt.param_groups)}


def _muon_single(world, profile):
    shapes = [s for s, _ in MUON_PARAMS]
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    opt = Muon.from_profile(profile, params, lr=LRS[0]) if profile else Muon(params, lr=LRS[0], momentum=MOMENTA[0])
    traj = []
    for t in range(STEPS):
        for p, g in zip(params, _mean(shapes, t, world), strict=True):
            p.grad = g
        for group in opt.param_groups:
            group.update({"lr": LRS[t], "momentum": MOMENTA[t]})
        opt.step()
        traj.append([p.detach().clone() for p in params])
    return traj, [opt.state[p]["momentum_buffer"] for p in params]


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_dtensor_muon_is_bitwise_single_process_muon_with_state_in_the_parameters_pieces(world):
    results = run_distributed(_muon_rank, world, args=(None,), timeout_s=SPAWN_TIMEOUT_S)
    single, bufs = _muon_single(world, None)
    for r, res in enumerate(results):
        for t in range(STEPS):
            for i, (got, want) in enumerate(zip(res["traj"][t], single[t], strict=True)):
                assert torch.equal(got, want), f"rank {r} step {t} param {i} {MUON_PARAMS[i]}: max diff " \
                                               f"{(got - want).abs().max().item():.3g}"
        for i, st in enumerate(res["state"]):
            whole, local, same_placements, p_local = st["momentum_buffer"]
            assert torch.equal(whole, bufs[i]), f"rank {r} momentum of param {i}"
            shape, pl = MUON_PARAMS[i]
            assert local == p_local == tuple(b - a for a, b in dtensor_shard(shape, pl, world, r))
            assert same_placements, f"rank {r} momentum of param {i} is not placed as the parameter"
    # one all-to-all each way per sharded group, one all-gather per replicated group, one pre-flight all_reduce
    groups = {(s, pl) for s, pl in MUON_PARAMS}
    sharded = sum(pl != "Replicate()" for _, pl in groups)
    replicated = len(groups) - sharded
    assert results[0]["groups"] == len(groups)
    if world > 1:
        assert results[0]["calls"] == {"all_reduce": 1, "all_to_all_single": 2 * sharded,
                                       "all_gather_single": replicated}, results[0]["calls"]
    # the communication the module docstring states, counted on every rank
    for r, res in enumerate(results):
        assert res["sent"] == step_elements([s for s, _ in MUON_PARAMS], [pl for _, pl in MUON_PARAMS], world, r)


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_dtensor_muon_updates_against_the_float64_reference():
    """Each step's update at W = 3 against ``reference.zero2.dtensor_muon`` (MUON_UPDATE_RTOL, as DistMuon's)."""
    world = 3
    res = run_distributed(_muon_rank, world, args=(None,), timeout_s=SPAWN_TIMEOUT_S)[0]
    shapes = [s for s, _ in MUON_PARAMS]
    ref_prev = got_prev = [to_float64(t) for t in _init(shapes)]
    states = [{} for _ in range(world)]
    for t in range(STEPS):
        rg = [[to_float64(g) for g in _rank_grads(shapes, t, r)] for r in range(world)]
        ref, states = dtensor_muon(ref_prev, rg, states, [pl for _, pl in MUON_PARAMS], lr=LRS[t],
                                   momentum=MOMENTA[t])
        got = [to_float64(p) for p in res["traj"][t]]
        for i in range(len(shapes)):
            err = rel_fro_error(got[i] - got_prev[i], ref[i] - ref_prev[i])
            assert err <= tol.MUON_UPDATE_RTOL, f"step {t} param {i}: update rel error {err:.3g}"
        ref_prev, got_prev = ref, got


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("profile", ["nanochat-2026", "torch-optim"])
def test_dtensor_muon_profiles_are_bitwise_single_process(profile):
    """Variant options (NorMuon's v on the owner, cautious decay, Polar Express rows, lr scales) as Muon's."""
    world = 2
    results = run_distributed(_muon_rank, world, args=(profile,), timeout_s=SPAWN_TIMEOUT_S)
    single, _ = _muon_single(world, profile)
    for res in results:
        for t in range(STEPS):
            for i, (got, want) in enumerate(zip(res["traj"][t], single[t], strict=True)):
                assert torch.equal(got, want), f"{profile} step {t} param {i}"


# ---------------------------------------------------------------------------------------------- AdamW and FSDP2
def _adamw_rank(rank, world):
    mesh, params = _distributed(ADAMW_PARAMS, world)
    params[0].lr_mul, params[2].wd_mul = 0.5, 0.0
    opt = DTensorAdamW(params, lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    traj, _ = _run(opt, params, [s for s, _ in ADAMW_PARAMS], world, lambda t: {"lr": 0.01 / (t + 1)})
    return {"traj": traj, "state": _state_of(opt, params, ("exp_avg", "exp_avg_sq"))}


@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("world", [2, 3])
def test_dtensor_adamw_is_bitwise_single_process_adamw(world):
    results = run_distributed(_adamw_rank, world, timeout_s=SPAWN_TIMEOUT_S)
    shapes = [s for s, _ in ADAMW_PARAMS]
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    params[0].lr_mul, params[2].wd_mul = 0.5, 0.0
    opt = AdamW(params, lr=0.01, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1)
    for t in range(STEPS):
        for p, g in zip(params, _mean(shapes, t, world), strict=True):
            p.grad = g
        for group in opt.param_groups:
            group["lr"] = 0.01 / (t + 1)
        opt.step()
        for r, res in enumerate(results):
            for i, p in enumerate(params):
                assert torch.equal(res["traj"][t][i], p.detach()), f"rank {r} step {t} param {i}"
    for r, res in enumerate(results):
        for i, st in enumerate(res["state"]):
            whole, local, same_placements, p_local = st["exp_avg"]
            assert torch.equal(whole, opt.state[params[i]]["exp_avg"]), f"rank {r} exp_avg of param {i}"
            assert local == p_local and same_placements, f"rank {r} exp_avg of param {i} not in p's pieces"


class _Linear(torch.nn.Module):
    """loss = Σ_i <p_i, g_i>: the backward hands each rank its own g_i as p_i's gradient."""

    def __init__(self, tensors):
        super().__init__()
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(t) for t in tensors])

    def forward(self, gs):
        return sum((p * g).sum() for p, g in zip(self.ps, gs, strict=True))


def _fsdp_rank(rank, world):
    """FSDP2 with a real forward and backward: fully_shard all-gathers the parameters for the forward and
    reduce-scatters the gradients (the mean) in the backward; then DTensorMuon / DTensorAdamW step."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    shapes = [s for s, _ in MUON_PARAMS[:4]] + [(7,)]
    model = _Linear(_init(shapes))
    fully_shard(model, mesh=mesh)
    mats, vecs = list(model.ps)[:4], list(model.ps)[4:]
    muon = DTensorMuon(mats, lr=0.02, momentum=0.9)
    adam = DTensorAdamW(vecs, lr=0.01)
    traj = []
    for t in range(STEPS):
        model.zero_grad()
        model(_rank_grads(shapes, t, rank)).backward()
        muon.step()
        adam.step()
        traj.append([p.full_tensor().detach().clone() for p in model.ps])
    return {"traj": traj, "placements": [str(p.placements) for p in model.ps]}


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_fully_shard_with_a_real_backward_equals_single_process():
    world = 2
    results = run_distributed(_fsdp_rank, world, timeout_s=SPAWN_TIMEOUT_S)
    shapes = [s for s, _ in MUON_PARAMS[:4]] + [(7,)]
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    muon, adam = Muon(params[:4], lr=0.02, momentum=0.9), AdamW(params[4:], lr=0.01)
    for t in range(STEPS):
        for p, g in zip(params, _mean(shapes, t, world), strict=True):
            p.grad = g
        muon.step()
        adam.step()
        for r, res in enumerate(results):
            for i, p in enumerate(params):
                # dyadic gradients: FSDP2's reduce-scatter of two ranks is exact, so bitwise
                assert torch.equal(res["traj"][t][i], p.detach()), f"rank {r} step {t} param {i}"
    assert all("Shard(dim=0)" in pl for pl in results[0]["placements"])


# ---------------------------------------------------------------------------------------------- bad input
def _errors_rank(rank, world):
    from torch.distributed.tensor import Replicate, distribute_tensor

    mesh, params = _distributed(MUON_PARAMS[:3], world)
    out = {"plain": _catch(lambda: DTensorMuon([torch.nn.Parameter(torch.zeros(3, 3))])),
           "vector": _catch(lambda: DTensorMuon([torch.nn.Parameter(distribute_tensor(torch.zeros(4), mesh,
                                                                                       [Replicate()]))]))}
    from torch.distributed.tensor import DTensor

    opt = DTensorMuon(params)
    for i, p in enumerate(params):  # DTensor.from_local: no collective, so a rank may skip one
        p.grad = None if (rank == world - 1 and i == 1) else DTensor.from_local(
            torch.ones(p.to_local().shape), mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride())
    out["missing"] = _catch(opt.step)
    for p in params:  # rank 0 hands in a replicated gradient (DTensor.from_local: no communication)
        local = torch.ones(p.shape) if rank == 0 else torch.ones(p.to_local().shape)
        p.grad = DTensor.from_local(local, mesh, [Replicate()] if rank == 0 else p.placements, run_check=False,
                                    shape=p.shape, stride=p.stride())
    out["placement"] = _catch(opt.step)
    return out


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_bad_input_raises_on_every_rank_without_hanging():
    world = 2
    results = run_distributed(_errors_rank, world, timeout_s=SPAWN_TIMEOUT_S)
    for res in results:
        assert res["plain"][0] == "ValueError" and "must be a DTensor" in res["plain"][1]
        assert res["vector"][0] == "ValueError" and "2-D" in res["vector"][1]
        assert res["missing"][0] == "RuntimeError" and "has no .grad on rank(s) [1]" in res["missing"][1], res
        assert res["placement"][0] == "RuntimeError" and "placements" in res["placement"][1], res


def test_step_elements_per_placement():
    """Shard(0) 6×4 on 2 ranks: 2 matrices, rank 0 owns one: sends its piece of the other (12) and the other
    rank's piece of its own O (12); Replicate 4×4: one padded slot of 16."""
    assert step_elements([(6, 4), (6, 4)], ["Shard(0)"] * 2, 2, 0) == 24
    assert step_elements([(4, 4)], ["Replicate()"], 2, 1) == 16
    assert [local_range(5, 3, r) for r in range(3)] == [(0, 2), (2, 4), (4, 5)]
    assert [local_range(2, 4, r) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]


def _noncontiguous_rank(rank, world):
    """p.grad as FSDP-free DTensor code builds it: Partial("avg") redistributed to Shard(1), whose local piece on rank 1
    is a column block with the full row stride (non-contiguous)."""
    from torch.distributed.tensor import DTensor, Partial

    mesh, params = _distributed([((2, 5), "Shard(1)"), ((3, 7), "Shard(1)")], world)
    opt = DTensorAdamW(params, lr=0.1)
    contiguous = []
    for t in range(3):
        for p, g in zip(params, _rank_grads([(2, 5), (3, 7)], t, rank), strict=True):
            p.grad = DTensor.from_local(g, mesh, [Partial("avg")]).redistribute(mesh, p.placements)
            contiguous.append(p.grad.to_local().is_contiguous())
        opt.step()
    return {"params": [p.full_tensor() for p in params], "contiguous": contiguous}


@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_dtensor_adamw_reads_non_contiguous_gradient_pieces():
    """torch 2.13's fused CPU AdamW kernel misreads such a piece (impl.adamw._contiguous_local copies it first)."""
    world = 2
    results = run_distributed(_noncontiguous_rank, world, timeout_s=SPAWN_TIMEOUT_S)
    assert not all(results[1]["contiguous"]), "the case lost its point: every gradient piece was contiguous"
    shapes = [(2, 5), (3, 7)]
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    opt = AdamW(params, lr=0.1)
    for t in range(3):
        for p, g in zip(params, _mean(shapes, t, world), strict=True):
            p.grad = g
        opt.step()
    for res in results:
        for got, p in zip(res["params"], params, strict=True):
            assert torch.equal(got, p.detach())
