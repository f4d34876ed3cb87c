"""Transformer building blocks: pre-norm self/cross attention (SDPA) and MLP; positions."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astromodal_core.modality import TokenKey

from .keys import key_length


def sinusoid_1d(n: int, dim: int) -> np.ndarray:
    """Fixed sinusoidal positions (n, dim), as in the original transformer."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    half = dim // 2
    freq = np.exp(-math.log(10000.0) * np.arange(half, dtype=np.float64) / max(half, 1))
    ang = pos * freq[None, :]
    out = np.zeros((n, dim), dtype=np.float64)
    out[:, 0 : 2 * half : 2] = np.sin(ang)
    out[:, 1 : 2 * half : 2] = np.cos(ang)
    return out.astype(np.float32)


def sinusoid_2d(h: int, w: int, dim: int) -> np.ndarray:
    """2-D positions (h*w, dim): half the channels encode the row, half the column."""
    half = dim // 2
    rows = sinusoid_1d(h, half)
    cols = sinusoid_1d(w, dim - half)
    out = np.concatenate(
        [np.repeat(rows, w, axis=0), np.tile(cols, (h, 1))], axis=1
    )
    return out.astype(np.float32)


def key_positions(key: TokenKey, dim: int) -> np.ndarray:
    """Positions of one key: zeros (scalar), 1-D (sequence, ragged) or 2-D (grid)."""
    if key.layout == "scalar":
        return np.zeros((1, dim), dtype=np.float32)
    if key.layout == "grid":
        h, w = key.shape  # type: ignore[misc]
        return sinusoid_2d(int(h), int(w), dim)
    return sinusoid_1d(key_length(key), dim)


class Attention(nn.Module):
    """Multi-head attention through ``scaled_dot_product_attention``; ``kv`` for cross attention."""

    def __init__(self, dim: int, num_heads: int, dropout: float, cross: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.cross = cross
        if cross:
            self.q = nn.Linear(dim, dim)
            self.kv = nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``mask``: boolean (B, 1, 1, S), True where a key may be attended to."""
        B, T, D = x.shape
        h = self.num_heads
        if self.cross:
            assert context is not None
            q = self.q(x).view(B, T, h, D // h).transpose(1, 2)
            k, v = self.kv(context).view(B, context.shape[1], 2, h, D // h).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).view(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float, dropout: float):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Pre-norm self-attention + MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Pre-norm self-attention over the targets, cross-attention to the encoder, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads, dropout, cross=True)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio, dropout)

    def forward(
        self,
        x: torch.Tensor,
        self_mask: torch.Tensor | None,
        context: torch.Tensor,
        context_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), self_mask)
        x = x + self.cross_attn(self.norm2(x), context_mask, self.norm_ctx(context))
        return x + self.mlp(self.norm3(x))
