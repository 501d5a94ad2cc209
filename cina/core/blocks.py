"""The transformer blocks of CInA's encoder: attention across the units of each dataset.

No positional encoding and a padding mask everywhere, so every block is permutation-equivariant
over units. `Block` attends fully (N^2 time); `InducedBlock` attends through learned inducing
points (Set Transformer ISAB: N * m time).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CInAConfig

#: the blocks' MLP activation: GELU (the default) or SiLU, which is about 4x cheaper on a CPU
#: (exact GELU evaluates erf; its tanh form costs nearly as much)
ACTIVATION_MODULES = {"gelu": nn.GELU, "silu": nn.SiLU}

class _UnitBlock(nn.Module):
    """What the trunk's blocks share: pre-LN, an attention output projection with a residual,
    then a residual MLP. Subclasses build ``ln1`` and their attention modules, then call
    `_add_output_and_mlp` (construction order fixes which random draws each module gets for a
    given seed, so it is kept as it was), and define ``_attend(u, attn_mask, dropout_p)``: the
    attention across units of the normalised input u (B, N, C), returning (B, N, C)."""

    def __init__(self, c: "CInAConfig"):
        super().__init__()
        self.n_heads = c.n_heads
        self.dropout = c.dropout

    def _add_output_and_mlp(self, c: "CInAConfig") -> None:
        self.proj = nn.Linear(c.d_model, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(c.d_model, c.mlp_ratio * c.d_model),
            ACTIVATION_MODULES[c.activation](),
            nn.Linear(c.mlp_ratio * c.d_model, c.d_model),
        )
        self.drop = nn.Dropout(c.dropout)

    def forward(self, z: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        """z: (B, N, C); attn_mask: (B, 1, 1, N) bool, True for real units (padded keys are ignored)."""
        o = self._attend(self.ln1(z), attn_mask, self.dropout if self.training else 0.0)
        z = z + self.drop(self.proj(o))
        return z + self.drop(self.mlp(self.ln2(z)))


def _heads(a: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    B, N, C = a.shape
    return a.view(B, N, n_heads, C // n_heads).transpose(1, 2)


def _merge(o: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, c) -> (B, N, heads * c)."""
    B, H, N, c = o.shape
    return o.transpose(1, 2).reshape(B, N, H * c)


class Block(_UnitBlock):
    """Pre-LN transformer block with full attention across the units of each dataset."""

    def __init__(self, c: "CInAConfig"):
        super().__init__(c)
        self.ln1 = nn.LayerNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model)
        self._add_output_and_mlp(c)

    def _attend(self, u, attn_mask, p):
        q, k, v = (_heads(a, self.n_heads) for a in self.qkv(u).split(u.shape[-1], dim=2))
        return _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p))


class InducedBlock(_UnitBlock):
    """Pre-LN block whose attention across units goes through m learned inducing points (ISAB).

    ``h = attend(inducing -> units)`` summarises the dataset in m vectors (padded units are
    masked out as keys), then every unit attends to h: N * m time instead of N^2, and the output
    is still permutation-equivariant over units. Then the usual MLP.
    """

    def __init__(self, c: "CInAConfig"):
        super().__init__(c)
        self.inducing = nn.Parameter(torch.randn(c.n_inducing, c.d_model) * 0.02)
        self.ln1 = nn.LayerNorm(c.d_model)
        self.q_ind = nn.Linear(c.d_model, c.d_model)
        self.kv_units = nn.Linear(c.d_model, 2 * c.d_model)
        self.ln_h = nn.LayerNorm(c.d_model)
        self.q_units = nn.Linear(c.d_model, c.d_model)
        self.kv_ind = nn.Linear(c.d_model, 2 * c.d_model)
        self._add_output_and_mlp(c)

    def _attend(self, u, attn_mask, p):
        B, _, C = u.shape
        k, v = (_heads(a, self.n_heads) for a in self.kv_units(u).split(C, dim=2))
        q = _heads(self.q_ind(self.inducing).expand(B, -1, -1), self.n_heads)
        h = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p))
        h = self.ln_h(self.inducing + h)  # (B, m, C) summaries of the dataset
        k2, v2 = (_heads(a, self.n_heads) for a in self.kv_ind(h).split(C, dim=2))
        return _merge(F.scaled_dot_product_attention(_heads(self.q_units(u), self.n_heads), k2, v2, dropout_p=p))
