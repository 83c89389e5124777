"""Count the torch.distributed collectives a block of code issues on this rank.

``with count_collectives() as calls: opt.step()`` leaves in ``calls`` (a ``collections.Counter``) how many times
each collective of ``COLLECTIVES`` was called, keyed by torch's function name (``reduce_scatter_single`` and
``reduce_scatter_tensor`` are one function in torch 2.13 and count under the first name of ``COLLECTIVES``).
Every module-level alias of such a function in ``sys.modules`` (``from torch.distributed import all_reduce``,
``_rs = dist.reduce_scatter_tensor``) is swapped for a counting wrapper while the block runs and restored after it,
so an implementation is counted however it imports them. Point-to-point calls, ``barrier`` and the object
collectives count too; a collective that torch builds on others (``all_gather_object``) counts once, by its own
name. Used by tests/impl/test_distributed.py (per-step collective counts of DistMuon and DistAdamW)
and bench/distributed.py (figure 4's "collectives per step").
"""

from __future__ import annotations

import collections
import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch.distributed as dist

__all__ = ["COLLECTIVES", "count_collectives"]

#: the torch.distributed functions counted (those the installed torch has)
COLLECTIVES: tuple[str, ...] = (
    "all_reduce", "reduce", "broadcast", "barrier", "reduce_scatter", "reduce_scatter_single", "reduce_scatter_tensor",
    "all_gather", "all_gather_single", "all_gather_into_tensor", "all_to_all", "all_to_all_single", "gather",
    "scatter", "send", "recv", "isend", "irecv", "all_gather_object", "broadcast_object_list", "gather_object",
    "scatter_object_list",
)


@contextlib.contextmanager
def count_collectives() -> Iterator[collections.Counter[str]]:
    """A Counter of the collectives called inside the block, by name; every alias restored afterwards."""
    calls: collections.Counter[str] = collections.Counter()
    names: dict[int, str] = {}
    for name in COLLECTIVES:
        fn = getattr(dist, name, None)
        if fn is not None:
            names.setdefault(id(fn), name)
    wrappers: dict[int, Callable[..., Any]] = {}
    depth = [0]

    def wrapper_of(fn: Callable[..., Any]) -> Callable[..., Any]:
        if id(fn) not in wrappers:
            name = names[id(fn)]

            @functools.wraps(fn)
            def counted(*args: Any, **kwargs: Any) -> Any:
                if depth[0] == 0:  # a collective built on others (all_gather_object) counts once
                    calls[name] += 1
                depth[0] += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    depth[0] -= 1

            wrappers[id(fn)] = counted
        return wrappers[id(fn)]

    swapped: list[tuple[object, str, object]] = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if callable(value) and id(value) in names:
                swapped.append((module, attr, value))
    try:
        for module, attr, value in swapped:
            setattr(module, attr, wrapper_of(value))  # type: ignore[arg-type]
        yield calls
    finally:
        for module, attr, value in swapped:
            setattr(module, attr, value)
