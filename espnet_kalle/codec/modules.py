"""Streamable building blocks of the Flow-VAE.

Every module here has one code path for both uses: ``forward(x)`` runs offline, and ``forward(x, state)`` runs
on a chunk, reading and updating the module's own entry of ``state`` (a plain dict owned by the caller).
Concatenated chunk outputs equal the offline output, so streaming decode is exact and several streams can share
one model (each stream owns its dict). A module that looks ahead holds back the outputs whose inputs have not
arrived; ``ready(n)`` says how many outputs n inputs release, and the last call of a stream (``state[FINAL]``
set) pads the end as offline decoding does and releases the rest.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

StreamState = dict  # {module: tensor} carried between chunks
FINAL = "final"  # a StreamState key: set for the call that ends the stream


def _ends(state: Optional[StreamState]) -> bool:
    return state is not None and bool(state.get(FINAL, False))


def _empty(x: torch.Tensor, channels: int) -> torch.Tensor:
    return x.new_zeros(x.shape[0], channels, 0)


class CausalConv1d(nn.Module):
    """Conv1d whose output at t sees inputs up to t + ``lookahead`` (0 = strictly causal).

    Output length is ``ceil(T / stride)``. Streaming keeps the last inputs the next outputs still need.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        lookahead: int = 0,
        use_weight_norm: bool = True,
    ):
        super().__init__()
        conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, dilation=dilation, groups=groups, bias=bias
        )
        self.conv = weight_norm(conv) if use_weight_norm else conv
        self.stride = stride
        self.receptive = (kernel_size - 1) * dilation
        if not 0 <= lookahead <= self.receptive:
            raise ValueError(f"lookahead {lookahead} must be within [0, {self.receptive}]")
        self.lookahead = lookahead
        self.left_pad = self.receptive - lookahead

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        if state is None:
            # Right padding so that the output length is ceil(T / stride) (the last window may run past the end).
            length = x.shape[-1]
            n_out = math.ceil(length / self.stride)
            right = max(0, (n_out - 1) * self.stride + self.receptive + 1 - (length + self.left_pad))
            return self.conv(F.pad(x, (self.left_pad, right)))
        buf = state.get(self)
        if buf is None:
            buf = x.new_zeros(x.shape[0], x.shape[1], self.left_pad)
        parts = [buf, x]
        if _ends(state) and self.lookahead:  # the zero padding offline decoding reads past the end
            parts.append(x.new_zeros(x.shape[0], x.shape[1], self.lookahead))
        x = torch.cat(parts, dim=-1)
        n_out = (x.shape[-1] - self.receptive - 1) // self.stride + 1 if x.shape[-1] > self.receptive else 0
        state[self] = x[..., n_out * self.stride :]
        if n_out == 0:
            return _empty(x, self.conv.out_channels)
        return self.conv(x[..., : (n_out - 1) * self.stride + self.receptive + 1])

    def ready(self, n: int) -> int:
        """Outputs a stream has released after ``n`` inputs (before its end)."""
        return (n - self.lookahead - 1) // self.stride + 1 if n > self.lookahead else 0


class CenteredConv1d(nn.Module):
    """Conv1d zero-padded by ``dilation * (kernel - 1) // 2`` on both sides (offline only): the released encoder's
    convolutions (``Conv1d_S`` and its residual stacks), whose output at t also sees inputs after t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 use_weight_norm: bool = True):
        super().__init__()
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation,
                         padding=dilation * (kernel_size - 1) // 2)
        self.conv = weight_norm(conv) if use_weight_norm else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    """Transposed conv that keeps the first ``T * stride`` samples: output at t never sees inputs after t.

    In streaming the overlapping tail of each chunk (``kernel - stride`` samples) is carried into the next.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, use_weight_norm=True):
        super().__init__()
        if kernel_size < stride:
            raise ValueError("kernel_size must be >= stride")
        conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride)
        self.conv = weight_norm(conv) if use_weight_norm else conv
        self.stride = stride

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        n_out = x.shape[-1] * self.stride
        if state is None:
            return self.conv(x)[..., :n_out]
        if n_out == 0:
            return _empty(x, self.conv.out_channels)
        weight = self.conv.weight
        y = F.conv_transpose1d(x, weight, None, stride=self.stride)
        carry = state.get(self)
        if carry is not None:
            y[..., : carry.shape[-1]] += carry
        state[self] = y[..., n_out:]
        out = y[..., :n_out]
        if self.conv.bias is not None:
            out = out + self.conv.bias[:, None]
        return out

    def ready(self, n: int) -> int:
        return n * self.stride


