"""Write a WAV file chunk by chunk, as audio is generated.

Without ``flush_every_write`` the audio goes to a temporary file renamed into place on success, so a failure
never leaves a truncated file under the requested name. With it, the file grows in place and its header is
kept valid after every chunk (another program can play it while it is being written).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Optional, Type

import numpy as np
import soundfile as sf


class StreamingWavWriter:
    def __init__(self, path: str | Path, sample_rate: int, flush_every_write: bool = False):
        self.path = Path(path)
        self.flush_every_write = flush_every_write
        self.target = self.path if flush_every_write else self.path.with_name(f".{self.path.name}.partial")
        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(f"output directory does not exist: {self.path.parent}")
        self._file = sf.SoundFile(self.target, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                                  format="WAV")

    def write(self, chunk: np.ndarray) -> None:
        self._file.write(np.clip(np.asarray(chunk, dtype=np.float32), -1.0, 1.0))
        if self.flush_every_write:
            self._file.flush()

    def __enter__(self) -> StreamingWavWriter:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self._file.close()
        if self.target != self.path:
            if exc_type is None:
                self.target.replace(self.path)
            else:
                self.target.unlink(missing_ok=True)
