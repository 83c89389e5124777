"""Golden cases for S2 (gradient descent), S3 (momentum), S4 (schedules) and S5 (clipping)."""

from __future__ import annotations

import numpy as np

from optconform.golden._case import (
    Case,
    conditioned,
    gaussian,
    replay_single,
    run_trajectory,
    seeded,
    spd,
)
from optconform.reference import clipping, descent, momentum, schedules

#: S2.6 reasons as stored in the ``reason`` arrays (index = code).
REASON_CODES = [None, "max_iterations", "grad_norm", "loss_change"]
T = 24  # steps of every trajectory in this module (>= 20)


def _reason_code(reason: str | None) -> int:
    return REASON_CODES.index(reason)


# ------------------------------------------------------------------------------------------------ S2


def _regression(rng: np.random.Generator, n: int, d: int, ill: float | None = None):
    x = conditioned(rng, n, d, ill) * np.sqrt(n) if ill else gaussian(rng, n, d)
    w_true = gaussian(rng, d)
    y = x @ w_true + 0.7 + 0.1 * gaussian(rng, n)
    w0 = 0.1 * gaussian(rng, d)
    return x, y, w0, 0.05


def _gd_cases() -> list[Case]:
    cases = []
    cid = "descent.gd_step.call_mixed_scales"
    seed, rng = seeded(cid)
    theta = gaussian(rng, 8, 12)
    grad = gaussian(rng, 8, 12)
    grad[3] = 0.0  # a zero row among non-zero ones
    grad[5] *= 1e30
    grad[6] *= 1e-8
    out = descent.gd_step(theta, grad, lr=0.05)
    cases.append(Case(cid, "S2.1", "descent.gd_step", "zero row, rows scaled 1e30 and 1e-8",
                      "one step theta - lr*grad", {"lr": 0.05}, {"theta": theta, "grad": grad},
                      {"theta": out}, seed=seed))
    cid = "descent.gd_step.trajectory_scheduled_lr"
    seed, rng = seeded(cid)
    theta0 = gaussian(rng, 6, 8)
    grads = gaussian(rng, T, 6, 8)
    grads[7] = 0.0  # a zero-gradient step among non-zero ones
    lr = np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmup_ratio=0.2, warmdown_ratio=0.3)
                   for t in range(T)]) * 0.1
    lr[11] = 0.0  # an lr = 0 step
    params, _ = run_trajectory(lambda p, g, s, lr: (descent.gd_step(p, g, lr=lr), {}), theta0, grads, {},
                               {"lr": lr})
    cases.append(Case(cid, "S2.1", "descent.gd_step", "warmup/warmdown lr, an lr=0 step, a zero-grad step",
                      f"{T} steps; param[t] = param after step t", {}, {"param0": theta0, "grads": grads,
                                                                        "lr": lr},
                      {"param": params}, seed=seed, steps=T, layout="trajectory",
                      extra={"replay": replay_single(["lr"], [])}))
    return cases


def _regression_cases() -> list[Case]:
    cases = []
    for tag, n, d, ill in (("gaussian_n32_d6", 32, 6, None), ("ill_conditioned_cond1e6", 40, 5, 1e6),
                           ("single_sample_n1_d1", 1, 1, None)):
        cid = f"descent.linear_regression_grad.{tag}"
        seed, rng = seeded(cid)
        x, y, w, _ = _regression(rng, n, d, ill)
        b = 0.3
        gw, gb = descent.linear_regression_grad(w, b, x, y)
        loss = descent.linear_regression_loss(w, b, x, y)
        cases.append(Case(cid, "S2.2", "descent.linear_regression_grad", tag,
                          "outputs gw, gb from linear_regression_grad and loss from linear_regression_loss",
                          {"b": b}, {"w": w, "x": x, "y": y}, {"gw": gw, "gb": np.float64(gb),
                                                               "loss": np.float64(loss)},
                          seed=seed, tolerance_class="linalg"))
    return cases


