"""A tiny real-speech corpus made by Debian's flite (2 voices x 3 sentences, 16 kHz), built once per session."""

import shutil
import subprocess
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from espnet_kalle.audio import load_audio, save_audio

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things.",
    "We will meet at the station at seven in the morning.",
]
VOICES = ("slt", "rms")


class Corpus:
    def __init__(self, root: Path):
        self.root = root
        self.wav: Dict[str, Path] = {}
        self.text: Dict[str, str] = {}
        self.spk: Dict[str, str] = {}

    def audio(self, utt: str) -> np.ndarray:
        return load_audio(self.wav[utt], 16000)

    def write_data_dir(self, d: Path, utts) -> Path:
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t, open(d / "utt2spk", "w") as s:
            for u in utts:
                w.write(f"{u} {self.wav[u]}\n")
                t.write(f"{u} {self.text[u]}\n")
                s.write(f"{u} {self.spk[u]}\n")
        return d


@pytest.fixture(scope="session")
def flite_corpus(tmp_path_factory) -> Corpus:
    if shutil.which("flite") is None:
        pytest.skip("Debian package 'flite' is not installed (apt-get install flite)")
    c = Corpus(tmp_path_factory.mktemp("flite"))
    for v in VOICES:
        for i, s in enumerate(SENTENCES):
            u = f"{v}_{i}"
            p = c.root / f"{u}.wav"
            subprocess.run(["flite", "-voice", v, "-t", s, "-o", str(p)], check=True, capture_output=True)
            c.wav[u], c.text[u], c.spk[u] = p, s, v
    return c


@pytest.fixture(scope="session")
def white_noise(tmp_path_factory) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(2 * 16000)).astype(np.float32)
    save_audio(tmp_path_factory.mktemp("noise") / "noise.wav", x, 16000)
    return x
