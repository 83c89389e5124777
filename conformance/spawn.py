"""Run a function on W real torch.distributed ranks (one process each) with a hard timeout.

``run_distributed(fn, world_size, args=..., timeout_s=..., backend="gloo")`` starts W processes with
torch's own launcher (``torch.multiprocessing.start_processes``), joins them
with a shared ``FileStore`` rendezvous in a fresh temporary directory, calls
``fn(rank, world_size, *args)`` on each rank and returns the W return values in rank order.

Guarantees (the harness must never hang a test):

* each rank uses one intra-op thread (``torch.set_num_threads(1)``) and a process group whose
  collective timeout is ``timeout_s``;
* a rank whose ``fn`` returned ends with ``barrier()`` + ``destroy_process_group()`` (a gloo process that
  exits without destroying its group can abort, see notes/numerics.md);
* an exception on any rank stops every rank and raises :class:`RankFailure` naming the rank that failed
  first (secondary ``DistBackendError``\\s on peers that lost their partner are listed but not blamed; a
  rank that died without reporting, killed or crashed, is blamed before any rank that reported an error),
  with its traceback;
* if the ranks are still running after ``timeout_s`` seconds (counted from launch), each live rank's Python
  stack is dumped (``faulthandler`` on SIGUSR1), every rank is killed and :class:`RankTimeout` names the
  ranks whose ``fn`` had not returned, with their stacks.

Start method: ``forkserver`` where the platform has it (else ``spawn``; ``OPTCONFORM_START_METHOD``
overrides). The fork server is started once per parent process with torch, torch.distributed and
``fn``'s module preloaded, and never runs any computation itself, so forking ranks from it is safe
(no OpenMP or CUDA state to inherit) and costs ~0.05 s instead of a fresh interpreter importing torch
(~1.5 s per rank, measured on the 2-core machine). The server keeps the ``sys.path`` and environment
of the moment it started; use ``spawn`` if those change between calls in one process.

Children inherit ``os.environ`` and ``sys.path`` (multiprocessing's preparation data), so whatever made
``optconform`` and the test module importable in the parent does so in the children too. ``fn`` must be
importable by reference (a module-level function) and its return value picklable.
"""

from __future__ import annotations

import datetime
import faulthandler
import os
import pickle
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RankFailure", "RankTimeout", "run_distributed"]

# Exception types that a rank raises because a *peer* died or hung, not because of its own code.
_SECONDARY = ("DistBackendError", "DistNetworkError", "DistStoreError")
_KILL_GRACE_S = 2.0


class RankFailure(RuntimeError):
    """A rank raised (or died). ``rank`` is the rank blamed, ``traceback`` its traceback text and
    ``failures`` maps every rank that failed to its traceback (or exit description); ``elapsed_s``: seconds from the
    ranks' launch until every rank had stopped (set by :func:`run_distributed`)."""

    elapsed_s: float | None = None

    def __init__(self, rank: int, tb: str, failures: dict[int, str]):
        others = sorted(r for r in failures if r != rank)
        extra = f"\n(ranks {others} failed as well; see .failures)" if others else ""
        super().__init__(f"rank {rank} failed:\n{tb}{extra}")
        self.rank = rank
        self.traceback = tb
        self.failures = failures


class RankTimeout(RuntimeError):
    """Ranks still running after the timeout. ``ranks``: ranks whose ``fn`` had not returned;
    ``finishing``: ranks whose ``fn`` had returned but were still in the final barrier/teardown;
    ``stacks``: rank -> Python stack dump taken just before the kill (may be empty); ``elapsed_s``: seconds from
    the ranks' launch until every rank had stopped (set by :func:`run_distributed`)."""

    elapsed_s: float | None = None

    def __init__(self, timeout_s: float, ranks: list[int], finishing: list[int], stacks: dict[int, str]):
        msg = f"timed out after {timeout_s:g} s; ranks still running fn: {ranks}"
        if finishing:
            msg += f"; ranks done with fn but stuck in the final barrier/teardown: {finishing}"
        for r in sorted(stacks):
            if stacks[r].strip():
                msg += f"\n--- rank {r} stack ---\n{stacks[r].rstrip()}"
        super().__init__(msg)
        self.timeout_s = timeout_s
        self.ranks = ranks
        self.finishing = finishing
        self.stacks = stacks


def _path(workdir: str, kind: str, rank: int) -> str:
    return os.path.join(workdir, f"{kind}_{rank}")


def _write(path: str, obj: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh)
    os.replace(tmp, path)  # atomic: the parent never reads a half-written file


