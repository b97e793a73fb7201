"""Training inputs closer to what the LM reads when it runs on its own samples (exposure bias).

Teacher forcing feeds the LM posterior samples of the true history; free running feeds it its own draws, which
are wider and blurrier (its predicted sigma is several times the posterior's). Two ways to close that gap, both
applied to the LM's *inputs* only (the targets stay the posterior):

- scheduled sampling in two passes ("Scheduled Sampling for Transformers", arXiv 1906.07651): a no-grad pass
  predicts every frame from the true history, and a share of the input frames is replaced by draws from those
  predictions, the share rising over training;
- history noise (CALM / Pocket TTS, arXiv 2509.06926; 2411.18447): Gaussian noise at a random level per
  utterance, relative to the spread of the latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class ScheduledSampling:
    """``max_share`` of the input frames come from the model after ``start_step + ramp_steps`` training steps
    (linear ramp from 0 after ``start_step``); draws are ``mu + temperature * sigma * eps``."""

    max_share: float = 0.5
    start_step: int = 500
    ramp_steps: int = 1000
    temperature: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_share <= 1.0:
            raise ValueError(f"scheduled_sampling.max_share must be in [0, 1], got {self.max_share}")
        if self.start_step < 0 or self.ramp_steps < 0:
            raise ValueError("scheduled_sampling.start_step and ramp_steps must be >= 0")
        if self.temperature < 0:
            raise ValueError(f"scheduled_sampling.temperature must be >= 0, got {self.temperature}")

    def share(self, step: int) -> float:
        """The share of input frames replaced at training step ``step``."""
        if step < self.start_step:
            return 0.0
        if self.ramp_steps == 0:
            return self.max_share
        return self.max_share * min(1.0, (step - self.start_step) / self.ramp_steps)


def mix_own_predictions(z_in: torch.Tensor, pred_mu: torch.Tensor, pred_log_sigma: torch.Tensor, share: float,
                        temperature: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``z_in`` [B, T, D] with each frame replaced, with probability ``share``, by a draw from the prediction made
    for that frame (``pred_*`` [B, >= T, D]: position t predicts frame t, as ``KalleLM.forward`` returns them)."""
    frames = z_in.shape[1]
    if share <= 0 or frames == 0:
        return z_in
    mu, log_sigma = pred_mu[:, :frames].to(z_in.dtype), pred_log_sigma[:, :frames].to(z_in.dtype)
    noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    own = mu + temperature * log_sigma.exp() * noise
    replace = torch.rand(z_in.shape[:2], generator=generator, device=z_in.device) < share
    return torch.where(replace[..., None], own, z_in)


def corrupt_history(z_in: torch.Tensor, lengths: torch.Tensor, max_level: float,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``z_in`` [B, T, D] plus noise of level ~ U(0, ``max_level``) per utterance, times the standard deviation of
    the batch's valid input frames (so the level means the same for any codec's latent scale)."""
    if max_level <= 0 or z_in.shape[1] == 0:
        return z_in
    valid = torch.arange(z_in.shape[1], device=z_in.device)[None] < lengths.to(z_in.device)[:, None]
    scale = z_in[valid].detach().std() if int(valid.sum()) > 1 else z_in.new_ones(())
    level = torch.rand(z_in.shape[0], 1, 1, generator=generator, device=z_in.device, dtype=z_in.dtype) * max_level
    noise = torch.randn(z_in.shape, generator=generator, device=z_in.device, dtype=z_in.dtype)
    return z_in + level * scale * noise
