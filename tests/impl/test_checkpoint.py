"""impl.checkpoint: DCP checkpoints of Muon, AdamW, DistMuon, DistAdamW, DTensorMuon and DTensorAdamW saved on W
ranks and loaded on W′.

Gradients are chosen so that the run does not depend on the world size: rank r of W gets g_t + (r − (W−1)/2)·d_t
with g_t, d_t "dyadic" (integers / 1024, |·| < 4), so every partial sum is exact in float32 and gloo's AVG returns
g_t exactly for any W. DistMuon is bitwise the Muon kernel on the mean gradient (tests/impl/test_distributed.py), and
DistAdamW with fused=False bitwise the foreach AdamW, so an uninterrupted single-process run is the exact expectation
for save at W → load at W′ → continue; with the fused kernel (alignment-dependent rounding) the float32 trajectory
bound applies. DTensorMuon is bitwise Muon on the mean gradient (tests/impl/test_dtensor.py) and DTensorAdamW is
AdamW: their parameters are placed Shard(0), Shard(1) or Replicate() (``PLACEMENTS``) and given g_t, placed alike.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist

from optconform.conformance import tolerances as tol
from optconform.conformance.adapters import torch_dcp
from optconform.conformance.metrics import rel_fro_error
from optconform.conformance.spawn import run_distributed
from optconform.impl import checkpoint
from optconform.impl.adamw import AdamW
from optconform.impl.distributed import DistAdamW, DistMuon
from optconform.impl.dtensor import DTensorAdamW, DTensorMuon
from optconform.impl.muon import Muon

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(300)]
SPAWN_TIMEOUT_S = 120

# DistMuon: shape groups of 5, 3 and 1 matrices (uneven for W = 2, 3, 4; one group smaller than W)
MUON_SHAPES = [(6, 4), (4, 6), (6, 4), (3, 5), (6, 4), (4, 6), (6, 4), (6, 4), (4, 6)]
# DistAdamW: dim 0 of 7, 5, 2, 1, 9 and a 0-D parameter (uneven rows, fewer rows than ranks)
ADAMW_SHAPES = [(7, 3), (5,), (2, 5), (), (1, 4), (9,)]
#: DTensor kinds: parameter j placed PLACEMENTS[j % 3] (a 0-D or 1-D parameter Shard(0) or Replicate())
PLACEMENTS = ("Shard(0)", "Shard(1)", "Replicate()")
STEPS, SAVE_AT = 5, 2
LRS = [0.02, 0.018, 0.015, 0.01, 0.005]


def _init(shapes, seed=12345):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) for s in shapes]


def _dyadic(shapes, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(-2048, 2048, s, generator=gen).float() / 1024 for s in shapes]


def _grads(shapes, step, rank, world):
    """g_t + (rank − (W−1)/2)·d_t: mean over the W ranks exactly g_t (see the module docstring)."""
    g, d = _dyadic(shapes, 7919 * step + 1), _dyadic(shapes, 7919 * step + 2)
    return [gi + (rank - (world - 1) / 2) * di for gi, di in zip(g, d, strict=True)]


def _placed(kind, tensors, device="cpu"):
    """nn.Parameters on ``device``; DTensors placed by PLACEMENTS on a 1-D mesh of every rank for the DTensor kinds."""
    tensors = [t.to(device) for t in tensors]
    if not kind.startswith("DTensor"):
        return [torch.nn.Parameter(t) for t in tensors]
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh(torch.device(device).type, (dist.get_world_size(),))
    out = []
    for j, t in enumerate(tensors):
        name = PLACEMENTS[j % 3] if t.ndim >= 2 else PLACEMENTS[0] if t.ndim == 1 and j % 2 else "Replicate()"
        pl = Replicate() if name == "Replicate()" else Shard(int(name[6]))
        out.append(torch.nn.Parameter(distribute_tensor(t, mesh, [pl])))
    return out


def _full(params):
    return [(p.full_tensor() if hasattr(p, "full_tensor") else p.detach().clone()).cpu() for p in params]


def _make(kind, params, **kw):
    named = [(f"layer{j}.w", p) for j, p in enumerate(params)]
    if kind == "DTensorMuon":
        return DTensorMuon(named, lr=LRS[0], **kw)
    if kind == "DTensorAdamW":
        return DTensorAdamW([dict(params=named)], lr=LRS[0], betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1, **kw)
    if kind == "DistMuon":
        return DistMuon(named, lr=LRS[0], **kw)
    if kind == "Muon":
        return Muon([dict(params=named)], lr=LRS[0], **kw)
    if kind == "DistAdamW":
        return DistAdamW([dict(params=named)], lr=LRS[0], betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1, **kw)
    return AdamW([dict(params=named)], lr=LRS[0], betas=(0.8, 0.95), eps=1e-10, weight_decay=0.1, **kw)


def _shapes(kind):
    return MUON_SHAPES if "Muon" in kind else ADAMW_SHAPES


def _run(opt, params, shapes, steps, rank, world, device="cpu"):
    from torch.distributed.tensor import DTensor, distribute_tensor

    for t in steps:
        mean = [m.to(device) for m in _grads(shapes, t, 0, 1)]  # g_t: what the ranks' gradients average to
        for p, g, m in zip(params, [g.to(device) for g in _grads(shapes, t, rank, world)], mean, strict=True):
            # a DTensor parameter gets the mean gradient placed as itself (what FSDP2's backward leaves)
            p.grad = distribute_tensor(m, p.device_mesh, p.placements) if isinstance(p, DTensor) else g
        for group in opt.param_groups:
            group["lr"] = LRS[t]
        opt.step()


def _phase(rank, world, kind, path, resume, kw, via="impl", device="cpu"):
    """resume False: steps 0..SAVE_AT-1 from the initial parameters, then save (and the parameters, rank 0);
    resume True: parameters from the save, a fresh optimizer (lr 1.0: the load restores it), load, the rest.
    ``device`` "cuda": rank r's tensors on cuda:r."""
    shapes = _shapes(kind)
    device = f"cuda:{rank}" if device == "cuda" else device
    if not resume:
        params = _placed(kind, _init(shapes), device)
        opt = _make(kind, params, **kw)
        _run(opt, params, shapes, range(SAVE_AT), rank, world, device)
        if via == "torch_dcp":
            torch_dcp.save(opt, os.path.join(path, "ckpt"))
        else:
            checkpoint.save(opt, os.path.join(path, "ckpt"), extra={"step": SAVE_AT, "note": "resume here"})
        full = _full(params)
        if rank == 0:
            torch.save(full, os.path.join(path, "params.pt"))
        return {"owned": sorted(k for k, p in enumerate(params) if opt.state.get(p))}
    params = _placed(kind, torch.load(os.path.join(path, "params.pt")), device)
    opt = _make(kind, params, **kw)
    for group in opt.param_groups:
        group["lr"] = 1.0
    if via == "torch_dcp":
        extra = torch_dcp.load(opt, os.path.join(path, "ckpt"))
    else:
        extra = checkpoint.load(opt, os.path.join(path, "ckpt"))
    lrs = sorted({g["lr"] for g in opt.param_groups})
    owned = sorted(k for k, p in enumerate(params) if opt.state.get(p))
    _run(opt, params, shapes, range(SAVE_AT, STEPS), rank, world, device)
    return {"extra": extra, "lrs": lrs, "owned": owned, "params": _full(params)}


