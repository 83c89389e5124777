"""The golden-vector store: integrity checks, format invariants, coverage and reproducibility."""

from __future__ import annotations

import importlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from optconform import spec
from optconform.golden import generate
from optconform.golden.store import (
    CLAUSE_TARGETS,
    DATA_DIR_ENV,
    MANIFEST_NAME,
    REGEN_RTOL,
    SPEC_CLAUSES,
    GoldenIntegrityError,
    case_ids,
    compare_arrays,
    default_data_dir,
    iter_cases,
    load_case,
    load_manifest,
    sha256_file,
    write_npz,
)

DATA = Path(str(default_data_dir()))
MANIFEST = load_manifest(DATA)
CASES = [r["id"] for r in MANIFEST["cases"]]


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of the committed data directory that a test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    return dst


def _first_case_in(fname: str) -> str:
    return next(r["id"] for r in MANIFEST["cases"] if r["file"] == fname)


# ------------------------------------------------------------------------------------ integrity


def test_every_file_listed_in_the_manifest_has_its_recorded_digest_and_size():
    assert MANIFEST["files"], "the manifest lists no files"
    on_disk = {p.name for p in DATA.glob("*.npz")}
    assert on_disk == set(MANIFEST["files"]), "npz files on disk and in the manifest differ"
    for fname, meta in MANIFEST["files"].items():
        assert sha256_file(DATA / fname) == meta["sha256"], fname
        assert (DATA / fname).stat().st_size == meta["bytes"], fname


@pytest.mark.parametrize("case_id", CASES)
def test_every_case_loads_and_matches_its_manifest_record(case_id):
    case = load_case(case_id)
    rec = next(r for r in MANIFEST["cases"] if r["id"] == case_id)
    assert case.clause == rec["clause"] and case.function == rec["function"]
    for role in ("inputs", "outputs"):
        arrays = getattr(case, role)
        assert set(arrays) == set(rec[role])
        for name, arr in arrays.items():
            assert list(arr.shape) == rec[role][name]["shape"], f"{role}/{name}"
            assert arr.dtype.str == rec[role][name]["dtype"], f"{role}/{name}"
            assert arr.dtype.str in {"<f8", "<i8", "|b1"}
            if arr.dtype.kind == "f" and "grad_norm" not in name:
                assert np.all(np.isfinite(arr)), f"{role}/{name} has non-finite entries"


def test_archives_hold_exactly_the_manifest_arrays_and_no_pickles():
    for fname in MANIFEST["files"]:
        expected = {f"{r['id']}/{role}/{name}.npy" for r in MANIFEST["cases"] if r["file"] == fname
                    for role in ("inputs", "outputs") for name in r[role]}
        with zipfile.ZipFile(DATA / fname) as zf:
            assert set(zf.namelist()) == expected, fname
            for info in zf.infolist():
                assert info.compress_type == zipfile.ZIP_STORED
                assert info.date_time == (1980, 1, 1, 0, 0, 0)
                arr = np.load(io.BytesIO(zf.read(info)), allow_pickle=False)  # raises on object arrays
                assert not arr.dtype.hasobject


def test_a_flipped_byte_raises_integrity_error_naming_the_file_and_both_digests(data_copy):
    fname = "adam.npz"
    path = data_copy / fname
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(GoldenIntegrityError, match=fname) as info:
        load_case(_first_case_in(fname), data_copy)
    msg = str(info.value)
    assert MANIFEST["files"][fname]["sha256"] in msg
    assert sha256_file(path) in msg
    assert isinstance(info.value, ValueError)
    # an undamaged file in the same directory still loads
    load_case(_first_case_in("schedules.npz"), data_copy)


def test_the_environment_variable_points_the_loader_at_another_directory(data_copy, monkeypatch):
    fname = "muon.npz"
    path = data_copy / fname
    path.write_bytes(path.read_bytes()[:-100])  # truncated
    monkeypatch.setenv(DATA_DIR_ENV, str(data_copy))
    with pytest.raises(GoldenIntegrityError, match=fname):
        load_case(_first_case_in(fname))
    with pytest.raises(GoldenIntegrityError, match=fname):
        list(iter_cases("S7.2"))


def test_a_missing_file_raises_integrity_error_naming_it(data_copy):
    (data_copy / "zero2.npz").unlink()
    with pytest.raises(GoldenIntegrityError, match="zero2.npz.*missing"):
        load_case(_first_case_in("zero2.npz"), data_copy)


