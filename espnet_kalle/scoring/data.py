"""The two sides of a scoring run: a Kaldi-style reference dir and a system's decode output.

Reference dir: ``wav.scp``, ``text`` and ``utt2spk`` (ESPnet's ``data/<set>``). Hypothesis dir (one system): its
own ``wav.scp``, else ESPnet tts_inference's ``wav/<utt>.wav``, else ``<utt>.wav`` files at the top; optional
``utt2spk`` (the voice asked for when it differs from the reference speaker, e.g. a preset) and ``rtf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

from espnet_kalle.kaldi_io import read_kaldi_map, read_wav_scp
from espnet_kalle.scoring.rtf import Timing, read_rtf_file

PathLike = Union[str, Path]


def _resolve(wav_path: str, base: Path) -> str:
    """wav.scp paths are relative to the recipe dir (the cwd) as in Kaldi; fall back to the scp's own dir."""
    p = Path(wav_path)
    if p.is_absolute() or p.exists():
        return str(p)
    alt = base / p
    return str(alt) if alt.exists() else str(p)


@dataclass
class RefSet:
    wavs: Dict[str, str]
    text: Dict[str, str]
    utt2spk: Dict[str, str]

    @property
    def utts(self) -> List[str]:
        return list(self.wavs)


def load_ref_dir(ref_dir: PathLike) -> RefSet:
    d = Path(ref_dir)
    for name in ("wav.scp", "text"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d}: no {name} (a reference dir needs wav.scp, text and utt2spk)")
    wavs = {u: _resolve(p, d) for u, p in read_wav_scp(d / "wav.scp").items()}
    text = read_kaldi_map(d / "text")
    spk_file = d / "utt2spk"
    utt2spk = read_kaldi_map(spk_file) if spk_file.is_file() else {u: u for u in wavs}
    return RefSet(wavs=wavs, text=text, utt2spk=utt2spk)


@dataclass
class HypSet:
    name: str
    wavs: Dict[str, str]
    utt2spk: Dict[str, str] = field(default_factory=dict)  # voice asked for, when the system says so
    timings: Dict[str, Timing] = field(default_factory=dict)


def load_hyp_dir(hyp_dir: PathLike, name: Optional[str] = None, rtf_file: Optional[PathLike] = None) -> HypSet:
    d = Path(hyp_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such hypothesis dir")
    if (d / "wav.scp").is_file():
        wavs = {u: _resolve(p, d) for u, p in read_wav_scp(d / "wav.scp").items()}
    else:
        wav_dir = d / "wav" if (d / "wav").is_dir() else d
        wavs = {p.stem: str(p) for p in sorted(wav_dir.glob("*.wav"))}
    if not wavs:
        raise FileNotFoundError(f"{d}: no wav.scp, wav/*.wav or *.wav")
    utt2spk = read_kaldi_map(d / "utt2spk") if (d / "utt2spk").is_file() else {}
    rtf_path = Path(rtf_file) if rtf_file else d / "rtf"
    timings = read_rtf_file(rtf_path) if rtf_path.is_file() else {}
    return HypSet(name=name or d.name, wavs=wavs, utt2spk=utt2spk, timings=timings)
