"""Variant options (SPEC "Variant options", spec/options.py) of optconform.impl against the float64 reference.

Every option value that differs from the seed's is run on float32 parameters for a few steps with a scheduled
momentum and non-zero parameters, and judged per update with the project's tolerances:

* Muon: ‖Δθ_impl − Δθ_ref‖_F <= MUON_UPDATE_RTOL·lr·s·‖D_ref‖_F (the bf16 Newton–Schulz error of the update
  direction D, tolerances.py) + decay·‖θ_impl − θ_ref‖_F (the decay of two trajectories that differ) + under
  cautious decay decay·‖θ_ref on F‖_F, F the elements whose mask the impl's direction may flip
  (|D_ref| <= |D_impl − D_ref|, D_impl recovered from a decay-free step from the same state) + 2u·‖θ‖_F.
  MUON_UPDATE_RTOL was derived for the seed's rows; measured here (12 seeds): Polar Express rows <= 0.05,
  NorMuon / Muon+ / MuonEq <= 0.025, everything else <= 0.025.
* AdamW: rel_fro_error <= f32_trajectory_rtol(k) after k steps (the float32 family's bound).

Each option test also runs the impl at the option's default on the same input and asserts that the two differ
by more than the bound somewhere (the option is observable there, so the comparison can fail); the inputs are
chosen for that (tiny gradients for ns_eps and clamp, Newton–Schulz steps beyond the five Polar Express rows for
row_cut, one step for Muon+). Options that no input of this size shows are marked (safety 1.01: a 1 % rescale
the quintic maps to < 3 %).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from optconform.conformance import tolerances as tol
from optconform.conformance.metrics import ns_subspace_errors, rel_fro_error, to_float64
from optconform.conformance.spawn import run_distributed
from optconform.impl import AdamW, DistAdamW, DistMuon, Muon, zeropower
from optconform.impl.muon import muon_aspect_scale
from optconform.reference.adam import adamw as ref_adamw
from optconform.reference.muon import muon as ref_muon
from optconform.reference.orthogonalize import zeropower as ref_zeropower
from optconform.reference.zero2 import dist_adamw, dist_muon
from optconform.spec import NS_ROWS
from optconform.spec import options as spec_options

F32_U = 2.0**-24
SHAPES = [(16, 48), (48, 16), (24, 24)]
LRS = [0.02, 0.02, 0.015, 0.01]
MOMENTA = [0.85, 0.9, 0.95, 0.95]  # a warm-up ramp: sum and bias_corrected differ from ema only when β moves
PROFILES = list(spec_options.PROFILES)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _inputs(rng, *, scale: float = 1.0, steps: int = len(LRS)):
    """θ0 ~ N(0, 1) and Gaussian gradients whose rows are scaled by 10^U(−0.5, 0.5) (MuonEq and NorMuon have
    something to equalise), times ``scale``; all float32-representable."""
    theta0 = [_f32(rng.standard_normal(s)) for s in SHAPES]
    grads = [[_f32(rng.standard_normal(s) * 10.0 ** rng.uniform(-0.5, 0.5, size=(s[0], 1)) * scale)
              for s in SHAPES] for _ in range(steps)]
    return theta0, grads


# --- Muon -----------------------------------------------------------------------------------------------------


def _impl_muon(make, theta0, grads, *, probe: bool, device: str = "cpu"):
    """The impl's trajectory (float64 copies) and, with ``probe``, each step's direction D recovered from a
    decay-free step from the same state, with its recovery error τ (elementwise)."""
    params = [torch.nn.Parameter(torch.tensor(t, dtype=torch.float32, device=device)) for t in theta0]
    opt = make(params)
    traj, dirs = [], []
    for k, gs in enumerate(grads):
        for group in opt.param_groups:
            group["lr"], group["momentum"] = LRS[k], MOMENTA[k]
        for p, g in zip(params, gs, strict=True):
            p.grad = torch.tensor(g, dtype=torch.float32, device=device)
        if probe:
            twin = copy.deepcopy(opt)  # copies params and state, not the grads
            twins = [q for group in twin.param_groups for q in group["params"]]
            for group in twin.param_groups:
                group["weight_decay"] = 0.0
            for p, q in zip(params, twins, strict=True):
                q.grad = p.grad.clone()
            twin.step()
            step = []
            for p, q, group in zip(params, twins, [g for g in opt.param_groups for _ in g["params"]], strict=True):
                lrs = LRS[k] * muon_aspect_scale(p.shape, group["lr_scale"])
                before, after = to_float64(p), to_float64(q)
                step.append(((before - after) / lrs, F32_U * (np.abs(before) + np.abs(after)) / lrs))
            dirs.append(step)
        opt.step()
        traj.append([to_float64(p) for p in params])
    return traj, dirs


def _ref_muon(options, theta0, grads, ns_steps):
    """The reference's trajectory and each step's direction D_ref (a decay-free step from the same state)."""
    theta, states, traj, dirs = [t.copy() for t in theta0], [{} for _ in theta0], [], []
    for k, gs in enumerate(grads):
        kw = dict(lr=LRS[k], momentum=MOMENTA[k], nesterov=True, ns_steps=ns_steps)
        step = []
        for i, g in enumerate(gs):
            free, _ = ref_muon(theta[i], g, states[i], **kw, **{**options, "weight_decay": 0.0})
            step.append((theta[i] - free) / (LRS[k] * muon_aspect_scale(theta[i].shape, options.get("lr_scale",
                                                                                                     "original"))))
            theta[i], states[i] = ref_muon(theta[i], g, states[i], **kw, **options)
        traj.append([t.copy() for t in theta])
        dirs.append(step)
    return traj, dirs


def _muon_bounds(options, theta0, impl, ref):
    """Per step and parameter: (‖Δθ_impl − Δθ_ref‖_F, its bound, ‖Δθ_ref‖_F); see the module docstring."""
    (traj, idirs), (rtraj, rdirs) = impl, ref
    wd = options.get("weight_decay", 0.0)
    cautious = options.get("weight_decay_mode") == "cautious"
    prev, rprev = theta0, theta0
    out = []
    for k in range(len(traj)):
        row = []
        for i in range(len(theta0)):
            s = muon_aspect_scale(theta0[i].shape, options.get("lr_scale", "original"))
            decay = wd * LRS[k] * (s if options.get("weight_decay_lr") == "adjusted" else 1.0)
            d_ref = rdirs[k][i]
            bound = tol.MUON_UPDATE_RTOL * LRS[k] * s * np.linalg.norm(d_ref)
            bound += decay * np.linalg.norm(prev[i] - rprev[i])
            bound += 2 * F32_U * (np.linalg.norm(prev[i]) + np.linalg.norm(traj[k][i]))
            if cautious and decay:
                d_impl, tau = idirs[k][i]
                flips = (np.abs(d_ref) <= np.abs(d_impl - d_ref) + tau) | (np.sign(prev[i]) != np.sign(rprev[i]))
                bound += decay * np.linalg.norm(rprev[i][flips])
            upd, rupd = traj[k][i] - prev[i], rtraj[k][i] - rprev[i]
            row.append((float(np.linalg.norm(upd - rupd)), float(bound), float(np.linalg.norm(rupd))))
        out.append(row)
        prev, rprev = traj[k], rtraj[k]
    return np.array(out)


def _run_muon_case(rng, base, option, *, scale=1.0, ns_steps=5):
    """impl(base + option) vs reference, and vs impl(base): returns (errors/bounds, differences/bounds)."""
    options = {**base, **option}
    theta0, grads = _inputs(rng, scale=scale)
    cautious = options.get("weight_decay_mode") == "cautious"
    impl = _impl_muon(lambda ps: Muon(ps, ns_steps=ns_steps, **options), theta0, grads, probe=cautious)
    ref = _ref_muon(options, theta0, grads, ns_steps)
    judged = _muon_bounds(options, theta0, impl, ref)
    default, _ = _impl_muon(lambda ps: Muon(ps, ns_steps=ns_steps, **base), theta0, grads, probe=False)
    diff = np.array([[np.linalg.norm((impl[0][k][i] - (impl[0][k - 1][i] if k else theta0[i]))
                                     - (default[k][i] - (default[k - 1][i] if k else theta0[i])))
                      for i in range(len(SHAPES))] for k in range(len(grads))])
    return judged[..., 0] / judged[..., 1], diff / judged[..., 1]


_DECAY = {"weight_decay": 0.1}
MUON_CASES = [  # (id, base options, the option, input: gradient scale / ns_steps, observable)
    ("ns_eps=1e-6", {}, {"ns_eps": 1e-6}, dict(scale=1e-7), True),  # ‖u‖_F ~ ns_eps
    ("ns_eps=1e-8", {}, {"ns_eps": 1e-8}, dict(scale=1e-9), True),
    ("rows=polar_express", {}, {"rows": "polar_express"}, {}, True),
    ("row_cut=truncate", {"rows": "polar_express"}, {"row_cut": "truncate"}, dict(ns_steps=10), True),
    ("normalisation=clamp", {}, {"normalisation": "clamp"}, dict(scale=5e-9), True),  # ‖u‖_F < 1e-7
    ("safety=1.01", {}, {"safety": 1.01}, {}, False),
    ("safety=3", {}, {"safety": 3.0}, {}, True),
    ("momentum_form=sum", {}, {"momentum_form": "sum"}, {}, True),
    ("momentum_form=bias_corrected", {}, {"momentum_form": "bias_corrected"}, {}, True),
    ("muoneq", {}, {"muoneq": True}, {}, True),
    ("muon_plus", {}, {"muon_plus": True}, dict(ns_steps=1), True),  # one step: ‖O‖_F far from sqrt(min)
    ("normuon_beta2=0.9", {}, {"normuon_beta2": 0.9}, {}, True),
    ("lr_scale=match_rms_adamw", {}, {"lr_scale": "match_rms_adamw"}, {}, True),
    ("weight_decay=0.1", {}, {"weight_decay": 0.1}, {}, True),
    ("weight_decay=0.28", {}, {"weight_decay": 0.28}, {}, True),
    ("weight_decay_lr=adjusted", _DECAY, {"weight_decay_lr": "adjusted"}, {}, True),  # tall only (scale > 1)
    ("weight_decay_mode=cautious", _DECAY, {"weight_decay_mode": "cautious"}, {}, True),
    ("cautious, 0.28 adjusted", {"weight_decay": 0.28, "weight_decay_lr": "adjusted"},
     {"weight_decay_mode": "cautious"}, {}, True),
]


def test_every_muon_option_value_is_tested():
    """Each option of S7.2 appears with a non-default value in MUON_CASES."""
    tested = {k for _, _, option, _, _ in MUON_CASES for k in option}
    assert tested == set(spec_options.OPTION_CLAUSES["S7.2"])


@pytest.mark.parametrize("base,option,inputs,observable", [c[1:] for c in MUON_CASES], ids=[c[0] for c in MUON_CASES])
def test_muon_option_matches_reference(rng, base, option, inputs, observable):
    err, diff = _run_muon_case(rng, base, option, **inputs)
    assert err.max() <= 1.0, f"impl vs reference, per step and shape {SHAPES} (error / bound):\n{err.round(3)}"
    if observable:
        assert diff.max() > 1.0, f"the option does not show on this input (difference / bound):\n{diff.round(3)}"


@pytest.mark.parametrize("name", PROFILES)
def test_muon_from_profile_matches_reference(rng, name):
    options = spec_options.clause_options("S7.2", spec_options.resolve(name))
    theta0, grads = _inputs(rng, steps=3)
    opts: list[Muon] = []
    impl = _impl_muon(lambda ps: opts.append(Muon.from_profile(name, ps, lr=0.5)) or opts[-1], theta0, grads,
                      probe=options["weight_decay_mode"] == "cautious")
    assert all(opts[0].param_groups[0][k] == v for k, v in options.items())
    err = _muon_bounds(options, theta0, impl, _ref_muon(options, theta0, grads, 5))
    assert (err[..., 0] <= err[..., 1]).all(), (err[..., 0] / err[..., 1]).round(3)


def test_muon_state_under_bias_correction_and_normuon(rng):
    """momentum_form="bias_corrected" keeps an int ``step``; NorMuon a (rows, 1) / (1, cols) second moment; both
    survive a state_dict round trip."""
    ps = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    opt = Muon(ps, momentum_form="bias_corrected", normuon_beta2=0.9)
    for _ in range(2):
        for p in ps:
            p.grad = torch.randn(p.shape)
        opt.step()
    for p in ps:
        st = opt.state[p]
        assert set(st) == {"momentum_buffer", "step", "second_momentum_buffer"} and st["step"] == 2
        rows, cols = p.shape
        assert tuple(st["second_momentum_buffer"].shape) == ((rows, 1) if rows >= cols else (1, cols))
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    twin = Muon(qs)
    twin.load_state_dict(opt.state_dict())
    assert twin.param_groups[0]["normuon_beta2"] == 0.9
    for p, q in zip(ps, qs, strict=True):
        p.grad = q.grad = torch.randn(p.shape)
    opt.step()
    twin.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, qs, strict=True))


def test_muon_orthogonalize_hook_gets_only_changed_ns_options(rng):
    """A subclass's 2-argument orthogonalize still serves options that leave Newton–Schulz alone; changed
    Newton–Schulz options reach it as S6.2 keywords (ns_eps as eps)."""
    calls = []

    class Spy(Muon):
        @staticmethod
        def orthogonalize(u, steps, **kw):
            calls.append(kw)
            return zeropower(u, steps, **kw)

    p = torch.nn.Parameter(torch.randn(8, 12))
    for kw, want in [({"weight_decay": 0.1, "muon_plus": True}, {}),
                     ({"ns_eps": 1e-6, "rows": "polar_express"}, {"eps": 1e-6, "rows": "polar_express"}),
                     ({"row_cut": "truncate"}, {})]:  # row_cut without rows changes nothing
        calls.clear()
        p.grad = torch.randn(8, 12)
        Spy([p], **kw).step()
        assert calls == [want]


# --- zeropower (S6.2 options: what the suite passes) -------------------------------------------------------------


ZEROPOWER_CASES = [  # (id, base options, the option, steps, ‖G‖_F per matrix, observable)
    ("rows=polar_express", {}, {"rows": "polar_express"}, 5, 1.0, True),
    ("row_cut=truncate", {"rows": "polar_express"}, {"row_cut": "truncate"}, 10, 1.0, True),
    ("normalisation=clamp", {}, {"normalisation": "clamp"}, 5, 5e-8, True),  # ‖G‖_F < eps
    ("safety=1.01", {}, {"safety": 1.01}, 5, 1.0, False),
    ("safety=3", {}, {"safety": 3.0}, 5, 1.0, True),
    ("eps=1e-6", {}, {"eps": 1e-6}, 5, 1e-6, True),  # ‖G‖_F ~ eps
    ("eps=1e-8", {}, {"eps": 1e-8}, 5, 1e-8, True),
]


def _rows(options, steps):
    """The (a, b, c) rows ``options`` give ``steps`` iterations (S6.2's ns_row_list)."""
    if "rows" not in options:
        return tol.ns_rows(steps)
    named = NS_ROWS[options["rows"]]
    if options.get("row_cut") == "truncate":
        return named[:steps]
    return tuple(named[min(k, len(named) - 1)] for k in range(steps))


@pytest.mark.parametrize("base,option,steps,norm,observable", [c[1:] for c in ZEROPOWER_CASES],
                         ids=[c[0] for c in ZEROPOWER_CASES])
def test_zeropower_option_matches_reference(rng, base, option, steps, norm, observable):
    """The NS policy with the bounds of the rows in use (tolerances.ns_bounds; our fused kernel's acted bound
    u·rms_fused(rows), loose for Polar Express's steep rows), and on these Gaussian matrices the whole-matrix
    error within MUON_UPDATE_RTOL (measured: <= 0.026 for every case, 20 seeds). Observable: the impl at the
    option's default misses the reference by more than that (measured >= 0.11; safety 1.01: 0.02)."""
    options = {**base, **option}
    g = rng.standard_normal((3, 16, 48))
    g *= norm / np.linalg.norm(g, axis=(-2, -1), keepdims=True)
    x = torch.tensor(g, dtype=torch.float32)
    rows = _rows(options, steps)
    bounds, fused = tol.ns_bounds(rows), tol.NS_UNIT_ROUNDOFF * tol.ns_factors(rows).rms_fused
    eps = options.get("eps", 1e-7)
    expected = ref_zeropower(g, steps, **options)
    e = ns_subspace_errors(zeropower(x, steps, **options), expected, g, eps=eps)
    assert e["n_directions"] == 16 and e["direction"] <= bounds.direction and e["acted"] <= fused, e
    assert e["whole"] <= tol.MUON_UPDATE_RTOL, e
    d = rel_fro_error(zeropower(x, steps, **base), expected)
    assert (d > tol.MUON_UPDATE_RTOL) == observable, d


@pytest.mark.parametrize("name", PROFILES)
def test_zeropower_takes_each_profiles_s62_options(rng, name):
    options = spec_options.clause_options("S6.2", spec_options.resolve(name))
    g = rng.standard_normal((2, 24, 40))
    y = zeropower(torch.tensor(g, dtype=torch.float32), 5, **options)
    assert rel_fro_error(y, ref_zeropower(g, 5, **options)) <= tol.MUON_UPDATE_RTOL


def test_zeropower_default_options_take_the_seed_path(monkeypatch, rng):
    """Passing the defaults explicitly is the seed's call, bit for bit (and the compiled path when chosen)."""
    from optconform.impl import newton_schulz as ns

    x = torch.tensor(rng.standard_normal((16, 24)), dtype=torch.float32)
    defaults = spec_options.clause_options("S6.2", spec_options.resolve())
    assert torch.equal(zeropower(x, 5, **defaults), zeropower(x, 5))
    called = []
    monkeypatch.setenv(ns.COMPILE_ENV_VAR, "always")
    monkeypatch.setattr(ns, "zeropower_compiled", lambda *a: called.append(a) or ns.zeropower_eager(*a))
    zeropower(x, 5, **defaults)
    zeropower(x, 5, rows="polar_express")  # a variant runs eager
    assert len(called) == 1


# --- AdamW ---------------------------------------------------------------------------------------------------


@pytest.fixture(params=["fused", "foreach"])
def adamw_kernel(request, monkeypatch) -> str:
    monkeypatch.setenv("OPTCONFORM_ADAMW_KERNEL", request.param)
    return request.param


ADAMW_SHAPES = [(6, 5), (7,), (3, 2, 4)]
ADAMW_LRS = [1e-2, 8e-3, 6e-3, 4e-3]


def _adamw_params(theta0):
    ps = [torch.nn.Parameter(torch.tensor(t, dtype=torch.float32)) for t in theta0]
    for p, (lm, wm) in zip(ps, [(0.5, 2.0), (2.0, 0.0), (1.0, 1.5)], strict=True):
        p.lr_mul, p.wd_mul = lm, wm
    return ps


def _adamw_run(make, theta0, grads):
    ps = _adamw_params(theta0)
    opt = make(ps)
    traj = []
    for k, gs in enumerate(grads):
        opt.param_groups[0]["lr"] = ADAMW_LRS[k]
        for p, g in zip(ps, gs, strict=True):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        traj.append([to_float64(p) for p in ps])
    return traj


def _adamw_ref(options, theta0, grads, **hyper):
    ps = _adamw_params(theta0)
    theta, states, traj = [t.copy() for t in theta0], [{} for _ in theta0], []
    for k, gs in enumerate(grads):
        for i, g in enumerate(gs):
            theta[i], states[i] = ref_adamw(theta[i], g, states[i], lr=ADAMW_LRS[k], lr_mul=ps[i].lr_mul,
                                            wd_mul=ps[i].wd_mul, **hyper, **options)
        traj.append([t.copy() for t in theta])
    return traj


ADAMW_CASES = [  # (id, the option, gradient scale): the scale puts √v̂ next to what the option changes
    ("eps_placement=before", {"eps_placement": "before"}, 1e-10),  # √v̂ ~ ε = 1e-10
    ("eps_root=1e-8", {"eps_root": 1e-8}, 1e-4),  # v̂ ~ eps_root
    ("param_muls=ignore", {"param_muls": "ignore"}, 1.0),
]


def test_every_adamw_option_is_tested():
    assert {k for _, o, _ in ADAMW_CASES for k in o} == set(spec_options.OPTION_CLAUSES["S8.2"])


@pytest.mark.parametrize("option,scale", [c[1:] for c in ADAMW_CASES], ids=[c[0] for c in ADAMW_CASES])
def test_adamw_option_matches_reference(rng, adamw_kernel, option, scale):
    theta0 = [_f32(rng.standard_normal(s)) for s in ADAMW_SHAPES]
    grads = [[_f32(rng.standard_normal(s) * scale) for s in ADAMW_SHAPES] for _ in ADAMW_LRS]
    hyper = dict(weight_decay=0.1)
    traj = _adamw_run(lambda ps: AdamW(ps, **hyper, **option), theta0, grads)
    ref = _adamw_ref(option, theta0, grads, **hyper)
    default = _adamw_run(lambda ps: AdamW(ps, **hyper), theta0, grads)
    for k in range(len(ADAMW_LRS)):
        bound = tol.f32_trajectory_rtol(k + 1)
        for i in range(len(ADAMW_SHAPES)):
            assert rel_fro_error(traj[k][i], ref[k][i]) <= bound, (k, i)
    last = tol.f32_trajectory_rtol(len(ADAMW_LRS))
    assert max(rel_fro_error(a, b) for a, b in zip(default[-1], ref[-1], strict=True)) > last


@pytest.mark.parametrize("name", PROFILES)
def test_adamw_from_profile_matches_reference(rng, adamw_kernel, name):
    options = spec_options.clause_options("S8.2", spec_options.resolve(name))
    theta0 = [_f32(rng.standard_normal(s)) for s in ADAMW_SHAPES]
    grads = [[_f32(rng.standard_normal(s) * 10.0 ** rng.uniform(-10, 0)) for s in ADAMW_SHAPES] for _ in range(3)]
    traj = _adamw_run(lambda ps: AdamW.from_profile(name, ps, weight_decay=0.1, eps=1e-10), theta0, grads)
    ref = _adamw_ref(options, theta0, grads, weight_decay=0.1, eps=1e-10)
    for k in range(3):
        for a, b in zip(traj[k], ref[k], strict=True):
            assert rel_fro_error(a, b) <= tol.f32_trajectory_rtol(k + 1)


# --- DistMuon / DistAdamW: one profile each on 2 gloo ranks ------------------------------------------------------
#
# Dyadic gradients (integers / 1024, times a power of two) average exactly in float32, so the distributed result
# must equal the single-process optimizer on the mean gradient bit for bit (tests/impl/test_distributed.py's
# argument); that one is then judged against the reference dist_muon / dist_adamw with the bounds above.

DIST_WORLD = 2
DIST_MUON_SHAPES = [(16, 48), (48, 16), (16, 48), (24, 24), (48, 16)]  # rank 1 owns the second of a shape
SPAWN_TIMEOUT_S = 240


def _dist_inputs(shapes, steps, scale=1.0):
    """θ0 and rank_grads[k][r][i]: dyadic, the same in the parent and in every rank."""
    rng = np.random.default_rng(20260)
    theta0 = [_f32(rng.standard_normal(s)) for s in shapes]
    grads = [[[rng.integers(-4096, 4096, size=s) / 1024 * scale for s in shapes] for _ in range(DIST_WORLD)]
             for _ in range(steps)]
    return theta0, grads


def _dist_muon_rank(rank, world, name):
    theta0, grads = _dist_inputs(DIST_MUON_SHAPES, 3)
    params = [torch.nn.Parameter(torch.tensor(t, dtype=torch.float32)) for t in theta0]
    opt = DistMuon.from_profile(name, params)
    traj = []
    for k in range(3):
        for group in opt.param_groups:
            group["lr"], group["momentum"] = LRS[k], MOMENTA[k]
        for p, g in zip(params, grads[k][rank], strict=True):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        traj.append([to_float64(p) for p in params])
    return traj, {i: sorted(opt.state[p]) for i, p in enumerate(params) if opt.state.get(p)}


@pytest.mark.distributed
def test_dist_muon_from_profile_nanochat_2026():
    name = "nanochat-2026"
    results = run_distributed(_dist_muon_rank, DIST_WORLD, args=(name,), timeout_s=SPAWN_TIMEOUT_S)
    theta0, grads = _dist_inputs(DIST_MUON_SHAPES, 3)
    mean = [[(grads[k][0][i] + grads[k][1][i]) / 2 for i in range(len(theta0))] for k in range(3)]
    # the single-process Muon, one group per parameter (DistMuon's owners step one matrix at a time)
    single = _impl_muon(lambda ps: Muon.from_profile(name, [{"params": [p]} for p in ps]), theta0, mean,
                        probe=True)
    for traj, _ in results:
        assert all(np.array_equal(a, b) for step, ss in zip(traj, single[0], strict=True)
                   for a, b in zip(step, ss, strict=True))
    assert results[0][1] == {0: ["momentum_buffer", "second_momentum_buffer"],
                             1: ["momentum_buffer", "second_momentum_buffer"],
                             3: ["momentum_buffer", "second_momentum_buffer"]}  # S9.2 owners of rank 0
    assert set(results[1][1]) == {2, 4}
    options = spec_options.clause_options("S9.4", spec_options.resolve(name))
    ref = _ref_muon(options, theta0, mean, 5)
    params, states = [t.copy() for t in theta0], [{}, {}]
    for k in range(3):
        params, states = dist_muon(params, grads[k], states, lr=LRS[k], momentum=MOMENTA[k], ns_steps=5, **options)
        assert all(rel_fro_error(a, b) <= 1e-12 for a, b in zip(params, ref[0][k], strict=True))
    err = _muon_bounds(options, theta0, single, ref)
    assert (err[..., 0] <= err[..., 1]).all(), (err[..., 0] / err[..., 1]).round(3)


DIST_ADAMW_SCALE = 2.0**-33  # |g| ~ 1e-10 ~ ε: where eps_placement shows


def _dist_adamw_rank(rank, world, name):
    theta0, grads = _dist_inputs(ADAMW_SHAPES, 3, DIST_ADAMW_SCALE)
    ps = _adamw_params(theta0)
    opt = DistAdamW.from_profile(name, ps, weight_decay=0.1)
    traj = []
    for k in range(3):
        opt.param_groups[0]["lr"] = ADAMW_LRS[k]
        for p, g in zip(ps, grads[k][rank], strict=True):
            p.grad = torch.tensor(g, dtype=torch.float32)
        opt.step()
        traj.append([to_float64(p) for p in ps])
    return traj


@pytest.mark.distributed
def test_dist_adamw_from_profile_moonlight():
    name = "moonlight"
    results = run_distributed(_dist_adamw_rank, DIST_WORLD, args=(name,), timeout_s=SPAWN_TIMEOUT_S)
    theta0, grads = _dist_inputs(ADAMW_SHAPES, 3, DIST_ADAMW_SCALE)
    mean = [[(grads[k][0][i] + grads[k][1][i]) / 2 for i in range(len(theta0))] for k in range(3)]
    single = _adamw_run(lambda ps: AdamW.from_profile(name, ps, weight_decay=0.1, fused=False), theta0, mean)
    for traj in results:
        assert all(np.array_equal(a, b) for step, ss in zip(traj, single, strict=True)
                   for a, b in zip(step, ss, strict=True))
    options = spec_options.clause_options("S9.5", spec_options.resolve(name))
    assert options == {"eps_placement": "before", "eps_root": 0.0, "param_muls": "read"}
    ps = _adamw_params(theta0)
    params, states = [t.copy() for t in theta0], [{}, {}]
    for k in range(3):
        params, states = dist_adamw(params, grads[k], states, lr=ADAMW_LRS[k], weight_decay=0.1,
                                    lr_muls=[p.lr_mul for p in ps], wd_muls=[p.wd_mul for p in ps], **options)
        for a, b in zip(results[0][k], params, strict=True):
            assert rel_fro_error(a, b) <= tol.f32_trajectory_rtol(k + 1)
    seed = _adamw_run(lambda ps: AdamW(ps, weight_decay=0.1, fused=False), theta0, mean)  # the option shows
    assert max(rel_fro_error(a, b) for a, b in zip(seed[-1], params, strict=True)) > tol.f32_trajectory_rtol(3)


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,message", [
    ({"lr_scale": "x"}, "lr_scale must be one of 'original', 'match_rms_adamw'; got 'x'"),
    ({"rows": "newton"}, "rows must be None or one of 'polar_express'; got 'newton'"),
    ({"row_cut": "stop"}, "row_cut must be one of 'repeat_last', 'truncate'"),
    ({"normalisation": "spectral"}, "normalisation must be one of 'plus_eps', 'clamp'"),
    ({"safety": 0.0}, "safety must"),
    ({"ns_eps": -1e-7}, "ns_eps must"),
    ({"momentum_form": "heavy"}, "momentum_form must be one of 'ema', 'sum', 'bias_corrected'"),
    ({"muoneq": 1}, "muoneq must"),
    ({"muon_plus": "yes"}, "muon_plus must"),
    ({"normuon_beta2": 1.0}, "normuon_beta2 must"),
    ({"weight_decay": -0.1}, "weight_decay must"),
    ({"weight_decay_lr": "scaled"}, "weight_decay_lr must be one of 'base', 'adjusted'"),
    ({"weight_decay_mode": "coupled"}, "weight_decay_mode must be one of 'decoupled', 'cautious'"),
])
def test_bad_muon_option_raises_naming_it(kw, message):
    p = torch.nn.Parameter(torch.ones(4, 4))
    with pytest.raises(ValueError) as info:
        Muon([p], **kw)
    assert str(info.value).startswith(message), str(info.value)
    with pytest.raises(ValueError, match="^" + next(iter(kw)) + " must"):
        Muon([{"params": [p], **kw}])
    with pytest.raises(ValueError, match="^" + next(iter(kw)) + " must"):
        Muon.from_profile("moonlight", [p], **kw)
    opt = Muon([p])
    opt.param_groups[0].update(kw)  # a scheduler writing a bad value: caught at the next step, nothing written
    p.grad = torch.ones(4, 4)
    with pytest.raises(ValueError, match="^" + next(iter(kw)) + " must"):
        opt.step()
    assert torch.equal(p, torch.ones(4, 4)) and not opt.state


