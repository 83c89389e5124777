"""The README's verdict tables for the built-in targets (torch.optim's adapter and the seed's own code) are what
the suite says: both targets are run (world size 2) and every row's level verdicts and other outcomes compared
with the table between ``<!-- verdicts: TARGET -->`` markers. The README is the one copy of the expectation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from suite_run import rows, run_many

pytestmark = pytest.mark.distributed

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"<!-- verdicts: (?P<target>[\w.]+) -->\n(?P<table>.*?)<!-- end verdicts -->", re.S)
TABLES = {m.group("target"): m.group("table") for m in _BLOCK.finditer(README)}
LEVELS = ("core", "hardening", "layout")
OTHER = ("not provided", "unsupported", "mismatch", "error")


def _expected(table: str) -> dict[str, dict]:
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells or not re.match(r"S\d+\.\d+ ", cells[0]):
            continue
        clause = cells[0].split()[0]
        out[clause] = dict(zip(LEVELS, cells[1:4], strict=True), other={w for w in OTHER if w in cells[4]})
    return out


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    return run_many({t.rsplit(".", 1)[-1]: dict(target=t, world_sizes="2") for t in TABLES},
                    tmp_path_factory.mktemp("builtin"))


def test_the_readme_has_a_table_for_each_built_in_target():
    assert set(TABLES) == {"optconform.conformance.torch_optim", "optconform.conformance.seed_code"}
    assert all(len(_expected(t)) == 12 for t in TABLES.values())  # every clause with a protocol name


@pytest.mark.parametrize("target", sorted(TABLES))
def test_every_row_of_the_readme_table_is_what_the_suite_says(reports, target):
    got = rows(reports[target.rsplit(".", 1)[-1]])
    for clause, want in _expected(TABLES[target]).items():
        row = got[clause]
        for lv in LEVELS:
            cell = "" if lv not in row["clause_levels"] else row["levels"][lv]["verdict"]
            assert cell == want[lv], f"{target} {clause} {lv}: the suite says {cell!r}, the README {want[lv]!r}"
        other = {s for s in OTHER if row["counts"].get(s)}
        assert other == want["other"], f"{target} {clause}: the suite says {other}, the README {want['other']}"
