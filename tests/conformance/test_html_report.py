"""``--report-html``: one self-contained HTML file with the per-clause table and exactly one plot per judged clause
(and one per diagnosis); ``--report-md`` links the same PNGs; without matplotlib (an optional extra) both reports are
still written, with a hint; and the judges' plot data (``Verdict.plot`` / ``Verdict.series``) are small."""

from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import asdict

import numpy as np
import pytest
from suite_run import run_suite

from optconform.conformance import html_report
from optconform.conformance import tolerances as T
from optconform.conformance.judges.ns import bounds, judge_ns
from optconform.conformance.report import PLOT_POINTS, CaseRecord, Report, Verdict
from optconform.reference.orthogonalize import zeropower as ref_zeropower

PNG = b"\x89PNG\r\n\x1a\n"
# a Newton–Schulz golden and a live case (S6.2), a momentum trajectory (S3.5), clipping (S5.1: the checks plot),
# Muon goldens (S7.2: both kinds)
SELECT = "test_zeropower_golden or test_sgd_golden or test_clip_grad_norm_golden or test_muon_golden"


def _judged(rep: dict) -> set[str]:
    return {r["clause"] for r in rep["summary"] if any(c["cases"] for c in r["levels"].values())}


def _figures(text: str, attr: str) -> list[tuple[str, str]]:
    """(attribute value, inner html) of every <figure {attr}="...">."""
    return re.findall(rf'<figure {attr}="([^"]+)"[^>]*>(.*?)</figure>', text, flags=re.S)


def _assert_self_contained(text: str) -> None:
    low = text.lower()
    assert "<script" not in low and "<link" not in low and "@import" not in low and "<iframe" not in low
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", low), "an external resource"
    assert not re.search(r"url\(", low), "a CSS url()"
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', text):
        assert src.startswith("data:image/png;base64,"), src[:60]
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)


@pytest.fixture(scope="module")
def seed_code_run(tmp_path_factory):
    pytest.importorskip("matplotlib", reason="the plots need matplotlib (pip install optconform[report])")
    tmp = tmp_path_factory.mktemp("html")
    html, md = tmp / "out" / "report.html", tmp / "out" / "report.md"
    rep = run_suite("optconform.conformance.seed_code", tmp, "--diagnose", "--report-html", str(html),
                    f"--report-md={md}", select=SELECT)
    return rep, html, md


def test_the_html_report_is_self_contained_with_one_plot_per_judged_clause(seed_code_run):
    rep, html, _ = seed_code_run
    assert f"wrote {html}" in rep["output"]
    text = html.read_text(encoding="utf-8")
    _assert_self_contained(text)
    judged = _judged(rep)
    assert {"S3.5", "S5.1", "S6.2", "S7.2"} <= judged, judged
    figures = _figures(text, "data-clause")
    assert sorted(c for c, _ in figures) == sorted(judged)  # exactly one per judged clause
    for clause, inner in figures:
        assert len(re.findall(r"<img\s", inner)) == 1, clause
    # one per diagnosis, apart from the clauses' figures
    assert sorted(n for n, _ in _figures(text, "data-diagnosis")) == sorted(d["name"] for d in rep["diagnoses"])
    assert len(re.findall(r"<img\s", text)) == len(judged) + len(rep["diagnoses"])
    # the table: every clause of the summary, with its verdict cells
    for row in rep["summary"]:
        assert f">{row['clause']}<" in text and f"<code>{row['name']}</code>" in text
    assert "pip install optconform[report]" not in text  # matplotlib is there: no hint


def test_the_markdown_report_links_the_same_pngs(seed_code_run):
    rep, _, md = seed_code_run
    text = md.read_text(encoding="utf-8")
    links = re.findall(r"!\[([^\]]*)\]\(report_plots/([^)]+\.png)\)", text)
    assert sorted(f for _, f in links if not f.startswith("diagnosis-")) == sorted(f"{c}.png" for c in _judged(rep))
    for _, f in links:
        assert (md.parent / "report_plots" / f).read_bytes().startswith(PNG)


def test_the_json_report_stays_small(seed_code_run):
    rep, _, _ = seed_code_run
    assert all("plots" not in c for c in rep["cases"])


