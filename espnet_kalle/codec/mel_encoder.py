"""Causal log-mel posterior encoder: a cheaper front end for CPU-sized Flow-VAEs.

The paper's encoder reads the waveform (``encoder.PosteriorEncoder``). On CPU budgets that encoder is the
bottleneck: in a 300-step mel-L1 probe of the mini codec it stayed at L1 ~1.26 (a static spectrum scores
1.37) at 0.7 s per step, while this front end reached 0.63 in 250 steps at 0.11 s per step. The rest of the
Flow-VAE (posterior, flow, KL, decoder, 12.5 Hz frames) is unchanged, so the LM cannot tell the difference.

Causality matches the waveform encoder: latent frame f sees samples up to (f + 1) * hop only.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from espnet_kalle.codec.modules import CausalConv1d


class _CausalResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.GELU(), CausalConv1d(channels, channels, kernel_size), nn.GELU(), CausalConv1d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class MelPosteriorEncoder(nn.Module):
    """Waveform -> causal log-mel sub-frames (stacked per latent frame) -> causal convs -> (mu, log_sigma)."""

    def __init__(
        self,
        latent_dim: int = 512,
        hop_length: int = 1280,
        sample_rate: int = 16000,
        n_mels: int = 64,
        subframes: int = 8,
        n_fft: Optional[int] = None,
        channels: int = 512,
        num_layers: int = 3,
        kernel_size: int = 3,
        init_log_sigma: float = -3.0,
        log_floor: float = 1e-5,
    ):
        super().__init__()
        if hop_length % subframes:
            raise ValueError("hop_length must be divisible by subframes")
        from torchaudio.functional import melscale_fbanks  # torchaudio only where this encoder is used

        self.latent_dim = latent_dim
        self.hop_length = hop_length
        self.subframes = subframes
        self.sub_hop = hop_length // subframes
        self.n_fft = n_fft or 4 * self.sub_hop
        self.log_floor = log_floor
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        fbank = melscale_fbanks(self.n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, None, "htk")
        self.register_buffer("mel_fbank", fbank, persistent=False)  # [bins, n_mels]
        self.conv_in = nn.Conv1d(subframes * n_mels, channels, 1)
        # Log-mels span about -11.5 (floor) to +2; a per-frame LayerNorm keeps the first activations O(1) so the
        # initial posterior (and the flow KL) starts finite. Per frame, so causality holds.
        self.norm_in = nn.LayerNorm(channels)
        self.blocks = nn.Sequential(*(_CausalResidualBlock(channels, kernel_size) for _ in range(num_layers)))
        self.conv_out = nn.Conv1d(channels, 2 * latent_dim, 1)
        with torch.no_grad():  # narrow initial posterior, as in the waveform encoder
            self.conv_out.bias[latent_dim:] = init_log_sigma

    def log_mel_frames(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] -> [B, subframes * n_mels, ceil(T / hop)]; each STFT window ends at its sub-frame's end."""
        batch, _, length = wav.shape
        n_frames = -(-length // self.hop_length)
        x = nn.functional.pad(wav[:, 0], (self.n_fft - self.sub_hop, n_frames * self.hop_length - length))
        spec = torch.stft(
            x, self.n_fft, self.sub_hop, window=self.window, center=False, return_complex=True
        ).abs()  # [B, bins, n_frames * subframes]
        mel = torch.log(torch.matmul(spec.transpose(1, 2), self.mel_fbank).clamp(min=self.log_floor))
        return mel.reshape(batch, n_frames, -1).transpose(1, 2)

    def forward(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """wav [B, 1, T] -> (mu, log_sigma) each [B, D, ceil(T / hop)]."""
        x = self.norm_in(self.conv_in(self.log_mel_frames(wav)).transpose(1, 2)).transpose(1, 2)
        stats = self.conv_out(self.blocks(x))
        mu, log_sigma = stats.split(self.latent_dim, dim=1)
        return mu, log_sigma