def _local(fn, *args):
    """Run a phase in this process (single-process optimizers)."""
    return [fn(0, 1, *args)]


def _uninterrupted(kind, kw):
    base = {"DistMuon": "Muon", "DistAdamW": "AdamW", "DTensorMuon": "Muon", "DTensorAdamW": "AdamW"}.get(kind, kind)
    shapes = _shapes(kind)
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    opt = _make(base, params, **kw)
    _run(opt, params, shapes, range(STEPS), 0, 1)
    return [p.detach() for p in params]


def _save_then_resume(tmp_path, kind_a, world_a, kind_b, world_b, kw, via="impl", device="cpu"):
    backend = "nccl" if device == "cuda" else "gloo"
    a = (run_distributed(_phase, world_a, args=(kind_a, str(tmp_path), False, kw, via, device), backend=backend,
                         timeout_s=SPAWN_TIMEOUT_S)
         if kind_a.startswith(("Dist", "DTensor")) else _local(_phase, kind_a, str(tmp_path), False, kw, via))
    b = (run_distributed(_phase, world_b, args=(kind_b, str(tmp_path), True, kw, via, device), backend=backend,
                         timeout_s=SPAWN_TIMEOUT_S)
         if kind_b.startswith(("Dist", "DTensor")) else _local(_phase, kind_b, str(tmp_path), True, kw, via))
    return a, b


