"""Incremental Flow-VAE decoding: push latent frames as the LM makes them, get audio at once.

A chunk's audio depends only on frames already pushed; each layer keeps the inputs (or overlap tails) the next
chunk still needs in a per-stream dict. Concatenated outputs of ``push`` and ``flush`` equal
``FlowVAE.decode`` of the whole sequence. A decoder that looks ahead (a ``conv_pre`` lookahead of L frames; the
released decoder's centred anti-aliasing filters) holds back ``lookahead_samples`` of audio: after n frames,
``push`` has released ``max(0, n * hop - lookahead_samples)`` samples, and ``flush`` releases the rest, padding
the end exactly as offline decoding does.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from espnet_kalle.codec.modules import FINAL


class StreamDecoder:
    def __init__(self, decoder: nn.Module, latent_dim: int):
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.hop_length: int = decoder.hop_length
        self.lookahead_frames: int = decoder.lookahead_frames
        self.lookahead_samples: int = decoder.lookahead_samples
        self._state: dict = {}
        self._last: Optional[torch.Tensor] = None
        self._finished = False

    @torch.inference_mode()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, n] -> wav [B, 1, m]: all audio the frames pushed so far determine (see the module doc)."""
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
        if self.lookahead_samples == 0:
            return z.new_zeros(z.shape[0], 1, 0)
        self._state[FINAL] = True
        pending = self.decoder.conv_pre(z[..., :0], self._state)
        if pending.shape[-1] == 0 and self.lookahead_samples <= self.lookahead_frames * self.hop_length:
            return z.new_zeros(z.shape[0], 1, 0)  # only conv_pre looked ahead, and it had nothing left
        return self.decoder.synthesize(pending, self._state)
