"""Float chunks from the synthesizer -> 16-bit PCM Wyoming chunks of the size the client asked for."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

WIDTH, CHANNELS = 2, 1  # 16-bit mono: the one format of every stream this server sends


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


class PcmChunker:
    """Regroups PCM into ``samples_per_chunk`` pieces; None passes each 80 ms frame through (lowest latency)."""

    def __init__(self, samples_per_chunk: Optional[int] = None):
        if samples_per_chunk is not None and samples_per_chunk < 1:
            raise ValueError("samples_per_chunk must be >= 1")
        self._size = None if samples_per_chunk is None else samples_per_chunk * WIDTH * CHANNELS
        self._pending = b""

    def push(self, pcm: bytes) -> List[bytes]:
        if self._size is None:
            return [pcm] if pcm else []
        self._pending += pcm
        cut = len(self._pending) - len(self._pending) % self._size
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return [ready[i : i + self._size] for i in range(0, len(ready), self._size)]

    def flush(self) -> List[bytes]:
        rest, self._pending = self._pending, b""
        return [rest] if rest else []