@pytest.mark.parametrize("worlds", [(2, 3), (3, 1), (1, 4), (4, 2)], ids=lambda w: f"W{w[0]}to{w[1]}")
@pytest.mark.parametrize("kind,kw", [("DistMuon", {}), ("DistAdamW", {"fused": False})], ids=["muon", "adamw"])
def test_resharded_resume_is_bitwise_the_uninterrupted_run(tmp_path, kind, kw, worlds):
    saved, resumed = _save_then_resume(tmp_path, kind, worlds[0], kind, worlds[1], kw)
    expected = _uninterrupted(kind, kw)
    n = len(_shapes(kind))
    # state was sharded at W and is sharded at W′: every parameter's state on exactly one rank (DistMuon), rows of it
    # on every rank that owns rows (DistAdamW); nothing lost
    if kind == "DistMuon":
        for res in (saved, resumed):
            counts = [sum(k in r["owned"] for r in res) for k in range(n)]
            assert counts == [1] * n, counts
    else:
        for res in (saved, resumed):
            assert set().union(*(r["owned"] for r in res)) == set(range(n))
    for r, res in enumerate(resumed):
        assert res["extra"] == {"step": SAVE_AT, "note": "resume here"}
        assert res["lrs"] == [LRS[SAVE_AT - 1]], "the hyperparameters come from the checkpoint"
        for k, (a, b) in enumerate(zip(res["params"], expected, strict=True)):
            assert torch.equal(a, b), f"rank {r}: parameter {k} differs from the uninterrupted run"


@pytest.mark.parametrize("worlds", [(2, 3), (4, 1), (1, 2), (3, 4)], ids=lambda w: f"W{w[0]}to{w[1]}")
@pytest.mark.parametrize("kind,kw", [("DTensorMuon", {}), ("DTensorAdamW", {"fused": False})], ids=["muon", "adamw"])
def test_dtensor_checkpoints_reshard_bitwise(tmp_path, kind, kw, worlds):
    """DTensor state saved piece by piece on W ranks is read into the pieces of W′ (every rank holds a piece of
    every parameter's state: 'owned' lists all of them), and the run continues bitwise."""
    saved, resumed = _save_then_resume(tmp_path, kind, worlds[0], kind, worlds[1], kw)
    expected = _uninterrupted(kind, kw)
    n = len(_shapes(kind))
    for res in (*saved, *resumed):
        assert res["owned"] == list(range(n))
    for r, res in enumerate(resumed):
        assert res["extra"] == {"step": SAVE_AT, "note": "resume here"}
        assert res["lrs"] == [LRS[SAVE_AT - 1]]
        for k, (a, b) in enumerate(zip(res["params"], expected, strict=True)):
            assert torch.equal(a, b), f"rank {r}: parameter {k} differs from the uninterrupted run"


@pytest.mark.parametrize("kind,kw", [("DTensorMuon", {}), ("DTensorMuon", {"normuon_beta2": 0.95}),
                                     ("DTensorAdamW", {"fused": False})], ids=["muon", "normuon", "adamw"])
def test_torchs_own_recipe_reshards_the_dtensor_optimizers(tmp_path, kind, kw):
    """torch.distributed.checkpoint.state_dict's get/set_optimizer_state_dict with DCP (adapters.torch_dcp, what an
    FSDP2 training loop calls) reshards DTensorMuon's and DTensorAdamW's state W = 3 → W′ = 2 bitwise: DTensorMuon
    accepts the untagged state dict that API builds (its momentum buffers are DTensors), and NorMuon's v, a plain
    tensor written by its owner, is read whole by the new owner."""
    _, resumed = _save_then_resume(tmp_path, kind, 3, kind, 2, kw, via="torch_dcp")
    expected = _uninterrupted(kind, kw)
    for res in resumed:
        assert res["lrs"] == [LRS[SAVE_AT - 1]], "the hyperparameters come from the checkpoint"
        for a, b in zip(res["params"], expected, strict=True):
            assert torch.equal(a, b)


