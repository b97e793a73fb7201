"""Float samples -> 16-bit PCM, the one conversion of the project, and PCM in pieces of one steady size for the
streaming integrations (Wyoming, Pipecat) and the scorers.

Our WAV writers (``audio.save_audio``, ``wav_writer.StreamingWavWriter``) hand libsndfile these int16 samples rather
than floats (libsndfile would scale by 32768 and truncate), so a stream and a file of the same audio hold the same
samples.

Audio comes out of the synthesizer 80 ms at a time, and out of a resampler in whatever pieces its filter releases;
players and transports expect chunks of one size. ``PcmChunker`` regroups bytes into ``samples_per_chunk`` pieces
and hands back the remainder only at the end of an utterance.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

WIDTH = 2  # bytes per 16-bit sample


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> little-endian int16 (rounded, never truncated; clipped, never wrapped)."""
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> little-endian 16-bit PCM bytes (``to_int16``)."""
    return to_int16(samples).tobytes()


class PcmChunker:
    """Regroups 16-bit PCM into ``samples_per_chunk``-sample pieces; None passes every piece through as it comes."""

    def __init__(self, samples_per_chunk: Optional[int] = None, channels: int = 1):
        if samples_per_chunk is not None and samples_per_chunk < 1:
            raise ValueError("samples_per_chunk must be >= 1")
        self._size = None if samples_per_chunk is None else samples_per_chunk * WIDTH * channels
        self._pending = b""

    def push(self, pcm: bytes) -> List[bytes]:
        """The whole chunks that ``pcm`` completes; the rest waits for more audio or ``flush``."""
        if self._size is None:
            return [pcm] if pcm else []
        self._pending += pcm
        cut = len(self._pending) - len(self._pending) % self._size
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return [ready[i : i + self._size] for i in range(0, len(ready), self._size)]

    def flush(self) -> List[bytes]:
        """What is left at the end of an utterance (shorter than a chunk), then empty."""
        rest, self._pending = self._pending, b""
        return [rest] if rest else []

    def clear(self) -> None:
        """Forget pending audio (an interrupted utterance)."""
        self._pending = b""
