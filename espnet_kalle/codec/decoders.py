"""Flow-VAE decoders: latent frames [B, D, F] -> waveform [B, 1, F * hop].

Two heads with one contract (``forward(z, state=None)``, ``hop_length``, ``lookahead_frames``, ``ready(frames)``,
``lookahead_samples``):
- ``bigvgan``: the paper's decoder, causal transposed convolutions and AMP blocks with anti-aliased SnakeBeta
  (parameter names follow the release: ``conv_pre``, ``ups.i.0``, ``resblocks.j``, ``activation_post``, ``conv_post``).
  With ``anti_alias_padding="replicate"`` and ``lookahead_frames=3`` it is the released decoder, whose first conv
  is centred and whose anti-aliasing filters (alias-free-torch) look a few samples ahead: audio then lags the
  frames by ``lookahead_samples`` when streamed.
- ``istft``: a Vocos-style head for CPU real time, a causal ConvNeXt stack at the latent rate, split into
  sub-frames that predict STFT magnitude and phase, turned to audio by a causal overlap-add inverse STFT.
Both are causal apart from an optional lookahead of ``conv_pre`` (in latent frames) and, for ``bigvgan``, the
replicate-padded anti-aliasing.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from espnet_kalle.codec.modules import AntiAliasedActivation, CausalConv1d, CausalConvTranspose1d, StreamState


class AMPBlock(nn.Module):
    """Anti-aliased multi-periodicity block: dilated convs interleaved with anti-aliased snake activations."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int], logscale: bool = True,
                 activation: str = "snakebeta", anti_alias_padding: str = "causal"):
        super().__init__()
        self.convs1 = nn.ModuleList(CausalConv1d(channels, channels, kernel_size, dilation=d) for d in dilations)
        self.convs2 = nn.ModuleList(CausalConv1d(channels, channels, kernel_size) for _ in dilations)
        self.activations = nn.ModuleList(
            AntiAliasedActivation(channels, logscale, activation=activation, padding=anti_alias_padding)
            for _ in range(2 * len(dilations))
        )

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            y = conv1(self.activations[2 * i](x, state), state)
            y = conv2(self.activations[2 * i + 1](y, state), state)
            x = y + (x if state is None else self._aligned((self, i), x, y.shape[-1], state))
        return x

    @staticmethod
    def _aligned(key, x: torch.Tensor, n: int, state: StreamState) -> torch.Tensor:
        """The residual's first ``n`` samples not yet added: the branch lags its input when it looks ahead."""
        held = state.get(key)
        if held is not None:
            x = torch.cat([held, x], dim=-1)
        state[key] = x[..., n:]
        return x[..., :n]

    def ready(self, n: int) -> int:
        for i, (conv1, conv2) in enumerate(zip(self.convs1, self.convs2)):
            n = conv2.ready(self.activations[2 * i + 1].ready(conv1.ready(self.activations[2 * i].ready(n))))
        return n