def _epoch_cases() -> list[Case]:
    cases = []
    # S2.3 batch_gd: per-epoch params from num_epochs=1 calls chained; losses from one call.
    for tag, num_epochs, ill in (("epochs25", 25, None), ("epochs25_ill_cond1e3", 25, 1e3), ("epochs0", 0, None)):
        cid = f"descent.batch_gd.{tag}"
        seed, rng = seeded(cid)
        x, y, w0, lr = _regression(rng, 40, 5, ill)
        b0 = -0.2
        w_end, b_end, losses = descent.batch_gd(w0, b0, x, y, lr=lr, num_epochs=num_epochs)
        ws, bs = [], []
        w, b = w0, b0
        for _ in range(num_epochs):
            w, b, _ = descent.batch_gd(w, b, x, y, lr=lr, num_epochs=1)
            ws.append(w)
            bs.append(b)
        outputs = {"w_final": w_end, "b_final": np.float64(b_end), "losses": losses}
        if num_epochs:
            outputs.update(w=np.stack(ws), b=np.array(bs))
        cases.append(Case(cid, "S2.3", "descent.batch_gd", tag,
                          "w[k], b[k] = after epoch k; losses[k] = loss before epoch k's update",
                          {"lr": lr, "num_epochs": num_epochs, "b": b0}, {"w": w0, "x": x, "y": y}, outputs,
                          seed=seed, steps=num_epochs, layout="trajectory" if num_epochs else "call",
                          tolerance_class="linalg"))
    # S2.4 sgd_epoch: 20 epochs with stored permutations; one call with repeats.
    cid = "descent.sgd_epoch.epochs20_permutations"
    seed, rng = seeded(cid)
    x, y, w0, _ = _regression(rng, 12, 4)
    orders = np.stack([rng.permutation(12) for _ in range(20)])
    ws, bs, w, b = [], [], w0, 0.0
    for e in range(20):
        w, b = descent.sgd_epoch(w, b, x, y, lr=0.02, order=orders[e])
        ws.append(w)
        bs.append(b)
    cases.append(Case(cid, "S2.4", "descent.sgd_epoch", "20 shuffled epochs",
                      "order[e] = sample order of epoch e; w[e], b[e] after epoch e (start b = 0)",
                      {"lr": 0.02, "b": 0.0}, {"w": w0, "x": x, "y": y, "order": orders},
                      {"w": np.stack(ws), "b": np.array(bs)}, seed=seed, steps=20, layout="trajectory",
                      tolerance_class="linalg"))
    cid = "descent.sgd_epoch.order_with_repeats"
    seed, rng = seeded(cid)
    x, y, w0, _ = _regression(rng, 10, 3)
    order = np.array([3, 3, 0, 9, 3, 1, 1, 7, 2, 8, 8, 5, 0])
    w, b = descent.sgd_epoch(w0, 0.5, x, y, lr=0.03, order=order)
    cases.append(Case(cid, "S2.4", "descent.sgd_epoch", "repeated indices, len(order) != n",
                      "one epoch over order", {"lr": 0.03, "b": 0.5}, {"w": w0, "x": x, "y": y, "order": order},
                      {"w": w, "b": np.float64(b)}, seed=seed, tolerance_class="linalg"))
    # S2.5 minibatch_epoch
    for tag, bsz, drop in (("b8_short_last", 8, False), ("b8_drop_last", 8, True), ("b1", 1, False),
                           ("b40_larger_than_n", 40, False), ("b40_drop_last_no_step", 40, True)):
        cid = f"descent.minibatch_epoch.{tag}"
        seed, rng = seeded(cid)
        x, y, w0, _ = _regression(rng, 30, 4)
        order = rng.permutation(30)
        w, b = descent.minibatch_epoch(w0, 0.1, x, y, lr=0.05, order=order, batch_size=bsz, drop_last=drop)
        cases.append(Case(cid, "S2.5", "descent.minibatch_epoch", tag, "one epoch, n = 30",
                          {"lr": 0.05, "b": 0.1, "batch_size": bsz, "drop_last": drop},
                          {"w": w0, "x": x, "y": y, "order": order}, {"w": w, "b": np.float64(b)}, seed=seed,
                          tolerance_class="linalg"))
    cid = "descent.minibatch_epoch.epochs20_b8"
    seed, rng = seeded(cid)
    x, y, w0, _ = _regression(rng, 30, 4)
    orders = np.stack([rng.permutation(30) for _ in range(20)])
    ws, bs, w, b = [], [], w0, 0.0
    for e in range(20):
        w, b = descent.minibatch_epoch(w, b, x, y, lr=0.05, order=orders[e], batch_size=8)
        ws.append(w)
        bs.append(b)
    cases.append(Case(cid, "S2.5", "descent.minibatch_epoch", "20 epochs, short last batch (6 of 8)",
                      "w[e], b[e] after epoch e (start b = 0)",
                      {"lr": 0.05, "b": 0.0, "batch_size": 8, "drop_last": False},
                      {"w": w0, "x": x, "y": y, "order": orders}, {"w": np.stack(ws), "b": np.array(bs)},
                      seed=seed, steps=20, layout="trajectory", tolerance_class="linalg"))
    return cases


