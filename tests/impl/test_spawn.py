"""The multi-process harness itself (conformance/spawn.py): results, failures, timeouts, cleanup."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import torch
import torch.distributed as dist

from optconform.conformance.spawn import RankFailure, RankTimeout, run_distributed

pytestmark = [pytest.mark.distributed]


# --- rank bodies (module level: spawn pickles them by reference) -------------------------------------------
def _sum_of_ranks(rank: int, world_size: int, offset: float):
    t = torch.tensor([float(rank)])
    dist.all_reduce(t)
    return {"rank": rank, "world": world_size, "sum": t.item() + offset, "pid": os.getpid(),
            "threads": torch.get_num_threads(), "tensor": torch.full((2,), float(rank))}


def _raise_on_rank_1(rank: int, world_size: int):
    if rank == 1:
        raise KeyError("deliberate failure on rank one")
    dist.barrier()  # rank 0 waits for a partner that never comes; the harness must stop it
    return rank


def _sleep_forever_on_rank_1(rank: int, world_size: int):
    if rank == 1:
        time.sleep(10_000)
    return rank


def _sigkill_rank_1_in_a_collective(rank: int, world_size: int):
    t = torch.ones(1 << 16)
    work = dist.all_reduce(t, async_op=True)  # in flight on both ranks
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    work.wait()
    dist.barrier()
    return rank


def _rank_1_skips_a_collective(rank: int, world_size: int):
    if rank == 0:
        dist.all_reduce(torch.ones(4))  # rank 1 never enters it
        dist.all_reduce(torch.ones(4))
    return rank


# --- tests ----------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_return_values_come_back_in_rank_order():
    out = run_distributed(_sum_of_ranks, 3, args=(0.5,), timeout_s=90)
    assert [r["rank"] for r in out] == [0, 1, 2]
    assert all(r["world"] == 3 and r["sum"] == 3.5 for r in out)  # 0+1+2 all-reduced on every rank
    assert all(r["threads"] == 1 for r in out)
    assert len({r["pid"] for r in out} | {os.getpid()}) == 4  # one fresh process per rank
    assert [r["tensor"].tolist() for r in out] == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]


@pytest.mark.timeout(120)
def test_world_size_one_works():
    assert run_distributed(_sum_of_ranks, 1, args=(0.0,), timeout_s=90)[0]["sum"] == 0.0


@pytest.mark.timeout(120)
def test_exception_names_the_rank_and_carries_its_traceback():
    t0 = time.monotonic()
    with pytest.raises(RankFailure) as info:
        run_distributed(_raise_on_rank_1, 2, timeout_s=90)
    err = info.value
    assert isinstance(err, RuntimeError)
    assert err.rank == 1
    assert "rank 1 failed" in str(err)
    assert "KeyError: 'deliberate failure on rank one'" in err.traceback
    assert "_raise_on_rank_1" in err.traceback  # the frame of the failing function, not just the message
    assert 1 in err.failures
    # the partner stuck in barrier() was stopped at once, not left to the 90 s timeout
    assert time.monotonic() - t0 < 60
    assert 0 < err.elapsed_s <= time.monotonic() - t0  # from the ranks' launch to every rank stopped


@pytest.mark.timeout(120)
def test_hang_times_out_quickly_and_kills_every_rank():
    t0 = time.monotonic()
    with pytest.raises(RankTimeout) as info:
        run_distributed(_sleep_forever_on_rank_1, 2, timeout_s=6)
    elapsed = time.monotonic() - t0
    err = info.value
    assert err.ranks == [1]  # rank 0 returned; it is waiting for rank 1 in the final barrier
    assert err.finishing == [0]
    assert "_sleep_forever_on_rank_1" in err.stacks[1]  # the dump shows where rank 1 hung
    assert "ranks still running fn: [1]" in str(err)
    assert 6 <= elapsed < 6 + 20  # timeout + kill grace (2 s) + stack dump (0.5 s) + slack for load
    assert 6 <= err.elapsed_s <= elapsed  # the timeout counts from the ranks' launch, after the fork server's start
    assert [p for p in multiprocessing.active_children() if p.is_alive()] == []  # no rank survives


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="^world_size"):
        run_distributed(_sum_of_ranks, 0)
    with pytest.raises(ValueError, match="^timeout_s"):
        run_distributed(_sum_of_ranks, 1, timeout_s=0)


@pytest.mark.timeout(120)
def test_a_rank_killed_inside_a_collective_is_blamed_not_its_peer():
    """SIGKILL (as the OOM killer sends) while an all_reduce is in flight: its peer sees 'connection reset' and
    fails too, but the report names the killed rank and the signal; no process is left."""
    t0 = time.monotonic()
    with pytest.raises(RankFailure) as info:
        run_distributed(_sigkill_rank_1_in_a_collective, 2, timeout_s=90)
    assert info.value.rank == 1 and "process killed by SIGKILL (signal 9)" in str(info.value)
    assert time.monotonic() - t0 < 60
    assert [p for p in multiprocessing.active_children() if p.is_alive()] == []


@pytest.mark.timeout(120)
def test_a_rank_that_never_enters_a_collective_stops_every_rank_within_the_timeout():
    """Rank 1 skips the all_reduce rank 0 waits in: the run ends at the timeout, naming rank 0 as still in fn with its
    stack in all_reduce and rank 1 as done with fn (the one that skipped); never a hang, no process left."""
    t0 = time.monotonic()
    with pytest.raises(RankTimeout) as info:
        run_distributed(_rank_1_skips_a_collective, 2, timeout_s=8)
    assert time.monotonic() - t0 < 8 + 20
    err = info.value
    assert err.ranks == [0] and err.finishing == [1]
    assert "in all_reduce" in err.stacks[0] and "_rank_1_skips_a_collective" in err.stacks[0]
    assert [p for p in multiprocessing.active_children() if p.is_alive()] == []