class BigVGANDecoder(nn.Module):
    def __init__(
        self,
        latent_dim: int = 512,
        upsample_rates: Sequence[int] = (5, 4, 4, 4, 2, 2),
        upsample_kernel_sizes: Sequence[int] = (10, 8, 8, 8, 4, 4),
        upsample_initial_channel: int = 1536,
        resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
        resblock_dilation_sizes: Sequence[Sequence[int]] = ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
        snake_logscale: bool = True,
        conv_pre_kernel_size: int = 7,
        lookahead_frames: int = 0,
        activation: str = "snakebeta",
        anti_alias_padding: str = "causal",
    ):
        super().__init__()
        self.conv_pre = CausalConv1d(
            latent_dim, upsample_initial_channel, conv_pre_kernel_size, lookahead=lookahead_frames
        )
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(upsample_rates, upsample_kernel_sizes):
            self.ups.append(nn.ModuleList([CausalConvTranspose1d(channels, channels // 2, kernel, rate)]))
            channels //= 2
            for k, dilations in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(AMPBlock(channels, k, dilations, snake_logscale, activation, anti_alias_padding))
        self.activation_post = AntiAliasedActivation(channels, snake_logscale, activation=activation,
                                                     padding=anti_alias_padding)
        self.conv_post = CausalConv1d(channels, 1, 7)
        self.num_kernels = len(resblock_kernel_sizes)
        self.lookahead_frames = lookahead_frames
        self.hop_length = 1
        for rate in upsample_rates:
            self.hop_length *= rate

    def forward(self, z: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return _synthesize_nonempty(self, self.conv_pre(z, state), state)

    def synthesize(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        """Everything after ``conv_pre`` (used by streaming to push the lookahead flush through)."""
        for i, up in enumerate(self.ups):
            x = up[0](x, state)
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x, state) for block in blocks) / self.num_kernels
        x = self.conv_post(self.activation_post(x, state), state)
        return torch.tanh(x)

    def ready(self, frames: int) -> int:
        """Samples a stream has released after ``frames`` latent frames (before its end)."""
        n = self.conv_pre.ready(frames)
        for i, up in enumerate(self.ups):
            n = self.resblocks[i * self.num_kernels].ready(up[0].ready(n))
        return self.conv_post.ready(self.activation_post.ready(n))

    @property
    def lookahead_samples(self) -> int:
        """How far streamed audio lags the frames pushed (samples): the sum of every layer's lookahead."""
        return _lookahead_samples(self)


class ConvNeXtBlock(nn.Module):
    """Causal depthwise conv -> LayerNorm -> pointwise MLP, with a learned layer scale."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int = 7, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel_size, groups=dim, use_weight_norm=False)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        y = self.dwconv(x, state).transpose(1, 2)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class CausalISTFT(nn.Module):
    """Inverse STFT by overlap-add where sub-frame j's window starts at sample j * hop.

    So output sample t depends only on sub-frames up to t // hop: no lookahead. The start fades in over
    ``n_fft - hop`` samples (fewer overlapping windows), which the decoder learns to live with.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        window = torch.hann_window(n_fft, periodic=True)
        self.register_buffer("window", window, persistent=False)
        # Steady-state overlap of squared hann windows per sample (constant when n_fft is a multiple of 4 * hop / 4).
        self.norm = float((window**2).sum() / hop_length)

    def forward(self, spec: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        """spec: complex [B, n_fft // 2 + 1, S] -> wav [B, S * hop]."""
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[None, :, None] / self.norm
        n_sub = frames.shape[-1]
        total = (n_sub - 1) * self.hop_length + self.n_fft
        wav = nn.functional.fold(
            frames, output_size=(1, total), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        ).reshape(frames.shape[0], total)
        n_out = n_sub * self.hop_length
        if state is not None:
            carry = state.get(self)
            if carry is not None:
                wav[:, : carry.shape[-1]] += carry
            state[self] = wav[:, n_out:]
        return wav[:, :n_out]


class ISTFTDecoder(nn.Module):
    def __init__(
        self,
        latent_dim: int = 512,
        hop_length: int = 1280,
        dim: int = 512,
        intermediate_dim: int = 1536,
        num_layers: int = 8,
        subframes: int = 4,
        n_fft: Optional[int] = None,
        conv_pre_kernel_size: int = 7,
        lookahead_frames: int = 0,
    ):
        super().__init__()
        if hop_length % subframes:
            raise ValueError("hop_length must be divisible by subframes")
        sub_hop = hop_length // subframes
        n_fft = n_fft or 4 * sub_hop
        self.conv_pre = CausalConv1d(latent_dim, dim, conv_pre_kernel_size, lookahead=lookahead_frames)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, intermediate_dim) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.n_bins = n_fft // 2 + 1
        self.out = nn.Linear(dim, subframes * 2 * self.n_bins)
        self.istft = CausalISTFT(n_fft, sub_hop)
        self.subframes = subframes
        self.hop_length = hop_length
        self.lookahead_frames = lookahead_frames

    def forward(self, z: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return _synthesize_nonempty(self, self.conv_pre(z, state), state)

    def synthesize(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return self.waveform(self.spectral_features(x, state), state)

    def ready(self, frames: int) -> int:
        return self.conv_pre.ready(frames) * self.hop_length

    @property
    def lookahead_samples(self) -> int:
        return _lookahead_samples(self)

    def spectral_features(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        """``conv_pre`` output [B, dim, F] -> [B, F, subframes * 2 * bins]: the layers that hold the weights."""
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x, state)
        return self.out(self.final_norm(x.transpose(1, 2)))

    def waveform(self, h: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        """``spectral_features`` [B, F, subframes * 2 * bins] -> audio [B, 1, F * hop] (log-magnitude and phase per
        sub-frame, then the causal inverse STFT)."""
        batch, n_frames = h.shape[:2]
        h = h.reshape(batch, n_frames * self.subframes, 2 * self.n_bins).transpose(1, 2)
        log_mag, phase = h.split(self.n_bins, dim=1)
        mag = torch.exp(log_mag.clamp(max=10.0))  # a ceiling keeps early training finite
        spec = torch.polar(mag, phase)
        return self.istft(spec, state).unsqueeze(1)


def _lookahead_samples(decoder: nn.Module, frames: int = 256) -> int:
    """Steady-state lag of a stream: ``frames * hop - ready(frames)`` (constant once past the start)."""
    return frames * decoder.hop_length - decoder.ready(frames)


def _synthesize_nonempty(decoder: nn.Module, x: torch.Tensor, state: Optional[StreamState]) -> torch.Tensor:
    """A stream chunk still inside the lookahead yields no frames yet, hence no audio."""
    if x.shape[-1] == 0:
        return x.new_zeros(x.shape[0], 1, 0)
    return decoder.synthesize(x, state)


DECODERS = {"bigvgan": BigVGANDecoder, "istft": ISTFTDecoder}
