"""Run several conformance sessions in one interpreter, one after another (``suite_run.run_many``).

Each job is a ``pytest.main`` call with its own target and ``--report-json``; torch, the suite and the targets
are imported once instead of once per session, which is most of a short session's cost. Usage:
``python suite_batch.py JOBS.json`` where the file holds ``[{"args": [...], "out": "path.txt", "rc": "path.rc"}]``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest


def main(path: str) -> int:
    for job in json.loads(Path(path).read_text()):
        with open(job["out"], "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = pytest.main(job["args"])
        Path(job["rc"]).write_text(str(int(rc)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
