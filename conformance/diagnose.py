"""``--diagnose``: which variant does the target compute? Discriminating probes, a search over the variant options,
and the verdict in words.

For each protocol name with variant options (``zeropower``, ``Muon``, ``AdamW``) the target is run ONCE on a fixed
set of probes, inputs on which every option value shows (:data:`PROBES`):

* ``zeropower``: a 64×128 Gaussian at ‖G‖_F = 1 (coefficient rows, safety factor) and at 1e-8 (where ``+eps`` and
  ``clamp(min=eps)`` and the eps value differ by O(1) in ŝ);
* ``Muon``: a 32×96, a 96×32 and a 48×48 parameter of unit-size entries (weight decay, its lr, a cautious mask:
  g·θ takes both signs), correlated gradients under a momentum ramp 0.85 → 0.95 (sum vs EMA differ only when β
  changes; optax's bias correction in the first steps), and a second run at ‖g‖_F = 1e-8 (the eps convention);
  tall, wide and square shapes separate the shape-factor rules;
* ``clip_grad_norm``: totals 1e-8, 1e-3 and 1 with max_norm 1e-7, 5e-4, 0.5 (torch's ``+1e-6`` clips the first,
  which the exact rule leaves alone, and shifts the second's coefficient by 2e-3);
* ``AdamW``: gradients of size ~ε (where ε before or after bias correction, and ``eps_root``, differ by O(1)), and
  one parameter carrying ``p.lr_mul = 2``, ``p.wd_mul = 0.5``.

Then only the float64 reference is re-run, once per candidate option set, on the target's own inputs (teacher
forcing: each step starts from the target's parameters, the reference carries its own state). The residual of a
candidate is the worst per-step relative error of the target's update against the candidate's; candidates are
compared by their squared error summed over every entry of every piece (:func:`prefers`: a switch must beat rounding
noise by Z_SWITCH standard deviations). Search: every profile first, then coordinate descent from the best one: each
option in turn takes each of its values (its domain's choices, or the values the profiles give it), the others
held; sweeps repeat until nothing changes (at most :data:`MAX_SWEEPS`). Cost: the probes run through the target
once; the reference runs P + S·Σₖ|Vₖ| times for P profiles, S sweeps and option k's |Vₖ| values — linear in the
number of options, never their product (Muon's 13 options have 31 values: 6 + 3·31 = 99 reference replays at most).

The result is "reproduced" when the best residual is within the clause's bound (the family's ``acted`` bound for
Newton–Schulz-based names, the float32 per-step bound for AdamW): ``Muon: nanochat-2025-10 except …``; otherwise
"no known variant reproduces Muon: closest …, residual …" — a likely bug. Either way the normal cases then run
under the found options: that run is the confirmation, reported with it. Options that the probes cannot tell
apart (a residual change below the margin) keep the nearest profile's value; the line says which profile that is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optconform.spec import options as O

from . import tolerances as T
from .judges.ns import bounds
from .target import Target

#: a candidate replaces the current one only when its gain in squared error exceeds this many standard deviations of
#: the gain that rounding noise alone would produce (:func:`prefers`): one-sided Gaussian tail 3e-5 per comparison
Z_SWITCH = 4.0
MAX_SWEEPS = 3
#: the protocol names diagnosed, and the clause whose options they take
NAMES = {"clip_grad_norm": "S5.1", "zeropower": "S6.2", "Muon": "S7.2", "AdamW": "S8.2"}
#: a distributed protocol name -> the single-process name whose diagnosis its cases run under
SINGLE_PROCESS = {"DistMuon": "Muon", "DistAdamW": "AdamW"}


@dataclass
class Diagnosis:
    name: str
    status: str  # "reproduced", "unknown" (no candidate within the bound), "not run" (why in ``line``)
    line: str
    profile: str = ""
    differs: dict[str, Any] = field(default_factory=dict)
    residual: float = float("nan")
    bound: float = float("nan")
    values: dict[str, Any] | None = None  # every option's value the cases then run under
    tried: list[tuple[str, float]] = field(default_factory=list)  # (candidate, residual), in search order

    def as_dict(self) -> dict:
        return dict(name=self.name, status=self.status, line=self.line, profile=self.profile,
                    differs={k: repr(v) for k, v in self.differs.items()}, residual=self.residual, bound=self.bound,
                    evaluations=len(self.tried), tried=[[c, r] for c, r in self.tried])


def _candidates(name: str) -> dict[str, list[Any]]:
    """Option -> the values the search tries: a choice domain's values, else every value a profile gives it."""
    cid = NAMES[name]
    keys = O.OPTION_CLAUSES.get(cid, ()) if cid != "S6.2" else ("ns_eps", *O.OPTION_CLAUSES["S6.2"])
    out: dict[str, list[Any]] = {}
    known = O.options()
    for k in keys:
        rule = known[k].domain.rule
        if rule.startswith("one of ") or "one of" in rule:
            import ast

            text = rule.split("one of ", 1)[1]
            vals = [ast.literal_eval(v.strip()) for v in text.split(",")]
            if rule.startswith("None or"):
                vals = [None, *vals]
        else:
            vals = []
        for p in O.PROFILES.values():
            v = p.values[k]
            if v not in vals:
                vals.append(v)
        out[k] = vals
    return out