def snake_beta(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """x + 1/beta * sin^2(alpha x)."""
    return x + torch.reciprocal(beta + 1e-9) * torch.sin(x * alpha).pow(2)


class Snake(nn.Module):
    """Periodic activation x + 1/alpha * sin^2(alpha x) (BigVGAN's "snake"; one parameter per channel)."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        self.alpha = nn.Parameter(torch.zeros(channels) if logscale else torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        if self.logscale:
            alpha = alpha.exp()
        return snake_beta(x, alpha, alpha)


class SnakeBeta(nn.Module):
    """Periodic activation of BigVGAN with separate frequency (alpha) and magnitude (beta) per channel."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        init = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha, beta = self.alpha[None, :, None], self.beta[None, :, None]
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return snake_beta(x, alpha, beta)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Low-pass FIR (windowed sinc with a Kaiser window), shape [1, 1, K], summing to 1."""
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    delta_f = 4 * half_width
    attenuation = 2.285 * (half - 1) * math.pi * delta_f + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = torch.arange(-half, half) + 0.5 if even else torch.arange(kernel_size) - half
    filt = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (filt / filt.sum()).view(1, 1, kernel_size)


class CausalUpsample1d(nn.Module):
    """Upsample by ``ratio`` with a fixed low-pass filter, causally (depthwise causal transposed conv)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x
        channels = x.shape[1]
        weight = self.filter.expand(channels, 1, -1) * self.ratio
        y = F.conv_transpose1d(x, weight, stride=self.ratio, groups=channels)
        n_out = x.shape[-1] * self.ratio
        if state is not None:
            carry = state.get(self)
            if carry is not None:
                y[..., : carry.shape[-1]] += carry
            state[self] = y[..., n_out:]
        return y[..., :n_out]

    def ready(self, n: int) -> int:
        return n * self.ratio


class CausalDownsample1d(nn.Module):
    """Low-pass then keep every ``ratio``-th sample, causally."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.lowpass = _FixedLowPass(kernel_size, ratio)

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return self.lowpass(x, state)

    def ready(self, n: int) -> int:
        return (n - 1) // self.ratio + 1 if n > 0 else 0


class _FixedLowPass(nn.Module):
    """Depthwise strided causal FIR; named like the release (``downsample.lowpass.filter``)."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.stride = stride
        self.receptive = kernel_size - 1
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / stride, 0.6 / stride, kernel_size))

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        channels = x.shape[1]
        weight = self.filter.expand(channels, 1, -1)
        if state is None:
            n_out = math.ceil(x.shape[-1] / self.stride)
            right = max(0, (n_out - 1) * self.stride + 1 - x.shape[-1])
            return F.conv1d(F.pad(x, (self.receptive, right)), weight, stride=self.stride, groups=channels)
        buf = state.get(self)
        if buf is None:
            buf = x.new_zeros(x.shape[0], channels, self.receptive)
        x = torch.cat([buf, x], dim=-1)
        n_out = (x.shape[-1] - self.receptive - 1) // self.stride + 1 if x.shape[-1] > self.receptive else 0
        state[self] = x[..., n_out * self.stride :]
        return F.conv1d(x[..., : (n_out - 1) * self.stride + self.receptive + 1], weight, stride=self.stride,
                        groups=channels) if n_out else x.new_zeros(x.shape[0], channels, 0)


class ReplicateUpsample1d(nn.Module):
    """Upsample by ``ratio`` as alias-free-torch's ``UpSample1d`` (used by the released decoder): the input is
    padded by repeating its edge samples and the filter is centred, so output t / ratio sees a few inputs ahead.

    Streaming holds those outputs back until their inputs arrive; the stream's end repeats its last sample.
    """

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.trim_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.trim_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def _upsample(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio,
                                               groups=channels)

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        if state is None:
            y = self._upsample(F.pad(x, (self.pad, self.pad), mode="replicate"))
            return y[..., self.trim_left : y.shape[-1] - self.trim_right]
        entry = state.get(self)
        if entry is None:
            if x.shape[-1] == 0:
                return x
            entry = state[self] = {"carry": None, "skip": self.trim_left, "inputs": 0, "outputs": 0}
            x = torch.cat([x[..., :1].expand(-1, -1, self.pad), x], dim=-1)
            entry["inputs"] -= self.pad
        if x.shape[-1]:
            entry["last"] = x[..., -1:]
        if _ends(state):
            x = torch.cat([x, entry["last"].expand(-1, -1, self.pad)], dim=-1)
            entry["inputs"] -= self.pad
        if x.shape[-1] == 0:
            return x
        entry["inputs"] += x.shape[-1]
        y = self._upsample(x)
        n_done = x.shape[-1] * self.ratio
        if entry["carry"] is not None:
            y[..., : entry["carry"].shape[-1]] += entry["carry"]
        entry["carry"] = y[..., n_done:]
        y = y[..., :n_done]
        skip = min(entry["skip"], y.shape[-1])
        entry["skip"] -= skip
        y = y[..., skip : skip + self.ratio * entry["inputs"] - entry["outputs"]]
        entry["outputs"] += y.shape[-1]
        return y

    def ready(self, n: int) -> int:
        return min(n * self.ratio, max(0, (n + self.pad) * self.ratio - self.trim_left)) if n > 0 else 0


