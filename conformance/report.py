"""Verdicts and reports: what each conformance case measured, per verdict level, and the per-clause summary.

A case records every comparison through :class:`Verdict` (clause, case id, metric, measured value,
tolerance, verdict level, and for trajectories the first step that left tolerance). A failing check fails
the pytest case only when its level is required (``--require``, default ``core``); failures at other levels
are recorded with the same evidence. The plugin gathers the records from the test reports (so they survive
pytest-xdist) into a :class:`Report`, whose table gives each level its own verdict per clause.

Case outcomes (``CaseRecord.status``): ``passed``; ``failed`` (a numeric or exact check missed); ``error`` (the
target raised, or a rank died); ``mismatch`` (the target's object cannot be called as the protocol says);
``unsupported`` (the target declared it, or raised ``optconform.spec.Unsupported``); ``not provided`` (the
protocol name is missing); ``skipped`` (the run did not select it, e.g. a world size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from optconform import spec
from optconform.spec.levels import CORE, LEVELS

NOT_PROVIDED_PREFIX = "not provided"
UNSUPPORTED_PREFIX = "unsupported"
MISMATCH_PREFIX = "signature mismatch"
PROPERTY_KEY = "optconform_checks"
PLOTS_KEY = "optconform_plots"
#: the most points one plot payload keeps (per array); the rest is thinned, the worst points always kept
PLOT_POINTS = 300
STATUSES = ("passed", "failed", "error", "mismatch", "unsupported", "not provided", "skipped")
_ORDER = {"passed": 0, "skipped": 1, "not provided": 1, "unsupported": 1, "mismatch": 2, "failed": 3, "error": 4}


@dataclass
class Check:
    case: str
    metric: str
    value: float
    tolerance: float
    passed: bool
    level: str = CORE
    first_bad_step: int | None = None
    steps: int | None = None
    kind: str = "numeric"  # numeric | structure (a count against a bound) | exact | error | protocol
    message: str = ""
    evidence: str = ""  # what kind of difference it is (conformance.evidence), for a failing check
    bad_steps: list[int] | None = None  # every step of a trajectory that left tolerance

    def ratio(self) -> float:
        if self.kind in ("error", "protocol"):
            return math.inf
        if self.tolerance == 0.0:
            return 0.0 if self.value == 0.0 else math.inf
        return self.value / self.tolerance

    def describe(self) -> str:
        """One line: what was measured, against what, at which level."""
        if self.kind in ("error", "protocol") or (self.kind == "exact" and not self.passed):
            return f"[{self.level}] {self.case}: {self.message}"
        where = ""
        if self.first_bad_step is not None:
            steps = self.bad_steps or [self.first_bad_step]
            shown = ", ".join(map(str, steps[:8])) + (f", … ({len(steps)} steps)" if len(steps) > 8 else "")
            where = f" (left tolerance at step{'s' if len(steps) > 1 else ''} {shown} of {self.steps})"
        ev = f" — {self.evidence}" if self.evidence and not self.passed else ""
        return (f"[{self.level}] {self.case}: {self.metric} = {self.value:.6g} "
                f"{'within' if self.passed else 'exceeds'} tolerance {self.tolerance:.3g}{where}{ev}")


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def error_line(exc: BaseException) -> str:
    """One line naming what a target raised. For a failed rank (``RankFailure``): the rank blamed and the last
    line of its traceback, where the exception is, then every other rank that failed with its own; for a hung
    group (``RankTimeout``): the timeout and the ranks still running."""
    tb = getattr(exc, "traceback", None)
    if isinstance(tb, str) and hasattr(exc, "rank"):
        others = [f"rank {r}: {_last_line(t)}" for r, t in sorted(getattr(exc, "failures", {}).items())
                  if r != exc.rank]
        return f"rank {exc.rank} failed: {_last_line(tb)}" + (f" (also {'; '.join(others)})" if others else "")
    lines = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _plain(x: object) -> object:
    """numpy arrays and scalars as plain Python lists / floats (5 significant digits), for the test report."""
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        x = x.tolist()
    if isinstance(x, float):
        return float(f"{x:.5g}") if math.isfinite(x) else x
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


def thin(n: int, keep: Iterable[int] = (), points: int = PLOT_POINTS) -> list[int]:
    """At most ``points`` indices of ``range(n)``: ``keep`` (the worst ones) and evenly spaced others, in order."""
    if n <= points:
        return list(range(n))
    keep = sorted(set(int(k) for k in keep))[: points // 3]
    rest = points - len(keep)
    even = {round(i * (n - 1) / (rest - 1)) for i in range(rest)} if rest > 1 else set()
    return sorted(set(keep) | even)


def plot_payload(data: dict) -> dict:
    """One plot payload, small and plain: every array thinned to :data:`PLOT_POINTS` points, the worst kept."""
    d = dict(data)
    if d.get("kind") == "trajectory" and len(d.get("values", ())) > PLOT_POINTS:
        vals, tols = d["values"], d["tolerances"]
        worst = sorted(range(len(vals)), key=lambda i: -(vals[i] / tols[i] if tols[i] else math.inf))[:20]
        idx = thin(len(vals), worst)
        steps = d.get("steps") or list(range(len(vals)))
        d.update(steps=[steps[i] for i in idx], values=[vals[i] for i in idx], tolerances=[tols[i] for i in idx])
    return _plain(d)


class VerdictFailure(AssertionError):
    """A check at a required level missed (an AssertionError, so hypothesis shrinks and prints the example)."""


class Verdict:
    """Records the checks of one case; a miss at a required level raises :class:`VerdictFailure`.

    ``regime(r)`` sets the level the case's numeric checks (and any exception the target raises) belong to;
    a check may name its level explicitly (ownership checks are ``layout``). With ``defer`` (every case but the
    hypothesis ones, which must raise inside the example to shrink it) the case runs to its end, so every
    check of every level is recorded, and :meth:`finish` raises for the required misses."""

    def __init__(self, clause: str, name: str, nodeid: str, required: Sequence[str] = (CORE,),
                 defer: bool = False) -> None:
        self.clause, self.name, self.nodeid = clause, name, nodeid
        self.required = tuple(required)
        self.defer = defer
        self.level = CORE
        self.regime_name = "ordinary"
        self.checks: list[Check] = []
        self._pending: list[Check] = []
        # plot data for the reports (--report-html / --report-md): key -> (score, data, finish); the worst per key
        self._plots: dict[str, tuple[float, dict, Callable[[dict], dict] | None]] = {}

    def regime(self, regime: spec.Regime) -> None:
        """The case's input regime (``spec.clause(...).regime(norms)``): its level applies from here on."""
        self.level, self.regime_name = regime.level, regime.name

    def _keep(self, c: Check) -> None:
        """Keep one passing record per (case, metric, level), the worst, and the latest failing one.

        Hypothesis calls a case many times; this keeps the report to the evidence that matters.
        """
        for i, old in enumerate(self.checks):
            if (old.case, old.metric, old.level, old.passed) == (c.case, c.metric, c.level, c.passed):
                if not c.passed or c.ratio() >= old.ratio():
                    self.checks[i] = c
                return
        self.checks.append(c)

    def _record(self, c: Check) -> None:
        __tracebackhide__ = True
        self._keep(c)
        if not c.passed and c.level in self.required:
            if not self.defer:
                raise VerdictFailure(f"[{self.clause} {self.name}] {c.describe()}")
            self._pending.append(c)

    def finish(self) -> None:
        """Raise for the misses at required levels recorded while deferring (the first named, the rest counted)."""
        __tracebackhide__ = True
        if self._pending:
            more = f" (and {len(self._pending) - 1} more required check(s) missed)" if len(self._pending) > 1 else ""
            first, self._pending = self._pending[0], []
            raise VerdictFailure(f"[{self.clause} {self.name}] {first.describe()}{more}")

    def check(self, metric: str, value: float, tolerance: float, *, case: str = "", level: str | None = None,
              kind: str = "numeric", evidence: str = "") -> None:
        """Record ``value <= tolerance`` (NaN fails); ``evidence`` says what kind of difference a miss is."""
        __tracebackhide__ = True
        value = float(value)
        self._record(Check(case or self.nodeid, metric, value, float(tolerance), bool(value <= tolerance),
                           level or self.level, kind=kind, evidence=evidence))

    def trajectory(self, metric: str, values: Sequence[float], tolerance: float | Sequence[float], *,
                   case: str = "", level: str | None = None, evidence: str = "") -> None:
        """Record a per-step metric; fails naming every step (0-based) whose value left tolerance."""
        __tracebackhide__ = True
        vals = [float(v) for v in values]
        tols = [float(tolerance)] * len(vals) if isinstance(tolerance, (int, float)) else [float(t) for t in tolerance]
        if len(tols) != len(vals):
            raise ValueError(f"tolerance must have one entry per step ({len(vals)}); got {len(tols)}")
        bad = [i for i, (v, t) in enumerate(zip(vals, tols, strict=True)) if not v <= t]
        worst = max(range(len(vals)), key=lambda i: (vals[i] / tols[i]) if tols[i] else math.inf) if vals else 0
        pick = bad[0] if bad else worst
        self.series(metric, vals, tols, case=case)
        self._record(Check(case or self.nodeid, metric, vals[pick] if vals else 0.0, tols[pick] if vals else 0.0,
                           not bad, level or self.level, bad[0] if bad else None, len(vals), evidence=evidence,
                           bad_steps=bad or None))

    # ------------------------------------------------------------------ plot data (no check, no verdict)

    def plot(self, key: str, score: float, data: dict, finish: Callable[[dict], dict] | None = None) -> None:
        """Keep ``data`` for the reports' plots when its ``score`` (a ratio to a bound: larger is worse; NaN counts
        as worst) is the largest seen under ``key`` in this case. ``finish(data)`` runs once, when the case is
        exported (:meth:`plots`), so that expensive or bulky parts are made for the kept payload only. Plot data
        never changes a verdict."""
        score = math.inf if math.isnan(score) else float(score)
        old = self._plots.get(key)
        if old is None or score > old[0]:
            self._plots[key] = (score, data, finish)

    def series(self, metric: str, values: Sequence[float], tolerance: float | Sequence[float], *,
               case: str = "", steps: Sequence[int] | None = None) -> None:
        """Keep a per-step series and its per-step bound for the trajectory plot (no check is recorded); ``steps``:
        the step of each value (default 0, 1, …)."""
        vals = [float(v) for v in values]
        tols = [float(tolerance)] * len(vals) if isinstance(tolerance, (int, float)) else [float(t) for t in tolerance]
        if not vals or len(tols) != len(vals):
            return
        ratios = [(v / t) if t > 0 else (0.0 if v == 0 else math.inf) for v, t in zip(vals, tols, strict=True)]
        score = max((math.inf if math.isnan(r) else r) for r in ratios)
        self.plot(f"trajectory:{metric}", score, dict(kind="trajectory", metric=metric, case=case or self.nodeid,
                                                      steps=list(steps) if steps is not None else
                                                      list(range(len(vals))), values=vals, tolerances=tols))

    def plots(self) -> list[dict]:
        """The kept plot payloads, finished and thinned to at most :data:`PLOT_POINTS` points per array."""
        out = []
        for key, (score, data, finish) in list(self._plots.items()):
            if finish is not None:
                try:
                    data = finish(data)
                except Exception as exc:  # noqa: BLE001 - plot data must never break a case
                    data = dict(kind="error", message=f"{type(exc).__name__}: {exc}")
                self._plots[key] = (score, data, None)  # finished once; the bulky inputs are released
            out.append(plot_payload(dict(data, key=key, score=score)))
        return out

    def equal(self, metric: str, actual: object, expected: object, *, case: str = "",
              level: str | None = None) -> None:
        """Record an exact (non-numeric or bitwise) agreement, e.g. identical parameters on every rank."""
        __tracebackhide__ = True
        ok = actual == expected
        self._record(Check(case or self.nodeid, metric, 0.0 if ok else 1.0, 0.0, bool(ok), level or self.level,
                           kind="exact", message="" if ok else f"{metric}: got {actual!r}, expected {expected!r}"))

    def error(self, exc: BaseException, *, case: str = "") -> bool:
        """Record that the target raised ``exc`` at the case's level; True when that level is required."""
        self._keep(Check(case or self.nodeid, "target raised", math.inf, 0.0, False, self.level, kind="error",
                         message=error_line(exc)))
        return self.level in self.required

    def mismatch(self, message: str) -> bool:
        """Record a signature mismatch (a ``core`` failure: the clause cannot be judged); True when required."""
        self._keep(Check(self.nodeid, "signature", math.inf, 0.0, False, CORE, kind="protocol", message=message))
        return CORE in self.required