class Fit:
    """A candidate's predictions of what the target produced, piece by piece (a step's update of one parameter,
    one output matrix), each piece divided by the size of the target's own piece so that every piece weighs alike."""

    def __init__(self, bound: float) -> None:
        self.bound = bound  # the bound on ``worst`` for a conforming computation of this candidate
        self.target: list[np.ndarray] = []
        self.pred: list[np.ndarray] = []
        self.worst = 0.0  # the largest piecewise relative error

    def add(self, target: np.ndarray, pred: np.ndarray, scale: float | None = None) -> None:
        t, p = np.asarray(target, float).ravel(), np.asarray(pred, float).ravel()
        s = scale if scale is not None else float(np.linalg.norm(t))
        s = s if s > 0 else 1.0
        self.target.append(t / s)
        self.pred.append(p / s)
        d = float(np.linalg.norm(t - p))
        ref = float(np.linalg.norm(p)) if scale is None else s
        self.worst = max(self.worst, d / ref if ref > 0 else (0.0 if d == 0 else np.inf))

    @property
    def t(self) -> np.ndarray:
        return np.concatenate(self.target)

    @property
    def p(self) -> np.ndarray:
        return np.concatenate(self.pred)

    @property
    def sse(self) -> float:
        """Σ‖t − p‖² over the normalised pieces."""
        d = self.t - self.p
        return float(d @ d) if np.all(np.isfinite(d)) else np.inf


def prefers(new: Fit, current: Fit) -> bool:
    """Whether the target sits significantly nearer ``new``'s predictions than ``current``'s.

    With t = c + n (n rounding noise of per-entry variance σ², estimated as SSE(c)/N, an over-estimate where c is
    not exact), SSE(c) − SSE(b) = 2⟨n, b − c⟩ − ‖b − c‖² has mean −‖b − c‖² and standard deviation 2σ‖b − c‖: a
    candidate is adopted only when the gain exceeds Z_SWITCH of those deviations. Every entry of every piece
    contributes, so a systematic difference hidden under the worst piece's noise still shows."""
    a, b = current.sse, new.sse
    if not np.isfinite(b):
        return False
    if not np.isfinite(a):
        return True
    sigma = np.sqrt(a / max(current.t.size, 1))
    return a - b > Z_SWITCH * 2.0 * sigma * float(np.linalg.norm(new.p - current.p))


# ------------------------------------------------------------------------------------------------ probes


def _zeropower_probe(target: Target, device: str, rng: np.random.Generator):
    import torch

    fn = target.get("zeropower")
    runs = []
    for norm in (1.0, 1e-8):
        g = rng.standard_normal((64, 128))
        g *= norm / np.linalg.norm(g)
        x = torch.as_tensor(g, dtype=torch.float32, device=device)
        given = x.double().cpu().numpy()
        runs.append((given, fn(x.clone(), 5).detach().double().cpu().numpy()))

    def predict(values: dict) -> Fit:
        from optconform.reference.orthogonalize import zeropower

        o = O.clause_options("S6.2", values)
        fit = Fit(bounds(5, strict=False, rows=o["rows"], row_cut=o["row_cut"]).acted)
        for g, y in runs:
            fit.add(y, zeropower(g, 5, **o))
        return fit

    return predict