def test_without_matplotlib_the_reports_hold_the_table_and_a_hint(tmp_path, monkeypatch):
    shadow = tmp_path / "shadow" / "matplotlib"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ModuleNotFoundError("hidden by the test", name="matplotlib")\n')
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(shadow.parent), os.environ.get("PYTHONPATH")])))
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    rep = run_suite("optconform.conformance.seed_code", tmp_path, "--report-html", str(html), f"--report-md={md}",
                    select="test_sgd_golden")
    assert "pip install optconform[report]" in rep["output"]
    text = html.read_text(encoding="utf-8")
    _assert_self_contained(text)
    assert "pip install optconform[report]" in text and "<img" not in text
    assert '<table class="verdicts">' in text and "<code>sgd</code>" in text
    assert "report_plots" not in md.read_text(encoding="utf-8") and not (tmp_path / "r_plots").exists()


def test_render_without_matplotlib_in_process(monkeypatch):
    import optconform.conformance as pkg

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.delitem(sys.modules, "optconform.conformance.plots", raising=False)
    monkeypatch.delattr(pkg, "plots", raising=False)
    rep = Report("some.target", dict(require=["core"]))
    v = Verdict("S3.5", "sgd", "case")
    v.trajectory("error per step", [1e-8, 2e-8, 5e-9], 1e-7, case="c")
    rep.add(CaseRecord.build("case", "S3.5", "sgd", "passed", "", "", [asdict(c) for c in v.checks], v.plots()))
    assert rep.records["case"].plots[0]["kind"] == "trajectory"
    figs = html_report.render_figures(rep)
    assert not figs.available and not figs.clauses
    text = html_report.to_html(rep, figs)
    assert html_report.PLOTS_HINT in text and "<img" not in text and "S3.5" in text


def test_verdict_keeps_the_worst_plot_payload_and_thins_it():
    v = Verdict("S3.5", "sgd", "node")
    v.series("err", [1.0, 2.0], 4.0, case="a")
    v.series("err", [1.0, 8.0], 4.0, case="b")  # worse: replaces a
    v.series("err", [1.0, 3.0], 4.0, case="c")
    v.series("err", list(np.linspace(0, 1, 5000)), 2.0, case="long")  # better than b: ignored
    (p,) = v.plots()
    assert p["case"] == "b" and p["score"] == 2.0 and p["values"] == [1.0, 8.0] and p["steps"] == [0, 1]
    w = Verdict("S3.5", "sgd", "node")
    vals = list(np.linspace(0, 1, 5000))
    vals[1234] = 9.0
    w.series("err", vals, 2.0, case="long")
    (q,) = w.plots()
    assert len(q["values"]) <= PLOT_POINTS and 1234 in q["steps"] and 9.0 in q["values"]
    assert not v.checks and not w.checks  # plot data records no check


def test_judge_ns_records_the_response_against_the_map_without_changing_the_checks():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((48, 96))
    R = ref_zeropower(G, 5)
    Y = (R + 1e-3 * rng.standard_normal(R.shape)).astype(np.float32).astype(np.float64)
    b = bounds(5, strict=False)
    v = Verdict("S6.2", "zeropower", "node")
    judge_ns(v, Y, R, G, b, case="x")
    checks = [(c.metric, c.value, c.passed) for c in v.checks]
    (p,) = [p for p in v.plots() if p["kind"] == "ns"]
    assert [(c.metric, c.value, c.passed) for c in v.checks] == checks
    shat, ref, resp = (np.asarray(p[k]) for k in ("shat", "reference", "response"))
    assert 0 < shat.size <= PLOT_POINTS and p["directions"] == 48
    np.testing.assert_allclose(ref, T.ns_map(shat, b.rows), atol=1e-4)  # the float64 reference follows the map
    np.testing.assert_allclose(resp - ref, p["signed"], atol=1e-4)
    np.testing.assert_allclose(p["bound"], T.ns_direction_bound(shat, b), rtol=1e-3)
    assert len(p["grid"]) == len(p["curve"]) == len(p["grid_bound"]) and p["follows_map"]
    assert p["ratio"] == pytest.approx(max(abs(np.asarray(p["signed"])) / np.asarray(p["bound"])), rel=1e-3)
