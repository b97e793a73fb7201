"""The contract every console script of the project keeps (README, "Exit codes").

0 ok, 2 bad input (text, voice, prompt, audio, an option, an output path), 3 model missing or unreadable; a failure
is one line on stderr, ``PROG: message``, never a traceback. Scripts check their arguments and output paths before
loading a model (seconds), parse with ``ArgumentParser`` (a usage error is an ``InputError``) and run their body
under ``run_main``, which maps the library's errors (``espnet_kalle.errors``) to the codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from espnet_kalle.errors import InputError, ModelError

EXIT_OK, EXIT_INPUT, EXIT_MODEL = 0, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors raise ``InputError`` (one line, exit 2) instead of printing the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(message)


def run_main(prog: str, body: Callable[[], int], model: str = "model") -> int:
    """``body()``'s exit code, or the contract's code and one line on stderr for the library's errors.

    ``model``: what a ``ModelError`` could not load, as the message says it ("the codec", "the released weights").
    """
    try:
        return body()
    except ModelError as error:
        return fail(prog, f"cannot load {model}: {error}", EXIT_MODEL)
    except InputError as error:
        return fail(prog, str(error), EXIT_INPUT)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else EXIT_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def check_output_file(path: Path, flag: str = "-o") -> Path:
    """``path`` can be created or replaced: it is not a directory, and its directory exists and is writable."""
    if path.is_dir():
        raise InputError(f"{flag} {path} is a directory; give a file name")
    _check_writable_dir(path.parent, f"{flag} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path} is not writable")
    return path


def check_output_dir(path: Path, flag: str = "--out") -> Path:
    """``path`` is a writable directory or can be made one (its nearest existing ancestor is a writable dir)."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} exists and is not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    _check_writable_dir(existing, f"{flag} {path}")
    return path


def _check_writable_dir(directory: Path, what: str) -> None:
    directory = directory if str(directory) else Path(".")
    if not directory.exists():
        raise InputError(f"{what}: output directory does not exist: {directory}")
    if not directory.is_dir():
        raise InputError(f"{what}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"{what}: directory {directory} is not writable")


def check_device(name: str, int8: Optional[bool] = None) -> str:
    """``--device`` checked before loading: a device this machine lacks is bad input, not a traceback."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise InputError(f"--device {name}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: torch finds no CUDA device on this machine")
    if int8 and device.type != "cpu":
        raise InputError("--int8 is for --device cpu (int8 weights speed up CPU generation only)")
    return str(device)
