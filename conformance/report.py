"""Verdicts and reports: what each conformance case measured, and the per-clause summary.

A case records every comparison through :class:`Verdict` (clause, case id, metric, measured
value, tolerance, and for trajectories the first step that left tolerance). The plugin gathers
the records from the test reports (so they survive pytest-xdist) into a :class:`Report`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

NOT_PROVIDED_PREFIX = "not provided"
PROPERTY_KEY = "optconform_checks"


@dataclass
class Check:
    case: str
    metric: str
    value: float
    tolerance: float
    passed: bool
    first_bad_step: int | None = None
    steps: int | None = None

    def ratio(self) -> float:
        if self.tolerance == 0.0:
            return 0.0 if self.value == 0.0 else math.inf
        return self.value / self.tolerance


class Verdict:
    """Records the checks of one case and fails the case, with all the evidence, on the first miss."""

    def __init__(self, clause: str, name: str, nodeid: str) -> None:
        self.clause, self.name, self.nodeid = clause, name, nodeid
        self.checks: list[Check] = []

    def _keep(self, c: Check) -> None:
        """Keep one passing record per (case, metric), the worst, and the latest failing one.

        Hypothesis calls a case many times; this keeps the report to the evidence that matters.
        """
        for i, old in enumerate(self.checks):
            if (old.case, old.metric, old.passed) == (c.case, c.metric, c.passed):
                if not c.passed or c.ratio() >= old.ratio():
                    self.checks[i] = c
                return
        self.checks.append(c)

    def _fail(self, check: Check) -> None:
        """Raise AssertionError (an Exception, so hypothesis shrinks it and prints the falsifying example)."""
        __tracebackhide__ = True
        where = f" (first left tolerance at step {check.first_bad_step} of {check.steps})" \
            if check.first_bad_step is not None else ""
        raise AssertionError(f"[{self.clause} {self.name}] case {check.case}: {check.metric} = {check.value:.6g} "
                             f"exceeds tolerance {check.tolerance:.3g}{where}")

    def check(self, metric: str, value: float, tolerance: float, *, case: str = "") -> None:
        """Record ``value <= tolerance`` (NaN fails)."""
        __tracebackhide__ = True
        value = float(value)
        c = Check(case or self.nodeid, metric, value, float(tolerance), bool(value <= tolerance))
        self._keep(c)
        if not c.passed:
            self._fail(c)

    def trajectory(self, metric: str, values: Sequence[float], tolerance: float | Sequence[float], *,
                   case: str = "") -> None:
        """Record a per-step metric; fails naming the first step (0-based) whose value left tolerance."""
        __tracebackhide__ = True
        vals = [float(v) for v in values]
        tols = [float(tolerance)] * len(vals) if isinstance(tolerance, (int, float)) else [float(t) for t in tolerance]
        if len(tols) != len(vals):
            raise ValueError(f"tolerance must have one entry per step ({len(vals)}); got {len(tols)}")
        bad = [i for i, (v, t) in enumerate(zip(vals, tols, strict=True)) if not v <= t]
        worst = max(range(len(vals)), key=lambda i: (vals[i] / tols[i]) if tols[i] else math.inf) if vals else 0
        c = Check(case or self.nodeid, metric, vals[worst] if vals else 0.0, tols[worst] if vals else 0.0,
                  not bad, bad[0] if bad else None, len(vals))
        if bad:
            c.value, c.tolerance = vals[bad[0]], tols[bad[0]]
        self._keep(c)
        if bad:
            self._fail(c)

    def equal(self, metric: str, actual: object, expected: object, *, case: str = "") -> None:
        """Record an exact (non-numeric or bitwise) agreement, e.g. identical parameters on every rank."""
        __tracebackhide__ = True
        ok = actual == expected
        c = Check(case or self.nodeid, metric, 0.0 if ok else 1.0, 0.0, bool(ok))
        self._keep(c)
        if not ok:
            __tracebackhide__ = True
            raise AssertionError(f"[{self.clause} {self.name}] case {c.case}: {metric}: got {actual!r}, "
                                 f"expected {expected!r}")


@dataclass
class CaseRecord:
    nodeid: str
    clause: str
    name: str
    status: str  # passed | failed | not provided | skipped | error
    message: str = ""
    checks: list[dict] = field(default_factory=list)


def _clause_key(clause: str) -> tuple:
    parts = clause.lstrip("S").split(".")
    return tuple(int(p) if p.isdigit() else p for p in parts)


class Report:
    """All case records of one run, the per-clause summary, and its JSON / Markdown forms."""

    def __init__(self, target: str, options: dict) -> None:
        self.target, self.options = target, options
        self.records: dict[str, CaseRecord] = {}

    def add(self, rec: CaseRecord) -> None:
        old = self.records.get(rec.nodeid)
        # setup / call / teardown all report; the worst outcome wins.
        order = {"passed": 0, "not provided": 1, "skipped": 1, "failed": 2, "error": 3}
        if old is None or order[rec.status] >= order[old.status]:
            if old is not None and not rec.checks:
                rec.checks = old.checks
            self.records[rec.nodeid] = rec

    def summary(self) -> list[dict]:
        rows: dict[tuple[str, str], dict] = {}
        for r in self.records.values():
            row = rows.setdefault((r.clause, r.name), dict(clause=r.clause, name=r.name, passed=0, failed=0,
                                                           not_provided=0, skipped=0, worst=None))
            key = {"passed": "passed", "failed": "failed", "error": "failed",
                   "not provided": "not_provided", "skipped": "skipped"}[r.status]
            row[key] += 1
            for c in r.checks:
                ratio = Check(**c).ratio()
                if row["worst"] is None or ratio > row["worst"]["ratio"]:
                    row["worst"] = dict(ratio=ratio, metric=c["metric"], value=c["value"],
                                        tolerance=c["tolerance"], case=c["case"])
        return [rows[k] for k in sorted(rows, key=lambda k: (_clause_key(k[0]), k[1]))]

    @staticmethod
    def verdict_of(row: dict) -> str:
        if row["failed"]:
            return "FAIL"
        if row["passed"]:
            return "pass"
        if row["not_provided"]:
            return "not provided"
        return "skipped"

    def to_json(self) -> str:
        return json.dumps(dict(target=self.target, options=self.options, summary=self.summary(),
                               cases=[asdict(r) for r in self.records.values()]), indent=2, default=str)

    def table_lines(self) -> list[str]:
        head = (f"{'clause':<7} {'function':<22} {'verdict':<13} {'pass':>4} {'fail':>4} {'n/p':>4} {'skip':>4}"
                "  worst value/tolerance")
        lines = [head, "-" * len(head)]
        for row in self.summary():
            w = row["worst"]
            worst = f"{w['ratio']:.3g} ({w['metric']})" if w else ""
            lines.append(f"{row['clause']:<7} {row['name']:<22} {self.verdict_of(row):<13} {row['passed']:>4} "
                         f"{row['failed']:>4} {row['not_provided']:>4} {row['skipped']:>4}  {worst}")
        return lines

    def to_markdown(self) -> str:
        out = ["# optconform conformance report\n", f"Target: `{self.target}`  ",
               f"Options: `{self.options}`\n",
               "| clause | function | verdict | passed | failed | not provided | skipped | worst value / tolerance |",
               "|---|---|---|---|---|---|---|---|"]
        for row in self.summary():
            w = row["worst"]
            worst = f"{w['ratio']:.3g} ({w['metric']}={w['value']:.3g}, tol {w['tolerance']:.3g})" if w else ""
            out.append(f"| {row['clause']} | `{row['name']}` | {self.verdict_of(row)} | {row['passed']} | "
                       f"{row['failed']} | {row['not_provided']} | {row['skipped']} | {worst} |")
        failed = [r for r in self.records.values() if r.status in ("failed", "error")]
        if failed:
            out += ["", "## Failures", ""]
            out += [f"- `{r.nodeid}` ({r.clause} {r.name}): {r.message.splitlines()[0] if r.message else ''}"
                    for r in failed]
        return "\n".join(out) + "\n"
