"""Whether 16-bit PCM from a server is a given float waveform, judged without the server's own conversion formula.

A WAV reader (libsndfile, soundfile) maps the int16 sample k to k / 32768. Any faithful float -> int16 conversion
(rounding or flooring, a scale of 32767 or 32768) lands within one step of 1/32768 of the float sample, for
samples well inside [-1, 1]; a wrong scale, a dropped or repeated chunk, another voice or noise level does not.
"""

from __future__ import annotations

import numpy as np

STEP = 1.0 / 32768  # one step of 16-bit PCM, as WAV readers scale it


def pcm_error(pcm: np.ndarray, wav: np.ndarray) -> float:
    """Largest distance, in PCM steps, between int16 ``pcm`` read back as a WAV reader does and float ``wav``."""
    assert pcm.dtype == np.int16, pcm.dtype
    assert pcm.shape == wav.shape, (pcm.shape, wav.shape)
    return float(np.abs(pcm.astype(np.float64) * STEP - np.clip(wav, -1.0, 1.0)).max(initial=0.0) / STEP)


def is_pcm_of(pcm: np.ndarray, wav: np.ndarray) -> bool:
    """True when ``pcm`` has ``wav``'s length and every sample is within one 16-bit step of it."""
    return pcm.shape == wav.shape and pcm_error(pcm, wav) <= 1.0


def assert_pcm_of(pcm: np.ndarray, wav: np.ndarray) -> None:
    assert pcm.shape == wav.shape, f"{pcm.size} PCM samples for {wav.size} float samples"
    error = pcm_error(pcm, wav)
    assert error <= 1.0, f"PCM differs from the float audio by up to {error:.2f} steps of 1/32768"
