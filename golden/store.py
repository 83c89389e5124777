"""The golden-vector store: a framework-neutral, checksummed archive of reference outputs.

Layout (see SPEC "Golden vectors"):

* ``data/<family>.npz`` -- a ZIP archive of ``.npy`` arrays (stored, not compressed, no pickles). Entry
  ``<case_id>/<role>/<name>.npy`` holds input or output ``<name>`` of case ``<case_id>``; ``<role>`` is
  ``inputs`` or ``outputs``.
* ``data/manifest.json`` -- the format version, the generator's versions, the regeneration tolerances,
  the sha256 and byte size of every ``.npz`` file, and one record per case (clause, reference function,
  hyperparameters, array names/shapes/dtypes, steps, world size, seed, regime).

Loading reads a file's bytes once, checks their sha256 against the manifest and only then parses them, so
a corrupted, truncated or missing file raises :class:`GoldenIntegrityError` before any value is used.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optconform import spec

__all__ = [
    "FORMAT_VERSION",
    "DATA_DIR_ENV",
    "MANIFEST_NAME",
    "SPEC_CLAUSES",
    "CLAUSE_TARGETS",
    "REGEN_RTOL",
    "GoldenIntegrityError",
    "GoldenCase",
    "default_data_dir",
    "load_manifest",
    "load_case",
    "iter_cases",
    "case_ids",
    "write_npz",
    "sha256_file",
    "compare_arrays",
]

#: Bumped whenever the file layout or the manifest schema changes incompatibly.
FORMAT_VERSION = 1
#: Environment variable that points the loader at another data directory (tests, third-party copies).
DATA_DIR_ENV = "OPTCONFORM_GOLDEN_DIR"
MANIFEST_NAME = "manifest.json"

#: Every clause of the contract that has golden cases, with its reference function (module.name): the
#: spec registry's clauses (``optconform.spec``), all of which have golden cases.
SPEC_CLAUSES: dict[str, str] = {c.id: c.reference for c in spec.CLAUSES}

#: Clause -> the name in the conformance target protocol that a consumer replays the clause's cases through;
#: clauses without one are checked against the reference only (the registry's protocol names).
CLAUSE_TARGETS: dict[str, str] = {e.clause.id: name for name, e in spec.PROTOCOL.items()}

#: Regeneration tolerance per case class: max|new − committed| <= rtol · max|committed| for every float
#: output array (integer/bool arrays must match exactly). See SPEC "Golden vectors", "Regeneration".
REGEN_RTOL: dict[str, float] = {
    # Elementwise arithmetic, Python/libm scalars (pow, exp) and short pairwise sums: IEEE-exact up to
    # libm's last-bit differences and SIMD reduction order, a few ulps (~1e-15) per step, amplified by
    # at most ~10x over a 20-40 step trajectory. 1e-12 leaves a ~100x margin.
    "elementwise": 1e-12,
    # Matrix products / SVD (Newton–Schulz, polar factor, Muon, ZeRO-2 Muon, nanochat step): BLAS blocking
    # and FMA use change the rounding of every dot product (~n·eps ≈ 1e-14 for n <= 256); NS amplifies
    # near-null directions by a⁵ ≈ 485 and the polar factor by 1/σ_min relative to σ_max.
    "linalg": 1e-10,
    # Polar factor / NS of matrices with condition number 1e6: first-order perturbation of U_r V_rᵀ is
    # ~eps·κ ≈ 2e-10 in the weakest direction, so the committed bits can legitimately move that much.
    "linalg_ill": 1e-8,
}


class GoldenIntegrityError(ValueError):
    """A golden file is missing, truncated or does not match the digest recorded in the manifest."""


@dataclass(frozen=True)
class GoldenCase:
    """One golden case: the reference called on ``inputs`` with ``hyper`` gave ``outputs``."""

    id: str
    clause: str
    function: str
    hyper: dict[str, Any]
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    steps: int | None
    world_size: int | None
    regime: str
    description: str = ""
    layout: str = "call"
    seed: int | None = None
    tolerance_class: str = "elementwise"
    target: str | None = None
    file: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- paths


def default_data_dir() -> Any:
    """The data directory: ``$OPTCONFORM_GOLDEN_DIR`` when set, else the package's ``data`` folder."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return resources.files("optconform.golden").joinpath("data")


