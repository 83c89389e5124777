"""SPEC.md is walkable and in step with the spec registry: every clause heading is the registry's, every
generated block is current, and every clause names reference functions that exist and that the tests exercise."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from optconform import spec
from optconform.spec import docs

ROOT = Path(__file__).resolve().parents[1]
SPEC = (ROOT / "SPEC.md").read_text(encoding="utf-8")
CLAUSE_RE = re.compile(r"^### (S\d+\.\d+) (.*)$", re.M)
REF_RE = re.compile(r"optconform\.reference\.(\w+)\.(\w+)")


def _clauses() -> list[tuple[str, str, str]]:
    heads = list(CLAUSE_RE.finditer(SPEC))
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(SPEC)
        nxt = SPEC.find("\n## ", m.end())
        if 0 <= nxt < end:
            end = nxt
        out.append((m.group(1), m.group(2), SPEC[m.start():end]))
    return out


# S1 states conventions (numbers, state, errors), not functions; every later clause is a function clause.
CLAUSES = [c for c in _clauses() if not c[0].startswith("S1.")]


def test_clause_headings_are_the_registrys():
    """SPEC.md's function-clause headings, in order, are exactly the registry's (ids, functions, titles)."""
    headings = [m.group(0)[4:] for m in CLAUSE_RE.finditer(SPEC) if not m.group(1).startswith("S1.")]
    assert headings == [c.heading for c in spec.CLAUSES]


@pytest.mark.parametrize("name", ["SPEC.md", "README.md"])
def test_generated_blocks_are_current(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    blocks = docs.BLOCKS if name == "SPEC.md" else {"protocol", "functional-protocol"}
    present = set(re.findall(r"<!-- generated: ([a-z-]+) -->", text))
    assert present == set(blocks), f"{name} must hold the generated blocks {sorted(blocks)}"
    stale = docs.stale_blocks(text)
    assert not stale, f"{name}: stale generated blocks {stale}; run nox -s docs"


def test_clause_body_names_the_registrys_reference_function():
    bodies = {c[0]: c[2] for c in CLAUSES}
    for c in spec.CLAUSES:
        body = bodies[c.id]
        named = re.search(rf"reference:.*\b{c.name}\b", body, re.I | re.S)
        assert f"optconform.reference.{c.module}." in body and named, f"{c.id} must name {c.reference}"


def test_clauses_are_numbered_uniquely_and_in_order():
    ids = [c[0] for c in CLAUSES]
    assert len(ids) == len(set(ids)), "duplicate clause ids in SPEC.md"
    keys = [tuple(int(x) for x in i[1:].split(".")) for i in ids]
    assert keys == sorted(keys)
    assert len(ids) >= 35


@pytest.mark.parametrize("clause,title,body", CLAUSES, ids=[c[0] for c in CLAUSES])
def test_clause_names_an_existing_reference_function(clause, title, body):
    refs = REF_RE.findall(body)
    assert refs, f"{clause} ({title}) names no optconform.reference.<module>.<function>"
    for module, name in refs:
        mod = importlib.import_module(f"optconform.reference.{module}")
        assert callable(getattr(mod, name, None)) or hasattr(mod, name), f"{clause}: {module}.{name} missing"


@pytest.mark.parametrize("clause,title,body", CLAUSES, ids=[c[0] for c in CLAUSES])
def test_clause_functions_are_tested(clause, title, body):
    section = clause.split(".")[0][1:]
    files = list((ROOT / "tests" / "reference").glob(f"test_s{section}_*.py"))
    assert files, f"no tests/reference/test_s{section}_*.py for {clause}"
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    for _module, name in REF_RE.findall(body):
        assert re.search(rf"\b{name}\b", text), f"{clause}: {name} is not exercised in {[f.name for f in files]}"


def test_reference_does_not_import_torch():
    for path in (ROOT / "reference").glob("*.py"):
        src = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import torch|from torch)", src, re.M), f"{path.name} imports torch"
