"""KALL-E's head (the default): next-distribution prediction N(mu, sigma) trained with KL to the Flow-VAE posterior."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch

from espnet_kalle.lm.heads.base import HeadStep, OutputHead
from espnet_kalle.lm.next_distribution import EndDistribution, next_distribution_loss


class GaussianKLHead(OutputHead):
    """One linear layer ``distribution_linear`` -> (mu, log_sigma), as in the release (checkpoint names unchanged).

    Loss: KALL-E's sum_t KL(q_t || p_t) + lambda_end KL(N_end || p_{T+1}) (``next_distribution_loss``). Generation
    samples z = mu + tau sigma eps and stops when KL(p_t || N_end) / D < ``config.stop_threshold``; guidance acts on
    the mean, as the paper's CFG variant.
    """

    def __init__(self, hidden_size: int, latent_dim: int, lambda_end: float = 1.0, end_mean: float = 1.0,
                 end_log_sigma: float = 1.0):
        super().__init__(hidden_size, latent_dim)
        self.distribution_linear = torch.nn.Linear(hidden_size, 2 * latent_dim)
        self.lambda_end = lambda_end
        self.end = EndDistribution(end_mean, end_log_sigma)

    def forward(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.distribution_linear(hidden).split(self.latent_dim, dim=-1)
        return mu, log_sigma

    def point(self, hidden: torch.Tensor) -> torch.Tensor:
        """The predicted mean [.., D]: the frame generation emits at temperature 0."""
        return self(hidden)[0]

    @property
    def noise_shape(self) -> Tuple[int, ...]:
        return (self.latent_dim,)  # one frame; the exact draws of the pre-head generation loop

    def loss(self, hidden, target_mu, target_log_sigma, lengths, z_in=None, noise: Optional[Any] = None
             ) -> Dict[str, Any]:
        pred_mu, pred_log_sigma = self(hidden)
        terms = next_distribution_loss(pred_mu, pred_log_sigma, target_mu, target_log_sigma, lengths,
                                       self.lambda_end, self.end)
        terms["stats"] = dict(
            kl_frame=terms["kl_per_frame"].detach(),
            kl_end=terms["kl_end"].detach(),
            pred_log_sigma=pred_log_sigma.detach().mean(),
        )
        return terms

    def predict(self, hidden: torch.Tensor, config: Any, batch: int) -> HeadStep:
        mu, log_sigma = self(hidden)
        if config.guidance_weight > 0:
            mu = mu[:batch] + config.guidance_weight * (mu[:batch] - mu[batch:])
            log_sigma = log_sigma[:batch]
        stop = config.end.kl_from(mu, log_sigma) < config.stop_threshold
        return HeadStep(stop=stop, params=(mu, log_sigma))

    def sample(self, step: HeadStep, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        mu, log_sigma = step.params
        return (mu + temperature * log_sigma.exp() * noise)[:, None]
