"""Flow-VAE posterior encoder: waveform -> (mu, log_sigma) per 12.5 Hz frame (16 kHz, total stride 1280).

Layout follows the released checkpoint (``audio_encoder.generator.<i>``): a first conv, then per stage an
activation, a strided conv (kernel = 2 x stride) and a stack of residual dilated units, then an activation and
a conv to 2 x latent_dim channels.

Two variants share that layout. Ours (``causal=True``, ELU) is causal. The released code's (``causal=False``,
``activation="leaky_relu"``) pads every conv by ``dilation * (kernel - 1) // 2`` on both sides and uses
LeakyReLU with slope 0.2 between stages and PyTorch's default 0.01 inside the residual units
(``flowvae.py``: ``Encoder``, ``Conv1d_S``, ``ResStack``; its dilations are ``2 ** i``).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import torch
from torch import nn

from espnet_kalle.codec.modules import CausalConv1d, CenteredConv1d

# name -> (activation between stages, activation inside the residual units)
ACTIVATIONS: Dict[str, Tuple[Callable[[], nn.Module], Callable[[], nn.Module]]] = {
    "elu": (nn.ELU, nn.ELU),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), nn.LeakyReLU),  # the release: 0.2 and torch's default 0.01
}


def _conv(causal: bool, *args, **kwargs) -> nn.Module:
    return CausalConv1d(*args, **kwargs) if causal else CenteredConv1d(*args, **kwargs)


class _Conv(nn.Module):
    """Wrapper so parameter names read ``<i>.layer.weight_*`` as in the release."""

    def __init__(self, *args, causal: bool = True, **kwargs):
        super().__init__()
        self.layer = _conv(causal, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class ResidualUnit(nn.Module):
    """x + conv(act(conv_dilated(act(x))))."""

    def __init__(self, channels: int, dilation: int, kernel_size: int = 3, causal: bool = True,
                 activation: Callable[[], nn.Module] = nn.ELU):
        super().__init__()
        self.block = nn.Sequential(
            activation(),
            _conv(causal, channels, channels, kernel_size, dilation=dilation),
            activation(),
            _conv(causal, channels, channels, kernel_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResidualStack(nn.Module):
    def __init__(self, channels: int, dilations: Sequence[int], causal: bool = True,
                 activation: Callable[[], nn.Module] = nn.ELU):
        super().__init__()
        self.layers = nn.ModuleList(ResidualUnit(channels, d, causal=causal, activation=activation)
                                    for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PosteriorEncoder(nn.Module):
    """Convolutional encoder producing the Gaussian posterior q(z|x) (causal unless ``causal=False``).

    ``init_log_sigma`` only sets the initial bias of the log-sigma half of the last conv (training from scratch).
    ``activation``: a key of ``ACTIVATIONS``.
    """

    def __init__(
        self,
        latent_dim: int = 512,
        downsample_rates: Sequence[int] = (2, 2, 4, 4, 4, 5),
        downsample_channels: Sequence[int] = (12, 24, 48, 96, 192, 384, 768),
        residual_dilations: Sequence[int] = (1, 3, 9, 1, 3, 9),
        init_log_sigma: float = -3.0,
        causal: bool = True,
        activation: str = "elu",
    ):
        super().__init__()
        if len(downsample_channels) != len(downsample_rates) + 1:
            raise ValueError("downsample_channels needs one more entry than downsample_rates")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        between, inside = ACTIVATIONS[activation]
        layers: list[nn.Module] = [_Conv(1, downsample_channels[0], 3, causal=causal)]
        for rate, c_in, c_out in zip(downsample_rates, downsample_channels[:-1], downsample_channels[1:]):
            layers += [between(), _Conv(c_in, c_out, 2 * rate, stride=rate, causal=causal),
                       ResidualStack(c_out, residual_dilations, causal, inside)]
        layers += [between(), _Conv(downsample_channels[-1], 2 * latent_dim, 3, causal=causal)]
        self.generator = nn.Sequential(*layers)
        self.causal = causal
        # Start with a narrow posterior: with sigma = 1 the first samples z are nearly pure noise (mu is ~0.06 at
        # init), the decoder learns to ignore z and the KL then pulls q onto the prior (seen in CPU runs).
        with torch.no_grad():
            self.generator[-1].layer.conv.bias[latent_dim:] = init_log_sigma
        self.latent_dim = latent_dim
        self.hop_length = 1
        for rate in downsample_rates:
            self.hop_length *= rate

    def forward(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """wav [B, 1, T] -> (mu, log_sigma) each [B, D, F]: F = ceil(T / hop) when causal, else as the
        release's padded convolutions give (about T / hop)."""
        stats = self.generator(wav)
        mu, log_sigma = stats.split(self.latent_dim, dim=1)
        return mu, log_sigma
