"""Discriminators for Flow-VAE training (training-only; the released checkpoint ships none).

Two views of the waveform, as in HiFi-GAN / BigVGAN:
- ``PeriodDiscriminator``: folds the waveform into a [T / p, p] grid so 2-D convs with (k, 1) kernels see
  samples exactly p apart (periodic structure: pitch harmonics).
- ``ResolutionDiscriminator``: 2-D convs over one linear-magnitude STFT (spectral structure at one
  time/frequency trade-off).
Every discriminator returns ``(logits, feature_maps)``; the combined ``FlowVAEDiscriminator`` returns a list of
those pairs, which is what ``losses.py`` consumes.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

DiscriminatorOutput = Tuple[torch.Tensor, List[torch.Tensor]]

DEFAULT_PERIODS = (2, 3, 5, 7, 11)
DEFAULT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, win)
LRELU_SLOPE = 0.1


def _scaled(channels: int, mult: float) -> int:
    return max(1, int(round(channels * mult)))


def _norm(use_spectral_norm: bool):
    return spectral_norm if use_spectral_norm else weight_norm



def conv_stack(x: torch.Tensor, convs: nn.ModuleList, conv_post: nn.Module) -> DiscriminatorOutput:
    """Leaky-ReLU conv layers, then the output conv; every activation is kept for feature matching."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        feats.append(x)
    x = conv_post(x)
    feats.append(x)
    return x.flatten(1), feats

class PeriodDiscriminator(nn.Module):
    """Strided (k, 1) 2-D convs over the waveform folded with period ``period``."""

    def __init__(
        self,
        period: int,
        channel_mult: float = 1.0,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        self.period = period
        norm = _norm(use_spectral_norm)
        chans = [1] + [_scaled(c, channel_mult) for c in (32, 128, 512, 1024)]
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride, 1), padding=(pad, 0)))
            for c_in, c_out in zip(chans[:-1], chans[1:])
        )
        self.convs.append(norm(nn.Conv2d(chans[-1], chans[-1], (kernel_size, 1), 1, padding=(pad, 0))))
        self.conv_post = norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        """wav [B, 1, T] -> (logits [B, N], feature maps)."""
        batch, channels, length = wav.shape
        if length % self.period:
            extra = self.period - length % self.period
            # reflect needs extra < length; fall back to zeros for very short inputs
            wav = F.pad(wav, (0, extra), "reflect" if extra < length else "constant")
        return conv_stack(wav.view(batch, channels, -1, self.period), self.convs, self.conv_post)


class ResolutionDiscriminator(nn.Module):
    """2-D convs over a linear-magnitude spectrogram [B, 1, frames, bins] at one STFT resolution."""

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        channel_mult: float = 1.0,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        norm = _norm(use_spectral_norm)
        ch = _scaled(32, channel_mult)
        self.convs = nn.ModuleList(
            [
                norm(nn.Conv2d(1, ch, (3, 9), padding=(1, 4))),
                norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4))),
                norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))),
            ]
        )
        self.conv_post = norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] -> magnitude [B, 1, frames, n_fft // 2 + 1]."""
        x = wav.squeeze(1)
        pad = (self.n_fft - self.hop_length) // 2
        mode = "reflect" if pad < x.shape[-1] else "constant"
        x = F.pad(x.unsqueeze(1), (pad, pad), mode).squeeze(1)
        spec = torch.stft(
            x, self.n_fft, self.hop_length, self.win_length, self.window, center=False, return_complex=True
        )
        # sqrt(|X|^2 + eps) rather than |X|: finite gradient at exact zeros (silence, padding)
        mag = (spec.real**2 + spec.imag**2 + 1e-9).sqrt()
        return mag.transpose(1, 2).unsqueeze(1)

    def forward(self, wav: torch.Tensor) -> DiscriminatorOutput:
        return conv_stack(self.spectrogram(wav), self.convs, self.conv_post)


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: Sequence[int] = DEFAULT_PERIODS, channel_mult: float = 1.0, use_spectral_norm=False):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channel_mult, use_spectral_norm=use_spectral_norm) for p in periods
        )

    def forward(self, wav: torch.Tensor) -> List[DiscriminatorOutput]:
        return [d(wav) for d in self.discriminators]


class MultiResolutionDiscriminator(nn.Module):
    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = DEFAULT_RESOLUTIONS,
        channel_mult: float = 1.0,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        for res in resolutions:
            if len(res) != 3:
                raise ValueError(f"each resolution must be (n_fft, hop, win), got {res!r}")
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(*res, channel_mult=channel_mult, use_spectral_norm=use_spectral_norm)
            for res in resolutions
        )

    def forward(self, wav: torch.Tensor) -> List[DiscriminatorOutput]:
        return [d(wav) for d in self.discriminators]


class FlowVAEDiscriminator(nn.Module):
    """Multi-period + multi-resolution discriminators; ``forward`` returns one (logits, features) per member."""

    def __init__(
        self,
        periods: Sequence[int] = DEFAULT_PERIODS,
        resolutions: Sequence[Sequence[int]] = DEFAULT_RESOLUTIONS,
        channel_mult: float = 1.0,
        use_spectral_norm: bool = False,
    ):
        super().__init__()
        if not periods and not resolutions:
            raise ValueError("need at least one period or one resolution")
        self.mpd = MultiPeriodDiscriminator(periods, channel_mult, use_spectral_norm)
        self.mrd = MultiResolutionDiscriminator(resolutions, channel_mult, use_spectral_norm)

    def forward(self, wav: torch.Tensor) -> List[DiscriminatorOutput]:
        """wav [B, 1, T] (or [B, T]) -> [(logits, feature maps)] for each period, then each resolution."""
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        return self.mpd(wav) + self.mrd(wav)
