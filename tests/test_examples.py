"""The README's usage example runs, learns, and keeps ranks identical under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "train_tiny_gpt.py"


def _run(cmd: list[str], out_dir: Path) -> list[dict]:
    """Run the example; read each rank's result file (two ranks' stdout lines can interleave)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([*cmd, "--out-dir", str(out_dir)], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads(f.read_text()) for f in sorted(out_dir.glob("rank*.json"))]


def test_single_process_training_learns(tmp_path):
    (out,) = _run([sys.executable, str(SCRIPT), "--steps", "40"], tmp_path)
    assert out["world"] == 1
    assert out["last_loss"] < 0.05 * out["first_loss"]  # the permutation task is learnable in 40 steps


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_torchrun_two_ranks_learn_and_stay_identical(tmp_path):
    outs = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(SCRIPT),
                 "--steps", "40"], tmp_path)
    assert sorted(o["rank"] for o in outs) == [0, 1] and all(o["world"] == 2 for o in outs)
    assert outs[0]["checksum"] == outs[1]["checksum"]  # ZeRO-2 all-gathers: bit-identical parameters
    assert all(o["last_loss"] < 0.05 * o["first_loss"] for o in outs)
