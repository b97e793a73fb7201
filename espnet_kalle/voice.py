"""A voice: what conditions generation besides the text. Presets, clones and adapted (TTT) voices are all one type.

- ``speaker``: a speaker latent (a preset sampled from N(0, I), or the encoder's latent of a reference recording);
- ``prompt_ids`` + ``prompt_latents``: a prompt that every sentence continues (clones: their recording; presets: a
  prompt the model spoke itself in the preset's voice; the released model's only way to clone);
- ``lm_state``: LM weights adapted to one prompt by test-time training (the base model is never modified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_kalle.checkpoint import load_weights, save_atomic
from espnet_kalle.errors import InputError


@dataclass(eq=False)  # identity equality: comparing tensor fields elementwise would raise
class Voice:
    name: str
    speaker: Optional[torch.Tensor] = None
    prompt_ids: Optional[torch.Tensor] = None
    prompt_latents: Optional[torch.Tensor] = None
    lm_state: Optional[Dict[str, torch.Tensor]] = None
    description: str = ""
    seed: Optional[int] = None
    prompt_text: str = ""
    tags: Dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.lm_state is not None:
            return "adapted"
        if self.seed is None and (self.prompt_latents is not None or self.speaker is not None):
            return "cloned"  # from a recording; presets carry the seed of their speaker latent (and own prompt)
        return "preset"

    def save(self, path: str | Path) -> None:
        save_atomic(
            {
                "name": self.name, "speaker": self.speaker, "prompt_ids": self.prompt_ids,
                "prompt_latents": self.prompt_latents, "lm_state": self.lm_state, "description": self.description,
                "seed": self.seed, "prompt_text": self.prompt_text, "tags": dict(self.tags),
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> Voice:
        """A saved voice; a missing or unreadable file is the caller's bad input (``InputError``)."""
        try:
            data = load_weights(path, "voice file")
        except (OSError, ValueError) as error:
            raise InputError(str(error)) from error
        if not isinstance(data, dict) or "name" not in data:
            raise InputError(f"{path} is not a voice file")
        return cls(**{k: data.get(k) for k in ("name", "speaker", "prompt_ids", "prompt_latents", "lm_state")},
                   description=data.get("description") or "", seed=data.get("seed"),
                   prompt_text=data.get("prompt_text") or "", tags=dict(data.get("tags") or {}))


def load_voice_dir(directory: Path) -> List[Voice]:
    """Every ``*.voice.pt`` in a directory, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted((Voice.load(p) for p in directory.glob("*.voice.pt")), key=lambda v: v.name)
