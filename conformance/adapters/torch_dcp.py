"""``Checkpoint`` (S9.9) by torch's own recipe, for optimizers whose state is DTensors placed as their parameters
(FSDP2 / DTensor optimizers): a target can name this module as its ``Checkpoint``.

``save``: ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` (the optimizer's state keyed by
parameter name) written by ``dcp.save``. ``load``: the same call on the fresh optimizer first (torch initialises its
state with one step on zero gradients at lr 0), ``dcp.load`` into that template (each rank reads its own pieces of
the DTensors at the new world size), then ``set_optimizer_state_dict``. The parameters are named by their position
in the optimizer's groups (``p<j>``), so the fresh optimizer must be given them in the same order.

State that is not a DTensor of its parameter's placements (a plain tensor on one owner, a rank-local piece) is
written as it is: DCP cannot reshard it, and the S9.9 case then says what went wrong.
"""

from __future__ import annotations

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

__all__ = ["save", "load"]


def _model(optimizer: torch.optim.Optimizer) -> torch.nn.Module:
    """A module holding the optimizer's parameters as ``p<j>`` (what the state-dict API keys the state by)."""
    model = torch.nn.Module()
    for j, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        model.register_parameter(f"p{j}", p)
    return model


def save(optimizer: torch.optim.Optimizer, path: str) -> None:
    """Write ``optimizer``'s state to the DCP folder ``path`` (collective: every rank)."""
    dcp.save({"optimizer": get_optimizer_state_dict(_model(optimizer), optimizer)}, checkpoint_id=path)


def load(optimizer: torch.optim.Optimizer, path: str) -> None:
    """Read the DCP folder ``path`` into the fresh ``optimizer``, resharded to this world size (collective)."""
    model = _model(optimizer)
    sd = {"optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(sd, checkpoint_id=path)
    set_optimizer_state_dict(model, optimizer, sd["optimizer"])
