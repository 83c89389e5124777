"""The parameter shapes of a nanochat GPT (weights as ``nn.Linear`` stores them: (out_features, in_features)).

Per block (``transformer.h.<i>``): attention ``c_q``, ``c_k``, ``c_v``, ``c_proj`` (d × d; at depth 12 nanochat
has as many key/value heads as query heads, so c_k and c_v are d × d as well) and MLP ``c_fc`` (4d × d) and
``c_proj`` (d × 4d); these go to Muon. ``transformer.wte`` (vocab × d) and ``lm_head`` (vocab × d) go to AdamW.
nanochat's depth-12 model has d = 768 (64 per layer of depth) and a 65536-token vocabulary.
"""

from __future__ import annotations

import torch

__all__ = ["muon_shapes", "adamw_shapes", "make_tensors", "nbytes"]


def muon_shapes(d_model: int, depth: int) -> dict[str, tuple[int, int]]:
    """name -> shape of every matrix in ``transformer.h`` (the Muon parameters)."""
    shapes: dict[str, tuple[int, int]] = {}
    for i in range(depth):
        pre = f"transformer.h.{i}."
        for name in ("c_q", "c_k", "c_v", "c_proj"):
            shapes[pre + f"attn.{name}.weight"] = (d_model, d_model)
        shapes[pre + "mlp.c_fc.weight"] = (4 * d_model, d_model)
        shapes[pre + "mlp.c_proj.weight"] = (d_model, 4 * d_model)
    return shapes


def adamw_shapes(d_model: int, vocab: int) -> dict[str, tuple[int, int]]:
    """name -> shape of the AdamW parameters (embedding and unembedding)."""
    return {"lm_head.weight": (vocab, d_model), "transformer.wte.weight": (vocab, d_model)}


def make_tensors(shapes: dict[str, tuple[int, int]], seed: int, dtype: torch.dtype = torch.float32
                 ) -> dict[str, torch.Tensor]:
    """Seeded Gaussian tensors of the given shapes (same seed -> same values)."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen, dtype=dtype) for name, shape in shapes.items()}


def nbytes(shapes: dict[str, tuple[int, int]], itemsize: int = 4) -> int:
    """Bytes of one float tensor per shape."""
    total = 0
    for rows, cols in shapes.values():
        total += rows * cols * itemsize
    return total
