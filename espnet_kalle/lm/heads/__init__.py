"""Per-step output heads of KalleLM, selected by name (the "kalle" model's ``head`` option)."""

from __future__ import annotations

from typing import Any, Dict, Type

from espnet_kalle.lm.heads.base import HeadStep, OutputHead
from espnet_kalle.lm.heads.energy_distance import EnergyDistanceHead
from espnet_kalle.lm.heads.gaussian_kl import GaussianKLHead
from espnet_kalle.lm.heads.gaussian_mixture import GaussianMixtureHead
from espnet_kalle.lm.heads.melle import MelleHead

HEADS: Dict[str, Type[OutputHead]] = {
    "gaussian_kl": GaussianKLHead,  # KALL-E (default)
    "melle": MelleHead,  # MELLE: regression + KL + flux + stop BCE, reduction factor r
    "energy_distance": EnergyDistanceHead,  # SLED: generalized energy distance + stop BCE
    "gaussian_mixture": GaussianMixtureHead,  # KALL-E's KL with K Gaussians + stop BCE
}


def build_head(name: str, hidden_size: int, latent_dim: int, **conf: Any) -> OutputHead:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name](hidden_size, latent_dim, **conf)


def head_frames_per_step(name: str, conf: Dict[str, Any]) -> int:
    """Frames one LM step predicts with this head and options (known before the head is built)."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    return HEADS[name].frames_per_step_of(conf)


__all__ = [
    "HEADS", "HeadStep", "OutputHead", "build_head", "head_frames_per_step",
    "GaussianKLHead", "GaussianMixtureHead", "MelleHead", "EnergyDistanceHead",
]
