"""Figure builders of the reports (``--report-html``, ``--report-md``): matplotlib, no pyplot (no global state, no
display: every figure is a :class:`matplotlib.figure.Figure` rendered by Agg to PNG bytes).

matplotlib is an optional extra (``pip install optconform[report]``); importing this module without it raises
ImportError, which :mod:`.html_report` turns into a hint. The data come from the judges' plot payloads
(``Verdict.plot`` / ``Verdict.series``, carried by ``CaseRecord.plots``) and from the diagnoses:

* one figure per judged clause (:func:`clause_figure`), its subplots the clause's worst case of each kind:
  - Newton–Schulz outputs (S6.2, S7.2, S9.4): the target's per-direction response against the float64 reference
    and the map p(ŝ) of the rows in use, with the tolerance band; and the signed error against ± the bound (the
    worst output when one is beyond its bound, and the largest one within its bounds);
  - trajectories (S3.5, S7.2, S8.2, S9.4, S9.5): each step's error against each step's bound, one subplot per
    metric (the worst case of each);
  - any other clause (schedules, clipping; or a clause whose cases only raised): every check's value / tolerance;
* one figure per diagnosis (:func:`diagnosis_figure`): each candidate's residual in search order, with the bound.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Sequence

import matplotlib
from matplotlib.figure import Figure

matplotlib.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 8,
                            "xtick.labelsize": 8, "ytick.labelsize": 8})

DPI = 80
WIDTH = 12.0  # inches: 960 px at DPI
PASS, FAIL, REF, BAND = "#1f77b4", "#d62728", "#2ca02c", "#9ecae1"
MAX_TRAJECTORIES = 3  # trajectory subplots per clause figure (the worst metrics)
MAX_CHECKS = 30  # bars of the checks subplot


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _wrap(text: str, width: int = 95) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _tex(text: str) -> str:
    """Plain text that matplotlib must not read as mathtext (a case id or metric with ``$``)."""
    return str(text).replace("$", r"\$").replace("ŝ", r"$\hat{s}$")


def _floats(xs: Iterable) -> list[float]:
    return [math.nan if x is None else float(x) for x in xs]


def _score(p: dict) -> float:
    s = p.get("score", 0.0)
    return math.inf if s is None or (isinstance(s, float) and math.isnan(s)) else float(s)


def pick(payloads: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """The Newton–Schulz payloads to show and the worst trajectory payload of each metric (worst metrics first).

    Newton–Schulz: the worst output (largest max |dᵢ| / bound(ŝᵢ)) when one is beyond its bound, and a
    representative passing one next to it; when every output is within, the representative alone: the output with
    the most judged directions (the worst of those), since the worst ratio of a passing clause is usually a matrix
    with two or three directions."""
    ns_all, traj = [], {}
    for p in payloads:
        kind = p.get("kind")
        if kind == "ns":
            ns_all.append(p)
        elif kind == "trajectory":
            old = traj.get(p["metric"])
            if old is None or _score(p) > _score(old):
                traj[p["metric"]] = p
    worst = sorted(traj.values(), key=_score, reverse=True)[:MAX_TRAJECTORIES]
    ns: list[dict] = []
    if ns_all:
        bad = max(ns_all, key=_score)
        if _score(bad) > 1.0:
            ns.append(bad)
        good = [p for p in ns_all if not _score(p) > 1.0]
        if good:
            ns.append(dict(max(good, key=lambda p: (p.get("directions", 0), _score(p))), representative=True))
    return ns, worst


def _ratio_text(r: float) -> str:
    return "∞" if math.isinf(r) else f"{r:.3g}"


def _ns_response(ax, p: dict) -> None:
    grid, curve, gb = _floats(p["grid"]), _floats(p["curve"]), _floats(p["grid_bound"])
    shat, resp, ref, bnd = _floats(p["shat"]), _floats(p["response"]), _floats(p["reference"]), _floats(p["bound"])
    signed = _floats(p["signed"])
    rows = p.get("rows", 0)
    if p.get("follows_map", True):
        lo = [c - b for c, b in zip(curve, gb, strict=True)]
        hi = [c + b for c, b in zip(curve, gb, strict=True)]
        ax.fill_between(grid, lo, hi, color=BAND, alpha=0.5, lw=0,
                        label=f"tolerance band $p(\\hat s) \\pm$ bound$(\\hat s)$ ({_tex(p['bound_kind'])})")
        ax.plot(grid, curve, color="black", lw=1.2,
                label=f"reference map $p(\\hat s)$ ({rows} coefficient row{'s' * (rows != 1)})")
    else:  # this run's reference is another map of ŝ (a variant's normalisation): the band follows its points
        ax.errorbar(shat, ref, yerr=bnd, fmt="none", ecolor=BAND, elinewidth=3, alpha=0.8,
                    label="tolerance: reference $\\pm$ bound$(\\hat s_i)$")
        ax.plot(grid, curve, color="black", lw=1.0, ls=":",
                label=f"$p(\\hat s)$, {rows} row{'s' * (rows != 1)} (reference: other normalisation)")
    ax.scatter(shat, ref, s=10, facecolors="none", edgecolors=REF, lw=0.8,
               label=r"float64 reference $u_i^\top R\, v_i$", zorder=3)
    ok = [abs(d) <= b for d, b in zip(signed, bnd, strict=False)]
    for good, color, label in ((True, PASS, r"target $u_i^\top Y v_i$ (within bound)"),
                               (False, FAIL, r"target $u_i^\top Y v_i$ (beyond bound)")):
        xs = [s for s, k in zip(shat, ok, strict=False) if k == good]
        ys = [r for r, k in zip(resp, ok, strict=False) if k == good]
        if xs:
            ax.scatter(xs, ys, s=9, color=color, label=label, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel(r"$\hat s_i = \sigma_i\, /\, (\|G\|_F + \mathrm{eps})$: normalised singular value of the input (log)")
    ax.set_ylabel(r"response in direction $i$")
    which = "the largest case within its bounds" if p.get("representative") else "the worst case"
    ax.set_title(_wrap(f"per-direction response ({which}) — {_tex(p['case'])} ({p['directions']} directions judged"
                       + (f", {len(shat)} shown" if len(shat) < p["directions"] else "") + ")", 75))
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, framealpha=0.85)


def _ns_error(ax, p: dict) -> None:
    grid, gb = _floats(p["grid"]), _floats(p["grid_bound"])
    shat, signed, bnd = _floats(p["shat"]), _floats(p["signed"]), _floats(p["bound"])
    ax.fill_between(grid, [-b for b in gb], gb, color=BAND, alpha=0.5, lw=0, label=r"$\pm$ bound$(\hat s)$")
    ax.axhline(0.0, color="black", lw=0.8)
    ok = [abs(d) <= b for d, b in zip(signed, bnd, strict=False)]
    for good, color, label in ((True, PASS, "within bound"), (False, FAIL, "beyond bound")):
        xs = [s for s, k in zip(shat, ok, strict=False) if k == good]
        ys = [d for d, k in zip(signed, ok, strict=False) if k == good]
        if xs:
            ax.scatter(xs, ys, s=9, color=color, label=f"$d_i$ {label}", zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel(r"$\hat s_i$ (log)")
    ax.set_ylabel(r"signed error $d_i = u_i^\top (Y - R)\, v_i$")
    ax.set_title(r"signed response error against the bound: max $|d_i|$ / bound$(\hat s_i)$ = "
                 f"{_ratio_text(float(p.get('ratio', p.get('score', 0.0))))}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, framealpha=0.85)


def _trajectory(ax, p: dict) -> None:
    steps = [int(s) for s in p.get("steps") or range(len(p["values"]))]
    vals, tols = _floats(p["values"]), _floats(p["tolerances"])
    finite = [v for v in vals if math.isfinite(v)]
    pos = [v for v in finite if v > 0]
    ptol = [t for t in tols if math.isfinite(t) and t > 0]
    # log scale where the errors span decades or sit far below the bound; exact zeros then drawn at a floor
    log = bool(pos and ptol and all(v >= 0 for v in finite)
               and (max(pos) / min(pos) > 30 or min(pos) < min(ptol) / 10 or max(pos) > 10 * max(ptol)))
    floor = min(pos + ptol) / 10 if log else 0.0
    top = max(finite + [t for t in tols if math.isfinite(t)] or [1.0])
    shown = [(max(v, floor) if log else v) if math.isfinite(v) else top * (10 if log else 1.5) for v in vals]
    notes = []
    if log and any(v == 0 for v in finite):
        notes.append(f"0 drawn at {floor:.2g}")
    if len(finite) < len(vals):
        notes.append("non-finite drawn at the top")
    ax.plot(steps, shown, color=PASS, lw=1.0, marker="o", ms=3,
            label="error (target vs reference)" + (f" ({'; '.join(notes)})" if notes else ""))
    ax.step(steps, tols, where="mid", color=FAIL, ls="--", lw=1.2, label="bound per step")
    bad = [(s, y) for s, v, y, t in zip(steps, vals, shown, tols, strict=True) if not v <= t]
    if bad:
        ax.scatter([s for s, _ in bad], [y for _, y in bad], color=FAIL, s=28, zorder=4, label="beyond bound")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("error" + (" (log)" if log else ""))
    worst = _ratio_text(_score(p))
    ax.set_title(_wrap(f"{_tex(p['metric'])} — {_tex(p['case'])} (worst error / bound {worst})", 70))
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="best", framealpha=0.85)


def _checks(ax, checks: Sequence[dict]) -> None:
    numeric = [c for c in checks if c.get("kind") not in ("error", "protocol")]
    errors = [c for c in checks if c.get("kind") in ("error", "protocol")]

    def ratio(c: dict) -> float:
        v, t = float(c["value"]), float(c["tolerance"])
        return (0.0 if v == 0 else math.inf) if t == 0 else v / t

    # one bar per (case, metric): its worst
    best: dict[tuple, dict] = {}
    for c in numeric:
        k = (c["case"], c["metric"], c["level"])
        if k not in best or ratio(c) > ratio(best[k]):
            best[k] = c
    rows = sorted(best.values(), key=ratio, reverse=True)[:MAX_CHECKS]
    if not rows:
        ax.axis("off")
        text = "no numeric check recorded"
        if errors:
            text += ": " + "; ".join(sorted({c.get('message', '') for c in errors}))[:400]
        ax.text(0.5, 0.5, _wrap(text, 110), ha="center", va="center", transform=ax.transAxes)
        return
    floor = 1e-4
    rs = [ratio(c) for c in rows]
    finite = [r for r in rs if math.isfinite(r)]
    cap = max([1.0, *finite]) * 10
    shown = [min(max(r, floor), cap) if not math.isnan(r) else cap for r in rs]
    colors = [PASS if c["passed"] else FAIL for c in rows]
    y = list(range(len(rows)))
    left = floor / 3
    ax.barh(y, [v - left for v in shown], color=colors, left=left)
    ax.set_xscale("log")
    ax.set_xlim(left, cap * 3)
    ax.axvline(1.0, color="black", ls="--", lw=1.2)
    labels = [_tex(f"[{c['level']}] {c['case']}: {c['metric']}"[:95]) for c in rows]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    for yi, r, s in zip(y, rs, shown, strict=False):
        ax.text(s, yi, " " + ("0" if r == 0 else _ratio_text(r)), va="center", fontsize=7)
    ax.set_xlabel(f"value / tolerance (log; dashed: the tolerance; red: beyond it; below {floor:g} drawn at {floor:g})")
    more = f" (the {len(rows)} largest of {len(best)})" if len(best) > len(rows) else ""
    ax.set_title(f"every check of the clause, worst first{more}" + (f"; {len(errors)} error(s)" if errors else ""))
    ax.grid(True, axis="x", which="both", alpha=0.25)


def clause_figure(clause: str, name: str, payloads: Sequence[dict], checks: Sequence[dict]) -> bytes:
    """The one figure of a judged clause: its worst Newton–Schulz output and worst trajectories, else its checks."""
    ns, traj = pick(payloads)
    panels: list[tuple[str, object]] = []
    for p in ns:
        panels += [("ns_response", p), ("ns_error", p)]
    panels += [("trajectory", t) for t in traj]
    if not panels:
        n = min(MAX_CHECKS, len({(c["case"], c["metric"], c["level"]) for c in checks}) or 1)
        fig = Figure(figsize=(WIDTH, 1.6 + 0.24 * n), dpi=DPI, layout="constrained")
        _checks(fig.add_subplot(1, 1, 1), checks)
    else:
        ncols = 2 if len(panels) > 1 else 1
        nrows = math.ceil(len(panels) / ncols)
        fig = Figure(figsize=(WIDTH, 4.6 * nrows), dpi=DPI, layout="constrained")
        for k, (kind, p) in enumerate(panels):
            ax = fig.add_subplot(nrows, ncols, k + 1)
            {"ns_response": _ns_response, "ns_error": _ns_error, "trajectory": _trajectory}[kind](ax, p)
    fig.suptitle(f"{clause} {name}", fontsize=11, fontweight="bold")
    return _png(fig)


def diagnosis_figure(d: dict) -> bytes:
    """The residual of every candidate option set the ``--diagnose`` search tried, in search order, and the bound."""
    tried = [(str(c), float(r)) for c, r in d.get("tried", [])]
    n = max(len(tried), 1)
    fig = Figure(figsize=(WIDTH, 1.9 + 0.24 * n), dpi=DPI, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    bound = float(d.get("bound", math.nan))
    if not tried:
        ax.axis("off")
        ax.text(0.5, 0.5, "no candidate was tried", ha="center", va="center", transform=ax.transAxes)
    else:
        rs = [r for _, r in tried]
        finite = [r for r in rs if math.isfinite(r) and r > 0]
        floor = min(finite + ([bound] if math.isfinite(bound) and bound > 0 else []) or [1e-12]) / 3
        top = max(finite + ([bound] if math.isfinite(bound) else []) or [1.0]) * 3
        shown = [top if not math.isfinite(r) else max(r, floor) for r in rs]
        chosen = float(d.get("residual", math.nan))
        colors = [PASS if r <= bound else "#999999" for r in rs]
        y = list(range(len(tried)))
        bars = ax.barh(y, [v - floor / 3 for v in shown], color=colors, left=floor / 3)
        for yi, (_c, r) in enumerate(tried):
            if r == chosen:
                bars[yi].set_edgecolor("black")
                bars[yi].set_linewidth(1.5)
        ax.set_xscale("log")
        ax.set_xlim(floor / 3, top * 3)
        if math.isfinite(bound):
            ax.axvline(bound, color=FAIL, ls="--", lw=1.4, label=f"bound {bound:.3g}")
        ax.set_yticks(y, [_tex(c[:70]) for c, _ in tried])
        ax.invert_yaxis()
        for yi, (r, s) in enumerate(zip(rs, shown, strict=False)):
            ax.text(s, yi, f" {r:.3g}", va="center", fontsize=7)
        ax.set_xlabel("residual of the candidate's prediction against the target's probe outputs (log)")
        ax.set_ylabel("candidate, in search order")
        ax.grid(True, axis="x", which="both", alpha=0.25)
        ax.scatter([], [], marker="s", color=PASS, label="within the bound")
        ax.scatter([], [], marker="s", color="#999999", label="beyond the bound")
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="black",
                   label="the diagnosed candidate's residual")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.85)
    ax.set_title(_wrap(_tex(str(d.get("line", d.get("name", "")))), 120))
    fig.suptitle(f"diagnosis: {d.get('name', '')}", fontsize=11, fontweight="bold")
    return _png(fig)
