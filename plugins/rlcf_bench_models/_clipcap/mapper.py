"""The prefix-mapping network of ClipCap/CapDec (``docs/original-code.md#captioning-model``),
written from the description.

``TransformerMapper``: a linear map of the (normalised) CLIP embedding to ``clip_length`` tokens of
width ``dim``, concatenated with ``prefix_length`` learned constant tokens, then ``layers``
pre-LN transformer blocks (bidirectional attention with ``heads`` heads and no bias on the query
and key/value projections, an MLP of ``mlp_ratio·dim`` with ReLU, no dropout). The outputs at the
constant tokens' positions are the prefix embeddings fed to the decoder. Sizes default to the
paper's (512 → 40 × 768, 8 layers, 8 heads, ratio 2: ≈ 53 M parameters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MapperConfig:
    prefix_dim: int = 512
    dim: int = 768
    clip_length: int = 40
    prefix_length: int = 40
    layers: int = 8
    heads: int = 8
    mlp_ratio: float = 2.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"mapper width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim, bias=False)
        self.key_value = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads
        q = self.query(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.key_value(x).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # bidirectional, no dropout
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, n, d))
        return out


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class TransformerMapper(nn.Module):
    """CLIP embedding ``[B, prefix_dim]`` → prefix embeddings ``[B, prefix_length, dim]``."""

    def __init__(self, config: MapperConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.project = nn.Linear(c.prefix_dim, c.clip_length * c.dim)
        self.constant = nn.Parameter(torch.randn(c.prefix_length, c.dim))
        self.blocks = nn.ModuleList(_Block(c.dim, c.heads, c.mlp_ratio) for _ in range(c.layers))

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        c = self.config
        x: torch.Tensor = self.project(prefix).view(prefix.shape[0], c.clip_length, c.dim)
        x = torch.cat([x, self.constant.unsqueeze(0).expand(prefix.shape[0], -1, -1).to(x.dtype)], dim=1)
        for block in self.blocks:
            x = block(x)
        return x[:, c.clip_length:]
