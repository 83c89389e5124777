"""``--report-html PATH``: one self-contained HTML file (inline CSS, every plot a base64 PNG data URI; nothing is
fetched, no script) with the per-clause table of :class:`~optconform.conformance.report.Report`, the reasons of what
did not pass, the diagnoses, and one figure per judged clause (:mod:`.plots`), marked ``data-clause="S6.2"``, and one
per diagnosis, marked ``data-diagnosis="Muon"``. ``--report-md PATH`` links the same PNGs, written to
``<PATH without its suffix>_plots/``.

Plots need matplotlib, an optional extra (``pip install optconform[report]``); without it the HTML report still has
the table, and says how to get the plots (:data:`PLOTS_HINT`).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from optconform.spec.levels import CORE, LEVELS

from .report import Report, level_cell

PLOTS_HINT = "plots need matplotlib, an optional extra of optconform: pip install optconform[report]"


def plots_module():
    """:mod:`.plots`, or None when matplotlib cannot be imported."""
    try:
        from . import plots
    except ImportError:
        return None
    return plots


@dataclass
class Figures:
    """The PNGs of one report: clause id -> PNG, diagnosed protocol name -> PNG, and what could not be drawn."""

    clauses: dict[str, bytes] = field(default_factory=dict)
    diagnoses: dict[str, bytes] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # clause id or "diagnosis <name>" -> the exception
    available: bool = True  # False: matplotlib is missing (nothing drawn)


def judged_clauses(report: Report, summary: list[dict] | None = None) -> list[dict]:
    """The summary rows of the clauses with at least one case judged at some level (the clauses that get a plot)."""
    rows = report.summary() if summary is None else summary
    return [r for r in rows if any(c["cases"] for c in r["levels"].values())]


def render_figures(report: Report) -> Figures:
    """Draw every judged clause's figure and every diagnosis's (nothing, with ``available=False``, without
    matplotlib)."""
    plots = plots_module()
    if plots is None:
        return Figures(available=False)
    out = Figures()
    for row in judged_clauses(report):
        recs = [r for r in report.records.values() if r.clause == row["clause"]]
        try:
            out.clauses[row["clause"]] = plots.clause_figure(row["clause"], row["name"],
                                                             [p for r in recs for p in r.plots],
                                                             [c for r in recs for c in r.checks])
        except Exception as exc:  # noqa: BLE001 - a plot must never cost the report
            out.failed[row["clause"]] = f"{type(exc).__name__}: {exc}"
    for d in report.diagnoses:
        try:
            out.diagnoses[d["name"]] = plots.diagnosis_figure(d)
        except Exception as exc:  # noqa: BLE001
            out.failed[f"diagnosis {d['name']}"] = f"{type(exc).__name__}: {exc}"
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _img(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


_CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1b1b1b; max-width: 1250px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ddd; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; background: #f4f4f4;
       padding: 0 3px; border-radius: 3px; }
table.verdicts { border-collapse: collapse; margin: 10px 0; font-size: 13px; }
table.verdicts th, table.verdicts td { border: 1px solid #ccc; padding: 3px 8px; text-align: left;
                                       vertical-align: top; }
table.verdicts th { background: #f0f0f0; }
td.pass { background: #e3f4e3; } td.fail { background: #fbdcdc; font-weight: bold; } td.none { color: #888; }
td.fail.optional { background: #fff0d6; font-weight: normal; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: bold; color: white; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; }
.hint { background: #fff8e1; border: 1px solid #f0d58c; padding: 8px 12px; border-radius: 4px; }
figure { margin: 16px 0 28px; } figure img { max-width: 100%; border: 1px solid #e0e0e0; }
figcaption { font-size: 13px; color: #333; margin-top: 4px; }
ul.reasons li { margin-bottom: 4px; } .small { font-size: 12.5px; color: #444; }
"""