def test_a_missing_manifest_raises_integrity_error(data_copy):
    (data_copy / MANIFEST_NAME).unlink()
    with pytest.raises(GoldenIntegrityError, match=MANIFEST_NAME):
        load_manifest(data_copy)


def test_an_array_that_disagrees_with_the_manifest_raises_even_with_a_matching_digest(data_copy):
    fname = "schedules.npz"
    cid = _first_case_in(fname)
    manifest = json.loads((data_copy / MANIFEST_NAME).read_text())
    rec = next(r for r in manifest["cases"] if r["id"] == cid)
    name = next(iter(rec["outputs"]))
    rec["outputs"][name]["shape"] = [*rec["outputs"][name]["shape"], 1]
    (data_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(GoldenIntegrityError, match=f"{cid}/outputs/{name}"):
        load_case(cid, data_copy)


def test_an_unknown_case_id_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="no.such.case"):
        load_case("no.such.case")


# -------------------------------------------------------------------------------------- coverage


@pytest.mark.parametrize("clause", sorted(SPEC_CLAUSES))
def test_every_contract_clause_has_a_case_and_its_reference_function_exists(clause):
    assert case_ids(clause), f"no golden case for {clause}"
    module, name = SPEC_CLAUSES[clause].split(".")
    assert callable(getattr(importlib.import_module(f"optconform.reference.{module}"), name))


def test_the_committed_manifest_lists_the_registrys_clauses_and_protocol_names():
    """The manifest's clause list and target names are the spec registry's (regenerate after changing it)."""
    assert MANIFEST["clauses"] == SPEC_CLAUSES == {c.id: c.reference for c in spec.CLAUSES}
    assert MANIFEST["targets"] == CLAUSE_TARGETS


@pytest.mark.parametrize("case_id", CASES)
def test_every_case_names_an_existing_reference_function_and_a_known_tolerance_class(case_id):
    rec = next(r for r in MANIFEST["cases"] if r["id"] == case_id)
    module, name = rec["function"].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name))
    assert rec["tolerance_class"] in REGEN_RTOL
    assert rec["clause"] in SPEC_CLAUSES and isinstance(rec["seed"], (int, type(None)))


@pytest.mark.parametrize("case_id", CASES)
def test_goldens_are_not_trivially_zero(case_id):
    case = load_case(case_id)
    floats = [a for a in case.outputs.values() if a.dtype.kind == "f"]
    ints = [a for a in case.outputs.values() if a.dtype.kind != "f"]
    assert any(np.any(a != 0.0) for a in floats) or any(np.any(a != 0) for a in ints), "all outputs are zero"
    moving = [a for a in case.inputs.values() if a.dtype.kind == "f" and a.size > 1]
    if moving:
        assert sum(np.count_nonzero(a) for a in moving) > 1, "all array inputs are (nearly) zero"


_PER_STEP = {"param", "w", "b", "theta", "v", "phi", "b_torch", "losses", "eval_points", "phi_from_theta"}


def test_trajectories_have_at_least_20_steps_and_per_step_arrays():
    for rec in MANIFEST["cases"]:
        if rec["layout"] not in ("trajectory", "dist_trajectory") or rec["steps"] == 0:
            continue
        assert rec["steps"] >= 20, rec["id"]
        for name, meta in rec["outputs"].items():
            if name in _PER_STEP or name.startswith(("param.", "state.", "info.")):
                assert meta["shape"][0] == rec["steps"], f"{rec['id']}: outputs/{name}"


def test_distributed_cases_cover_world_sizes_1_to_4_with_per_rank_gradients():
    for clause in ("S9.4", "S9.5"):
        recs = [r for r in MANIFEST["cases"] if r["clause"] == clause]
        assert {r["world_size"] for r in recs} == {1, 2, 3, 4}
        for r in recs:
            grads = [m for n, m in r["inputs"].items() if n.startswith("grads.")]
            assert grads and all(m["shape"][:2] == [r["steps"], r["world_size"]] for m in grads), r["id"]
    shapes = [tuple(s) for r in MANIFEST["cases"] if r["clause"] == "S9.5" for s in r["extra"]["shapes"]]
    assert () in shapes and any(len(s) == 1 for s in shapes) and any(len(s) and s[0] < 4 for s in shapes)


