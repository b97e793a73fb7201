"""The per-step output head interface shared by every objective the "kalle" model can be trained with.

The LM backbone turns ``[speaker][text][SEP][z_1 ..]`` into one hidden state per step; a head turns a hidden state
into the next frame(s) and an end-of-speech decision. Training and generation only talk to a head through this
interface, so KALL-E's Gaussian KL head and the MELLE / SLED comparison heads share the backbone, the ESPnet task and
the generation loop (KV cache, batching, streaming).

Generation is split in two calls so the loop can decide which items are still active (stop rule, min/max length)
before any noise is drawn: only active items consume their generator, which keeps batched == one-by-one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn


@dataclass
class HeadStep:
    """What a head predicted for one generation step: the stop flag [B] and whatever ``sample`` needs."""

    stop: torch.Tensor
    params: Tuple[torch.Tensor, ...]


def guide_hidden(hidden: torch.Tensor, batch: int, weight: float) -> torch.Tensor:
    """Classifier-free guidance on the LM state: h_c + w (h_c - h_u); ``hidden`` is [cond; uncond] when w > 0."""
    if weight > 0:
        return hidden[:batch] + weight * (hidden[:batch] - hidden[batch:])
    return hidden[:batch]


def frame_mask(lengths: torch.Tensor, t_max: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, t_max] 1 for valid frames."""
    steps = torch.arange(t_max, device=lengths.device)
    return (steps[None, :] < lengths[:, None]).to(dtype)


def stop_bce_sum(logits: torch.Tensor, n_steps: torch.Tensor, pos_weight: float = 1.0) -> torch.Tensor:
    """Summed BCE of a stop head over the valid steps 0..S (label 1 only at step S, the step after the last frame).

    The stop classifier is how MELLE (Meng et al., 2024) and SLED (Ma et al., 2025) end generation.
    logits [B, S_max + 1]; n_steps [B] = S (number of frame-emitting steps of each item).
    """
    steps = torch.arange(logits.shape[1], device=logits.device)
    labels = (steps[None, :] == n_steps[:, None]).to(logits.dtype)
    valid = (steps[None, :] <= n_steps[:, None]).to(logits.dtype)
    weight = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none", pos_weight=weight)
    return (bce * valid).sum()


class OutputHead(nn.Module):
    """Base class: hidden [.., H] -> next ``frames_per_step`` latent frames [.., r, D] and a stop decision.

    Subclasses implement:
      * ``loss(hidden [B, S+1, H], target_mu, target_log_sigma [B, T, D], lengths [B], z_in [B, T, D], noise=None)``
        -> dict with ``loss`` (normalised by the number of valid frames), ``n_frames`` and ``stats`` (detached
        scalars for ESPnet's reporter). Step s of ``hidden`` predicts frames s*r .. s*r + r - 1; step S (=ceil(T/r))
        predicts the end. ``noise`` fixes the head's random draws (tests).
      * ``predict(hidden [B or 2B, H], config, batch)`` -> HeadStep (handles classifier-free guidance).
      * ``sample(step, noise [B, *noise_shape], temperature)`` -> z [B, r, D].
      * optionally ``point(hidden [.., H])`` -> [.., D]: the frame the head emits at temperature 0, for probes that
        decode teacher-forced predictions.
    """

    frames_per_step: int = 1

    def __init__(self, hidden_size: int, latent_dim: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.latent_dim = latent_dim

    @classmethod
    def frames_per_step_of(cls, conf: Dict[str, Any]) -> int:
        """``frames_per_step`` of a head built with ``conf`` (the LM sizes its input projection from it)."""
        return 1

    @property
    def noise_shape(self) -> Tuple[int, ...]:
        """Shape of the per-item standard normal noise one generation step consumes."""
        return (self.frames_per_step, self.latent_dim)

    def loss(
        self,
        hidden: torch.Tensor,
        target_mu: torch.Tensor,
        target_log_sigma: torch.Tensor,
        lengths: torch.Tensor,
        z_in: torch.Tensor,
        noise: Optional[Any] = None,
    ) -> Dict[str, Any]:
        raise NotImplementedError

    def predict(self, hidden: torch.Tensor, config: Any, batch: int) -> HeadStep:
        raise NotImplementedError

    def sample(self, step: HeadStep, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        raise NotImplementedError

    def point(self, hidden: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no deterministic frame (it generates from noise)")
