"""The Flow-VAE's streaming decoder (the ``istft`` head) in onnxruntime: the same network, a fraction of the time
per call.

Why: generation decodes a few frames per call (the first frame alone, for time to first audio), and at that size a
call of the ISTFT head in eager PyTorch is per-op overhead, not arithmetic: the same layers as one onnxruntime graph
take a fraction of the time (benchmarks/RESULTS.md). The graph holds
the layers with weights (``conv_pre`` and the ConvNeXt stack up to the spectral output); the context its causal
convolutions carry between calls goes in and comes out as tensors, so every stream keeps its own. The inverse STFT
after it stays in PyTorch (complex numbers, a few ops). Float only: the audio matches eager PyTorch to ~1e-5.
"""

from __future__ import annotations

from typing import List

import numpy as np
import torch
from torch import nn

from espnet_kalle.codec.decoders import ISTFTDecoder
from espnet_kalle.onnx_graphs import cpu_session, export_graph


def can_export_decoder(decoder: nn.Module) -> bool:
    """The ``istft`` head without lookahead (a lookahead holds frames back, which this stream does not do)."""
    return isinstance(decoder, ISTFTDecoder) and decoder.lookahead_frames == 0


class _SpectralFeatures(nn.Module):
    """forward(z [1, D, n], context_0, ...) -> (features [1, n, subframes * 2 * bins], new context_0, ...)."""

    def __init__(self, decoder: ISTFTDecoder):
        super().__init__()
        self.decoder = decoder
        self.convs = [decoder.conv_pre] + [block.dwconv for block in decoder.blocks]  # not registered twice

    def forward(self, z, *contexts):
        state = dict(zip(self.convs, contexts))
        features = self.decoder.spectral_features(self.decoder.conv_pre(z, state), state)
        return (features, *(state[conv] for conv in self.convs))


class OnnxDecoder:
    """An exported ISTFT head; ``stream()`` gives an incremental decoder like ``FlowVAE.stream_decoder()``."""

    def __init__(self, decoder: ISTFTDecoder, latent_dim: int, threads: int = 1):
        if not can_export_decoder(decoder):
            raise ValueError("only the istft decoder without lookahead runs in onnxruntime")
        self.decoder = decoder
        self.latent_dim = latent_dim
        features = _SpectralFeatures(decoder).eval()
        self._context_shapes = [(1, conv.conv.in_channels, conv.left_pad) for conv in features.convs]
        self.session = cpu_session(_export(features, latent_dim, self._context_shapes), threads)
        self._context_names = [node.name for node in self.session.get_inputs()[1:]]

    def stream(self) -> OnnxStreamDecoder:
        return OnnxStreamDecoder(self)


class OnnxStreamDecoder:
    """``push`` latent chunks [1, D, n], get their audio [1, 1, n * hop] at once; ``flush`` ends the stream.
    The same contract as ``espnet_kalle.streaming.StreamDecoder`` (batch 1, no lookahead)."""

    lookahead_frames = 0
    lookahead_samples = 0

    def __init__(self, owner: OnnxDecoder):
        self._owner = owner
        self.hop_length: int = owner.decoder.hop_length
        self.latent_dim = owner.latent_dim
        self._contexts: List[np.ndarray] = [np.zeros(shape, dtype=np.float32) for shape in owner._context_shapes]
        self._istft_state: dict = {}
        self._finished = False

    @torch.inference_mode()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        if self._finished:
            raise RuntimeError("this stream was flushed; start a new one")
        if z.dim() != 3 or z.shape[0] != 1 or z.shape[1] != self.latent_dim:
            raise ValueError(f"push expects latents [1, {self.latent_dim}, n], got shape {tuple(z.shape)}")
        if z.shape[-1] == 0:
            return z.new_zeros(1, 1, 0)
        feed = {"z": z.detach().float().contiguous().numpy(), **dict(zip(self._owner._context_names, self._contexts))}
        features, *self._contexts = self._owner.session.run(None, feed)
        return self._owner.decoder.waveform(torch.from_numpy(features), self._istft_state)

    def flush(self) -> torch.Tensor:
        """Nothing is held back without lookahead; ends the stream."""
        self._finished = True
        return torch.zeros(1, 1, 0)


def _export(features: _SpectralFeatures, latent_dim: int, context_shapes) -> bytes:
    names = [f"context_{i}" for i in range(len(context_shapes))]
    example = (torch.zeros(1, latent_dim, 2), *(torch.zeros(shape) for shape in context_shapes))
    return export_graph(features, example, ["z", *names], ["features", *(f"{name}_out" for name in names)],
                        {"z": {2: "frames"}, "features": {1: "frames"}})
