"""Muon and DistMuon goldens are judged, not only loaded: a golden trajectory altered at one step (checksums
rewritten, so it loads) makes the built-in implementation fail exactly the golden checks of that step, while
every check against the live reference still passes."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from suite_run import run_suite

from optconform.golden.store import DATA_DIR_ENV, MANIFEST_NAME, default_data_dir, write_npz

pytestmark = pytest.mark.distributed


def _tamper(tmp_path, changes: dict[tuple[str, str], object]) -> str:
    """A copy of the golden data where each ``(case_id, output array)`` went through its change, digests
    rewritten so that the copy loads."""
    dst = tmp_path / "golden"
    shutil.copytree(str(default_data_dir()), dst)
    manifest = json.loads((dst / MANIFEST_NAME).read_text())
    files = {r["id"]: r["file"] for r in manifest["cases"]}
    for fname in {files[cid] for cid, _ in changes}:
        with np.load(io.BytesIO((dst / fname).read_bytes()), allow_pickle=False) as npz:
            arrays = {k.removesuffix(".npy"): npz[k] for k in npz.files}
        for (cid, name), change in changes.items():
            if files[cid] == fname:
                key = f"{cid}/outputs/{name}"
                arrays[key] = change(arrays[key].copy())
        digest, size = write_npz(dst / fname, arrays)
        manifest["files"][fname].update(sha256=digest, bytes=size)
    (dst / MANIFEST_NAME).write_text(json.dumps(manifest))
    return str(dst)


def _shift_from(step: int):
    """Move the parameters by a fixed matrix from ``step`` on: only that step's golden update changes (by O(1))."""
    def change(param):
        rng = np.random.default_rng(0)
        delta = rng.standard_normal(param.shape[1:])
        param[step:] += delta / np.linalg.norm(delta) * np.linalg.norm(param[step] - param[step - 1])
        return param
    return change


def _scale_last(buf):
    buf[-1] *= 1.01
    return buf


MUON, DIST_MUON, MUON_BUFFER = ("muon.muon.nanochat_ramp_8x32_aspect_1to4", "zero2.dist_muon.w2_7params_3shapes",
                          "muon.muon.ramp_16x4_aspect_4to1")


@pytest.fixture(scope="module")
def tampered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tampered")
    data = _tamper(tmp, {(MUON, "param"): _shift_from(5), (DIST_MUON, "param.0"): _shift_from(5),
                         (MUON_BUFFER, "state.momentum_buffer"): _scale_last})
    select = "(muon_golden and (nanochat_ramp or ramp_16x4)) or (dist_muon and golden-2)"
    return run_suite("optconform.impl", tmp, select=select, world_sizes="2", env={DATA_DIR_ENV: data})


def _failures(rep: dict, case_id: str) -> list[dict]:
    return [c for case in rep["cases"] if case_id in case["nodeid"] or (case_id == DIST_MUON and "golden-2" in
            case["nodeid"]) for c in case["checks"] if not c["passed"]]


@pytest.mark.parametrize("case_id", [MUON, DIST_MUON])
def test_an_altered_golden_step_fails_its_golden_checks_only(tampered, case_id):
    failing = _failures(tampered, case_id)
    assert tampered["returncode"] == 1 and failing, tampered["output"]
    assert all(c["case"].endswith("step 5 param 0 (golden)") for c in failing), failing


def test_an_altered_final_golden_buffer_fails_the_buffer_check(tampered):
    metrics = {c["metric"] for c in _failures(tampered, MUON_BUFFER)}
    assert metrics == {"final momentum_buffer of param 0 vs golden"}, tampered["output"]
