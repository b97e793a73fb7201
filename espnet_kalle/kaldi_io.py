"""Kaldi-style ``key value`` files (wav.scp, text, utt2spk, ...): one reader and one writer for the project."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Union

PathLike = Union[str, "os.PathLike[str]"]


def read_kaldi_map(path: PathLike) -> Dict[str, str]:
    """``key value...`` lines -> {key: value} in file order (value may hold spaces or be empty).

    A key seen twice is an error: Kaldi tools would silently keep one of them.
    """
    out: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if parts[0] in out:
                raise ValueError(f"{path}:{lineno}: duplicate key {parts[0]!r}")
            out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


def write_kaldi_map(path: PathLike, items: Mapping[str, str]) -> None:
    """Write sorted by key (Kaldi data dirs are sorted), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for key in sorted(items):
            f.write(f"{key} {items[key]}\n")
    os.replace(tmp, path)
