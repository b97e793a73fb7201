"""Write a WAV file chunk by chunk, as audio is generated.

Without ``flush_every_write`` the audio goes to a temporary file renamed into place on success, so a failure
never leaves a truncated file under the requested name. With it, the file grows in place and its header is
kept valid after every chunk (another program can play it while it is being written).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Optional, Type

import numpy as np
import soundfile as sf

from espnet_kalle.atomic import atomic_path
from espnet_kalle.pcm import to_int16


class StreamingWavWriter:
    def __init__(self, path: str | Path, sample_rate: int, flush_every_write: bool = False):
        self.path = Path(path)
        self.flush_every_write = flush_every_write
        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(f"output directory does not exist: {self.path.parent}")
        self._atomic = ExitStack()
        self.target = self.path if flush_every_write else self._atomic.enter_context(atomic_path(self.path))
        try:
            self._file = sf.SoundFile(self.target, "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                                      format="WAV")
        except BaseException as error:
            self._atomic.__exit__(type(error), error, error.__traceback__)  # removes the temporary file
            raise

    def write(self, chunk: np.ndarray) -> None:
        self._file.write(to_int16(chunk))  # the project's one float -> PCM rule, as streams get it
        if self.flush_every_write:
            self._file.flush()

    def __enter__(self) -> StreamingWavWriter:
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)  # renames the finished file into place, or removes it