def test_the_regimes_the_brief_names_are_present():
    ids = " ".join(CASES)
    for needle in ("cond1e3", "cond1e6", "rank1", "rank8", "tiny_norm_1e-8", "huge_norm_1e30", "eps_regime",
                   "aspect_1to4", "aspect_4to1", "batched", "total_equals_max_exactly", "half_even",
                   "warmdown0", "warmdown1", "final_frac1", "overlap", "lr_multiplier.n0", "lr0",
                   "momentum0", "nesterov_off", "nesterov"):
        assert needle in ids, needle


# -------------------------------------------------------------------------------- reproducibility


def test_write_npz_bytes_depend_only_on_the_arrays(tmp_path):
    a = {"x/outputs/b": np.arange(6.0).reshape(2, 3), "x/inputs/a": np.float64(2.5), "x/inputs/c": np.arange(3)}
    b = dict(reversed(list(a.items())))
    b["x/outputs/b"] = np.asfortranarray(a["x/outputs/b"])  # memory layout must not matter either
    d1, n1 = write_npz(tmp_path / "1.npz", a)
    d2, n2 = write_npz(tmp_path / "2.npz", b)
    assert (d1, n1) == (d2, n2)
    assert (tmp_path / "1.npz").read_bytes() == (tmp_path / "2.npz").read_bytes()
    with np.load(tmp_path / "1.npz", allow_pickle=False) as z:
        assert z["x/inputs/a"].shape == () and z["x/inputs/a"] == 2.5


def test_compare_arrays_is_normwise_and_exact_for_integers_and_zeros():
    e = np.array([1.0, -2.0, 1e-20])
    assert compare_arrays(e + 1e-13, e, 1e-12) is None  # 1e-13 <= 1e-12 * max|e| = 2e-12
    assert compare_arrays(e + 1e-11, e, 1e-12) is not None
    assert compare_arrays(np.zeros(3), np.zeros(3), 1e-12) is None
    assert compare_arrays(np.array([0.0, 1e-300]), np.zeros(2), 1e-12) is not None
    assert compare_arrays(np.array([1, 2]), np.array([1, 3]), 1.0) is not None
    assert compare_arrays(np.zeros(2), np.zeros(3), 1.0) is not None


def test_regeneration_reproduces_the_committed_goldens_within_tolerance():
    # The whole generator runs in ~2 s on the 2-core dev machine, so every family is regenerated.
    problems = generate.check(DATA)
    assert problems == [], "\n".join(problems)


def test_regeneration_is_bit_identical_on_the_same_machine(tmp_path):
    fams = ["schedules", "adam"]
    m1 = generate.build(tmp_path / "a", fams)
    m2 = generate.build(tmp_path / "b", fams)
    assert m1["files"] == m2["files"]
    for f in m1["files"]:
        assert m1["files"][f]["sha256"] == MANIFEST["files"][f]["sha256"], f"{f} differs from the committed file"


