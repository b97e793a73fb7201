"""Reading and writing audio the one way the whole project does it.

Every entry point (latent extraction, voice prompts, the synthesizer, the recipes) loads audio through
``load_audio`` so that conversions happen once, are documented here, and fail with an ``AudioError`` that names
the file and the reason instead of a libsndfile traceback deep inside a batch loop.

Conversions done by ``load_audio``:
- integer PCM (8/16/24/32 bit) -> float32 in [-1, 1) (libsndfile's scaling: int16 x / 32768);
  float files are returned as stored (not clipped);
- several channels -> their mean (``mono="mix"``) or an error (``mono="error"``);
- any other sample rate -> ``sample_rate`` (soxr "HQ" when installed, else ``scipy.signal.resample_poly``).
Refused: a missing path, a file libsndfile cannot decode, a file with 0 samples, NaN or infinite samples.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, Union

import numpy as np
import soundfile as sf

from espnet_kalle.atomic import atomic_path
from espnet_kalle.errors import InputError
from espnet_kalle.pcm import to_int16

PathLike = Union[str, "os.PathLike[str]"]


class AudioError(InputError):
    """An audio file that cannot be used, with the path and the reason."""

    def __init__(self, path: PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling of a 1-D float32 signal; output length is ``ceil(len * target / orig)``."""
    if orig_sr == target_sr:
        return wav
    n_out = math.ceil(len(wav) * target_sr / orig_sr)
    try:
        import soxr
    except ImportError:  # soxr comes with librosa (an ESPnet dependency); scipy is the fallback
        from scipy.signal import resample_poly

        g = math.gcd(orig_sr, target_sr)
        out = resample_poly(wav.astype(np.float64), target_sr // g, orig_sr // g)
    else:
        out = soxr.resample(wav, orig_sr, target_sr, quality="HQ")
    out = np.asarray(out, dtype=np.float32)
    # Both libraries round the length their own way; make it one documented rule.
    if len(out) >= n_out:
        return out[:n_out]
    return np.pad(out, (0, n_out - len(out)))


def load_audio(
    path: PathLike,
    sample_rate: int = 16000,
    mono: Literal["mix", "error"] = "mix",
) -> np.ndarray:
    """Load a file as mono float32 ``[T]`` at ``sample_rate`` (see the module docstring for conversions)."""
    if mono not in ("mix", "error"):
        raise ValueError(f"mono must be 'mix' or 'error', got {mono!r}")
    p = Path(path)
    if not p.exists():
        raise AudioError(path, "file not found")
    if p.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    try:
        data, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:  # TypeError: libsndfile could not guess a format
        raise AudioError(path, f"unreadable or corrupt audio ({e})") from e
    if data.shape[0] == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    if data.shape[1] > 1:
        if mono == "error":
            raise AudioError(path, f"has {data.shape[1]} channels; mono audio required")
        wav = data.mean(axis=1, dtype=np.float32)
    else:
        wav = data[:, 0]
    wav = resample(np.ascontiguousarray(wav), int(file_sr), sample_rate)
    return wav


def save_audio(path: PathLike, wav: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``wav`` ([T] or [T, C], float in [-1, 1]) atomically: a temporary file in the same directory is
    renamed over ``path``, so readers never see a half-written file.

    ``subtype`` is a libsndfile subtype ("PCM_16", "PCM_24", "FLOAT"); PCM output is clipped to [-1, 1]
    first (libsndfile would otherwise wrap around on overflow), and 16-bit PCM is converted by ``pcm.to_int16``,
    so a file holds the samples a stream of the same audio sends.
    """
    p = Path(path)
    data = np.asarray(wav, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise ValueError(f"wav must be [T] or [T, C], got shape {data.shape}")
    if subtype == "PCM_16":
        data = to_int16(data)
    elif subtype.startswith("PCM"):
        data = np.clip(data, -1.0, 1.0)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = p.suffix.lstrip(".").upper() or "WAV"
    with atomic_path(p) as tmp:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=fmt)
