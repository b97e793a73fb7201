"""Float chunks from the synthesizer -> 16-bit PCM Wyoming chunks of the size the client asked for."""

from __future__ import annotations

from espnet_kalle.pcm import WIDTH, PcmChunker, to_pcm16

CHANNELS = 1  # 16-bit mono: the one format of every stream this server sends

__all__ = ["CHANNELS", "WIDTH", "PcmChunker", "to_pcm16"]