def _stopping_cases() -> list[Case]:
    cases = []
    runs = (("grad_norm", dict(lr=0.1, max_iterations=1000, grad_tol=1e-6)),
            ("loss_change", dict(lr=0.1, max_iterations=1000, loss_tol=1e-4)),
            ("max_iterations", dict(lr=0.1, max_iterations=15, grad_tol=1e-12, loss_tol=1e-15)),
            ("max_iterations_0", dict(lr=0.1, max_iterations=0, grad_tol=1e-6)))
    for tag, kw in runs:
        cid = f"descent.gradient_descent.quadratic_{tag}"
        seed, rng = seeded(cid)
        a = spd(rng, 6, 0.5, 5.0)
        bvec = gaussian(rng, 6)
        theta0 = gaussian(rng, 6)

        def loss_and_grad(th, a=a, bvec=bvec):
            return 0.5 * th @ a @ th - bvec @ th, a @ th - bvec

        theta, iters, reason = descent.gradient_descent(loss_and_grad, theta0, **kw)
        cases.append(Case(cid, "S2.6", "descent.gradient_descent", f"stops by {tag}",
                          "loss_and_grad(θ) = (½θᵀAθ − bᵀθ, Aθ − b); reason code per extra.reason_codes",
                          dict(kw), {"A": a, "b": bvec, "theta0": theta0},
                          {"theta": theta, "iterations": np.int64(iters), "reason": np.int64(_reason_code(reason))},
                          seed=seed, tolerance_class="linalg", extra={"reason_codes": REASON_CODES}))
    # converged() table: strict comparisons at equality, the check order, missing optional arguments.
    rows = [  # iteration, max_it, grad_norm, grad_tol, loss, prev_loss, loss_tol
        (0, 10, None, None, None, None, None),
        (10, 10, None, None, None, None, None),
        (11, 10, None, None, None, None, None),
        (3, 10, 0.5, 0.5, None, None, None),         # grad_norm == tol: not converged (strict <)
        (3, 10, 0.25, 0.5, None, None, None),
        (3, 10, 0.0, 1e-300, None, None, None),
        (3, 10, None, None, 1.5, 1.25, 0.25),        # |Δloss| == tol exactly: not converged
        (3, 10, None, None, 1.5, 1.375, 0.25),
        (3, 10, None, None, 1.5, None, 0.25),        # no prev_loss: the loss rule cannot fire
        (10, 10, 0.1, 0.5, 1.0, 1.0, 0.25),          # all hold: grad_norm wins
        (10, 10, 0.9, 0.5, 1.0, 1.0, 0.25),          # loss_change beats max_iterations
        (10, 10, 0.9, 0.5, 1.0, 2.0, 0.25),
        (0, 0, 2.0, 1.0, 3.0, None, 1.0),
        (5, 10, 1e-12, None, -1.0, -1.0 + 1e-9, 1e-8),
    ]
    cols = list(zip(*rows, strict=True))
    ins: dict[str, np.ndarray] = {"iteration": np.array(cols[0]), "max_iterations": np.array(cols[1])}
    for j, name in enumerate(("grad_norm", "grad_tol", "loss", "prev_loss", "loss_tol"), start=2):
        ins[name] = np.array([0.0 if v is None else v for v in cols[j]], dtype=np.float64)
        ins[f"{name}_given"] = np.array([v is not None for v in cols[j]])
    reasons = []
    for r in rows:
        kw = {k: v for k, v in zip(("grad_norm", "grad_tol", "loss", "prev_loss", "loss_tol"), r[2:],
                                   strict=True) if v is not None}
        reasons.append(_reason_code(descent.converged(iteration=r[0], max_iterations=r[1], **kw)))
    cases.append(Case("descent.converged.table", "S2.6", "descent.converged", "strict-< boundaries, rule order",
                      "row i: arguments from the input arrays (X_given false -> argument omitted/None)",
                      {}, ins, {"reason": np.array(reasons)}, layout="table",
                      extra={"reason_codes": REASON_CODES}))
    return cases


