"""Incremental Flow-VAE decoding: push latent frames as the LM makes them, get audio at once.

The decoder is causal, so a chunk's audio depends only on frames already pushed; each layer keeps the inputs
(or overlap tails) the next chunk still needs in a per-stream dict. Concatenated outputs of ``push`` and
``flush`` equal ``FlowVAE.decode`` of the whole sequence. With a ``conv_pre`` lookahead of L frames, ``push``
holds back L frames of audio, which ``flush`` releases against zero padding (exactly as offline decoding does).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class StreamDecoder:
    def __init__(self, decoder: nn.Module, latent_dim: int):
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.hop_length: int = decoder.hop_length
        self.lookahead_frames: int = decoder.lookahead_frames
        self._state: dict = {}
        self._last: Optional[torch.Tensor] = None
        self._finished = False

    @torch.inference_mode()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, n] -> wav [B, 1, m]; m = n * hop once the first ``lookahead_frames`` frames are in."""
        if self._finished:
            raise RuntimeError("this stream was flushed; start a new one with FlowVAE.stream_decoder()")
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"push expects latents [B, {self.latent_dim}, n], got shape {tuple(z.shape)}")
        if self._last is not None and z.shape[0] != self._last.shape[0]:
            raise ValueError("batch size changed within one stream")
        self._last = z
        return self.decoder(z, self._state)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The audio still held back by the lookahead; ends the stream."""
        self._finished = True
        if self._last is None:
            return torch.zeros(1, 1, 0)
        z = self._last
        pending = self.decoder.conv_pre.flush(self._state, z.shape[0], self.latent_dim, z)
        if pending.shape[-1] == 0:
            return z.new_zeros(z.shape[0], 1, 0)
        return self.decoder.synthesize(pending, self._state)
