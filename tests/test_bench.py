"""Smoke test of the benchmark code (bench/, not installed): the tiny ``--smoke`` preset runs every figure
in seconds; the test checks that the results and the markdown are well-formed and every ratio is finite and
positive. It makes no timing assertion (the numbers of a smoke run mean nothing)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ lives in the checkout, next to tests/, and is not installed
    sys.path.insert(0, str(ROOT))

from bench import distributed as bench_distributed  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.nanochat_shapes import muon_shapes  # noqa: E402
from bench.zeropower import ns_flops  # noqa: E402

pytestmark = pytest.mark.distributed  # figures 4 and 5 spawn gloo process groups


def _positive(x: object) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    js, md = out / "bench.json", out / "bench.md"
    results = bench_run.main(["--smoke", "--out", str(js), "--markdown", str(md)])
    return results, json.loads(js.read_text()), md.read_text()


def test_ns_flops_counts_the_three_products():
    # m = 2, n = 3 (after the transpose of a 3×2 input): per step 4·m²·n + 2·m³ = 48 + 16 = 64
    assert ns_flops((3, 2), 1) == 64
    assert ns_flops((2, 3), 5) == 5 * 64


def test_every_figure_runs_and_is_recorded(smoke):
    results, from_json, _ = smoke
    ids = [f["id"] for f in results["figures"]]
    assert ids == list(bench_run.FIGURES)
    assert [f["id"] for f in from_json["figures"]] == ids
    assert results["preset"] == "smoke"
    assert results["machine"]["torch"]
    for fig in results["figures"]:
        assert fig["rows"], fig["id"]
        keys = {k for k, _, _ in fig["columns"]}
        for row in fig["rows"]:
            assert set(row) >= keys - {"ours_compiled_ms", "ours_compiled_frac"}, fig["id"]
        assert fig["reading"] and "nan" not in fig["reading"].lower(), fig["id"]


def test_ratios_and_times_are_finite_and_positive(smoke):
    figs = {f["id"]: f for f in smoke[0]["figures"]}
    for row in figs["zeropower"]["rows"]:
        for key in ("matmul_gflops", "ours_eager_ms", "ours_eager_frac", "torch_optim_ms", "torch_optim_frac",
                    "ours_vs_torch"):
            assert _positive(row[key]), (key, row)
    for fid in ("muon_step", "adamw_step"):
        for row in figs[fid]["rows"]:
            for key in ("ours_s", "torch_s", "ratio", "ratio_min", "ratio_max"):
                assert _positive(row[key]), (fid, key, row)
            assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
    rows = figs["dist_muon"]["rows"]
    assert len(rows) == len(bench_distributed.CONFIGS) and rows[0]["speedup"] == 1.0
    assert all(_positive(r["s_per_step"]) and _positive(r["speedup"]) for r in rows)
    # collectives per step, counted: none for one process; the pre-flight all_reduce plus, stacked, one
    # reduce-scatter and one all-gather per shape group
    cfg = figs["dist_muon"]["config"]
    groups = len(set(muon_shapes(cfg["d_model"], cfg["depth"]).values()))
    by = {r["config"]: r["collectives"] for r in rows}
    assert by["Muon, 1 process × 1 thread"] == "none"
    ag, rs = ("all_gather_single", "reduce_scatter_single") if hasattr(dist, "all_gather_single") else (
        "all_gather_into_tensor", "reduce_scatter_tensor")  # one function under two names; torch 2.13 names *_single
    assert by["DistMuon, 2 ranks × 1 thread, collectives='stacked'"] == f"{groups} {ag}, 1 all_reduce, {groups} {rs}"


def test_state_bytes_shrink_with_the_world_size(smoke):
    rows = {r["world"]: r for r in {f["id"]: f for f in smoke[0]["figures"]}["state_bytes"]["rows"]}
    assert set(rows) == {1, 2}
    assert rows[1]["fraction"] == 1.0
    # ZeRO-2 shards the state: a rank holds strictly less than one process, at least 1/W of it
    assert 0.5 <= rows[2]["fraction"] < 1.0
    assert rows[2]["min_total_mib"] <= rows[2]["total_mib"]


def test_markdown_has_a_section_and_table_per_figure(smoke):
    results, _, md = smoke
    assert md.startswith("# Benchmarks")
    assert "python -m bench.run --smoke" in md
    for fig in results["figures"]:
        assert f"## {fig['title']}" in md
        assert "|" + "|".join("---" if f == "s" else "---:" for _, _, f in fig["columns"]) + "|" in md
    assert md.count("**Reading:**") == len(results["figures"])


def test_bad_arguments_are_rejected():
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "nonsense"])
    with pytest.raises(SystemExit):
        bench_run.main(["--quick", "--smoke"])


def test_the_suite_figure_times_each_run_against_its_budget(smoke):
    rows = {f["id"]: f for f in smoke[0]["figures"]}["suite"]["rows"]
    assert [r["budget_s"] for r in rows] == [60.0, 180.0, 180.0]
    for r in rows:
        assert _positive(r["test_s"]) and _positive(r["wall_s"]) and r["within"] in ("yes", "NO"), r
        assert "passed" in r["outcome"], r
    assert rows[0]["probes_s"] is None and all(_positive(r["probes_s"]) for r in rows[1:])


def test_merge_keeps_the_figures_not_rerun_with_their_own_command(smoke, tmp_path):
    results, _, _ = smoke
    old = tmp_path / "old.json"
    old.write_text(json.dumps(results, default=str))
    md = tmp_path / "merged.md"
    merged = bench_run.main(["--smoke", "--only", "adamw_step", "--merge", str(old), "--markdown", str(md)])
    assert [f["id"] for f in merged["figures"]] == list(bench_run.FIGURES)
    figs = {f["id"]: f for f in merged["figures"]}
    assert "--merge" in figs["adamw_step"]["command"] and "--merge" not in figs["zeropower"]["command"]
    text = md.read_text()
    assert "kept from earlier runs" in text and text.count("## Figure") == len(bench_run.FIGURES)
