"""The verdict is trustworthy in both directions: every wrong target in the catalog is rejected by a case of
the clause it breaks, at the verdict level it breaks, by at least its margin (3× its bound unless the entry says
why not), and every family's mistake-free control passes the same cases at every level.

Each entry runs the conformance cases of its clause through the real plugin and the real target loading
(hypothesis profile ``ci``, ``--seed 0``: reproducible) and reads the verdict from ``--report-json``. The
entries run in a few batches, each in one interpreter (``suite_run.run_many``); ``nox -s tests`` keeps a
file's tests on one worker (``--dist loadfile``), so each batch runs once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from suite_run import rows, run_many
from wrong_targets import CATALOG, CONTROLS

ENTRIES = {**CATALOG, **CONTROLS}
BATCHES = 3
BATCH = {name: i % BATCHES for i, name in enumerate(sorted(ENTRIES))}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """name -> its report; an entry's whole batch runs the first time one of its entries is asked for."""
    done: dict[int, dict] = {}

    def get(name: str) -> dict:
        b = BATCH[name]
        if b not in done:
            jobs = {n: dict(target=f"wrong_targets:{n}", select=e.select, world_sizes=e.world_sizes,
                            args=("--profile", e.profile)) for n, e in ENTRIES.items() if BATCH[n] == b}
            done[b] = run_many(jobs, tmp_path_factory.mktemp(f"catalog{b}"))
        return done[b][name]

    return get


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_wrong_target_is_rejected_by_its_clause_at_its_level(name, report):
    entry, rep = CATALOG[name], report(name)
    table = rows(rep)
    assert entry.clause in table, f"{name}: no case of {entry.clause} ran\n{rep['output']}"
    cell = table[entry.clause]["levels"][entry.level]
    assert cell["failed"] >= 1, f"{name} was not rejected by {entry.clause} at {entry.level}:\n{rep['output']}"
    worst = cell["worst"]
    assert worst["ratio"] >= entry.margin, f"{name}: rejected by only {worst['ratio']:.3g}× its bound ({worst})"
    if entry.level != "core":  # a mistake outside core must not be blamed on the clause's arithmetic
        assert table[entry.clause]["levels"]["core"]["failed"] == 0, rep["output"]


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_mistake_free_control_passes_at_every_level(name, report):
    entry, rep = CONTROLS[name], report(name)
    table = rows(rep)
    assert table.get(entry.clause, {}).get("counts", {}).get("passed", 0) >= 1, rep["output"]
    failed = {c: [lv for lv, cell in r["levels"].items() if cell["failed"]] for c, r in table.items()}
    assert not any(failed.values()), f"control {name} failed at {failed}:\n{rep['output']}"
    assert rep["returncode"] == 0


def test_catalog_has_at_least_15_mistakes_over_distinct_clauses_and_every_level_but_layout():
    assert len(CATALOG) >= 15
    assert len({e.clause for e in CATALOG.values()}) >= 9
    assert {e.level for e in CATALOG.values()} == {"core", "hardening"}  # layout variants are not mistakes


def test_the_readme_counts_the_catalog():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"a catalog of {len(CATALOG)} deliberately wrong targets" in readme
