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
    out_dir.mkdir(parents=True, exist_ok=True)
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


@pytest.mark.distributed
@pytest.mark.timeout(300)
def test_torchrun_checkpoint_on_two_ranks_resumes_on_three_and_on_one(tmp_path):
    """The README's checkpoint commands: 20 of 40 iterations on 2 ranks, saved; the other 20 on 3 ranks (optimizer
    state resharded) and, from the same checkpoint, in one process."""
    ckpt = tmp_path / "ckpt"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    first = _run([*torchrun, "--nproc-per-node", "2", str(SCRIPT), "--steps", "20", "--total", "40",
                  "--save", str(ckpt)], tmp_path / "a")
    three = _run([*torchrun, "--nproc-per-node", "3", str(SCRIPT), "--steps", "20", "--total", "40",
                  "--resume", str(ckpt)], tmp_path / "b")
    (one,) = _run([sys.executable, str(SCRIPT), "--steps", "20", "--total", "40", "--resume", str(ckpt)],
                  tmp_path / "c")
    assert all(o["start"] == 0 for o in first) and all(o["start"] == 20 for o in [*three, one])
    assert len({o["checksum"] for o in three}) == 1 and [o["world"] for o in three] == [3, 3, 3]
    # the resumed runs continue from the trained state: their first loss is already near the end of the first run
    for o in [*three, one]:
        assert o["first_loss"] < 0.2 * first[0]["first_loss"] and o["last_loss"] < 0.05 * first[0]["first_loss"]