@pytest.mark.parametrize("kw,message", [
    ({"eps_placement": "inside"}, "eps_placement must be one of 'after', 'before'; got 'inside'"),
    ({"eps_root": -1.0}, "eps_root must"),
    ({"param_muls": "maybe"}, "param_muls must be one of 'read', 'ignore'; got 'maybe'"),
])
def test_bad_adamw_option_raises_naming_it(kw, message):
    p = torch.nn.Parameter(torch.ones(4))
    for make in (lambda: AdamW([p], **kw), lambda: AdamW.from_profile("optax", [p], **kw)):
        with pytest.raises(ValueError) as info:
            make()
        assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("kw,name", [({"rows": "x"}, "rows"), ({"row_cut": "x"}, "row_cut"),
                                     ({"normalisation": "x"}, "normalisation"), ({"safety": -1.0}, "safety"),
                                     ({"eps": 0.0}, "eps")])
def test_bad_zeropower_option_raises_naming_it(kw, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        zeropower(torch.ones(4, 6), 5, **kw)


@pytest.mark.parametrize("cls", [Muon, AdamW])
def test_unknown_profile_lists_the_profiles(cls):
    with pytest.raises(ValueError, match="^profile must be one of " + ", ".join(PROFILES)):
        cls.from_profile("nanochat-2024", [torch.nn.Parameter(torch.ones(4, 4))])


def test_from_profile_overrides_options_and_constructor_keywords():
    p = torch.nn.Parameter(torch.ones(4, 4))
    opt = Muon.from_profile("nanochat-2026", [p], lr=0.05, weight_decay=0.0, muoneq=False)
    group = opt.param_groups[0]
    assert group["lr"] == 0.05 and group["weight_decay"] == 0.0 and group["muoneq"] is False
    assert group["rows"] == "polar_express" and group["weight_decay_mode"] == "cautious"
    adam = AdamW.from_profile("moonlight", [p], weight_decay=0.1)  # AdamW's weight_decay is a protocol keyword
    assert adam.param_groups[0]["weight_decay"] == 0.1 and adam.param_groups[0]["eps_placement"] == "before"


def test_capability_declaration_matches_what_takes_options():
    """The impl declares exactly the protocol names of the clauses that take options (spec.options.OPTION_CLAUSES),
    and each of them accepts every option of its clause as a keyword (S6.2's under its own names)."""
    import inspect

    import optconform.impl as impl
    from optconform.spec import options as O
    from optconform.spec.clauses import CLAUSES

    takes = {c.protocol_name: c.id for c in CLAUSES if c.protocol and c.id in O.OPTION_CLAUSES}
    assert sorted(impl.optconform_capabilities["options"]) == sorted(takes)
    for name, cid in takes.items():
        accepted = inspect.signature(getattr(impl, name)).parameters
        missing = [k for k in O.clause_options(cid, O.option_defaults()) if k not in accepted]
        assert not missing, f"{name} ({cid}) does not take {missing}"


# --- CUDA (run on a lent GPU) ----------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_cuda_variants_run_eager_and_match_reference(rng):
    """On CUDA the default zeropower is compiled; a variant call runs the eager kernel and matches the reference,
    and Muon.from_profile("nanochat-2026") on the device matches the reference (the bounds above)."""
    options = spec_options.clause_options("S6.2", spec_options.resolve("nanochat-2026"))
    g = rng.standard_normal((3, 16, 48))
    y = zeropower(torch.tensor(g, dtype=torch.float32, device="cuda"), 5, **options)
    assert y.is_cuda and rel_fro_error(y, ref_zeropower(g, 5, **options)) <= tol.MUON_UPDATE_RTOL
    options = spec_options.clause_options("S7.2", spec_options.resolve("nanochat-2026"))
    theta0, grads = _inputs(rng, steps=3)
    impl = _impl_muon(lambda ps: Muon.from_profile("nanochat-2026", ps), theta0, grads, probe=True, device="cuda")
    err = _muon_bounds(options, theta0, impl, _ref_muon(options, theta0, grads, 5))
    assert (err[..., 0] <= err[..., 1]).all(), (err[..., 0] / err[..., 1]).round(3)