def test_normuon_second_moment_moves_to_its_owner_at_the_new_world_size(tmp_path):
    """DTensorMuon's NorMuon v is a plain tensor on the matrix's owner: written by the owner at W = 3, read by the
    owner at W′ = 2 (block-cyclic within each shape-and-placement group), and the run continues bitwise."""
    kw = {"normuon_beta2": 0.95}
    saved, resumed = _save_then_resume(tmp_path, "DTensorMuon", 3, "DTensorMuon", 2, kw)
    expected = _uninterrupted("DTensorMuon", kw)
    for res in resumed:
        for a, b in zip(res["params"], expected, strict=True):
            assert torch.equal(a, b)


def test_fused_distadamw_resumes_within_the_float32_bound(tmp_path):
    _, resumed = _save_then_resume(tmp_path, "DistAdamW", 3, "DistAdamW", 2, {})
    expected = _uninterrupted("DistAdamW", {})
    bound = tol.f32_trajectory_rtol(STEPS)
    for a, b in zip(resumed[0]["params"], expected, strict=True):
        assert rel_fro_error(a, b) <= bound
    assert all(torch.equal(a, b) for a, b in zip(resumed[0]["params"], resumed[1]["params"], strict=True))


@pytest.mark.parametrize("kinds", [("DistMuon", 3, "Muon", 1), ("Muon", 1, "DistMuon", 2),
                                   ("DistAdamW", 2, "AdamW", 1), ("AdamW", 1, "DistAdamW", 4),
                                   ("DTensorMuon", 2, "DistMuon", 3), ("DistMuon", 3, "DTensorMuon", 2),
                                   ("DTensorMuon", 3, "Muon", 1), ("DTensorAdamW", 2, "DistAdamW", 3),
                                   ("AdamW", 1, "DTensorAdamW", 3)],
                         ids=lambda k: f"{k[0]}{k[1]}to{k[2]}{k[3]}")
def test_checkpoints_of_one_family_load_into_each_other(tmp_path, kinds):
    """Muon / DistMuon / DTensorMuon and AdamW / DistAdamW / DTensorAdamW read each other's checkpoints (one key
    scheme), on other world sizes, and continue bitwise."""
    kw = {"fused": False} if "AdamW" in kinds[0] else {}
    _, resumed = _save_then_resume(tmp_path, kinds[0], kinds[1], kinds[2], kinds[3], kw)
    expected = _uninterrupted(kinds[0], kw)
    for res in resumed:
        for a, b in zip(res["params"], expected, strict=True):
            assert torch.equal(a, b)


def test_consolidated_file_round_trip(tmp_path):
    """DistAdamW on 2 ranks → one torch.save file with the full moments → back to DCP → resumes on 3 ranks."""
    run_distributed(_phase, 2, args=("DistAdamW", str(tmp_path), False, {"fused": False}), timeout_s=SPAWN_TIMEOUT_S)
    checkpoint.consolidate(tmp_path / "ckpt", tmp_path / "one.pt")
    one = torch.load(tmp_path / "one.pt", weights_only=False)
    full = one["optim"]["state"]["layer0.w"]["exp_avg"] if "optim" in one else one["optim/state/layer0.w/exp_avg"]
    assert tuple(full.shape) == ADAMW_SHAPES[0] and not hasattr(full, "to_local")
    (tmp_path / "ckpt").rename(tmp_path / "original")
    checkpoint.from_consolidated(tmp_path / "one.pt", tmp_path / "ckpt")
    resumed = run_distributed(_phase, 3, args=("DistAdamW", str(tmp_path), True, {"fused": False}),
                              timeout_s=SPAWN_TIMEOUT_S)
    for a, b in zip(resumed[0]["params"], _uninterrupted("DistAdamW", {"fused": False}), strict=True):
        assert torch.equal(a, b)


