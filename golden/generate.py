"""Generate the golden vectors from the float64 reference (SPEC "Golden vectors").

    python -m optconform.golden.generate [--out DIR] [--check] [--family NAME ...] [--profile NAME ...]

Without ``--check`` the data is (re)written to ``--out`` (default: the package's ``golden/data``).
With ``--check`` everything is regenerated into a temporary directory and compared with the data in
``--out`` within :data:`optconform.golden.store.REGEN_RTOL`; the exit status is 1 when a case differs
(the differing cases are listed) and 0 otherwise.

Every input comes from ``np.random.default_rng(seed)`` with a per-case seed (the CRC-32 of the case id,
recorded in the manifest); every output is computed by ``optconform.reference`` and nothing else.

Profiles (SPEC "Variant options and profiles"): the default profile's data is ``DIR`` itself; every other profile
gets ``DIR/<profile>/`` holding the cases of the protocol clauses whose options it changes, with the same ids and
inputs and the outputs of the reference under its options (the reference functions are bound to them while its
cases are built); its manifest records ``profile`` and ``options``. A profile that changes nothing gets no folder.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy

from optconform.golden import cases_options, cases_s2_s5, cases_s6_s8, cases_s9_s10
from optconform.golden._case import Case
from optconform.golden.store import (
    CLAUSE_TARGETS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    REGEN_RTOL,
    SPEC_CLAUSES,
    compare_arrays,
    write_npz,
)
from optconform.reference import adam, clipping, muon, orthogonalize, zero2
from optconform.spec import options as spec_options

__all__ = ["FAMILIES", "PROFILE_FUNCTIONS", "build", "build_all", "check", "main", "profile_options"]

#: family (= file stem) -> the function producing its cases.
FAMILIES: dict[str, Callable[[], list[Case]]] = {
    "descent": cases_s2_s5.descent_cases,
    "momentum": cases_s2_s5.momentum_cases,
    "schedules": cases_s2_s5.schedule_cases,
    "clipping": cases_s2_s5.clipping_cases,
    "orthogonalize": cases_s6_s8.orthogonalize_cases,
    "muon": cases_s6_s8.muon_cases,
    "adam": cases_s6_s8.adam_cases,
    "zero2": cases_s9_s10.zero2_cases,
    "nanochat": cases_s9_s10.nanochat_cases,
    "options": cases_options.option_cases,
}

#: protocol clause -> (golden family, reference module, function) whose outputs a profile's options change
PROFILE_FUNCTIONS: dict[str, tuple[str, object, str]] = {
    "S5.1": ("clipping", clipping, "clip_grad_norm"),
    "S6.2": ("orthogonalize", orthogonalize, "zeropower"),
    "S7.2": ("muon", muon, "muon"),
    "S8.2": ("adam", adam, "adamw"),
    "S9.4": ("zero2", zero2, "dist_muon"),
    "S9.5": ("zero2", zero2, "dist_adamw"),
    "S9.7": ("zero2", zero2, "dtensor_muon"),
    "S9.8": ("zero2", zero2, "dtensor_adamw"),
}


def profile_options(profile: str) -> dict[str, dict]:
    """clause -> the options of ``profile`` that differ from the default, for every clause of PROFILE_FUNCTIONS
    they touch (an empty dict: the profile's goldens are the default's)."""
    values = spec_options.resolve(profile)
    defaults = spec_options.option_defaults()
    out = {}
    for cid in PROFILE_FUNCTIONS:
        mine, base = spec_options.clause_options(cid, values), spec_options.clause_options(cid, defaults)
        differ = {k: v for k, v in mine.items() if v != base[k]}
        if differ:
            out[cid] = differ
    return out


@contextlib.contextmanager
def _bound(options: dict[str, dict]):
    """The reference functions of PROFILE_FUNCTIONS bound to ``options`` (clause -> keyword arguments) while the
    case builders run, then restored."""
    saved = []
    try:
        for cid, kwargs in options.items():
            _, module, name = PROFILE_FUNCTIONS[cid]
            fn = getattr(module, name)
            saved.append((module, name, fn))
            setattr(module, name, functools.update_wrapper(functools.partial(fn, **kwargs), fn))
        yield
    finally:
        for module, name, fn in reversed(saved):
            setattr(module, name, fn)


_TOLERANCE_DOC = ("regeneration: for every float output array, max|new - committed| <= rtol * max|committed| "
                  "(an all-zero committed array must be reproduced exactly); integer and bool arrays exactly; "
                  "rtol from tolerance_classes by each case's tolerance_class")


def _render(obj: object, indent: int = 0) -> str:
    """JSON with sorted keys; a value whose one-line form fits in 100 columns stays on one line."""
    flat = json.dumps(obj, sort_keys=True, ensure_ascii=False, allow_nan=False)
    if len(flat) + indent <= 100 or not isinstance(obj, (dict, list)) or not obj:
        return flat
    pad = " " * (indent + 1)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(k, ensure_ascii=False)}: {_render(obj[k], indent + 1)}" for k in sorted(obj)]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return "[\n" + ",\n".join(pad + _render(v, indent + 1) for v in obj) + "\n" + " " * indent + "]"


def _json_dumps(obj: object) -> str:
    return _render(obj) + "\n"


def build(out_dir: str | Path, families: list[str] | None = None,
          profile: str = spec_options.DEFAULT_PROFILE) -> dict:
    """Generate ``families`` (default: all) of ``profile`` into ``out_dir``; write and return the manifest. For a
    profile other than the default only the cases of the clauses its options change are written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = profile_options(profile) if profile != spec_options.DEFAULT_PROFILE else {}
    names = list(FAMILIES) if families is None else families
    if profile != spec_options.DEFAULT_PROFILE:
        names = [f for f in names if any(PROFILE_FUNCTIONS[c][0] == f for c in options)]
    files: dict[str, dict] = {}
    records: list[dict] = []
    for family in names:
        with _bound(options):
            cases = FAMILIES[family]()
        if profile != spec_options.DEFAULT_PROFILE:
            cases = [c for c in cases if c.clause in options]
        arrays: dict[str, np.ndarray] = {}
        fname = f"{family}.npz"
        for case in cases:
            if not case.id.startswith(family + "."):
                raise AssertionError(f"case id {case.id} must start with its family {family!r}")
            if case.clause not in SPEC_CLAUSES:
                raise AssertionError(f"case {case.id}: unknown clause {case.clause}")
            arrays.update(case.arrays())
            records.append(case.record(fname))
        digest, size = write_npz(out / fname, arrays)
        files[fname] = {"sha256": digest, "bytes": size, "cases": len(cases)}
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise AssertionError("case ids must be unique")
    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": {
            "module": "optconform.golden.generate",
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
        },
        "tolerance_classes": dict(REGEN_RTOL),
        "tolerance_rule": _TOLERANCE_DOC,
        "clauses": dict(SPEC_CLAUSES),
        "targets": dict(CLAUSE_TARGETS),
        "profile": profile,
        "options": {cid: {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}
                    for cid, kw in options.items()},
        "files": files,
        "cases": sorted(records, key=lambda r: r["id"]),
    }
    (out / MANIFEST_NAME).write_text(_json_dumps(manifest), encoding="utf-8")
    return manifest