def _muon_trajectories(rng: np.random.Generator):
    from .stepping import Trajectory

    shapes = [(32, 96), (96, 32), (48, 48)]
    steps = 6
    per_step = [{"lr": 0.02, "momentum": 0.85 + 0.02 * t} for t in range(steps)]
    out = []
    for norm in (1.0, 1e-8):
        base = [rng.standard_normal(s) for s in shapes]
        grads = [[norm * (b + 0.5 * rng.standard_normal(b.shape)) / np.linalg.norm(b) for b in base]
                 for _ in range(steps)]
        out.append(Trajectory("Muon", f"diagnose ‖g‖={norm:g}", params0=[rng.standard_normal(s) for s in shapes],
                              per_step=per_step, hyper=dict(lr=0.02, momentum=0.85, nesterov=True, ns_steps=5),
                              grads=grads))
    return out


def _muon_probe(target: Target, device: str, rng: np.random.Generator):
    import torch

    from .stepping import step_through

    reps = [(t, step_through(target.get("Muon"), t, device=torch.device(device), dtype=torch.float32))
            for t in _muon_trajectories(rng)]

    def predict(values: dict) -> Fit:
        from optconform.reference.muon import muon

        o = O.clause_options("S7.2", values)
        fit = Fit(bounds(5, strict=False, rows=o["rows"], row_cut=o["row_cut"]).acted)
        for traj, rep in reps:
            states: list[dict] = [{} for _ in traj.params0]
            for t in range(traj.steps):
                hp = traj.per_step[t]
                for i in range(len(traj.params0)):
                    before = rep.before[t][i]
                    ref, states[i] = muon(before, rep.grads[t][i], states[i], lr=hp["lr"], momentum=hp["momentum"],
                                          nesterov=True, ns_steps=5, **o)
                    fit.add(rep.after[t][i] - before, ref - before)
        return fit

    return predict


def _adamw_probe(target: Target, device: str, rng: np.random.Generator):
    import torch

    from .stepping import Trajectory, step_through

    steps, shapes = 5, [(8, 16), (16,)]
    grads = [[1e-8 * rng.standard_normal(s) * (1 + 9 * (t % 2)) for s in shapes] for t in range(steps)]
    traj = Trajectory("AdamW", "diagnose", params0=[rng.standard_normal(s) for s in shapes],
                      per_step=[{"lr": 0.01}] * steps,
                      hyper=dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), grads=grads,
                      attrs=[{"lr_mul": 2.0, "wd_mul": 0.5}, {}])
    rep = step_through(target.get("AdamW"), traj, device=torch.device(device), dtype=torch.float32)

    def predict(values: dict) -> Fit:
        from optconform.reference.adam import adamw

        o = O.clause_options("S8.2", values)
        fit = Fit(T.f32_trajectory_rtol(1))
        states: list[dict] = [{} for _ in shapes]
        for t in range(steps):
            for i in range(len(shapes)):
                before, after = rep.before[t][i], rep.after[t][i]
                a = traj.attrs[i]
                ref, states[i] = adamw(before, rep.grads[t][i], states[i], lr=0.01, betas=(0.9, 0.999), eps=1e-8,
                                       weight_decay=0.1, lr_mul=a.get("lr_mul", 1.0), wd_mul=a.get("wd_mul", 1.0), **o)
                # the float32 family's normalisation: error / (‖θ'‖ + ‖Δθ‖)
                fit.add(after, ref, scale=float(np.linalg.norm(after)) + float(np.linalg.norm(after - before)))
        return fit

    return predict