def _wrong_rank(rank, world, path, case):
    shapes = list(MUON_SHAPES)
    if case == "shape":
        shapes[3] = (5, 3)
    elif case == "order":
        shapes[0], shapes[1] = shapes[1], shapes[0]
    params = [torch.nn.Parameter(t) for t in _init(shapes)]
    opt = (_make("DistAdamW", params) if case == "family" else _make("DistMuon", params))
    if case == "names":
        opt = DistMuon([(f"block{j}.w", p) for j, p in enumerate(params)])
    before = {id(p): dict(s) for p, s in opt.state.items()}
    try:
        checkpoint.load(opt, os.path.join(path, "missing" if case == "path" else "ckpt"))
    except Exception as exc:
        return type(exc).__name__, str(exc), dict(opt.state) == before
    return None


@pytest.mark.parametrize("case,expect", [
    ("shape", "parameter 3: the checkpoint has 'layer3.w' of shape (3, 5)"),
    ("order", "parameter 0: the checkpoint has 'layer0.w' of shape (6, 4) and torch.float32, this optimizer "
              "'layer0.w' of shape (4, 6)"),
    ("names", "(first difference: the key)"),
    ("family", "holds a DistMuon (muon family) state; this is a DistAdamW (adamw family)"),
    ("path", "cannot read"),
])
def test_wrong_checkpoint_is_refused_on_every_rank(tmp_path, case, expect):
    run_distributed(_phase, 2, args=("DistMuon", str(tmp_path), False, {}), timeout_s=SPAWN_TIMEOUT_S)
    results = run_distributed(_wrong_rank, 3, args=(str(tmp_path), case), timeout_s=SPAWN_TIMEOUT_S)
    for r, res in enumerate(results):
        assert res is not None, f"rank {r} loaded a wrong checkpoint"
        kind, msg, untouched = res
        assert kind == "ValueError" and expect in msg, (r, msg)
        assert untouched


def test_single_process_save_load_needs_no_process_group(tmp_path):
    """Muon with a per-parameter step count (momentum_form='bias_corrected'): the int survives the round trip."""
    assert not dist.is_initialized()
    _, resumed = _save_then_resume(tmp_path, "Muon", 1, "Muon", 1, {"momentum_form": "bias_corrected"})
    expected = _uninterrupted("Muon", {"momentum_form": "bias_corrected"})
    assert all(torch.equal(a, b) for a, b in zip(resumed[0]["params"], expected, strict=True))


def _whole_on_cuda(rank, world, kind, kw):
    """The uninterrupted run of ``kind`` itself on cuda:rank (the expectation on the same kernels)."""
    shapes = _shapes(kind)
    params = _placed(kind, _init(shapes), f"cuda:{rank}")
    _run(_make(kind, params, **kw), params, shapes, range(STEPS), rank, world, f"cuda:{rank}")
    return _full(params)


@pytest.mark.skipif(not (torch.cuda.is_available() and dist.is_nccl_available()),
                    reason="needs a CUDA device and NCCL (none here); recorded in docs/gpu.md when lent")
@pytest.mark.parametrize("kind,kw", [("DistMuon", {}), ("DistAdamW", {"fused": False}), ("DTensorMuon", {}),
                                     ("DTensorAdamW", {"fused": False})],
                         ids=["DistMuon", "DistAdamW", "DTensorMuon", "DTensorAdamW"])
def test_nccl_world_size_1_round_trip_is_bitwise(tmp_path, kind, kw):
    """NCCL at world size 1 (one GPU): save through DCP from one process, load into a fresh optimizer in another,
    continue; bitwise the uninterrupted run of the same optimizer on the same GPU (the same kernels in the same
    order on one stream: cuBLAS is bitwise reproducible on one architecture, so any difference is the checkpoint's)."""
    _, (resumed,) = _save_then_resume(tmp_path, kind, 1, kind, 1, kw, device="cuda")
    (expected,) = run_distributed(_whole_on_cuda, 1, args=(kind, kw), backend="nccl", timeout_s=SPAWN_TIMEOUT_S)
    assert resumed["extra"] == {"step": SAVE_AT, "note": "resume here"}
    assert resumed["lrs"] == [LRS[SAVE_AT - 1]]
    for k, (a, b) in enumerate(zip(resumed["params"], expected, strict=True)):
        assert torch.equal(a, b), f"parameter {k}: max difference {float((a - b).abs().max())}"
