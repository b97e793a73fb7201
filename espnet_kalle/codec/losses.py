"""Flow-VAE training losses: log-mel L1 reconstruction, least-squares GAN, feature matching.

The GAN losses take the discriminator output format of ``discriminators.py``: a list of
``(logits, feature_maps)`` pairs, one per sub-discriminator; each loss sums over sub-discriminators.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

DiscriminatorOutputs = Sequence[Tuple[torch.Tensor, List[torch.Tensor]]]


class MelSpectrogramLoss(nn.Module):
    """L1 between log-mel spectrograms (magnitude mel, slaney scale as librosa), BigVGAN-style.

    Defaults are the released Flow-VAE's loss settings at 16 kHz (100 mels, 1024/240/960, fmax = Nyquist).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 240,
        win_length: int = 960,
        n_mels: int = 100,
        fmin: float = 0.0,
        fmax: Optional[float] = 8000.0,
        log_floor: float = 1e-5,
    ):
        super().__init__()
        import torchaudio  # imported here: ~1 s, only needed when training

        fmax = sample_rate / 2 if fmax is None else min(float(fmax), sample_rate / 2)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            f_min=fmin,
            f_max=fmax,
            n_mels=n_mels,
            power=1.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )
        self.log_floor = log_floor

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, T] or [B, T] -> log-mel [B, n_mels, frames]."""
        if wav.dim() == 3:
            wav = wav.squeeze(1)
        return torch.log(self.mel(wav).clamp(min=self.log_floor))

    def forward(
        self, wav_hat: torch.Tensor, wav: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Mean |log-mel(wav_hat) - log-mel(wav)|; ``mask`` [B, 1, T] zeroes padding in both first."""
        if mask is not None:
            wav_hat, wav = wav_hat * mask, wav * mask
        return F.l1_loss(self.log_mel(wav_hat), self.log_mel(wav))


def generator_adversarial_loss(fake: DiscriminatorOutputs) -> torch.Tensor:
    """Least-squares GAN, generator side: sum_k mean((1 - D_k(G(x)))^2)."""
    return sum(torch.mean((1.0 - logits) ** 2) for logits, _ in fake)


def discriminator_adversarial_loss(
    fake: DiscriminatorOutputs, real: DiscriminatorOutputs
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Least-squares GAN, discriminator side: (sum_k mean((1 - D_k(x))^2), sum_k mean(D_k(G(x))^2))."""
    real_loss = sum(torch.mean((1.0 - logits) ** 2) for logits, _ in real)
    fake_loss = sum(torch.mean(logits**2) for logits, _ in fake)
    return real_loss, fake_loss


def feature_matching_loss(fake: DiscriminatorOutputs, real: DiscriminatorOutputs) -> torch.Tensor:
    """sum over sub-discriminators and layers of mean |f(G(x)) - f(x)|, real features detached."""
    loss = 0.0
    for (_, feats_fake), (_, feats_real) in zip(fake, real):
        for f_fake, f_real in zip(feats_fake, feats_real):
            loss = loss + torch.mean(torch.abs(f_fake - f_real.detach()))
    return loss


class MultiResolutionMelLoss(nn.Module):
    """Mean of log-mel L1 losses at several STFT resolutions ([n_fft, hop, win] each).

    Short windows constrain what one long window cannot see (onsets, and the phase consistency between the
    decoder's overlapping iSTFT frames), which matters most before (or without) the adversarial terms.
    ``n_mels`` is capped at n_fft // 8 per resolution so that short windows get no empty mel bands.
    """

    def __init__(self, resolutions: Sequence[Sequence[int]], n_mels: int = 100, **mel_kwargs: Any):
        super().__init__()
        if not resolutions:
            raise ValueError("resolutions needs at least one [n_fft, hop_length, win_length]")
        self.losses = nn.ModuleList(
            MelSpectrogramLoss(n_fft=n_fft, hop_length=hop, win_length=win, n_mels=min(n_mels, n_fft // 8),
                               **mel_kwargs)
            for n_fft, hop, win in resolutions
        )

    def forward(self, wav_hat: torch.Tensor, wav: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return sum(loss(wav_hat, wav, mask) for loss in self.losses) / len(self.losses)
