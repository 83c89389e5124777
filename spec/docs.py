"""Render the registry into SPEC.md and README.md: the clause index, the protocol block, the level table.

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end generated: NAME -->`` markers;
everything outside the markers is hand-written. ``python -m optconform.spec.docs --write SPEC.md README.md``
rewrites the blocks (``nox -s docs``), ``--check`` exits 1 naming every stale block; the project's tests
run the check, so a clause, hyperparameter or protocol change that is not re-rendered fails CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from . import CLAUSES, PROTOCOL
from .hyper import Hyper
from .levels import LEVEL_DOCS, LEVELS

__all__ = ["BLOCKS", "render_clause_index", "render_protocol", "render_functional_protocol", "render_levels", "sync",
           "stale_blocks", "main"]


def _hyper_cell(h: Hyper) -> str:
    default = "required" if h.required else f"{h.default!r}"
    return f"`{h.name}` ({default}; {h.domain.rule})"


def render_clause_index() -> str:
    """One row per clause: reference function, protocol name, hyperparameters, levels."""
    rows = ["| clause | reference (`optconform.reference.`…) | target protocol | hyperparameters (default; domain) "
            "| verdict levels |", "|---|---|---|---|---|"]
    for c in CLAUSES:
        hypers = "<br>".join(_hyper_cell(h) for h in c.hyper) or "—"
        rules = "".join(f"<br>rule: {r.doc}" for r in c.hyper.rules)
        levels = ", ".join(c.levels)
        if c.layout:
            levels = levels.replace("layout", f"layout ({c.layout})")
        proto = f"`{c.protocol_name}`" if c.protocol else "—"
        rows.append(f"| {c.id} | `{c.reference}` | {proto} | {hypers}{rules} | {levels} |")
    return "\n".join(rows)


def render_protocol() -> str:
    """The protocol block: each name's typed call, with its clause and what the suite expects."""
    lines = ["```"]
    for e in PROTOCOL.values():
        lines.append(f"# {e.clause.id} {e.clause.name}: {e.doc}")
        lines.append(e.render())
    lines.append("```")
    return "\n".join(lines)


def render_levels() -> str:
    """The verdict levels and every clause's input regimes."""
    rows = ["| level | what its checks judge |", "|---|---|"]
    rows += [f"| `{lv}` | {LEVEL_DOCS[lv]} |" for lv in LEVELS]
    rows += ["", "| clause | regime | level | where it holds |", "|---|---|---|---|"]
    for c in CLAUSES:
        for r in c.regimes:
            rows.append(f"| {c.id} `{c.name}` | `{r.name}` | {r.level} | {r.doc} |")
    return "\n".join(rows)


def render_profiles() -> str:
    """The option table (name, default, allowed values, clauses) and one row per profile with its source."""
    from .options import OPTION_CLAUSES, PROFILES, options

    rows = ["| option | default (nanochat-2025-10) | allowed | clauses |", "|---|---|---|---|"]
    for name, h in options().items():
        where = ", ".join(c for c, names in OPTION_CLAUSES.items() if name in names) or "—"
        rows.append(f"| `{name}` | `{h.default!r}` | {h.domain.rule} | {where} |")
    rows += ["", "| profile | what | options that differ from the seed | source | not captured |",
             "|---|---|---|---|---|"]
    for p in PROFILES.values():
        differs = ", ".join(f"`{k}={v!r}`" for k, v in p.differs.items()) or "— (every default)"
        rows.append(f"| `{p.name}` | {p.title} | {differs} | {p.source} | {p.notes or '—'} |")
    return "\n".join(rows)


def render_functional_protocol() -> str:
    """The functional (framework-neutral) protocol block: NumPy functions the suite wraps into the torch protocol."""
    from optconform.conformance.functional import protocol_block

    return "```\n" + protocol_block() + "\n```"


BLOCKS: dict[str, Callable[[], str]] = {
    "profiles": render_profiles,
    "functional-protocol": render_functional_protocol,
    "clause-index": render_clause_index,
    "protocol": render_protocol,
    "levels": render_levels,
}

_BLOCK = re.compile(r"<!-- generated: (?P<name>[a-z-]+) -->\n(?P<body>.*?)\n?<!-- end generated: (?P=name) -->", re.S)


def sync(text: str) -> str:
    """``text`` with every generated block re-rendered (unknown block names raise ValueError)."""

    def repl(m: re.Match) -> str:
        name = m.group("name")
        if name not in BLOCKS:
            raise ValueError(f"unknown generated block {name!r}; known: {sorted(BLOCKS)}")
        return f"<!-- generated: {name} -->\n{BLOCKS[name]()}\n<!-- end generated: {name} -->"

    return _BLOCK.sub(repl, text)


def stale_blocks(text: str) -> list[str]:
    """Names of the generated blocks in ``text`` whose content differs from the registry's rendering."""
    return [m.group("name") for m in _BLOCK.finditer(text) if m.group("body") != BLOCKS[m.group("name")]()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m optconform.spec.docs", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="Markdown files with generated blocks")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the blocks in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if any block is stale")
    args = parser.parse_args(argv)
    stale = []
    for path in args.files:
        text = path.read_text(encoding="utf-8")
        if args.write:
            new = sync(text)
            if new != text:
                path.write_text(new, encoding="utf-8")
                print(f"rewrote {path}")
        else:
            stale += [f"{path}: {name}" for name in stale_blocks(text)]
    files = " ".join(map(str, args.files))
    for s in stale:
        print(f"stale generated block {s} (run python -m optconform.spec.docs --write {files})")
    return 1 if stale else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
