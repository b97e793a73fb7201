"""Shared pieces of the recipe tests: a copy of egs/kalle/tts1 to run in and the environment of a run."""

import os
import shutil
import sys
from pathlib import Path

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
    shutil.copytree(RECIPE, dst, symlinks=True, ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "*.log"))
    return dst
