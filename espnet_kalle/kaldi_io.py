"""Kaldi-style ``key value`` files (wav.scp, text, utt2spk, ...): one reader and one writer for the project, and
the one reader of ``wav.scp`` (``read_wav_scp``: its values must be audio this project can open)."""

from __future__ import annotations

import os
import re
from typing import Dict, Mapping, Union

from espnet_kalle.atomic import write_text_atomic

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


_CAT_PIPE = re.compile(r"^cat\s+(\S+)\s*\|$")
_ARK_OFFSET = re.compile(r"\.ark:\d+$")


def read_wav_scp(path: PathLike, commands: bool = False) -> Dict[str, str]:
    """``utt_id audio`` lines -> {utt_id: audio} in file order (``read_kaldi_map``'s rules: no duplicate ids).

    ``audio`` is a path (relative ones stay relative to the working directory, as in Kaldi recipes) or the
    trivial ``cat PATH |``, read as PATH. Other commands ending in ``|`` are kept only with ``commands`` (the
    stage that formats a corpus runs them to write files); everywhere else they, and ark offsets, are refused
    with a hint, because running shell commands from a data file is not their job.
    """
    entries = read_kaldi_map(path)
    for utt_id, target in entries.items():
        if not target:
            raise ValueError(f"{path}: expected 'utt_id path', got {utt_id!r} alone")
        cat = _CAT_PIPE.match(target)
        if cat is not None:
            entries[utt_id] = cat.group(1)
        elif target.endswith("|") and not commands:
            raise ValueError(
                f"{path}: {utt_id}: pipe commands are not supported ({target!r}); write the audio to files first "
                "(e.g. ESPnet's scripts/audio/format_wav_scp.sh) and list those"
            )
        elif _ARK_OFFSET.search(target):
            raise ValueError(f"{path}: {utt_id}: ark offsets are not supported ({target!r}); list one audio file "
                             "per line")
    return entries


def write_kaldi_map(path: PathLike, items: Mapping[str, str]) -> None:
    """Write sorted by key (Kaldi data dirs are sorted), atomically."""
    write_text_atomic(path, "".join(f"{key} {items[key]}\n" for key in sorted(items)))