def descent_cases() -> list[Case]:
    return _gd_cases() + _regression_cases() + _epoch_cases() + _stopping_cases()


# ------------------------------------------------------------------------------------------------ S3


def _quadratic(rng: np.random.Generator, d: int = 10):
    return spd(rng, d, 0.1, 10.0), gaussian(rng, d)


def _quad_traj(step, theta0, v0, a, bvec, steps, **kw):
    th, v, ths, vs, pts = theta0, v0, [], [], []

    def grad_fn(x):
        pts.append(x.copy())
        return a @ x - bvec

    for _ in range(steps):
        th, v = step(th, v, grad_fn, **kw)
        ths.append(th)
        vs.append(v)
    return np.stack(ths), np.stack(vs), np.stack(pts)


def momentum_cases() -> list[Case]:
    cases = []
    # S3.1 heavy ball, gradients given per step
    for tag, beta, lr_zero in (("beta0.9", 0.9, False), ("beta0_plain_gd", 0.0, False),
                               ("beta0.9_lr0_step", 0.9, True)):
        cid = f"momentum.heavy_ball.{tag}"
        seed, rng = seeded(cid)
        theta0 = gaussian(rng, 6, 8)
        grads = gaussian(rng, T, 6, 8) + 0.5
        grads[4] = 0.0
        lr = np.full(T, 0.01)
        if lr_zero:
            lr[9:12] = 0.0
        v0 = np.zeros_like(theta0)
        th, v, ths, vs = theta0, v0, [], []
        for t in range(T):
            th, v = momentum.heavy_ball(th, v, grads[t], lr=float(lr[t]), beta=beta)
            ths.append(th)
            vs.append(v)
        cases.append(Case(cid, "S3.1", "momentum.heavy_ball", tag, "v starts at zeros; a zero-grad step at t=4",
                          {"beta": beta}, {"param0": theta0, "v0": v0, "grads": grads, "lr": lr},
                          {"param": np.stack(ths), "v": np.stack(vs)}, seed=seed, steps=T, layout="trajectory"))
    # S3.2 / S3.3 on a quadratic: grad_fn(θ) = Aθ − b
    for clause, fn, name in (("S3.2", momentum.nesterov_lookahead, "nesterov_lookahead"),
                             ("S3.3", momentum.nesterov_torch, "nesterov_torch")):
        cid = f"momentum.{name}.quadratic_d10_cond100"
        seed, rng = seeded(cid)
        a, bvec = _quadratic(rng)
        theta0, v0 = gaussian(rng, 10), 0.3 * gaussian(rng, 10)
        ths, vs, pts = _quad_traj(fn, theta0, v0, a, bvec, T, lr=0.05, beta=0.9)
        cases.append(Case(cid, clause, f"momentum.{name}", "SPD quadratic, eigenvalues 0.1..10",
                          "grad_fn(x) = A x − b; eval_points[t] = where the gradient was taken at step t",
                          {"lr": 0.05, "beta": 0.9}, {"A": a, "b": bvec, "param0": theta0, "v0": v0},
                          {"param": ths, "v": vs, "eval_points": pts}, seed=seed, steps=T, layout="trajectory",
                          tolerance_class="linalg"))
    # S3.4 change of variables, both directions, and the trajectory correspondence
    cid = "momentum.lookahead_to_torch.correspondence"
    seed, rng = seeded(cid)
    a, bvec = _quadratic(rng)
    theta0, v0 = gaussian(rng, 10), gaussian(rng, 10)
    phi0, b0 = momentum.lookahead_to_torch(theta0, v0, lr=0.05, beta=0.9)
    th_look, v_look, _ = _quad_traj(momentum.nesterov_lookahead, theta0, v0, a, bvec, T, lr=0.05, beta=0.9)
    phi, bb, _ = _quad_traj(momentum.nesterov_torch, phi0, b0, a, bvec, T, lr=0.05, beta=0.9)
    mapped = np.stack([momentum.lookahead_to_torch(th_look[t], v_look[t], lr=0.05, beta=0.9)[0] for t in range(T)])
    cases.append(Case(cid, "S3.4", "momentum.lookahead_to_torch", "map then run both forms",
                      "phi0, b0 = lookahead_to_torch(theta0, v0); theta/v: S3.2 run; phi/b_torch: S3.3 run from "
                      "(phi0, b0); phi_from_theta[t] = lookahead_to_torch(theta[t], v[t])[0] ≈ phi[t]",
                      {"lr": 0.05, "beta": 0.9}, {"A": a, "b": bvec, "theta0": theta0, "v0": v0},
                      {"phi0": phi0, "b0": b0, "theta": th_look, "v": v_look, "phi": phi, "b_torch": bb,
                       "phi_from_theta": mapped}, seed=seed, steps=T, layout="trajectory",
                      tolerance_class="linalg"))
    cid = "momentum.torch_to_lookahead.call"
    seed, rng = seeded(cid)
    phi0, b0 = gaussian(rng, 4, 5), gaussian(rng, 4, 5)
    theta, v = momentum.torch_to_lookahead(phi0, b0, lr=0.3, beta=0.75)
    cases.append(Case(cid, "S3.4", "momentum.torch_to_lookahead", "inverse map", "θ = φ + ηβb, v = b",
                      {"lr": 0.3, "beta": 0.75}, {"phi": phi0, "b": b0}, {"theta": theta, "v": v}, seed=seed))
    # S3.5 SGD optimizer trajectories
    sgd_runs = (("momentum0", 0.0, False), ("momentum0.9", 0.9, False), ("momentum0.9_nesterov", 0.9, True),
                ("momentum0.5_nesterov_vector", 0.5, True))
    for tag, mu, nest in sgd_runs:
        cid = f"momentum.sgd.{tag}"
        seed, rng = seeded(cid)
        shape = (16,) if "vector" in tag else (6, 8)
        theta0 = gaussian(rng, *shape)
        grads = gaussian(rng, T, *shape)
        grads[0, 1] = 0.0  # a zero row (or entry) in the very first gradient (the buffer is initialised to g)
        grads[6] = 0.0
        lr = 0.1 * np.array([schedules.lr_multiplier(t, num_iterations=T - 1, warmdown_ratio=0.5) for t in range(T)])
        params, states = run_trajectory(momentum.sgd, theta0, grads, {"momentum": mu, "nesterov": nest},
                                        {"lr": lr})
        keys = [k.split(".", 1)[1] for k in states]
        cases.append(Case(cid, "S3.5", "momentum.sgd", tag,
                          "torch.optim.SGD form; lr decays linearly to 0 over the second half (last lr = 0)",
                          {"momentum": mu, "nesterov": nest}, {"param0": theta0, "grads": grads, "lr": lr},
                          {"param": params, **states}, seed=seed, steps=T, layout="trajectory",
                          extra={"replay": replay_single(["lr"], keys)}))
    return cases


