"""Speaker distribution of KALL-E: wav -> log-mel -> ECAPA-TDNN -> N(mu, sigma^2).

The LM is conditioned on a speaker vector S. During training S is sampled (reparameterised)
from a Gaussian predicted from a random crop of the target utterance, and KL(q(S|x) || N(0, I))
is added to the loss, so that at inference time a fresh voice can be drawn from N(0, I) by seed.

Padding convention used throughout: every [B, C, T] tensor passed between layers is zero at padded
frames (each layer re-applies the mask to its output). That makes the embedding of an utterance
independent of how much padding its batch has (eval mode), up to float rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B, 1, max_len] float mask (1 = valid)."""
    steps = torch.arange(max_len, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).unsqueeze(1).float()


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-mel filters, [n_mels, n_fft // 2 + 1]. Own code so no torchaudio API is needed."""
    f_max = sample_rate / 2 if f_max is None else f_max

    def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
                               hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
                               n_mels + 2, dtype=torch.float64)
    hz_edges = mel_to_hz(mel_edges)
    lower, centre, upper = hz_edges[:-2, None], hz_edges[1:-1, None], hz_edges[2:, None]
    rising = (fft_freqs[None, :] - lower) / (centre - lower)
    falling = (upper - fft_freqs[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMelFrontend(nn.Module):
    """80-bin log-mel (25 ms window, 10 ms hop) with per-utterance mean normalisation.

    Frames are centred with zero padding and samples past each length are zeroed first, so
    an utterance has ``1 + length // hop`` frames and the same features alone or in a padded batch.
    """

    def __init__(self, sample_rate: int = 16000, n_fft: int = 400, hop: int = 160, n_mels: int = 80,
                 eps: float = 1e-6):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels, self.eps = sample_rate, n_fft, hop, n_mels, eps
        # Buffers are derived from the config, so they stay out of checkpoints.
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def num_frames(self, wav_lengths: torch.Tensor) -> torch.Tensor:
        return 1 + torch.div(wav_lengths, self.hop, rounding_mode="floor")

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None, normalize: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, T] (+ lengths [B]) -> (log-mel [B, n_mels, F], frame lengths [B]).

        ``normalize=False`` gives the raw log-mel that latent extraction stores for training-time crops.
        """
        if wav_lengths is None:
            wav_lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
        wav = wav * lengths_to_mask(wav_lengths, wav.shape[1])[:, 0].to(wav.dtype)
        spec = torch.stft(wav.float(), self.n_fft, self.hop, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)
        mel = torch.matmul(self.mel_fb, spec.abs().pow(2))  # [B, n_mels, F]
        logmel = torch.log(mel + self.eps)
        frame_lengths = self.num_frames(wav_lengths)
        if not normalize:
            return logmel, frame_lengths
        return mean_normalize(logmel, frame_lengths), frame_lengths


def mean_normalize(logmel: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Subtract each utterance's mean over its valid frames; zero the padding."""
    mask = lengths_to_mask(frame_lengths, logmel.shape[-1]).to(logmel.dtype)
    mean = (logmel * mask).sum(-1, keepdim=True) / frame_lengths.clamp(min=1)[:, None, None]
    return (logmel - mean) * mask


# ---------------------------------------------------------------- ECAPA-TDNN (Desplanques et al., 2020)

class ConvReluBn(nn.Module):
    """Conv1d ('same' length) -> ReLU -> BatchNorm, output re-masked."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(out_ch)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x))) * mask


class Res2Conv(nn.Module):
    """Res2Net hierarchy: split channels into `scale` groups; group i sees group i-1's output too."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels ({channels}) must be divisible by scale ({scale})")
        width = channels // scale
        self.scale = scale
        self.convs = nn.ModuleList(ConvReluBn(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        groups = x.chunk(self.scale, dim=1)
        outs, y = [groups[0]], None
        for conv, g in zip(self.convs, groups[1:]):
            y = conv(g if y is None else g + y, mask)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gates from the (masked) time average."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.down = nn.Conv1d(channels, bottleneck, 1)
        self.up = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = (x * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
        return x * torch.sigmoid(self.up(F.relu(self.down(s))))


class SERes2Block(nn.Module):
    """1x1 conv -> dilated Res2 conv -> 1x1 conv -> SE, with a residual connection."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, se_channels: int):
        super().__init__()
        self.pre = ConvReluBn(channels, channels, 1)
        self.res2 = Res2Conv(channels, kernel, dilation, scale)
        self.post = ConvReluBn(channels, channels, 1)
        self.se = SqueezeExcite(channels, se_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.post(self.res2(self.pre(x, mask), mask), mask)
        return self.se(h, mask) + x


class AttentiveStatsPool(nn.Module):
    """Context-dependent, channel-wise attentive mean and std over valid frames -> [B, 2C]."""

    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv1d(3 * channels, bottleneck, 1), nn.Tanh(), nn.Conv1d(bottleneck, channels, 1)
        )

    @staticmethod
    def _stats(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (w * x).sum(-1, keepdim=True)
        var = (w * x.pow(2)).sum(-1, keepdim=True) - mean.pow(2)
        return mean, var.clamp(min=eps).sqrt()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T = x.shape[-1]
        uniform = mask / mask.sum(-1, keepdim=True).clamp(min=1)
        g_mean, g_std = self._stats(x, uniform)  # global context of the utterance
        context = torch.cat([x, g_mean.expand(-1, -1, T), g_std.expand(-1, -1, T)], dim=1)
        logits = self.attention(context).masked_fill(mask == 0, float("-inf"))
        mean, std = self._stats(x, torch.softmax(logits, dim=-1))
        return torch.cat([mean, std], dim=1).squeeze(-1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN speaker encoder (randomly initialised): log-mel [B, n_mels, T] -> [B, embed_dim].

    Layout from the paper: conv(k=5)+ReLU+BN; SE-Res2Blocks (k=3, dilations 2, 3, 4); multi-layer
    feature aggregation (concat of the block outputs, 1x1 conv to 3C); attentive statistics pooling;
    BN; linear; BN. With channels=512 it has ~6.2M parameters like the paper's C=512 model.
    """

    def __init__(self, n_mels: int = 80, channels: int = 512, embed_dim: int = 192, scale: int = 8,
                 dilations: tuple[int, ...] = (2, 3, 4), se_channels: int = 128,
                 attention_channels: int = 128, mfa_channels: int | None = None):
        super().__init__()
        mfa_channels = mfa_channels or channels * len(dilations)
        self.stem = ConvReluBn(n_mels, channels, kernel=5)
        self.blocks = nn.ModuleList(
            SERes2Block(channels, kernel=3, dilation=d, scale=scale, se_channels=se_channels) for d in dilations
        )
        self.mfa = ConvReluBn(channels * len(dilations), mfa_channels, kernel=1)
        self.pool = AttentiveStatsPool(mfa_channels, attention_channels)
        self.pool_bn = nn.BatchNorm1d(2 * mfa_channels)
        self.fc = nn.Linear(2 * mfa_channels, embed_dim)
        self.out_bn = nn.BatchNorm1d(embed_dim)

    def forward(self, feats: torch.Tensor, feat_lengths: torch.Tensor | None = None) -> torch.Tensor:
        if feat_lengths is None:
            feat_lengths = torch.full((feats.shape[0],), feats.shape[-1], dtype=torch.long, device=feats.device)
        mask = lengths_to_mask(feat_lengths, feats.shape[-1]).to(feats.dtype)
        x = self.stem(feats * mask, mask)
        outs = []
        for block in self.blocks:
            x = block(x, mask)
            outs.append(x)
        x = self.mfa(torch.cat(outs, dim=1), mask)
        return _vector_bn(self.out_bn, self.fc(_vector_bn(self.pool_bn, self.pool(x, mask))))


def _vector_bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """BatchNorm of pooled vectors; a training batch of one (ESPnet's last batch can be) uses running stats."""
    if bn.training and x.shape[0] == 1:
        return nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return bn(x)


# ---------------------------------------------------------------- Gaussian speaker distribution

def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)), summed over the last dim and averaged over the rest (``reduce=False``: not
    averaged, one value per item)."""
    kl = 0.5 * (mu.pow(2) + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(-1)
    return kl.mean() if reduce else kl


def prior_sample(speaker_dim: int, seed: int) -> torch.Tensor:
    """A voice S ~ N(0, I) that depends only on `seed` (same vector on every machine and run).

    Uses its own CPU torch.Generator (so the global RNG neither affects nor is affected by it) and
    float64 uniforms, which torch derives from Mersenne-Twister integers by exact arithmetic, then an
    explicit Box-Muller transform: torch.randn's vectorised paths differ between CPU instruction sets.
    """
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    n = (speaker_dim + 1) // 2
    u1 = 1.0 - torch.rand(n, generator=g, dtype=torch.float64)  # (0, 1], safe for log
    u2 = torch.rand(n, generator=g, dtype=torch.float64)
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = 2.0 * math.pi * u2
    z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])
    return z[:speaker_dim].float()


def random_windows(lengths: torch.Tensor, max_len: int, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row a window of up to ``max_len`` inside its valid length: (uniform starts, window lengths)."""
    seg = lengths.clamp(max=max_len)
    slack = (lengths - seg).to(torch.float64)
    u = torch.rand(lengths.shape[0], generator=generator, dtype=torch.float64, device=lengths.device)
    return torch.floor(u * (slack + 1)).long().clamp(max=slack.long()), seg


class SpeakerDistribution(nn.Module):
    """q(S | x): ECAPA-TDNN on a crop of the utterance -> linear -> (mu, log_sigma) of size speaker_dim.

    Training: a random `segment_seconds` crop inside each valid length (the whole utterance if shorter),
    so S cannot memorise the exact frames the LM must predict. Eval: the whole valid utterance
    (deterministic, uses all the evidence, and identical alone or padded in a batch).
    """

    def __init__(self, speaker_dim: int = 192, sample_rate: int = 16000, n_mels: int = 80,
                 channels: int = 512, embed_dim: int = 192, scale: int = 8, segment_seconds: float = 3.0,
                 se_channels: int = 128, attention_channels: int = 128):
        super().__init__()
        self.speaker_dim = speaker_dim
        self.n_mels = n_mels
        self.segment_samples = int(round(segment_seconds * sample_rate))
        self.frontend = LogMelFrontend(sample_rate=sample_rate, n_mels=n_mels)
        self.segment_frames = self.segment_samples // self.frontend.hop
        self.encoder = EcapaTdnn(n_mels=n_mels, channels=channels, embed_dim=embed_dim, scale=scale,
                                 se_channels=se_channels, attention_channels=attention_channels)
        self.proj = nn.Linear(embed_dim, 2 * speaker_dim)

    def random_crop(self, wav: torch.Tensor, wav_lengths: torch.Tensor,
                    generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One crop of up to segment_samples per row, inside its valid length -> (wav, lengths, starts)."""
        starts, seg_lengths = random_windows(wav_lengths, self.segment_samples, generator)
        width = int(seg_lengths.max())
        idx = (starts[:, None] + torch.arange(width, device=wav.device)[None, :]).clamp(max=wav.shape[1] - 1)
        crops = torch.gather(wav, 1, idx) * lengths_to_mask(seg_lengths, width)[:, 0].to(wav.dtype)
        return crops, seg_lengths, starts

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wav [B, T], lengths [B] -> (mu, log_sigma), each [B, speaker_dim]."""
        if wav_lengths is None:
            wav_lengths = torch.full((wav.shape[0],), wav.shape[1], dtype=torch.long, device=wav.device)
        if self.training:
            wav, wav_lengths, _ = self.random_crop(wav, wav_lengths, generator)
        feats, feat_lengths = self.frontend(wav, wav_lengths)
        mu, log_sigma = self.proj(self.encoder(feats, feat_lengths)).chunk(2, dim=-1)
        return mu, log_sigma

    def from_logmel(self, logmel: torch.Tensor, frame_lengths: torch.Tensor,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (un-normalised) log-mel [B, n_mels, F] + lengths -> (mu, log_sigma); crops in training.

        The training path of the "kalle" model, whose features carry the log-mel next to the latents.
        """
        if self.training:
            starts, seg = random_windows(frame_lengths, self.segment_frames, generator)
            width = int(seg.max())
            idx = (starts[:, None] + torch.arange(width, device=logmel.device)).clamp(max=logmel.shape[-1] - 1)
            logmel = torch.gather(logmel, 2, idx[:, None, :].expand(-1, logmel.shape[1], -1))
            frame_lengths = seg
        feats = mean_normalize(logmel, frame_lengths)
        mu, log_sigma = self.proj(self.encoder(feats, frame_lengths)).chunk(2, dim=-1)
        return mu, log_sigma

    @staticmethod
    def sample(mu: torch.Tensor, log_sigma: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised S = mu + sigma * eps, so gradients reach the encoder."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(log_sigma) * eps

    kl_to_standard_normal = staticmethod(kl_to_standard_normal)
    prior_sample = staticmethod(prior_sample)