def _resolve(data_dir: Any) -> Any:
    """``data_dir`` as a Traversable/Path; None -> :func:`default_data_dir`."""
    if data_dir is None:
        return default_data_dir()
    if isinstance(data_dir, (str, os.PathLike)):
        return Path(data_dir)
    return data_dir


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return sha256_bytes(Path(path).read_bytes())


# ------------------------------------------------------------------------------------------ manifest

_MANIFEST_CACHE: dict[str, tuple[str, dict]] = {}  # str(root) -> (sha256 of the raw bytes, parsed)


def load_manifest(data_dir: Any = None) -> dict[str, Any]:
    """Parse ``manifest.json`` from ``data_dir`` (default: :func:`default_data_dir`); a private copy.

    Raises :class:`GoldenIntegrityError` when it is missing, not JSON, or of another format version.
    """
    return copy.deepcopy(_manifest(_resolve(data_dir)))


def _manifest(root: Any) -> dict[str, Any]:
    """The parsed manifest of ``root``, cached by the digest of its bytes (callers must not modify it)."""
    entry = root.joinpath(MANIFEST_NAME)
    try:
        raw = entry.read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise GoldenIntegrityError(f"{MANIFEST_NAME}: missing from {root}") from exc
    key = str(root)
    cached = _MANIFEST_CACHE.get(key)
    digest = sha256_bytes(raw)
    if cached is not None and cached[0] == digest:
        return cached[1]
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GoldenIntegrityError(f"{MANIFEST_NAME} in {root} is not valid JSON: {exc}") from exc
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise GoldenIntegrityError(f"{MANIFEST_NAME}: format_version must be {FORMAT_VERSION}; got {version!r}")
    _MANIFEST_CACHE[key] = (digest, manifest)
    return manifest


def _case_records(manifest: Mapping[str, Any]) -> dict[str, dict]:
    return {rec["id"]: rec for rec in manifest["cases"]}


def case_ids(clause: str | None = None, data_dir: Any = None) -> list[str]:
    """Ids of every case (of one clause when given), in manifest order (sorted by id)."""
    manifest = _manifest(_resolve(data_dir))
    return [r["id"] for r in manifest["cases"] if clause is None or r["clause"] == clause]


def _read_verified(root: Any, fname: str, manifest: Mapping[str, Any]) -> bytes:
    files = manifest["files"]
    if fname not in files:
        raise GoldenIntegrityError(f"{fname}: not listed in the manifest's files")
    expected = files[fname]["sha256"]
    try:
        data = root.joinpath(fname).read_bytes()
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise GoldenIntegrityError(f"{fname}: missing from {root} (expected sha256 {expected})") from exc
    actual = sha256_bytes(data)
    if actual != expected or len(data) != files[fname]["bytes"]:
        raise GoldenIntegrityError(
            f"{fname}: sha256 mismatch in {root}: expected {expected} ({files[fname]['bytes']} bytes), "
            f"got {actual} ({len(data)} bytes)")
    return data


def _check_meta(case_id: str, fname: str, role: str, name: str, arr: np.ndarray, meta: Mapping) -> None:
    if list(arr.shape) != list(meta["shape"]) or arr.dtype.str != meta["dtype"]:
        raise GoldenIntegrityError(
            f"{fname}: {case_id}/{role}/{name} has shape {list(arr.shape)} dtype {arr.dtype.str}; the "
            f"manifest says shape {meta['shape']} dtype {meta['dtype']}")