class ReplicateDownsample1d(nn.Module):
    """Low-pass then keep every ``ratio``-th sample as alias-free-torch's ``DownSample1d``: centred filter,
    edges padded by repetition (streaming: held back until the inputs arrive, the end repeats the last sample)."""

    def __init__(self, ratio: int = 2, kernel_size: int = 12):
        super().__init__()
        self.ratio = ratio
        self.lowpass = _ReplicateLowPass(kernel_size, ratio)

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return self.lowpass(x, state)

    def ready(self, n: int) -> int:
        return self.lowpass.ready(n)


class _ReplicateLowPass(nn.Module):
    """Depthwise strided FIR; named like the release (``downsample.lowpass.filter``)."""

    def __init__(self, kernel_size: int, stride: int):
        super().__init__()
        self.stride = stride
        self.kernel_size = kernel_size
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / stride, 0.6 / stride, kernel_size))

    def _filter(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filter.expand(x.shape[1], -1, -1), stride=self.stride, groups=x.shape[1])

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        if state is None:
            return self._filter(F.pad(x, (self.pad_left, self.pad_right), mode="replicate"))
        buf = state.get(self)
        if buf is None:
            if x.shape[-1] == 0:
                return x
            buf = x[..., :1].expand(-1, -1, self.pad_left)
        x = torch.cat([buf, x], dim=-1)
        if _ends(state):
            x = torch.cat([x, x[..., -1:].expand(-1, -1, self.pad_right)], dim=-1)
        n_out = (x.shape[-1] - self.kernel_size) // self.stride + 1 if x.shape[-1] >= self.kernel_size else 0
        state[self] = x[..., n_out * self.stride :]
        if n_out == 0:
            return x[..., :0]
        return self._filter(x[..., : (n_out - 1) * self.stride + self.kernel_size])

    def ready(self, n: int) -> int:
        length = n + self.pad_left
        return (length - self.kernel_size) // self.stride + 1 if n > 0 and length >= self.kernel_size else 0


ANTI_ALIAS_PADDINGS = {"causal": (CausalUpsample1d, CausalDownsample1d),
                       "replicate": (ReplicateUpsample1d, ReplicateDownsample1d)}
SNAKES = {"snakebeta": SnakeBeta, "snake": Snake}


class AntiAliasedActivation(nn.Module):
    """A snake activation at twice the sample rate (upsample -> activation -> downsample) to limit aliasing.

    ``padding`` "causal" (our decoders) reads nothing ahead; "replicate" is alias-free-torch's centred filters
    with edge repetition, as the released decoder uses (a few samples of lookahead per activation).
    """

    def __init__(self, channels: int, logscale: bool = True, ratio: int = 2, kernel_size: int = 12,
                 activation: str = "snakebeta", padding: str = "causal"):
        super().__init__()
        if activation not in SNAKES:
            raise ValueError(f"activation must be one of {sorted(SNAKES)}, got {activation!r}")
        if padding not in ANTI_ALIAS_PADDINGS:
            raise ValueError(f"padding must be one of {sorted(ANTI_ALIAS_PADDINGS)}, got {padding!r}")
        upsample, downsample = ANTI_ALIAS_PADDINGS[padding]
        self.act = SNAKES[activation](channels, logscale)
        self.upsample = upsample(ratio, kernel_size)
        self.downsample = downsample(ratio, kernel_size)

    def forward(self, x: torch.Tensor, state: Optional[StreamState] = None) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x, state)), state)

    def ready(self, n: int) -> int:
        return self.downsample.ready(self.upsample.ready(n))


def remove_weight_norm_(module: nn.Module) -> nn.Module:
    """Fold weight-norm parametrizations into plain weights (faster inference, identical output)."""
    from torch.nn.utils import parametrize

    for sub in module.modules():
        if parametrize.is_parametrized(sub, "weight"):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)
    return module
