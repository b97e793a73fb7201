"""Saving and loading tensors safely: atomic writes, ``weights_only`` loads, errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from espnet_kalle.atomic import atomic_path


def save_atomic(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves a half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_weights(path: str | Path, what: str = "checkpoint", mmap: bool = False) -> Any:
    """torch.load(weights_only=True) on CPU with clear errors for missing and unreadable files.

    ``mmap`` maps the tensors instead of reading them (for looking at shapes of large files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - truncated/foreign files raise many exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(
            f"{path} is not a readable {what} (weights-only load failed: corrupt, not a model file, or trainer "
            f"state such as ESPnet's checkpoint.pth; use a model file such as latest.pth): {first}"
        ) from exc


def load_state_dict(path: str | Path, what: str = "model file", mmap: bool = False) -> Dict[str, Any]:
    """A model state dict from a file: a bare state dict, or ESPnet/Lightning style ``{"model": state_dict}``."""
    state = load_weights(path, what, mmap)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def load_strict(model: torch.nn.Module, state: dict, source: str, target: str) -> None:
    """Load ``state`` into ``model`` only if names and shapes match exactly; otherwise say what differs.

    ESPnet itself loads with strict=False, so a config/checkpoint mismatch would otherwise decode noise silently.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match {target}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad_shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if bad_shapes:
        k = bad_shapes[0]
        raise ValueError(
            f"{source}: {len(bad_shapes)} tensors differ in shape from {target}, "
            f"e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        )
    model.load_state_dict(state, strict=True)