def _clip_probe(target: Target, device: str, rng: np.random.Generator):
    import torch

    from .judges.clipping import _grad_err

    runs = []
    for total, max_norm in ((1e-8, 1e-7), (1e-3, 5e-4), (1.0, 0.5)):
        grads = [rng.standard_normal((6, 5)), rng.standard_normal(9)]
        norm = float(np.sqrt(sum(np.sum(g**2) for g in grads)))
        params = []
        for g in grads:
            p = torch.nn.Parameter(torch.zeros(g.shape, device=device))
            p.grad = torch.as_tensor(g * (total / norm), dtype=torch.float32, device=device).clone()
            params.append(p)
        given = [p.grad.double().cpu().numpy().copy() for p in params]
        target.get("clip_grad_norm")(params, max_norm)
        runs.append((given, max_norm, [p.grad.double().cpu().numpy() for p in params]))

    def predict(values: dict) -> Fit:
        from optconform.reference.clipping import clip_grad_norm

        fit, worst = Fit(T.CLIP_GRAD_RTOL), 0.0
        for given, max_norm, clipped in runs:
            ref, _ = clip_grad_norm(given, max_norm=max_norm, **O.clause_options("S5.1", values))
            fit.add(np.concatenate([c.ravel() for c in clipped]), np.concatenate([r.ravel() for r in ref]))
            worst = max(worst, _grad_err(clipped, ref))
        fit.worst = worst  # the clipping judge's elementwise metric, against its bound
        return fit

    return predict


PROBES: dict[str, Callable] = {"clip_grad_norm": _clip_probe, "zeropower": _zeropower_probe, "Muon": _muon_probe,
                               "AdamW": _adamw_probe}


# ------------------------------------------------------------------------------------------------ search


def search(name: str, predict: Callable[[dict], Fit], start: dict[str, Any] | None = None) -> Diagnosis:
    """Profiles first, then coordinate descent over the options (module docstring); ``start`` (every option's
    value: the run's own profile and --option choice) is tried as well."""
    tried: list[tuple[str, float]] = []
    keys = list(_candidates(name))

    def fit(values: dict, label: str) -> Fit:
        f = predict(values)
        tried.append((label, f.worst))
        return f

    best_values, best = None, None
    for p in O.PROFILES.values():
        f = fit(p.values, f"profile {p.name}")
        if best is None or f.sse < best.sse:
            best_values, best = p.values, f
    assert best is not None and best_values is not None
    if start is not None and any(start[k] != best_values[k] for k in keys):
        f = fit(start, "the run's options")
        if prefers(f, best):
            best_values, best = dict(start), f
    current = dict(best_values)
    for _ in range(MAX_SWEEPS):
        changed = False
        for k, vals in _candidates(name).items():
            for v in vals:
                if v == current[k]:
                    continue
                trial = {**current, k: v}
                f = fit(trial, f"{k}={v!r}")
                if prefers(f, best):
                    current, best, changed = trial, f, True
        if not changed:
            break
    r, bound = best.worst, best.bound
    profile, differs = O.describe(current, tuple(keys))
    except_ = ("" if not differs else " except " + ", ".join(f"{k}={v!r}" for k, v in differs.items()))
    if r <= bound:
        line = f"{name}: {profile}{except_} (residual {r:.3g}, bound {bound:.3g}; {len(tried)} candidates)"
        status = "reproduced"
    else:
        line = (f"no known variant reproduces {name}: closest {profile}{except_}, residual {r:.3g} against bound "
                f"{bound:.3g} ({len(tried)} candidates) — a likely bug")
        status = "unknown"
    return Diagnosis(name, status, line, profile, differs, r, bound, current, tried)


def diagnose_target(target: Target, start: dict[str, Any], *, device: str = "cpu", seed: int = 0) -> list[Diagnosis]:
    """One :class:`Diagnosis` per protocol name with variant options that the target provides."""
    out = []
    for name, probe in PROBES.items():
        problem = target.problem(name)
        if problem is not None:
            out.append(Diagnosis(name, "not run", f"{name}: not diagnosed ({problem[0]})"))
            continue
        rng = np.random.default_rng([seed, len(name)])
        try:
            predict = probe(target, device, rng)
        except Exception as exc:  # noqa: BLE001 - the target's own failure on a probe: reported, the run goes on
            out.append(Diagnosis(name, "not run", f"{name}: not diagnosed (the target raised {type(exc).__name__}: "
                                                  f"{exc})"))
            continue
        out.append(search(name, predict, start))
    return out