def to_html(report: Report, figures: Figures | None = None) -> str:
    """The report as one self-contained HTML page (``figures``: from :func:`render_figures`; None: no plots)."""
    figures = figures if figures is not None else Figures(available=False)
    e = html.escape
    summary = report.summary()
    passed = report.passed()
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>optconform conformance report — {e(report.target)}</title>", f"<style>{_CSS}</style>",
           "</head><body>", "<h1>optconform conformance report</h1>",
           f"<p>Target: <code>{e(report.target)}</code><br>Options: <code>{e(str(report.options))}</code><br>"
           f"Required levels: {e(', '.join(report.required))} — "
           f'<span class="badge {"pass" if passed else "fail"}">{"pass" if passed else "FAIL"}</span></p>']
    if not figures.available:
        out.append(f'<p class="hint" id="plots-hint">No plots in this report: {e(PLOTS_HINT)}</p>')
    # the table
    head = "".join(f"<th>{e(lv)}</th>" for lv in LEVELS)
    out += ['<h2>Verdict per clause and level</h2>', '<table class="verdicts">',
            f"<tr><th>clause</th><th>function</th>{head}<th>other</th>"
            "<th>worst core check (value / tolerance)</th></tr>"]
    plotted = set(figures.clauses)
    for row in summary:
        cells = []
        for lv in LEVELS:
            cell = row["levels"].get(lv) if lv in row["clause_levels"] else None
            text = level_cell(cell)  # the terminal table's own wording
            cls = ("none" if cell is None or not cell["cases"] else "fail" if cell["failed"] else "pass")
            if cls == "fail" and lv not in report.required:
                cls += " optional"
            cells.append(f'<td class="{cls}">{e(text)}</td>')
        w = row["levels"].get(CORE, {}).get("worst")
        worst = "" if w is None else (
            w["kind"] if w["kind"] in ("error", "protocol") else
            f"{w['ratio']:.3g} ({w['metric']} = {w['value']:.3g}, tol {w['tolerance']:.3g})")
        cid = row["clause"]
        link = f'<a href="#plot-{_slug(cid)}">{e(cid)}</a>' if cid in plotted else e(cid)
        out.append(f"<tr><td>{link}</td><td><code>{e(row['name'])}</code></td>{''.join(cells)}"
                   f"<td>{e(Report._others(row['counts']))}</td><td>{e(worst)}</td></tr>")  # noqa: SLF001
    out.append("</table>")
    problems = [(row, r) for row in summary for r in row["reasons"]]
    if problems:
        out += ["<h2>Not passed</h2>", '<p class="small">status ×cases [failing levels]: the first case\'s reason</p>',
                '<ul class="reasons">']
        for row, r in problems:
            at = f" [{r['levels']}]" if r["levels"] else ""
            out.append(f"<li><b>{e(row['clause'])} {e(row['name'])}</b>: {e(r['status'])} ×{r['cases']}{e(at)}: "
                       f"{e(r['reason'])}</li>")
        out.append("</ul>")
    if report.diagnoses:
        out += ["<h2>Diagnosis</h2>", "<p>The cases above ran under the diagnosed options.</p>", '<ul class="reasons">']
        out += [f"<li>{e(d['line'])}<br>→ {e(d['confirmation'])}</li>" for d in report.diagnoses_confirmed()]
        out.append("</ul>")
        for name, png in figures.diagnoses.items():
            alt = f"diagnosis of {name}: residual of each candidate"
            out.append(f'<figure data-diagnosis="{e(name)}" id="diagnosis-{_slug(name)}">'
                       f"{_img(png, alt)}"
                       f"<figcaption>Diagnosis of <code>{e(name)}</code>: the residual of each candidate option set, "
                       "in search order (profiles first, then one option at a time), against the bound (dashed); "
                       "the diagnosed candidate is outlined.</figcaption></figure>")
    out.append("<h2>Plots</h2>")
    if figures.available:
        out.append('<p class="small">One figure per judged clause. Newton–Schulz outputs (the worst one when it '
                   "is beyond its bound, and the largest one within its bounds): the target's response in each "
                   "singular direction of the input against the float64 reference, the map p(ŝ) of the coefficient "
                   "rows in use and the tolerance band, and the signed error against ± the bound. Trajectories (the "
                   "worst case of each metric): each step's error against each step's bound. Other clauses: every "
                   "check's value / tolerance.</p>")
    else:
        out.append(f'<p class="hint">{e(PLOTS_HINT)}</p>')
    for row in judged_clauses(report, summary):
        cid = row["clause"]
        if cid in figures.clauses:
            alt = f"{cid} {row['name']}"
            out.append(f'<figure data-clause="{e(cid)}" id="plot-{_slug(cid)}">'
                       f"{_img(figures.clauses[cid], alt)}"
                       f"<figcaption><b>{e(cid)} <code>{e(row['name'])}</code></b></figcaption></figure>")
        elif cid in figures.failed:
            out.append(f'<p class="hint">{e(cid)}: the plot could not be drawn ({e(figures.failed[cid])})</p>')
    bad = [r for r in report.records.values() if r.status != "passed"]
    if bad:
        out += [f"<h2>Cases not passed ({len(bad)})</h2>", "<details><summary>every case that did not pass</summary>",
                '<ul class="reasons small">']
        out += [f"<li><code>{e(r.nodeid)}</code> ({e(r.clause)} {e(r.name)}, {e(r.status)}"
                + (f"; levels {e(', '.join(f'{k} {v}' for k, v in r.levels.items()))}" if r.levels else "")
                + f"): {e(r.reason)}</li>" for r in bad]
        out += ["</ul>", "</details>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def plots_dir(md_path: str | Path) -> Path:
    """Where ``--report-md PATH`` puts its PNGs: ``PATH`` without its suffix, plus ``_plots``."""
    p = Path(md_path)
    return p.with_name(p.stem + "_plots")


def markdown_plots(figures: Figures, md_path: str | Path) -> str:
    """Write the PNGs next to the Markdown report and return the section that links them ("" without plots)."""
    if not figures.available or not (figures.clauses or figures.diagnoses):
        return ""
    folder = plots_dir(md_path)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["", "## Plots", ""]
    for cid, png in figures.clauses.items():
        (folder / f"{_slug(cid)}.png").write_bytes(png)
        lines.append(f"![{cid}]({folder.name}/{_slug(cid)}.png)")
        lines.append("")
    for name, png in figures.diagnoses.items():
        fname = f"diagnosis-{_slug(name)}.png"
        (folder / fname).write_bytes(png)
        lines.append(f"![diagnosis of {name}]({folder.name}/{fname})")
        lines.append("")
    return "\n".join(lines)
