"""Real-time factor: synthesis seconds / audio seconds, timed per utterance by whoever synthesizes.

The decode stage writes an ``rtf`` file next to its wavs, one line per utterance,
``<utt_id> <synthesis seconds> <audio seconds>``; the scorer sums both columns (total time / total audio, so long
utterances weigh by their length). A two-column ``<utt_id> <rtf>`` file is also read (then averaged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union


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