@dataclass
class CaseRecord:
    nodeid: str
    clause: str
    name: str
    status: str  # one of STATUSES
    reason: str = ""  # one line: why it is not a pass (the first failing check, the skip reason, the error)
    message: str = ""  # the full pytest report text for failures
    checks: list[dict] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)  # level -> "passed" | "failed", for levels it judged
    plots: list[dict] = field(default_factory=list)  # plot payloads (Verdict.plots); not in the JSON report

    @classmethod
    def build(cls, nodeid: str, clause: str, name: str, outcome: str, reason: str, message: str,
              checks: Iterable[dict], plots: Iterable[dict] = ()) -> CaseRecord:
        """Derive the status and per-level results from pytest's outcome and the recorded checks."""
        checks = list(checks)
        levels: dict[str, str] = {}
        for c in checks:
            levels[c["level"]] = "failed" if (not c["passed"] or levels.get(c["level"]) == "failed") else "passed"
        failing = [Check(**c) for c in checks if not c["passed"]]
        if failing:  # the recorded evidence says more than pytest's exception line
            reason = ""
        if outcome == "skipped":
            status = next((s for s in ("unsupported", "not provided") if reason.startswith(s)), None)
            status = status or ("mismatch" if reason.startswith(MISMATCH_PREFIX) else "skipped")
            if status == "mismatch":
                levels[CORE] = "failed"
        elif any(c.kind == "protocol" for c in failing):
            status = "mismatch"
        elif any(c.kind == "error" for c in failing):
            status = "error"
        elif failing:
            status = "failed"
        elif outcome == "failed":  # raised outside any check: the case itself broke, at core
            status = "error"
            levels[CORE] = "failed"
        else:
            status = "passed"
        if failing and not reason:
            reason = failing[0].describe()
        return cls(nodeid, clause, name, status, reason, message, checks, levels, list(plots))