def build_all(out_dir: str | Path, families: list[str] | None = None) -> dict[str, dict]:
    """The default profile into ``out_dir`` and every other profile that changes a clause into ``out_dir/<name>``
    (a stale profile folder is removed); profile -> manifest."""
    import shutil

    out = Path(out_dir)
    manifests = {spec_options.DEFAULT_PROFILE: build(out, families)}
    for name in spec_options.PROFILES:
        if name == spec_options.DEFAULT_PROFILE:
            continue
        if profile_options(name):
            manifests[name] = build(out / name, families, profile=name)
        elif (out / name).exists():
            shutil.rmtree(out / name)
    return manifests


def check(committed_dir: str | Path, families: list[str] | None = None,
          profile: str = spec_options.DEFAULT_PROFILE) -> list[str]:
    """Regenerate into a temporary directory; return one line per case differing from ``committed_dir``."""
    from optconform.golden.store import load_case, load_manifest

    problems: list[str] = []
    old = load_manifest(committed_dir)
    with tempfile.TemporaryDirectory(prefix="optconform-golden-") as tmp:
        new = build(tmp, families, profile=profile)
        new_recs = {r["id"]: r for r in new["cases"]}
        old_recs = {r["id"]: r for r in old["cases"]}
        if families is not None:
            fams = {f"{f}.npz" for f in families}
            old_recs = {k: v for k, v in old_recs.items() if v["file"] in fams}
        for cid in sorted(set(old_recs) - set(new_recs)):
            problems.append(f"{cid}: in the committed data but no longer generated")
        for cid in sorted(set(new_recs) - set(old_recs)):
            problems.append(f"{cid}: generated but missing from the committed data")
        for cid in sorted(set(new_recs) & set(old_recs)):
            a, b = new_recs[cid], old_recs[cid]
            bad_meta = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            if bad_meta:
                problems.append(f"{cid}: manifest fields differ: {', '.join(bad_meta)}")
                continue
            try:
                fresh = load_case(cid, tmp)
                kept = load_case(cid, committed_dir)
            except (KeyError, ValueError) as exc:
                problems.append(f"{cid}: {exc}")
                continue
            rtol = REGEN_RTOL[a["tolerance_class"]]
            for role in ("inputs", "outputs"):
                mine, theirs = getattr(fresh, role), getattr(kept, role)
                for name in sorted(mine):
                    why = compare_arrays(mine[name], theirs[name], rtol)
                    if why is not None:
                        problems.append(f"{cid}: {role}/{name}: {why}")
    return problems


def _default_out() -> Path:
    return Path(__file__).resolve().parent / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optconform.golden.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="data directory (default: golden/data)")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temporary directory and compare with --out")
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES), default=None,
                        help="only this family (repeatable); default: all")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else _default_out()
    if args.check:
        problems = check(out, args.family)
        for name in spec_options.PROFILES:
            if name != spec_options.DEFAULT_PROFILE and profile_options(name):
                problems += [f"{name}/{line}" for line in check(out / name, args.family, profile=name)]
        for line in problems:
            print(line)
        print(f"{len(problems)} difference(s) against {out}")
        return 1 if problems else 0
    for name, manifest in build_all(out, args.family).items():
        where = out if name == spec_options.DEFAULT_PROFILE else out / name
        total = sum(f["bytes"] for f in manifest["files"].values()) + (where / MANIFEST_NAME).stat().st_size
        for fname, meta in sorted(manifest["files"].items()):
            print(f"{name:18s} {fname:22s} {meta['cases']:4d} cases {meta['bytes']:>10,d} bytes")
        print(f"{name}: {len(manifest['cases'])} cases, total {total:,d} bytes (with {MANIFEST_NAME}) in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
