"""Normalizing flow that maps posterior samples z to the standard-normal prior (training-only).

Mean-only residual coupling layers (volume preserving: log|det J| = 0) built on causal WaveNet stacks,
alternating with channel flips, as in the released ``flow.flows.{0,2,4,6}`` (odd indices are flips).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from espnet_kalle.codec.modules import CausalConv1d


class CausalWaveNet(nn.Module):
    """Gated dilated causal conv stack with residual and skip paths (no conditioning)."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int):
        super().__init__()
        self.hidden = hidden
        self.in_layers = nn.ModuleList(
            CausalConv1d(hidden, 2 * hidden, kernel_size, dilation=dilation_rate**i) for i in range(n_layers)
        )
        self.res_skip_layers = nn.ModuleList(
            CausalConv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1) for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        skip = torch.zeros_like(x)
        for i, (conv_in, conv_res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a, b = conv_in(x).chunk(2, dim=1)
            acts = conv_res_skip(torch.tanh(a) * torch.sigmoid(b))
            if i < len(self.in_layers) - 1:
                res, sk = acts.split(self.hidden, dim=1)
                x = (x + res) * mask
                skip = skip + sk
            else:
                skip = skip + acts
        return skip * mask


class MeanOnlyCoupling(nn.Module):
    """x1 <- x1 + m(x0): shifts half the channels by a function of the other half."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int):
        super().__init__()
        if channels % 2:
            raise ValueError("coupling needs an even number of channels")
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = CausalWaveNet(hidden, kernel_size, dilation_rate, n_layers)
        self.post = nn.Conv1d(hidden, self.half, 1)
        nn.init.zeros_(self.post.weight)  # start as the identity map
        nn.init.zeros_(self.post.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        x0, x1 = x.split(self.half, dim=1)
        shift = self.post(self.enc(self.pre(x0) * mask, mask)) * mask
        x1 = (x1 - shift) * mask if reverse else (x1 + shift) * mask
        return torch.cat([x0, x1], dim=1)


class Flip(nn.Module):
    def forward(self, x: torch.Tensor, mask: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        return torch.flip(x, [1])


class ResidualCouplingFlow(nn.Module):
    """Invertible map z -> z_p; KL(q(z|x) || p(z)) uses p(z) = N(f(z); 0, I) since log|det J| = 0."""

    def __init__(
        self,
        channels: int = 512,
        hidden: int = 512,
        kernel_size: int = 5,
        dilation_rate: int = 1,
        n_layers: int = 4,
        n_flows: int = 4,
    ):
        super().__init__()
        flows: list[nn.Module] = []
        for _ in range(n_flows):
            flows += [MeanOnlyCoupling(channels, hidden, kernel_size, dilation_rate, n_layers), Flip()]
        self.flows = nn.ModuleList(flows)

    def forward(self, z: torch.Tensor, mask: Optional[torch.Tensor] = None, reverse: bool = False) -> torch.Tensor:
        if mask is None:
            mask = z.new_ones(z.shape[0], 1, z.shape[-1])
        for flow in reversed(self.flows) if reverse else self.flows:
            z = flow(z, mask, reverse=reverse)
        return z


def flow_kl(
    z: torch.Tensor,
    z_p: torch.Tensor,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Single-sample estimate of KL(q(z|x) || p(z)) summed over channels, averaged over valid frames.

    log q(z|x) - log p(z) = [-log_sigma - (z - mu)^2 / (2 sigma^2)] - [-z_p^2 / 2]  (the log(2 pi) terms cancel).
    Pass the reparameterisation ``noise`` (z = mu + sigma * noise) when known: (z - mu) / sigma is then exactly
    ``noise``, where recomputing it cancels catastrophically once sigma gets tiny (and turns the loss into NaN).
    """
    if mask is None:
        mask = z.new_ones(z.shape[0], 1, z.shape[-1])
    if noise is None:
        noise = (z - mu) * torch.exp(-log_sigma)
    per_elem = -log_sigma - 0.5 * noise**2 + 0.5 * z_p**2
    return (per_elem * mask).sum() / mask.sum().clamp(min=1)
