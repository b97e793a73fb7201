"""Shared pieces of the recipe tests: a copy of egs/kalle/tts1 to run in and the environment of a run."""

import os
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "kalle" / "tts1"


def recipe_env(extra=None):
    """Environment of a recipe run: the venv's python and console scripts first, one thread per process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("cmd_backend", None)
    env.update(extra or {})
    return env


def copy_recipe(dst: Path) -> Path:
    """The recipe dir without any data/dump/exp, so runs do not touch the repository."""
    ignore = shutil.ignore_patterns("data", "dump", "exp", "downloads", "*.log")
    shutil.copytree(RECIPE, dst, symlinks=True, ignore=ignore)
    return dst


@pytest.fixture
def prompt_halves_dir(tmp_path):
    """A Kaldi dir of two utterances, the halves of a real 3 s recording with their words (for the probes)."""
    wav, rate = sf.read(REPO / "tests" / "data" / "prompt_70_3s.wav", dtype="float32")
    half = wav.size // 2
    root = tmp_path / "halves"
    root.mkdir()
    for utt, piece in (("a-1", wav[:half]), ("b-1", wav[half:])):
        sf.write(root / f"{utt}.wav", piece, rate)
    (root / "wav.scp").write_text(f"a-1 {root / 'a-1.wav'}\nb-1 {root / 'b-1.wav'}\n", encoding="utf-8")
    (root / "text").write_text("a-1 one division of la force.\nb-1 is called the court.\n", encoding="utf-8")
    (root / "utt2spk").write_text("a-1 a\nb-1 b\n", encoding="utf-8")
    return root
