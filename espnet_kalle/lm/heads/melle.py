"""MELLE's head (Meng et al., 2024, "Autoregressive Speech Synthesis without Vector Quantization"), on Flow-VAE latents.

Latent sampling module: a linear layer predicts (mu, log sigma^2) per frame, z = mu + sigma eps is sampled with the
reparameterisation trick, and a residual MLP maps z to the target space, y_hat = z + MLP(z). MELLE predicts
mel-spectrogram frames; here the target space is the Flow-VAE latent (its posterior mean), so the comparison with
KALL-E keeps data, backbone and decoder fixed. The post-net of MELLE is left out (the Flow-VAE decoder follows).

Loss per frame, all from MELLE Sec. 3: L1 + L2 regression of y_hat to y; lambda_kl KL(N(mu, sigma^2) || N(y, I));
lambda_flux times the spectrogram-flux term -||mu_t - y_{t-1}||_1, which rewards change from the previous frame
(against over-smoothed, repetitive output); lambda_stop BCE of a stop classifier. Defaults are MELLE's weights.

Reduction factor r: one LM step predicts r frames (the linear outputs r (mu, log sigma^2) pairs, the MLP runs per
frame) and generation emits r frames per step. The LM input of a step is a projection of its r frames concatenated
(``KalleLM.audio_linear`` takes r x D inputs), MELLE's grouping of frames.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from espnet_kalle.lm.heads.base import HeadStep, OutputHead, frame_mask, guide_hidden, stop_bce_sum


class MelleHead(OutputHead):
    def __init__(
        self,
        hidden_size: int,
        latent_dim: int,
        reduction_factor: int = 1,
        mlp_size: Optional[int] = None,
        lambda_kl: float = 0.1,
        lambda_flux: float = 0.5,
        lambda_stop: float = 1.0,
        stop_pos_weight: float = 1.0,
    ):
        super().__init__(hidden_size, latent_dim)
        if reduction_factor < 1:
            raise ValueError(f"reduction_factor must be >= 1, got {reduction_factor}")
        self.frames_per_step = reduction_factor
        self.sampling_linear = nn.Linear(hidden_size, reduction_factor * 2 * latent_dim)
        mlp_size = mlp_size or 4 * latent_dim
        self.residual_mlp = nn.Sequential(nn.Linear(latent_dim, mlp_size), nn.ReLU(), nn.Linear(mlp_size, latent_dim))
        self.stop_linear = nn.Linear(hidden_size, 1)
        self.lambda_kl, self.lambda_flux, self.lambda_stop = lambda_kl, lambda_flux, lambda_stop
        self.stop_pos_weight = stop_pos_weight

    @classmethod
    def frames_per_step_of(cls, conf: Dict[str, Any]) -> int:
        return int(conf.get("reduction_factor", 1))

    def distribution(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """hidden [.., H] -> (mu, log sigma^2) [.., r, D]."""
        out = self.sampling_linear(hidden).unflatten(-1, (self.frames_per_step, 2 * self.latent_dim))
        mu, log_var = out.split(self.latent_dim, dim=-1)
        return mu, log_var

    def to_target(self, z: torch.Tensor) -> torch.Tensor:
        """The residual MLP from the sampled latent to the target space."""
        return z + self.residual_mlp(z)

    def forward(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(y_hat of the mean path [.., r, D], stop logit [..]): a deterministic view for scoring."""
        mu, _ = self.distribution(hidden)
        return self.to_target(mu), self.stop_linear(hidden).squeeze(-1)

    def loss(self, hidden, target_mu, target_log_sigma, lengths, z_in=None, noise: Optional[torch.Tensor] = None
             ) -> Dict[str, Any]:
        batch, t_max, dim = target_mu.shape
        mu, log_var = self.distribution(hidden[:, :-1])  # [B, S, r, D]
        mu = mu.flatten(1, 2)[:, :t_max]
        log_var = log_var.flatten(1, 2)[:, :t_max]
        if noise is None:
            noise = torch.randn_like(mu)
        z = mu + (0.5 * log_var).exp() * noise
        y_hat = self.to_target(z)
        y = target_mu
        mask = frame_mask(lengths, t_max, y.dtype)
        err = y_hat - y
        reg_sum = ((err.abs().sum(-1) + err.pow(2).sum(-1)) * mask).sum()
        kl_sum = (0.5 * (log_var.exp() + (mu - y) ** 2 - 1 - log_var).sum(-1) * mask).sum()
        flux_sum = (-(mu[:, 1:] - y[:, :-1]).abs().sum(-1) * mask[:, 1:]).sum()
        n_steps = torch.div(lengths + self.frames_per_step - 1, self.frames_per_step, rounding_mode="floor")
        stop_logits = self.stop_linear(hidden).squeeze(-1)
        stop_sum = stop_bce_sum(stop_logits, n_steps, self.stop_pos_weight)
        n_frames = mask.sum().clamp(min=1)
        total = reg_sum + self.lambda_kl * kl_sum + self.lambda_flux * flux_sum + self.lambda_stop * stop_sum
        stats = dict(reg=reg_sum / n_frames, kl=kl_sum / n_frames, flux=flux_sum / n_frames,
                     stop_bce=stop_sum / batch)
        return {
            "loss": total / n_frames,
            "reg_sum": reg_sum, "kl_sum": kl_sum, "flux_sum": flux_sum, "stop_sum": stop_sum,
            "n_frames": n_frames,
            "stats": {k: v.detach() for k, v in stats.items()},
        }

    def predict(self, hidden: torch.Tensor, config: Any, batch: int) -> HeadStep:
        stop = torch.sigmoid(self.stop_linear(hidden[:batch]).squeeze(-1)) > config.stop_probability
        mu, log_var = self.distribution(guide_hidden(hidden, batch, config.guidance_weight))
        return HeadStep(stop=stop, params=(mu, log_var))

    def sample(self, step: HeadStep, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        mu, log_var = step.params
        return self.to_target(mu + temperature * (0.5 * log_var).exp() * noise)