# ------------------------------------------------------------------------------------------------ S4


def _table(cid, clause, fn_name, regime, arg_name, args, hyper, fn) -> Case:
    vals = np.array([fn(int(a), **hyper) for a in args], dtype=np.float64)
    return Case(cid, clause, f"schedules.{fn_name}", regime, f"value[i] = {fn_name}({arg_name}[i], **hyper)",
                hyper, {arg_name: np.asarray(args, dtype=np.int64)}, {"value": vals}, layout="table")


def schedule_cases() -> list[Case]:
    cases = [_table("schedules.constant_lr.table", "S4.1", "constant_lr", "steps 0 .. 2**53", "step",
                    [0, 1, 2, 99, 10**6, 2**53], {"lr": 0.02}, schedules.constant_lr)]
    for tag, hyper in (("rate0.5_every10", dict(initial_lr=0.1, decay_rate=0.5, decay_steps=10)),
                       ("rate1_constant", dict(initial_lr=0.1, decay_rate=1.0, decay_steps=3)),
                       ("every1", dict(initial_lr=1.0, decay_rate=0.9, decay_steps=1))):
        ds = hyper["decay_steps"]
        steps = sorted({0, 1, ds - 1, ds, ds + 1, 2 * ds - 1, 2 * ds, 3 * ds - 1, 3 * ds, 10 * ds, 1000 * ds})
        cases.append(_table(f"schedules.step_decay_lr.{tag}", "S4.2", "step_decay_lr", "plateau edges k*d-1, k*d",
                            "step", steps, hyper, schedules.step_decay_lr))
    for tag, hyper in (("rate0.1", dict(initial_lr=0.1, decay_rate=0.1)),
                       ("rate0_constant", dict(initial_lr=0.1, decay_rate=0.0)),
                       ("rate1000_underflow", dict(initial_lr=0.1, decay_rate=1000.0))):
        cases.append(_table(f"schedules.exponential_decay_lr.{tag}", "S4.3", "exponential_decay_lr", tag, "step",
                            [0, 1, 2, 5, 10, 100, 745, 1000], hyper, schedules.exponential_decay_lr))
    for tag, hyper in (("rate0.5", dict(initial_lr=0.1, decay_rate=0.5)),
                       ("rate0_constant", dict(initial_lr=0.1, decay_rate=0.0))):
        cases.append(_table(f"schedules.inverse_time_decay_lr.{tag}", "S4.4", "inverse_time_decay_lr", tag,
                            "step", [0, 1, 2, 3, 10, 1000, 2**40], hyper, schedules.inverse_time_decay_lr))
    lrm = (  # tag, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac
        ("nanochat_default_n100", 100, 0.0, 0.2, 0.0),
        ("n10_half_even_2.5_to_2", 10, 0.25, 0.25, 0.1),
        ("n10_half_even_1.5_to_2_and_0.5_to_0", 10, 0.15, 0.05, 0.0),
        ("n10_final_frac1", 10, 0.2, 0.5, 1.0),
        ("n20_warmdown0", 20, 0.1, 0.0, 0.0),
        ("n20_warmdown1", 20, 0.0, 1.0, 0.0),
        ("n20_warmdown1_final0.5", 20, 0.0, 1.0, 0.5),
        ("n10_overlap_warmup0.6_warmdown0.6", 10, 0.6, 0.6, 0.0),
        ("n7_warmup1_warmdown1", 7, 1.0, 1.0, 0.25),
        ("n0", 0, 0.5, 0.2, 0.0),
        ("n1", 1, 0.0, 0.2, 0.0),
        ("n1_warmdown1", 1, 0.0, 1.0, 0.0),
        ("n10_ratio_products_3.5_4.5", 10, 0.35, 0.45, 0.3),
    )
    for tag, n, wu, wd, f in lrm:
        hyper = dict(num_iterations=n, warmup_ratio=wu, warmdown_ratio=wd, final_lr_frac=f)
        c = _table(f"schedules.lr_multiplier.{tag}", "S4.5", "lr_multiplier", tag, "it", list(range(n + 1)), hyper,
                   schedules.lr_multiplier)
        c.extra = {"warmup_iters": round(wu * n), "warmdown_iters": round(wd * n)}
        cases.append(c)
    for tag, hyper, its in (("default_ramp300", {}, [0, 1, 2, 150, 299, 300, 301, 10**6]),
                            ("ramp1", dict(start=0.5, end=0.9, ramp_steps=1), [0, 1, 2, 5]),
                            ("start0_ramp7", dict(start=0.0, end=0.95, ramp_steps=7), list(range(10))),
                            ("start_equals_end", dict(start=0.9, end=0.9, ramp_steps=4), [0, 1, 2, 3, 4, 5])):
        cases.append(_table(f"schedules.muon_momentum.{tag}", "S4.6", "muon_momentum", tag, "it", its, hyper,
                            schedules.muon_momentum))
    return cases