def test_check_reports_a_case_whose_committed_values_moved(data_copy, capsys):
    fname = "adam.npz"
    cid = _first_case_in(fname)
    with np.load(data_copy / fname, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    key = f"{cid}/outputs/param"
    arrays[key] = arrays[key] * (1.0 + 1e-9)  # far above the 1e-12 elementwise tolerance
    digest, size = write_npz(data_copy / fname, arrays)
    manifest = json.loads((data_copy / MANIFEST_NAME).read_text())
    manifest["files"][fname].update(sha256=digest, bytes=size)
    (data_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert generate.main(["--check", "--out", str(data_copy), "--family", "adam"]) == 1
    out = capsys.readouterr().out
    assert f"{cid}: outputs/param" in out
    assert generate.main(["--check", "--out", str(DATA), "--family", "adam"]) == 0


def test_every_case_records_its_clauses_protocol_name():
    for clause, name in CLAUSE_TARGETS.items():
        assert spec.PROTOCOL[name].clause.id == clause
    for rec in MANIFEST["cases"]:
        assert rec["target"] == CLAUSE_TARGETS.get(rec["clause"]), rec["id"]


_MATRIX_FUNCTIONS = {"linear_regression_grad", "batch_gd", "sgd_epoch", "minibatch_epoch", "gradient_descent",
                     "nesterov_lookahead", "nesterov_torch", "lookahead_to_torch", "polar_factor", "zeropower",
                     "muon", "dist_muon", "dtensor_muon", "train_step"}


def test_cases_built_on_matrix_products_use_a_linalg_tolerance_class():
    for rec in MANIFEST["cases"]:
        fn = rec["function"].rsplit(".", 1)[1]
        expected = {"linalg", "linalg_ill"} if fn in _MATRIX_FUNCTIONS else {"elementwise"}
        assert rec["tolerance_class"] in expected, rec["id"]


def test_another_format_version_is_refused(data_copy):
    manifest = json.loads((data_copy / MANIFEST_NAME).read_text())
    manifest["format_version"] = 2
    (data_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(GoldenIntegrityError, match="format_version"):
        load_manifest(data_copy)


# ------------------------------------------------------------------------------------ per-profile goldens

from optconform.spec import options as spec_options  # noqa: E402

PROFILE_DIRS = {name: DATA / name for name in spec_options.PROFILES
                if name != spec_options.DEFAULT_PROFILE and generate.profile_options(name)}


def test_exactly_the_profiles_that_change_a_clause_have_a_folder():
    on_disk = {p.name for p in DATA.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert on_disk == set(PROFILE_DIRS)
    assert "torch-optim" in PROFILE_DIRS and "nanochat-2026" in PROFILE_DIRS  # clip_rule; Polar Express rows


@pytest.mark.parametrize("name", sorted(PROFILE_DIRS))
def test_a_profile_folder_records_its_profile_and_options_and_holds_only_those_clauses(name):
    where = PROFILE_DIRS[name]
    manifest = load_manifest(where)
    options = generate.profile_options(name)
    assert manifest["profile"] == name
    assert manifest["options"] == json.loads(json.dumps(options))  # tuples are recorded as lists
    assert {p.name for p in where.glob("*.npz")} == set(manifest["files"])
    for fname, meta in manifest["files"].items():
        assert sha256_file(where / fname) == meta["sha256"], f"{name}/{fname}"
    default_ids = set(CASES)
    for rec in manifest["cases"]:
        assert rec["id"] in default_ids, f"{name}: {rec['id']} is not a default case"
        assert rec["clause"] in options, f"{name}: {rec['id']} belongs to {rec['clause']}, whose options are defaults"
    assert {r["clause"] for r in manifest["cases"]} == set(options)


@pytest.mark.parametrize("name", sorted(PROFILE_DIRS))
def test_a_profile_case_has_the_default_inputs_and_its_own_outputs(name):
    """Same ids, same inputs (the options are not inputs); per clause at least one case whose outputs differ from the
    default profile's: the generator really bound the reference to the profile's options."""
    manifest = load_manifest(PROFILE_DIRS[name])
    moved: dict[str, bool] = {}
    for rec in manifest["cases"]:
        mine, base = load_case(rec["id"], PROFILE_DIRS[name]), load_case(rec["id"], DATA)
        assert mine.inputs.keys() == base.inputs.keys()
        for k in base.inputs:
            np.testing.assert_array_equal(mine.inputs[k], base.inputs[k], err_msg=f"{name} {rec['id']} {k}")
        differs = any(not np.array_equal(mine.outputs[k], base.outputs[k]) for k in base.outputs)
        moved[rec["clause"]] = moved.get(rec["clause"], False) or differs
    assert all(moved.values()), f"{name}: no case of {[c for c, m in moved.items() if not m]} differs from the default"


@pytest.mark.parametrize("name", sorted(PROFILE_DIRS))
def test_a_profile_folder_regenerates(name):
    problems = generate.check(PROFILE_DIRS[name], profile=name)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("name", sorted(spec_options.PROFILES))
def test_the_suite_finds_each_profiles_goldens(name):
    """conformance.case.golden_dir: for every clause with goldens, a profile's options lead to the default data when
    they are the defaults for that clause, else to that profile's folder (or another profile's with the same options),
    which holds the clause's cases."""
    from optconform.conformance.case import golden_dir

    values = spec_options.resolve(name)
    for cid in generate.PROFILE_FUNCTIONS:
        where = Path(str(golden_dir(cid, values)))
        if cid not in generate.profile_options(name):
            assert where == DATA, (name, cid)
        else:
            held = load_manifest(where)
            assert held["options"][cid] == json.loads(json.dumps(generate.profile_options(name)[cid])), (name, cid)
            assert case_ids(cid, where), (name, cid, where)


def test_options_without_a_profile_have_no_goldens():
    from optconform.conformance.case import golden_dir

    values = spec_options.resolve(spec_options.DEFAULT_PROFILE, {"muon_plus": True})
    assert golden_dir("S7.2", values) is None
    assert Path(str(golden_dir("S8.2", values))) == DATA
