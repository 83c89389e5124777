"""Render the benchmark results (the dict ``bench.run.main`` returns) as markdown."""

from __future__ import annotations

from typing import Any

__all__ = ["to_markdown"]

INTRO = """\
Performance of `optconform.impl` against torch's own optimizers and against the hardware, produced by
`bench/` (see `bench/run.py`). Every ratio is measured in the same run: candidates that are compared run
interleaved (each round runs each candidate once, in rotated order) and the ratio is formed per round, then
its median over rounds is reported, with the absolute times for context. This file is generated: rerun
`nox -s bench` (or the command below) rather than editing it. `--quick` gives a smaller version in under
a minute; `--only ID[,ID]` runs a subset (IDs: zeropower, muon_step, adamw_step, dist_muon, state_bytes, suite),
and `--merge PATH.json` (an earlier `--out`) keeps the figures not rerun, each with its own command and date.
"""


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "—"
    if fmt == "s":
        return str(value)
    if isinstance(value, float) and value != value:
        return "n/a"
    return format(value, fmt)


def _table(fig: dict[str, Any]) -> list[str]:
    cols = fig["columns"]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |",
             "|" + "|".join("---" if f == "s" else "---:" for _, _, f in cols) + "|"]
    for row in fig["rows"]:
        lines.append("| " + " | ".join(_cell(row.get(k), f) for k, _, f in cols) + " |")
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    """The whole report: intro, machine, then one section per figure."""
    m = results["machine"]
    machine = (f"{m['cores']} cores ({m['cpu']}, {m['cpu_capability']}), {m['memory_gib']} GiB, torch {m['torch']}, "
               f"Python {m['python']}")
    out = ["# Benchmarks", "", INTRO,
           f"**Command:** `{results['command']}` (preset `{results['preset']}`)"
           + (" — the figures it did not rerun were kept from earlier runs (`--merge`) and name their own command "
              "and date" if any(f.get("command", results["command"]) != results["command"]
                                for f in results["figures"]) else "") + "  ",
           f"**Machine:** {machine}  ",
           f"**Date:** {m['date_utc']}; total wall time {results['seconds']:.0f} s  ",
           f"**Threads:** {results['threads']} intra-op thread(s) for figures 1–3 (figures 4–6 set their own)  ",
           f"**Load:** load average (1/5/15 min) {m['load_average_start']} at the start, "
           f"{results['load_average_end']} at the end. {results['load_note']}", ""]
    for fig in results["figures"]:
        cfg = ", ".join(f"{k}={v}" for k, v in fig["config"].items())
        out += [f"## {fig['title']}", "",
                f"Command: `{fig.get('command', results['command'])}` · machine: {m['cores']} cores, torch "
                f"{m['torch']} · date: {fig.get('date_utc', m['date_utc'])} · load average after this figure: "
                f"{fig['load_average_end']} · "
                f"{fig['seconds']:.0f} s", "",
                f"Configuration: {cfg}", ""]
        out += _table(fig)
        out += ["", f"**Reading:** {fig['reading']}", ""]
        out += [f"- {n}" for n in fig.get("notes", [])]
        out += [""]
    return "\n".join(out).rstrip() + "\n"