# ------------------------------------------------------------------------------------------------ S5


def _grad_list(rng: np.random.Generator, scale: float = 1.0) -> list[np.ndarray]:
    return [scale * gaussian(rng, 8, 12), scale * gaussian(rng, 16), np.array(scale * 0.7),
            np.zeros((4, 4)), scale * gaussian(rng, 3, 2, 5)]


def clipping_cases() -> list[Case]:
    cases = []
    regimes: list[tuple[str, float, list[np.ndarray] | None]] = [
        ("clipped_total_gt_max", 1.0, None), ("unclipped_total_lt_max", 100.0, None),
        ("huge_1e30", 1.0, None), ("tiny_1e-160_underflow_safe", 1e-170, None),
        ("total_equals_max_exactly", 7.0, [np.array([2.0, 0.0, 3.0]), np.array([[6.0], [0.0]])]),  # 4+9+36 = 7²
        ("within_1e-6_below_total", None, None),
        ("max_norm_1e-7_tiny_grads", 1e-7, None),
    ]
    for clause, fn in (("S5.1", clipping.clip_grad_norm), ("S5.2", clipping.clip_grad_norm_torch)):
        for tag, max_norm, fixed in regimes:
            cid = f"clipping.{fn.__name__}.{tag}"
            seed, rng = seeded(f"clipping.input.{tag}")  # S5.1 and S5.2 see the same gradients
            if fixed is not None:
                grads = fixed
            elif tag.startswith("huge"):
                grads = _grad_list(rng, 1e30)
            elif tag.startswith("tiny"):
                grads = _grad_list(rng, 1e-160)
            elif tag.startswith("max_norm_1e-7"):
                grads = _grad_list(rng, 1e-9)
            else:
                grads = _grad_list(rng)
            if max_norm is None:  # S5.1 does not clip, torch's rule (total > max − 1e-6) does
                _, total = clipping.clip_grad_norm(grads, max_norm=1.0)
                max_norm = total + 5e-7
            clipped, total = fn(grads, max_norm=max_norm)
            ins = {f"grads.{i}": g for i, g in enumerate(grads)}
            outs = {f"clipped.{i}": g for i, g in enumerate(clipped)}
            cases.append(Case(cid, clause, f"clipping.{fn.__name__}", tag,
                              "inputs grads.0..k (a list, incl. 0-D and an all-zero array); outputs clipped.i "
                              "and total (the norm before clipping)", {"max_norm": float(max_norm)}, ins,
                              {**outs, "total": np.float64(total)}, seed=seed,
                              extra={"num_grads": len(grads)}))
    return cases