def _worker(rank: int, fn: Callable[..., Any], world_size: int, args: tuple, workdir: str,
            backend: str, timeout_s: float) -> None:
    """Body of each spawned rank (called by torch's ``_wrap`` as ``_worker(rank, *args)``)."""
    stack_file = open(_path(workdir, "stack", rank), "w")  # noqa: SIM115 - must outlive the handler
    faulthandler.register(signal.SIGUSR1, file=stack_file, all_threads=True)
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        dist.init_process_group(backend=backend, init_method="file://" + os.path.join(workdir, "store"),
                                rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        result = fn(rank, world_size, *args)
        _write(_path(workdir, "result", rank), result)
    except BaseException as exc:
        _write(_path(workdir, "error", rank),
               {"time": time.time(), "type": type(exc).__name__, "traceback": traceback.format_exc()})
        # Do not wait for peers here (they may be stuck in a collective); the parent kills them.
        os._exit(1)
    dist.barrier()
    dist.destroy_process_group()


def _kill(processes: Sequence[Any]) -> None:
    for p in processes:
        if p.is_alive():
            p.terminate()
    end = time.monotonic() + _KILL_GRACE_S
    for p in processes:
        p.join(max(0.0, end - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.kill()
        p.join()


def _read(path: str) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _failure(workdir: str, exitcodes: Sequence[int | None], torch_exc: Exception | None) -> RankFailure:
    """``exitcodes``: each rank's exit code *before* the harness stopped the others (None: still running), so a rank
    killed from outside (SIGKILL by the OOM killer, say) is told apart from the peers the harness killed."""
    errors = {r: _read(_path(workdir, "error", r)) for r in range(len(exitcodes))
              if os.path.exists(_path(workdir, "error", r))}
    failures = {r: e["traceback"] for r, e in errors.items()}
    for r, code in enumerate(exitcodes):
        if r not in failures and code not in (0, None):
            failures[r] = (f"process exited with code {code}" if code > 0 else
                           f"process killed by {signal.Signals(-code).name} (signal {-code})")
    silent = sorted(r for r in failures if r not in errors)  # died without a word: killed, os._exit, a crash
    if silent:  # the others' errors (a peer closed the connection) are its consequences
        rank = silent[0]
    elif errors:
        primary = [r for r, e in errors.items() if e["type"] not in _SECONDARY] or list(errors)
        rank = min(primary, key=lambda r: errors[r]["time"])
    elif failures:
        rank = min(failures)
    else:  # only torch's own report is left (should not happen)
        rank = getattr(torch_exc, "error_index", -1)
        failures[rank] = str(torch_exc)
    return RankFailure(rank, failures[rank], failures)


#: Imported once by the fork server: torch, its distributed package, and torch._dynamo, which
#: ``torch.optim.Optimizer.add_param_group`` imports on first use (1.5 s of CPU per rank otherwise).
_PRELOAD = ["torch", "torch.distributed", "torch._dynamo", __name__]


def _start_method(fn: Callable[..., Any]) -> str:
    import multiprocessing

    method = os.environ.get("OPTCONFORM_START_METHOD") or (
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
    if method == "forkserver":
        # effective only until the server starts (the first call); later modules load in the children
        multiprocessing.set_forkserver_preload(_PRELOAD + [fn.__module__])
    return method


def _noop() -> None:
    """The fork server's first child (:func:`_forkserver_ready`)."""


_SERVER_READY = False


def _forkserver_ready() -> None:
    """Start the fork server and wait until it has imported its preload (one no-op child through it, once per
    process): that one-off start (torch: seconds, more on a loaded machine) is the harness's cost, not the ranks',
    so the timeout and ``elapsed_s`` count from the ranks' launch."""
    global _SERVER_READY
    if not _SERVER_READY:
        import multiprocessing

        child = multiprocessing.get_context("forkserver").Process(target=_noop, daemon=True)
        child.start()
        child.join()
        _SERVER_READY = True


def run_distributed(fn: Callable[..., Any], world_size: int, *, args: tuple = (), timeout_s: float = 60.0,
                    backend: str = "gloo") -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` ranks; return the results in rank order.

    Raises ``ValueError`` for a bad ``world_size``/``timeout_s``, :class:`RankFailure` if any rank raised
    or died, :class:`RankTimeout` if any rank was still running ``timeout_s`` seconds after launch.
    """
    import torch.multiprocessing as tmp
    from torch.multiprocessing.spawn import ProcessException

    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1; got {world_size!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0; got {timeout_s!r}")
    method = _start_method(fn)
    if method == "forkserver":
        _forkserver_ready()
    workdir = tempfile.mkdtemp(prefix="optconform-dist-")
    launched = time.monotonic()
    deadline = launched + timeout_s
    ctx = None
    try:
        ctx = tmp.start_processes(_worker, args=(fn, world_size, tuple(args), workdir, backend, timeout_s),
                                  nprocs=world_size, join=False, start_method=method)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(workdir, ctx.processes, timeout_s)
            try:
                if ctx.join(timeout=min(0.2, remaining), grace_period=_KILL_GRACE_S):
                    break
            except ProcessException as exc:
                exitcodes = [p.exitcode for p in ctx.processes]  # before the harness kills anyone
                _kill(ctx.processes)
                raise _failure(workdir, exitcodes, exc) from None
        return [_read(_path(workdir, "result", r)) for r in range(world_size)]
    except (RankFailure, RankTimeout) as err:
        err.elapsed_s = time.monotonic() - launched  # every rank has been stopped by now
        raise
    finally:
        if ctx is not None:
            _kill(ctx.processes)  # no-op when all have exited; guarantees no orphan on any path
            for f in ctx.error_files:
                if f and os.path.exists(f):
                    os.unlink(f)
        shutil.rmtree(workdir, ignore_errors=True)


def _timeout(workdir: str, processes: Sequence[Any], timeout_s: float) -> RankTimeout:
    alive = [r for r, p in enumerate(processes) if p.is_alive()]
    for r in alive:
        try:
            os.kill(processes[r].pid, signal.SIGUSR1)  # faulthandler dumps the stack to stack_<rank>
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    _kill(processes)
    stacks = {}
    for r in alive:
        try:
            with open(_path(workdir, "stack", r)) as fh:
                stacks[r] = fh.read()
        except OSError:
            stacks[r] = ""
    running = [r for r in alive if not os.path.exists(_path(workdir, "result", r))]
    finishing = [r for r in alive if r not in running]
    return RankTimeout(timeout_s, running, finishing, stacks)
