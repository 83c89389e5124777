"""The catalog of deliberately wrong targets: each a realistic mistake in exactly one clause.

Every family is one small implementation with switches (``mistake=None`` is the control, which must pass
its clause at every level); a wrong target flips exactly one switch. Targets are namespaces holding the
protocol names: ``--target wrong_targets:<name>`` loads one, and ``CATALOG`` maps each wrong target to the
clause and the verdict level that must reject it and the pytest ``-k`` selection of that clause's cases.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import NamedTuple

import torch
import torch.distributed as dist

import optconform.impl as impl
from optconform.conformance.adapters import torch_dcp
from optconform.spec import NS_COEFFICIENTS

# ----------------------------------------------------------------------------------------------- S4 schedules


def make_lr_multiplier(mistake: str | None = None):
    def lr_multiplier(it, *, num_iterations, warmup_ratio, warmdown_ratio, final_lr_frac):
        rnd = (lambda x: math.floor(x + 0.5)) if mistake == "round_half_up" else round
        warmup_iters = rnd(warmup_ratio * num_iterations)
        warmdown_iters = rnd(warmdown_ratio * num_iterations)
        if it < warmup_iters:
            return (it if mistake == "warmup_off_by_one" else it + 1) / warmup_iters
        if it <= num_iterations - warmdown_iters:
            return 1.0
        progress = (num_iterations - it) / warmdown_iters
        final = 0.0 if mistake == "ignores_final_frac" else final_lr_frac
        return progress * 1.0 + (1 - progress) * final

    return lr_multiplier


def make_muon_momentum(mistake: str | None = None):
    def muon_momentum(it):
        frac = min(it // 300, 1) if mistake == "integer_ramp" else min(it / 300, 1)
        return (1 - frac) * 0.85 + frac * 0.95

    return muon_momentum


def make_step_decay(mistake: str | None = None):
    def step_decay_lr(step, *, initial_lr, decay_rate, decay_steps):
        k = step / decay_steps if mistake == "continuous" else step // decay_steps
        return initial_lr * decay_rate**k

    return step_decay_lr


# ----------------------------------------------------------------------------------------------- S5 clipping


def make_clip(mistake: str | None = None):
    @torch.no_grad()
    def clip_grad_norm(params, max_norm):
        grads = [p.grad for p in params if p.grad is not None]
        norms = []
        for g in grads:  # float64, pre-scaled by max |g| so no square underflows or overflows
            m = float(g.abs().max()) if g.numel() else 0.0
            norms.append(m * float(torch.linalg.vector_norm(g.double() / m)) if m > 0 else 0.0)
        total = math.hypot(*norms)  # no n² to underflow (a 1e-269 gradient is a fuzzed case)
        if mistake == "per_tensor":
            for g, n in zip(grads, norms, strict=True):
                if n > max_norm:
                    g.mul_(max_norm / n)
        elif mistake in ("torch_eps", "torch_no_clamp"):  # torch's rule; the second forgets its clamp(max=1)
            coef = max_norm / (total + 1e-6)
            if coef < 1 or mistake == "torch_no_clamp":
                for g in grads:
                    g.mul_(coef)
        elif total > max_norm:
            for g in grads:
                g.mul_(max_norm / total)
        return total

    return clip_grad_norm


# ----------------------------------------------------------------------------------------------- S3.5 SGD


def make_sgd(mistake: str | None = None):
    class SGD(torch.optim.Optimizer):
        def __init__(self, params, *, lr, momentum, nesterov):
            super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                mu = group["momentum"]
                for p in group["params"]:
                    g = p.grad
                    if mu:
                        st = self.state[p]
                        if "momentum_buffer" not in st:
                            st["momentum_buffer"] = g.clone()
                        else:
                            damp = (1 - mu) if mistake == "dampening" else 1.0
                            st["momentum_buffer"].mul_(mu).add_(g, alpha=damp)
                        buf = st["momentum_buffer"]
                        g = g.add(buf, alpha=mu) if group["nesterov"] and mistake != "nesterov_ignored" else buf
                    p.add_(g, alpha=-group["lr"])

    return SGD


# ----------------------------------------------------------------------------------------------- S6.2 zeropower


#: The Polar Express rows of nanochat master and modded-nanogpt (safety 2e-2, five iterations; notes/implementations.md)
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
#: one coefficient of the seed's triple off by 2 %: mistake -> (index, factor)
COEFFICIENT_SLIPS = {"a_2pct_high": (0, 1.02), "b_2pct_low": (1, 0.98), "c_2pct_high": (2, 1.02)}


def _rows(mistake: str | None, steps: int) -> list[tuple[float, float, float]]:
    if mistake == "polar_express":  # nanochat master: the first ns_steps rows
        return list(POLAR_EXPRESS[:steps])
    row = list(NS_COEFFICIENTS)
    if mistake in COEFFICIENT_SLIPS:
        i, factor = COEFFICIENT_SLIPS[mistake]
        row[i] *= factor
    return [tuple(row)] * (steps - 1 if mistake == "one_step_short" else steps)


def make_zeropower(mistake: str | None = None):
    def zeropower(G, steps):
        X = G.float()
        if G.size(-2) > G.size(-1):
            X = X.mT
        if mistake == "bf16_norm_overflows":  # the seed's order: cast first, norm in bf16 (inf above ~1.8e19)
            X = X.bfloat16()
            X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
        elif mistake == "fp16_norm":  # half precision before the norm: overflows from 6.5e4, underflows below 6e-8
            X = X.half()
            X = (X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)).bfloat16()
        else:
            m = X.abs().amax(dim=(-2, -1), keepdim=True).clamp(min=1e-30)
            n = m * (X / m).norm(dim=(-2, -1), keepdim=True)
            X = X / (n.clamp(min=1e-7) if mistake == "clamp_eps" else n + 1e-7)
            X = X.bfloat16()
        for a, b, c in _rows(mistake, steps):
            A = X @ X.mT
            B = b * A + c * A @ A
            X = a * X + B @ X
        if G.size(-2) > G.size(-1):
            X = X.mT
        return X

    return zeropower


# ----------------------------------------------------------------------------------------------- S7.2 Muon


def make_muon(mistake: str | None = None):
    """Muon with one switch: ``polar_express`` / ``clamp_eps`` (another Newton–Schulz map), ``muon_plus`` (the
    update rescaled to ‖O‖_F = sqrt(min(rows, cols)), nanochat master), ``normuon`` (each row divided by the root
    of an EMA, β₂ = 0.9, of its mean square, then renormalised to ‖O‖_F: NorMuon as nanochat master has it),
    ``decoupled_weight_decay`` (θ·(1 − lr·0.1) first, which the seed's Muon does not do),
    ``momentum_outside_state`` (buffers in an attribute, not ``self.state``: ``state_dict()`` misses them, so a
    resumed run restarts its momentum from zero; KellerJordan/Muon #46 lost non-owner momentum alike), and the
    three below."""
    zp = make_zeropower(mistake) if mistake in ("polar_express", "clamp_eps") else impl.zeropower

    class Muon(torch.optim.Optimizer):
        def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
            super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                beta = group["momentum"]
                for p in group["params"]:
                    g = p.grad
                    st = self.state[p]
                    if mistake == "momentum_outside_state":  # kept where state_dict() does not look (#46-like)
                        st = self.__dict__.setdefault("buffers", {}).setdefault(p, {})
                    buf = st.setdefault("momentum_buffer", torch.zeros_like(g))
                    if mistake == "momentum_sum":  # heavy-ball sum: a constant factor 1/(1-β) off the average
                        buf.mul_(beta).add_(g)
                    else:
                        buf.lerp_(g, 1 - beta)
                    u = g.lerp(buf, beta) if group["nesterov"] and mistake != "nesterov_ignored" else buf
                    o = zp(u, group["ns_steps"]).float()
                    rows, cols = p.size(-2), p.size(-1)
                    if mistake == "muon_plus":
                        o = o * (min(rows, cols) ** 0.5 / o.norm().clamp(min=1e-7))
                    elif mistake == "normuon":  # over columns (per row) when rows >= cols, else over rows
                        red = -1 if rows >= cols else -2
                        v = st.setdefault("second_moment", torch.zeros_like(o.square().mean(dim=red, keepdim=True)))
                        v.lerp_(o.square().mean(dim=red, keepdim=True), 1 - 0.9)
                        n = o.norm()
                        o = o * v.clamp(min=1e-10).rsqrt()
                        o = o * (n / o.norm().clamp(min=1e-7))
                    elif mistake == "decoupled_weight_decay":
                        p.mul_(1 - group["lr"] * 0.1)
                    ratio = cols / rows if mistake == "aspect_inverted" else rows / cols
                    p.add_(o.to(p.dtype), alpha=-group["lr"] * max(1, ratio) ** 0.5)

    return Muon


def make_variant_muon(profile: str, mistake: str | None = None):
    """A profile's Muon written out independently (float32 state, bf16 Newton–Schulz), with one realistic slip in
    the code of one variant option; ``mistake=None`` is the control, which must pass under ``--profile profile``.

    ``pe_rows_reversed`` (Polar Express rows iterated last to first), ``clamp_plus_eps`` (max(‖X‖, eps) + eps),
    ``safety_divides`` (‖X‖/1.01 instead of 1.01·‖X‖: NOT in the catalog, no case separates it, see README),
    ``sum_lerp_nesterov`` (a summed buffer blended by lerp, as if it were an average), ``optax_bias_t`` (both
    Nesterov terms corrected with 1 − βᵗ), ``muoneq_columns`` (columns equilibrated instead of rows),
    ``muon_plus_max`` (√max(m, n) instead of √min), ``normuon_no_renorm`` (NorMuon's scaling without the
    renormalisation to ‖O‖_F), ``rms_scale_min`` (0.2·√min(A, B)), ``decay_adjusted_lr``
    (torch's decay with lr × the shape factor), ``cautious_from_grad`` (the mask from the gradient, not the update),
    ``wd_adamw_default`` (AdamW's default decay instead of torch.optim.Muon's 0.1)."""
    from optconform.spec import NS_ROWS
    from optconform.spec import options as O

    o = O.resolve(profile)

    def norm(x, dim):  # overflow-safe (x / max|x|, then scaled back), as a hardened kernel has it
        m = x.abs().amax(dim=dim, keepdim=True).clamp(min=torch.finfo(x.dtype).tiny)
        return m * (x / m).norm(dim=dim, keepdim=True)

    def ns(u, steps):
        X = u.float()
        if X.size(-2) > X.size(-1):
            X = X.mT
        n = norm(X, (-2, -1))
        if o["normalisation"] == "clamp":
            X = X / (n.clamp(min=o["ns_eps"]) + (o["ns_eps"] if mistake == "clamp_plus_eps" else 0.0))
        else:
            safety = 1 / o["safety"] if mistake == "safety_divides" else o["safety"]
            X = X / (safety * n + o["ns_eps"])
        X = X.bfloat16()
        if o["rows"] is None:
            rows = [NS_COEFFICIENTS] * steps
        else:
            named = list(NS_ROWS[o["rows"]])
            named = named[::-1] if mistake == "pe_rows_reversed" else named
            rows = named[:steps] if o["row_cut"] == "truncate" else [named[min(k, len(named) - 1)]
                                                                     for k in range(steps)]
        for a, b, c in rows:
            A = X @ X.mT
            B = b * A + c * A @ A
            X = a * X + B @ X
        if u.size(-2) > u.size(-1):
            X = X.mT
        return X.float()

    class Muon(torch.optim.Optimizer):
        def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
            super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                beta, lr = group["momentum"], group["lr"]
                for p in group["params"]:
                    g = p.grad.float()
                    st = self.state[p]
                    buf = st.setdefault("momentum_buffer", torch.zeros_like(g))
                    form = o["momentum_form"]
                    if form == "sum":
                        buf.mul_(beta).add_(g)
                        u = (g.lerp(buf, beta) if mistake == "sum_lerp_nesterov" else g + beta * buf) \
                            if group["nesterov"] else buf
                    elif form == "bias_corrected":
                        t = st["step"] = st.get("step", 0) + 1
                        buf.mul_(beta).add_(g, alpha=1 - beta)
                        t1 = t if mistake == "optax_bias_t" else t + 1
                        u = beta * buf / (1 - beta**t1) + (1 - beta) * g / (1 - beta**t) if group["nesterov"] \
                            else buf / (1 - beta**t)
                    else:
                        buf.lerp_(g, 1 - beta)
                        u = g.lerp(buf, beta) if group["nesterov"] else buf.clone()
                    rows, cols = p.size(-2), p.size(-1)
                    if o["muoneq"]:
                        dim = -2 if mistake == "muoneq_columns" else -1
                        count = cols if mistake == "muoneq_columns" else rows
                        target = norm(u, (-2, -1)) / count**0.5
                        u = u * (target / norm(u, dim).clamp(min=1e-6))
                    d = ns(u, group["ns_steps"])
                    if o["muon_plus"]:
                        k = max(rows, cols) if mistake == "muon_plus_max" else min(rows, cols)
                        d = d * (k**0.5 / d.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-6))
                    if o["normuon_beta2"] is not None:
                        red = -1 if rows >= cols else -2
                        q = d.square().mean(dim=red, keepdim=True)
                        v = st.setdefault("second_momentum_buffer", torch.zeros_like(q))
                        v.lerp_(q, 1 - o["normuon_beta2"])
                        s = d * v.clamp(min=1e-10).rsqrt()
                        if mistake == "normuon_no_renorm":
                            d = s
                        else:
                            d = s * (d.norm(dim=(-2, -1), keepdim=True)
                                     / s.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-10))
                    if o["lr_scale"] == "match_rms_adamw":
                        scale = 0.2 * (min(rows, cols) if mistake == "rms_scale_min" else max(rows, cols)) ** 0.5
                    else:
                        scale = max(1.0, rows / cols) ** 0.5
                    wd = 0.01 if mistake == "wd_adamw_default" else o["weight_decay"]
                    if wd:
                        adjusted = o["weight_decay_lr"] == "adjusted" or mistake == "decay_adjusted_lr"
                        eta = lr * (scale if adjusted else 1.0)
                        if o["weight_decay_mode"] == "cautious":
                            mask = ((p.grad if mistake == "cautious_from_grad" else d) * p >= 0).float()
                        else:
                            mask = 1.0
                        p.sub_(eta * wd * p * mask)
                    p.add_(d.to(p.dtype), alpha=-lr * scale)

    return Muon


# ----------------------------------------------------------------------------------------------- S8.2 AdamW


def make_adamw(mistake: str | None = None):
    class AdamW(torch.optim.Optimizer):
        def __init__(self, params, *, lr, betas, eps, weight_decay):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                b1, b2 = group["betas"]
                eps, wd = group["eps"], group["weight_decay"]
                for p in group["params"]:
                    g = p.grad
                    st = self.state[p]
                    if not st:
                        st.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                    st["step"] += 1
                    t = st["step"]
                    lr = group["lr"] * (1.0 if mistake == "ignores_lr_mul" else getattr(p, "lr_mul", 1.0))
                    wd_eff = wd * getattr(p, "wd_mul", 1.0)
                    if mistake == "coupled_l2":
                        g = g.add(p, alpha=wd_eff)
                    elif mistake == "decay_without_lr":
                        p.mul_(1 - wd_eff)
                    else:
                        p.mul_(1 - lr * wd_eff)
                    m, v = st["exp_avg"], st["exp_avg_sq"]
                    m.lerp_(g, 1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    bc1, bc2 = 1 - b1**t, 1 - b2**t
                    if mistake == "eps_before_bias_correction":  # nanochat #304
                        p.addcdiv_(m, v.sqrt().add_(eps), value=-lr * math.sqrt(bc2) / bc1)
                    elif mistake == "no_bias_correction_v":
                        p.addcdiv_(m, v.sqrt().add_(eps), value=-lr / bc1)
                    else:
                        p.addcdiv_(m, (v / bc2).sqrt_().add_(eps), value=-lr / bc1)

    return AdamW


# ----------------------------------------------------------------------------------------------- S9 ZeRO-2


class DistMuonSum(impl.DistMuon):
    """Gradients summed over ranks instead of averaged (ReduceOp.SUM): invisible under Newton–Schulz's
    normalisation except where |g| is comparable to its eps."""

    def step(self, closure=None):
        w = dist.get_world_size()
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.mul_(w)
        return super().step(closure)


class DistMuonNoCollectives(impl.Muon):
    """Every rank steps its own gradients and keeps every buffer: ranks diverge, nothing is sharded."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)


class DistMuonPolarExpress(impl.DistMuon):
    """nanochat master's coefficient rows (Polar Express) in an otherwise correct DistMuon."""

    orthogonalize = staticmethod(make_zeropower("polar_express"))


class DistAdamWSum(impl.DistAdamW):
    """ReduceOp.SUM instead of AVG: Adam is scale invariant except through eps, so it shows at |g| ~ eps."""

    def step(self, closure=None):
        w = dist.get_world_size()
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.mul_(w)
        return super().step(closure)


def _average_gradients(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """all_reduce(AVG) every gradient in place; returns the parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        dist.all_reduce(p.grad, op=dist.ReduceOp.AVG)
    return params


class DistAdamWUnsharded(impl.AdamW):
    """Averages gradients with all_reduce and keeps the whole optimizer state on every rank (right
    numbers, no sharding: W times the memory)."""

    def __init__(self, param_groups, *, lr, betas, eps, weight_decay):
        super().__init__(param_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure=None):
        _average_gradients(self)
        return super().step(closure)


class DistAdamWAllOnRank0(DistAdamWUnsharded):
    """Right numbers, every element held once, but rank 0 owns everything (an owner rule that always answers 0):
    no memory saved at all, which the balanced-layout bound rejects."""

    @torch.no_grad()
    def step(self, closure=None):
        params = _average_gradients(self)
        if dist.get_rank() == 0:
            impl.AdamW.step(self, closure)
        for p in params:
            dist.broadcast(p, src=0)


class DistMuonUnsharded(impl.Muon):
    """All-reduces the gradients and runs the whole Muon on every rank: right numbers, every momentum buffer
    on every rank."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)

    @torch.no_grad()
    def step(self, closure=None):
        _average_gradients(self)
        return super().step(closure)


class DistMuonRank0Checkpoint(impl.DistMuon):
    """Right steps, but checkpoints written for "save on rank 0, load everywhere": ``load_state_dict`` takes rank
    0's dict on every rank, so every other rank loses the momentum of the matrices it owns (KellerJordan/Muon #46)."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)

    def load_state_dict(self, state_dict):
        shared = [state_dict]
        dist.broadcast_object_list(shared, src=0)
        torch.optim.Optimizer.load_state_dict(self, {k: v for k, v in shared[0].items() if k != "zero2"})


class DTensorMuonLocalPieces(torch.optim.Optimizer):
    """The classic FSDP Muon slip: the Muon kernel on each rank's own piece (``p.to_local()``), so a Shard(d)
    matrix is orthogonalised piece by piece (and scaled by the piece's aspect ratio), never as a whole."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        from optconform.impl.muon import muon

        for group in self.param_groups:
            ps = group["params"]
            for p in ps:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
            muon([p.to_local() for p in ps], [p.grad.to_local() for p in ps],
                 [self.state[p]["momentum_buffer"].to_local() for p in ps], lr=group["lr"],
                 momentum=group["momentum"], nesterov=group["nesterov"], ns_steps=group["ns_steps"])


class DTensorMuonWholeState(torch.optim.Optimizer):
    """Right numbers, no sharding: every rank gathers every whole gradient (``full_tensor()``), keeps a whole
    plain momentum buffer of every matrix, runs Muon on all of them and keeps its own piece of the result."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))

    @torch.no_grad()
    def step(self, closure=None):
        from torch.distributed.tensor import DTensor, Replicate

        from optconform.impl.muon import muon

        for group in self.param_groups:
            ps = group["params"]
            whole = [p.full_tensor() for p in ps]
            for p, w in zip(ps, whole, strict=True):
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(w)
            muon(whole, [p.grad.full_tensor() for p in ps], [self.state[p]["momentum_buffer"] for p in ps],
                 lr=group["lr"], momentum=group["momentum"], nesterov=group["nesterov"], ns_steps=group["ns_steps"])
            for p, w in zip(ps, whole, strict=True):
                mine = DTensor.from_local(w, p.device_mesh, [Replicate()], run_check=False)
                p.to_local().copy_(mine.redistribute(p.device_mesh, p.placements).to_local())


class DTensorMuonLazyState(impl.DTensorMuon):
    """Right steps, but state created lazily, only where a rank has something to hold: no entry for a parameter
    whose piece on this rank is empty, so the ranks disagree on the state's keys (Dion's hang in
    torch.distributed.checkpoint, whose save needs every rank to hold every DTensor entry)."""

    def __init__(self, params, *, lr, momentum, nesterov, ns_steps):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps)

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.to_local().numel() == 0:
                    self.state.pop(p, None)
        return loss


# ------------------------------------------------------------------------------------------ S9.9 checkpoints


class CheckpointOwnRankOnly:
    """DCP checkpoints (the built-in ``impl.checkpoint``) written as "rank 0 saves, everyone loads": the other ranks
    save nothing, so at W′ every matrix their momentum belonged to starts again from zero (KellerJordan/Muon #46,
    now across a reshard). Correct wherever rank 0 owned everything (W = 1)."""

    @staticmethod
    def save(optimizer, path):
        from optconform.impl import checkpoint

        kept = dict(optimizer.state)
        if dist.get_rank() != 0:
            optimizer.state.clear()
        try:
            checkpoint.save(optimizer, path)
        finally:
            optimizer.state.update(kept)

    @staticmethod
    def load(optimizer, path):
        from optconform.impl import checkpoint

        checkpoint.load(optimizer, path)


class CheckpointLocalPieces:
    """Per-rank files of each rank's own pieces (``to_local()``), read back by rank number: exact when W′ = W, but on
    another world size rank r gets its old piece, copied where it fits into the new one (rows and columns of other
    matrix positions, the rest zero): the sharded state_dict of FSDP saved per rank with torch.save."""

    @staticmethod
    def _file(path):
        import os

        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"rank{dist.get_rank()}.pt")

    @staticmethod
    def _params(optimizer):
        return [p for g in optimizer.param_groups for p in g["params"]]

    @classmethod
    def save(cls, optimizer, path):
        state = [{k: (v.to_local() if hasattr(v, "to_local") else v) for k, v in optimizer.state.get(p, {}).items()}
                 for p in cls._params(optimizer)]
        torch.save(state, cls._file(path))
        dist.barrier()

    @classmethod
    def load(cls, optimizer, path):
        import os

        dist.barrier()
        file = cls._file(path)
        saved = torch.load(file, weights_only=False) if os.path.exists(file) else []
        for p, st in zip(cls._params(optimizer), saved, strict=False):
            new = {}
            for k, v in st.items():
                if hasattr(p, "to_local") and torch.is_tensor(v) and v.ndim == p.ndim:
                    buf = torch.zeros_like(p)
                    local = buf.to_local()
                    fit = tuple(slice(0, min(a, b)) for a, b in zip(local.shape, v.shape, strict=True))
                    local[fit] = v[fit]
                    new[k] = buf
                else:
                    new[k] = v
            optimizer.state[p] = new


# ----------------------------------------------------------------------------------------------- the catalog

_BASE = {name: getattr(impl, name) for name in (
    "zeropower", "Muon", "DistMuon", "AdamW", "DistAdamW", "DTensorMuon", "DTensorAdamW", "SGD", "lr_multiplier",
    "muon_momentum", "step_decay_lr", "exponential_decay_lr", "inverse_time_decay_lr", "clip_grad_norm", "Checkpoint")}


def _target(**overrides) -> SimpleNamespace:
    return SimpleNamespace(**{**_BASE, **overrides})


class Entry(NamedTuple):
    clause: str  # the clause whose cases must reject it
    level: str  # the verdict level it breaks
    select: str  # pytest -k selection of that clause's cases
    world_sizes: str  # --world-sizes of the run ("" for clauses without distributed cases)
    target: SimpleNamespace
    #: the worst check of its clause at its level must exceed its tolerance by this factor: a mistake or a known
    #: variant is rejected by a margin, never by luck near the bound
    margin: float = 3.0
    #: the spec profile it is judged under (--profile): the variant whose option the mistake breaks
    profile: str = "nanochat-2025-10"


_W2 = "2"

#: name -> the clause and level that must reject it, the cases to run, and the target
CATALOG: dict[str, Entry] = {
    "lr_multiplier_round_half_up": Entry("S4.5", "core", "lr_multiplier", "", _target(
        lr_multiplier=make_lr_multiplier("round_half_up"))),
    "lr_multiplier_warmup_off_by_one": Entry("S4.5", "core", "lr_multiplier", "", _target(
        lr_multiplier=make_lr_multiplier("warmup_off_by_one"))),
    "lr_multiplier_ignores_final_frac": Entry("S4.5", "core", "lr_multiplier", "", _target(
        lr_multiplier=make_lr_multiplier("ignores_final_frac"))),
    "muon_momentum_integer_ramp": Entry("S4.6", "core", "muon_momentum", "", _target(
        muon_momentum=make_muon_momentum("integer_ramp"))),
    "step_decay_continuous": Entry("S4.2", "core", "step_decay", "", _target(
        step_decay_lr=make_step_decay("continuous"))),
    "clip_per_tensor": Entry("S5.1", "core", "clip_grad_norm", "", _target(clip_grad_norm=make_clip("per_tensor"))),
    "clip_torch_eps": Entry("S5.1", "core", "clip_grad_norm", "", _target(clip_grad_norm=make_clip("torch_eps"))),
    "sgd_nesterov_ignored": Entry("S3.5", "core", "sgd", "", _target(SGD=make_sgd("nesterov_ignored"))),
    "sgd_dampening": Entry("S3.5", "core", "sgd", "", _target(SGD=make_sgd("dampening"))),
    "zeropower_clamp_eps": Entry("S6.2", "core", "zeropower", "", _target(zeropower=make_zeropower("clamp_eps"))),
    "zeropower_fp16_norm": Entry("S6.2", "core", "zeropower", "", _target(zeropower=make_zeropower("fp16_norm"))),
    "zeropower_bf16_norm_overflows": Entry("S6.2", "hardening", "zeropower", "", _target(
        zeropower=make_zeropower("bf16_norm_overflows"))),
    "zeropower_one_step_short": Entry("S6.2", "core", "zeropower", "", _target(
        zeropower=make_zeropower("one_step_short"))),
    # the maps the size bounds cannot tell from bf16 rounding: the bias statistic's cases reject them
    **{f"zeropower_{m}": Entry("S6.2", "core", "zeropower_live_large", "", _target(zeropower=make_zeropower(m)))
       for m in (*COEFFICIENT_SLIPS, "polar_express")},
    "zeropower_clamp_eps_at_1e-8": Entry("S6.2", "core", "zeropower_live_large", "", _target(
        zeropower=make_zeropower("clamp_eps"))),
    **{f"muon_{m}": Entry("S7.2", "core", "muon_live", "", _target(Muon=make_muon(m)))
       for m in ("polar_express", "muon_plus", "normuon", "decoupled_weight_decay", "clamp_eps")},
    "distmuon_polar_express": Entry("S9.4", "core", "dist_muon and single", _W2, _target(
        DistMuon=DistMuonPolarExpress)),
    "muon_aspect_inverted": Entry("S7.2", "core", "test_muon", "", _target(Muon=make_muon("aspect_inverted"))),
    "muon_momentum_sum": Entry("S7.2", "core", "test_muon", "", _target(Muon=make_muon("momentum_sum"))),
    "muon_nesterov_ignored": Entry("S7.2", "core", "test_muon", "", _target(Muon=make_muon("nesterov_ignored"))),
    "muon_momentum_outside_state": Entry("S7.2", "core", "test_resume and Muon", "", _target(
        Muon=make_muon("momentum_outside_state"))),
    "adamw_eps_before_bias_correction": Entry("S8.2", "core", "adamw", "", _target(
        AdamW=make_adamw("eps_before_bias_correction"))),
    "adamw_no_bias_correction_v": Entry("S8.2", "core", "adamw", "", _target(AdamW=make_adamw("no_bias_correction_v"))),
    "adamw_coupled_l2": Entry("S8.2", "core", "adamw", "", _target(AdamW=make_adamw("coupled_l2"))),
    "adamw_decay_without_lr": Entry("S8.2", "core", "adamw", "", _target(AdamW=make_adamw("decay_without_lr"))),
    "adamw_ignores_lr_mul": Entry("S8.2", "core", "adamw", "", _target(AdamW=make_adamw("ignores_lr_mul"))),
    "distmuon_sum_not_mean": Entry("S9.4", "core", "dist_muon", _W2, _target(DistMuon=DistMuonSum)),
    "distmuon_no_collectives": Entry("S9.4", "core", "dist_muon", _W2, _target(DistMuon=DistMuonNoCollectives)),
    "distmuon_unsharded": Entry("S9.4", "core", "dist_muon", _W2, _target(DistMuon=DistMuonUnsharded)),
    "distmuon_rank0_checkpoint": Entry("S9.4", "core", "dist_muon and resume", _W2, _target(
        DistMuon=DistMuonRank0Checkpoint)),
    "distadamw_sum_not_mean": Entry("S9.5", "core", "dist_adamw", _W2, _target(DistAdamW=DistAdamWSum)),
    "distadamw_unsharded": Entry("S9.5", "core", "dist_adamw", _W2, _target(DistAdamW=DistAdamWUnsharded)),
    "distadamw_all_on_rank0": Entry("S9.5", "core", "dist_adamw", _W2, _target(DistAdamW=DistAdamWAllOnRank0),
                                     margin=1.1),  # a count against the balanced bound: rank 0 holds 1.18× it at W=2
    "dtensor_muon_local_pieces": Entry("S9.7", "core", "dtensor_muon and live", _W2, _target(
        DTensorMuon=DTensorMuonLocalPieces)),
    # a count against the rank's own pieces: the live trajectory's whole matrices are 1.75× a rank's pieces at W=2
    "dtensor_muon_whole_state": Entry("S9.7", "core", "dtensor_muon and live", _W2, _target(
        DTensorMuon=DTensorMuonWholeState), margin=1.5),
    # W = 3: the live trajectory's 4×32 Shard(0) matrix has pieces of 2, 2 and 0 rows
    "dtensor_muon_lazy_state": Entry("S9.7", "core", "dtensor_muon and live", "3", _target(
        DTensorMuon=DTensorMuonLazyState)),
    # world sizes 2 and 3: the reshards 2 → 3 and 3 → 2 (rank 1, and at W = 3 rank 2, own matrices)
    "checkpoint_rank0_only": Entry("S9.9", "core", "reshard and DistMuon", "2,3", _target(
        Checkpoint=CheckpointOwnRankOnly)),
    "checkpoint_local_pieces": Entry("S9.9", "core", "reshard and DTensorMuon", "2,3", _target(
        Checkpoint=CheckpointLocalPieces)),
}

def make_compiled_zeropower():
    """The production kernel through ``torch.compile(fullgraph=True, dynamic=False)`` (the eager backend, so
    that compiling costs milliseconds): one graph per input shape, past torch's default recompile limit of 8
    on the suite's shapes. Correct, so it must pass: the suite raises the limit for its own processes."""
    from optconform.impl.newton_schulz import _kernel

    compiled = torch.compile(_kernel, fullgraph=True, backend="eager", dynamic=False)

    def zeropower(G, steps):
        return compiled(G, steps)

    return zeropower


#: one realistic slip per variant option, each judged under the profile where that option is on (SPEC "Variant
#: options and profiles"); the option it breaks -> (profile, mistake, clause, -k selection)
_OPTION_MISTAKES = {
    "rows": ("nanochat-2026", "pe_rows_reversed"),
    "normalisation": ("torch-optim", "clamp_plus_eps"),
    "momentum_form": ("moonlight", "sum_lerp_nesterov"),
    "momentum_form (optax)": ("optax", "optax_bias_t"),
    "muoneq": ("nanochat-2026", "muoneq_columns"),
    "muon_plus": ("nanochat-2026", "muon_plus_max"),
    "normuon_beta2": ("nanochat-2026", "normuon_no_renorm"),
    "lr_scale": ("moonlight", "rms_scale_min"),
    "weight_decay": ("torch-optim", "wd_adamw_default"),
    "weight_decay_lr": ("torch-optim", "decay_adjusted_lr"),
    "weight_decay_mode": ("nanochat-2026", "cautious_from_grad"),
}
CATALOG.update({
    f"variant_{profile}_{mistake}": Entry("S7.2", "core", "test_muon", "", _target(
        Muon=make_variant_muon(profile, mistake)), profile=profile)
    for profile, mistake in _OPTION_MISTAKES.values()})
CATALOG.update({
    # eps_placement: ε before bias correction without the √(1 − β₂ᵗ) step factor (Moonlight's form, half written)
    "variant_moonlight_adamw_eps_before_without_sqrt_bc2": Entry("S8.2", "core", "adamw", "", _target(
        AdamW=make_adamw("no_bias_correction_v")), profile="moonlight"),
    # param_muls: torch.optim ignores p.lr_mul and p.wd_mul; this one still reads wd_mul
    "variant_torch-optim_adamw_reads_wd_mul": Entry("S8.2", "core", "adamw", "", _target(
        AdamW=make_adamw("ignores_lr_mul")), profile="torch-optim"),
    # clip_rule: torch's max_norm/(total + 1e-6) without its clamp at 1 (scales small gradients up)
    "variant_torch-optim_clip_no_clamp": Entry("S5.1", "core", "clip_grad_norm", "", _target(
        clip_grad_norm=make_clip("torch_no_clamp")), profile="torch-optim"),
})

#: The switch-free version of every family: must PASS the same cases at every level (so a rejection above is
#: the mistake's).
CONTROLS: dict[str, Entry] = {
    "control_schedules": Entry("S4.5", "core", "lr_multiplier or muon_momentum or step_decay", "", _target(
        lr_multiplier=make_lr_multiplier(), muon_momentum=make_muon_momentum(), step_decay_lr=make_step_decay())),
    "control_clip": Entry("S5.1", "core", "clip_grad_norm", "", _target(clip_grad_norm=make_clip())),
    "control_sgd": Entry("S3.5", "core", "sgd", "", _target(SGD=make_sgd())),
    "control_zeropower": Entry("S6.2", "core", "zeropower", "", _target(zeropower=make_zeropower())),
    "control_muon": Entry("S7.2", "core", "test_muon", "", _target(Muon=make_muon())),
    "control_adamw": Entry("S8.2", "core", "adamw", "", _target(AdamW=make_adamw())),
    # the DTensor family's control: the production DTensorMuon (the mistakes above replace it whole)
    "control_dtensor_muon": Entry("S9.7", "core", "dtensor_muon and live", _W2, _target()),
    "control_checkpoint": Entry("S9.9", "core", "reshard", "2,3", _target()),
    # torch's own recipe (get/set_optimizer_state_dict + DCP) reshards the DTensor optimizers' state as well
    "control_torch_dcp_checkpoint": Entry("S9.9", "core", "reshard and DTensor", "2,3", _target(
        Checkpoint=torch_dcp)),
    "control_compiled_zeropower": Entry("S6.2", "core", "zeropower_golden", "", _target(
        zeropower=make_compiled_zeropower())),
    **{f"control_variant_{p}": Entry("S7.2", "core", "test_muon", "", _target(Muon=make_variant_muon(p)), profile=p)
       for p in sorted({p for p, _ in _OPTION_MISTAKES.values()})},
    "control_torch-optim_clip": Entry("S5.1", "core", "clip_grad_norm", "", _target(
        clip_grad_norm=make_clip("torch_eps")), profile="torch-optim"),
}

globals().update({name: entry.target for name, entry in {**CATALOG, **CONTROLS}.items()})
