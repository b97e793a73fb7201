"""Atomic file writes, the one way the project replaces a file: a reader (or a resumed run) sees the old file
or the complete new one, never a half-written one, whatever crashes in between.

    with atomic_path(out) as tmp:      # write anything to tmp (torch.save, soundfile, sox, np.save ...)
        torch.save(state, tmp)         # renamed over out when the block ends, removed when it fails
    write_text_atomic(out, text)
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextmanager
def atomic_path(path: PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A fresh temporary path beside ``path`` (same directory, so the rename is atomic) that becomes ``path`` when
    the block succeeds and is removed when it fails. ``suffix``: for writers that pick the format from the name.

    The directory must exist: a missing one is the caller's error to report (e.g. a bad output path).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str) -> None:
    """``path`` holds ``text`` (UTF-8, ``\\n`` line ends), replaced atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