def load_case(case_id: str, data_dir: Any = None) -> GoldenCase:
    """Load one case, verifying its file's sha256 first.

    Raises ``KeyError`` naming ``case_id`` when the manifest does not list it and
    :class:`GoldenIntegrityError` when its file is missing, corrupted, truncated or inconsistent.
    """
    root = _resolve(data_dir)
    manifest = _manifest(root)
    records = _case_records(manifest)
    if case_id not in records:
        raise KeyError(f"unknown golden case id {case_id!r}")
    rec = records[case_id]
    fname = rec["file"]
    data = _read_verified(root, fname, manifest)
    arrays: dict[str, dict[str, np.ndarray]] = {"inputs": {}, "outputs": {}}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for role in ("inputs", "outputs"):
                for name, meta in rec[role].items():
                    key = f"{case_id}/{role}/{name}"
                    if key not in npz.files:
                        raise GoldenIntegrityError(f"{fname}: array {key} is missing")
                    arr = npz[key]
                    _check_meta(case_id, fname, role, name, arr, meta)
                    arrays[role][name] = arr
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # pragma: no cover - digest catches these first
        raise GoldenIntegrityError(f"{fname}: unreadable archive: {exc}") from exc
    return GoldenCase(
        id=case_id, clause=rec["clause"], function=rec["function"], hyper=copy.deepcopy(rec["hyper"]),
        inputs=arrays["inputs"], outputs=arrays["outputs"], steps=rec.get("steps"),
        world_size=rec.get("world_size"), regime=rec.get("regime", ""), description=rec.get("description", ""),
        layout=rec.get("layout", "call"), seed=rec.get("seed"),
        tolerance_class=rec.get("tolerance_class", "elementwise"), target=rec.get("target"), file=fname,
        extra=copy.deepcopy(rec.get("extra", {})))


def iter_cases(clause: str | None = None, data_dir: Any = None) -> Iterator[GoldenCase]:
    """Yield every case (or every case of ``clause``, e.g. ``"S8.2"``), verified, in id order."""
    root = _resolve(data_dir)
    for cid in case_ids(clause, root):
        yield load_case(cid, root)


# ------------------------------------------------------------------------------------------- writing

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.require(arr, requirements="C"), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> tuple[str, int]:
    """Write ``arrays`` as an uncompressed ``.npz`` whose bytes depend only on the arrays.

    Entries are sorted by name, every timestamp is 1980-01-01 and the creator system is fixed, so equal
    arrays always give an identical file. Returns (sha256, byte size).
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = arrays[name]
            if arr.dtype.hasobject:
                raise ValueError(f"arrays[{name!r}] must not be an object array")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.create_system = 3
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, _npy_bytes(arr))
    data = out.getvalue()
    Path(path).write_bytes(data)
    return sha256_bytes(data), len(data)


# ---------------------------------------------------------------------------------------- comparison


def compare_arrays(actual: np.ndarray, expected: np.ndarray, rtol: float) -> str | None:
    """None when ``actual`` matches ``expected`` for regeneration, else a one-line reason.

    Float arrays: max|actual − expected| <= rtol · max|expected| (norm-wise, so entries that cross zero are
    judged against the array's scale); an all-zero ``expected`` must be reproduced exactly. Other dtypes
    must be equal. Shapes and dtypes must agree.
    """
    if actual.shape != expected.shape or actual.dtype != expected.dtype:
        return f"shape/dtype {actual.shape} {actual.dtype} != {expected.shape} {expected.dtype}"
    if not np.issubdtype(expected.dtype, np.floating):
        return None if np.array_equal(actual, expected) else "integer/bool values differ"
    if expected.size == 0:
        return None
    if not np.array_equal(np.isfinite(actual), np.isfinite(expected)):
        return "non-finite entries differ"
    scale = float(np.max(np.abs(expected)))
    err = float(np.max(np.abs(actual - expected)))
    if err <= rtol * scale:
        return None
    return f"max abs diff {err:.3e} > {rtol:.0e} x scale {scale:.3e} (rel {err / scale if scale else np.inf:.3e})"
