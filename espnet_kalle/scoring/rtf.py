"""Real-time factor: synthesis seconds / audio seconds, timed per utterance by whoever synthesizes.

The decode stage writes an ``rtf`` file next to its wavs, one line per utterance,
``<utt_id> <synthesis seconds> <audio seconds>``; the scorer sums both columns (total time / total audio, so long
utterances weigh by their length). A two-column ``<utt_id> <rtf>`` file is also read (then averaged).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np


@dataclass
class Timing:
    utt_id: str
    seconds: float  # wall-clock synthesis time
    audio_seconds: Optional[float]  # None when only the ratio is known

    @property
    def rtf(self) -> float:
        if self.audio_seconds is None:
            return self.seconds
        return self.seconds / self.audio_seconds if self.audio_seconds > 0 else float("inf")


def timed_synthesis(
    utt_id: str, synthesize: Callable[[], np.ndarray], sample_rate: int
) -> Tuple[np.ndarray, Timing]:
    """Run ``synthesize()`` (returning a [T] waveform) under a wall clock; the audio length sets the RTF."""
    start = time.perf_counter()
    wav = synthesize()
    seconds = time.perf_counter() - start
    return wav, Timing(utt_id, seconds, len(wav) / float(sample_rate))


def write_rtf_file(path: Union[str, Path], timings: Iterable[Timing]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for t in timings:
            f.write(f"{t.utt_id} {t.seconds:.6f} {t.audio_seconds:.6f}\n")


def read_rtf_file(path: Union[str, Path]) -> Dict[str, Timing]:
    """Parse an ``rtf`` file (3 columns: seconds and audio seconds; or 2 columns: the ratio)."""
    out: Dict[str, Timing] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 3:
            out[parts[0]] = Timing(parts[0], float(parts[1]), float(parts[2]))
        elif len(parts) == 2:
            out[parts[0]] = Timing(parts[0], float(parts[1]), None)
        else:
            raise ValueError(f"{path}:{lineno}: expected 'utt_id seconds audio_seconds' or 'utt_id rtf'")
    return out


def total_rtf(timings: Iterable[Timing]) -> float:
    """Total synthesis time / total audio time (mean of ratios when audio lengths are unknown)."""
    ts = list(timings)
    if not ts:
        return float("nan")
    if all(t.audio_seconds is not None for t in ts):
        audio = sum(t.audio_seconds for t in ts)
        return sum(t.seconds for t in ts) / audio if audio > 0 else float("nan")
    return float(np.mean([t.rtf for t in ts]))
