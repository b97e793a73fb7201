"""Tacotron 2's pre-net for the LM's latent inputs: small ReLU layers whose dropout stays on at inference.

Why: an autoregressive acoustic model can predict the next frame mostly by copying the last one and under-use its
text ("local information preference"). Dropping half of a bottleneck's units, in training *and* generation, makes
the previous frames an unreliable cue and the text the reliable one; Tacotron 2 (arXiv 1712.05884) keeps it on at
inference, and turning it off there broke alignment (ESPnet issue #1878). It also makes the inputs of teacher
forcing and of free running alike: both arrive through the same noisy bottleneck.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn


class Prenet(nn.Module):
    """``layers`` x (Linear -> ReLU -> dropout ``dropout``), always dropping (a ``generator`` per batch item keeps
    generation reproducible by seed)."""

    def __init__(self, in_dim: int, units: int = 256, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        if layers < 1 or units < 1:
            raise ValueError(f"prenet needs layers >= 1 and units >= 1, got {layers} and {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"prenet dropout must be in [0, 1), got {dropout}")
        self.linears = nn.ModuleList(nn.Linear(in_dim if i == 0 else units, units) for i in range(layers))
        self.dropout = dropout
        self.out_dim = units

    def forward(self, x: torch.Tensor, generators: Optional[Sequence[Optional[torch.Generator]]] = None
                ) -> torch.Tensor:
        """x [B, ..., in_dim] -> [B, ..., units]; ``generators``: one per batch item (or None: torch's global RNG)."""
        for linear in self.linears:
            x = torch.relu(linear(x))
            if self.dropout > 0:
                x = x * self._keep_mask(x, generators) / (1.0 - self.dropout)
        return x

    def _keep_mask(self, x: torch.Tensor, generators) -> torch.Tensor:
        if generators is None:
            return (torch.rand(x.shape, device=x.device) >= self.dropout).to(x.dtype)
        rows = [torch.rand(x.shape[1:], generator=g, device=x.device) for g in generators]
        return (torch.stack(rows) >= self.dropout).to(x.dtype)