def _clause_key(clause: str) -> tuple:
    parts = clause.lstrip("S").split(".")
    return tuple(int(p) if p.isdigit() else p for p in parts)


def level_cell(cell: Mapping | None) -> str:
    """One level's verdict as the table shows it: ``pass N``, ``FAIL k/N``, ``—`` (no case), blank (no such level)."""
    if cell is None:
        return ""
    if not cell["cases"]:
        return "—"
    return f"FAIL {cell['failed']}/{cell['cases']}" if cell["failed"] else f"pass {cell['cases']}"


class Report:
    """All case records of one run, the per-clause and per-level summary, and its JSON / Markdown forms."""

    def __init__(self, target: str, options: dict) -> None:
        self.target, self.options = target, options
        self.records: dict[str, CaseRecord] = {}
        self.diagnoses: list[dict] = []  # --diagnose: one per protocol name probed (diagnose.Diagnosis.as_dict)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.options.get("require", (CORE,)))

    def add(self, rec: CaseRecord) -> None:
        """setup / call / teardown all report: the worst outcome wins, keeping the checks that were recorded."""
        old = self.records.get(rec.nodeid)
        if old is not None:
            if not rec.checks:
                rec.checks, rec.levels = old.checks, {**old.levels, **rec.levels}
            if not rec.plots:
                rec.plots = old.plots
            if _ORDER[rec.status] < _ORDER[old.status]:
                return
        self.records[rec.nodeid] = rec

    def summary(self) -> list[dict]:
        rows: dict[str, dict] = {}
        for r in self.records.values():
            c = spec.clause(r.clause)
            row = rows.setdefault(r.clause, dict(
                clause=r.clause, name=c.name, clause_levels=list(c.levels),
                levels={lv: dict(cases=0, failed=0, worst=None) for lv in c.levels},
                counts={s: 0 for s in STATUSES}, reasons={}))
            row["counts"][r.status] += 1
            for lv, res in r.levels.items():
                cell = row["levels"].setdefault(lv, dict(cases=0, failed=0, worst=None))
                cell["cases"] += 1
                cell["failed"] += res == "failed"
            for ch in r.checks:
                chk = Check(**ch)
                cell = row["levels"].setdefault(chk.level, dict(cases=0, failed=0, worst=None))
                if chk.kind in ("structure", "exact") and chk.passed:
                    continue  # the worst numeric margin is what the column reports
                if cell["worst"] is None or chk.ratio() > cell["worst"]["ratio"]:
                    cell["worst"] = dict(ratio=chk.ratio(), metric=chk.metric, value=chk.value,
                                         tolerance=chk.tolerance, case=chk.case, kind=chk.kind)
            if r.status not in ("passed", "skipped") and r.reason:
                key = (r.status, ", ".join(lv for lv in LEVELS if r.levels.get(lv) == "failed"))
                first = row["reasons"].setdefault(key, [0, r.reason])
                first[0] += 1
        out = []
        for k in sorted(rows, key=_clause_key):
            row = rows[k]
            for lv, cell in row["levels"].items():
                cell["verdict"] = ("—" if not cell["cases"] else "FAIL" if cell["failed"] else "pass")
                cell["required"] = lv in self.required
            row["reasons"] = [dict(status=s, levels=lv, cases=n, reason=t)
                              for (s, lv), (n, t) in row["reasons"].items()]
            out.append(row)
        return out

    def confirmation(self, diagnosis: dict, summary: list[dict] | None = None) -> str:
        """The verdict of the cases that ran under ``diagnosis``'s options (its protocol name's clause and the
        distributed clause stepping the same optimizer): the confirmation ``--diagnose`` promises."""
        from .diagnose import SINGLE_PROCESS

        def judged_by(clause_id: str) -> bool:
            n = spec.clause(clause_id).protocol_name or ""
            return diagnosis["name"] in (n, SINGLE_PROCESS.get(n))

        rows = [r for r in (self.summary() if summary is None else summary) if judged_by(r["clause"])]
        cells = [(r["clause"], lv, c) for r in rows for lv, c in r["levels"].items() if c["cases"]]
        if not cells:
            return "not confirmed: no case of its clauses was judged in this run"
        failed = [(cid, lv, c) for cid, lv, c in cells if c["failed"]]
        judged = ", ".join(sorted({cid for cid, _, _ in cells}))
        if not failed:
            return f"confirmed: {judged} pass at every level judged ({', '.join(sorted({lv for _, lv, _ in cells}))})"
        what = "; ".join(f"{cid} FAIL at {lv} ({c['failed']}/{c['cases']})" for cid, lv, c in failed)
        if any(lv == CORE for _, lv, _ in failed):
            return f"not confirmed: {what} — the diagnosed variant does not reproduce every case: a likely bug"
        return f"confirmed at core; {what} (beyond core: robustness or layout, not a variant difference)"

    def diagnoses_confirmed(self) -> list[dict]:
        """The diagnoses with their ``confirmation``."""
        summary = self.summary()
        return [{**d, "confirmation": self.confirmation(d, summary)} for d in self.diagnoses]

    def passed(self) -> bool:
        """True when no required level failed anywhere."""
        return not any(cell["failed"] for row in self.summary() for lv, cell in row["levels"].items()
                       if lv in self.required)


    @staticmethod
    def _others(counts: dict) -> str:
        return ", ".join(f"{n} {s}" for s, n in counts.items() if n and s not in ("passed", "failed", "error"))

    def table_lines(self) -> list[str]:
        head = (f"{'clause':<7} {'function':<22} " + " ".join(f"{lv:<11}" for lv in LEVELS)
                + f" {'other':<24} worst core check (value/tolerance)")
        lines = [head, "-" * len(head)]
        for row in self.summary():
            cells = " ".join(f"{level_cell(row['levels'].get(lv) if lv in row['clause_levels'] else None):<11}"
                             for lv in LEVELS)
            w = row["levels"].get(CORE, {}).get("worst")
            worst = "" if w is None else (w["kind"] if w["kind"] in ("error", "protocol") else
                                          f"{w['ratio']:.3g} ({w['metric']})")
            lines.append(f"{row['clause']:<7} {row['name']:<22} {cells} {self._others(row['counts']):<24} {worst}")
        problems = [(row, r) for row in self.summary() for r in row["reasons"]]
        if problems:
            lines += ["", "not passed (status ×cases [failing levels]: the first case's reason):"]
            for row, r in problems:
                at = f" [{r['levels']}]" if r["levels"] else ""
                lines.append(f"  {row['clause']} {row['name']}: {r['status']} ×{r['cases']}{at}: {r['reason']}")
        if self.diagnoses:
            lines += ["", "diagnosis (--diagnose; the cases above ran under the diagnosed options):"]
            for d in self.diagnoses_confirmed():
                lines += [f"  {d['line']}", f"    -> {d['confirmation']}"]
        req = ", ".join(self.required)
        lines += ["", f"required levels: {req} — {'pass' if self.passed() else 'FAIL'}"
                  + ("" if set(self.required) == set(LEVELS) else f" (--require all to fail on "
                     f"{', '.join(lv for lv in LEVELS if lv not in self.required)} too)")]
        return lines

    def to_json(self) -> str:
        return json.dumps(dict(target=self.target, options=self.options, required=list(self.required),
                               passed=self.passed(), diagnoses=self.diagnoses_confirmed(), summary=self.summary(),
                               cases=[{k: v for k, v in asdict(r).items() if k != "plots"}
                                      for r in self.records.values()]), indent=2, default=str)

    def to_markdown(self) -> str:
        out = ["# optconform conformance report\n", f"Target: `{self.target}`  ",
               f"Options: `{self.options}`  ",
               f"Required levels: {', '.join(self.required)} — **{'pass' if self.passed() else 'FAIL'}**\n",
               "| clause | function | " + " | ".join(LEVELS) + " | other | worst core check (value / tolerance) |",
               "|---|---|" + "---|" * len(LEVELS) + "---|---|"]
        for row in self.summary():
            cells = " | ".join(level_cell(row["levels"].get(lv) if lv in row["clause_levels"] else None)
                               for lv in LEVELS)
            w = row["levels"].get(CORE, {}).get("worst")
            worst = "" if w is None else (
                w["kind"] if w["kind"] in ("error", "protocol") else
                f"{w['ratio']:.3g} ({w['metric']}={w['value']:.3g}, tol {w['tolerance']:.3g})")
            out.append(f"| {row['clause']} | `{row['name']}` | {cells} | {self._others(row['counts'])} | {worst} |")
        if self.diagnoses:
            out += ["", "## Diagnosis", "", "The cases above ran under the diagnosed options.", ""]
            out += [f"- {d['line']}; {d['confirmation']}" for d in self.diagnoses_confirmed()]
        problems = [r for r in self.records.values() if r.status != "passed"]
        if problems:
            out += ["", "## Not passed", ""]
            out += [f"- `{r.nodeid}` ({r.clause} {r.name}, {r.status}"
                    + (f"; levels {', '.join(f'{k} {v}' for k, v in r.levels.items())}" if r.levels else "")
                    + f"): {r.reason}" for r in problems]
        return "\n".join(out) + "\n"
