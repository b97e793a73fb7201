"""Next-distribution prediction: the KL losses of the paper and the stop rule (the head: ``heads/gaussian_kl.py``).

For every frame the LM predicts p_t = N(mu_t, sigma_t) of the next latent. Training minimises
KL(q(z_t | x) || p_t) against the Flow-VAE posterior q, summed over frames, plus
lambda_end * KL(N_end || p_{T+1}) for the step after the last frame, where N_end = N(1, e) (scale e)
is a fixed "end of speech" distribution. Generation stops when KL(p_t || N_end) / D falls below a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch

END_MEAN = 1.0
END_LOG_SIGMA = 1.0  # N(1, e): standard deviation e


def gaussian_kl(mu_q: torch.Tensor, ls_q: torch.Tensor, mu_p: torch.Tensor, ls_p: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mu_q, e^ls_q) || N(mu_p, e^ls_p)) of diagonal Gaussians (log sigmas given)."""
    return ls_p - ls_q + (torch.exp(2 * ls_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * ls_p)) - 0.5


@dataclass(frozen=True)
class EndDistribution:
    mean: float = END_MEAN
    log_sigma: float = END_LOG_SIGMA

    def kl_from(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """KL(p || N_end) averaged over the latent dimension (the release's stop statistic)."""
        end_mu = torch.full_like(mu, self.mean)
        end_ls = torch.full_like(log_sigma, self.log_sigma)
        return gaussian_kl(mu, log_sigma, end_mu, end_ls).mean(dim=-1)

    def kl_to(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """KL(N_end || p) summed over the latent dimension (the training end term)."""
        end_mu = torch.full_like(mu, self.mean)
        end_ls = torch.full_like(log_sigma, self.log_sigma)
        return gaussian_kl(end_mu, end_ls, mu, log_sigma).sum(dim=-1)


def next_distribution_loss(
    pred_mu: torch.Tensor,
    pred_log_sigma: torch.Tensor,
    target_mu: torch.Tensor,
    target_log_sigma: torch.Tensor,
    lengths: torch.Tensor,
    lambda_end: float = 1.0,
    end: EndDistribution = EndDistribution(),
) -> Dict[str, torch.Tensor]:
    """The paper's objective on a padded batch.

    pred_*: [B, T_max + 1, D] (the extra step predicts the end); target_*: [B, T_max, D]; lengths: [B].
    Per utterance: sum_t KL(q_t || p_t) + lambda_end * KL(N_end || p_{T+1}). The batch loss divides the sum over
    utterances by the number of valid frames, a constant per batch, so relative weights stay the paper's.
    Returns ``loss`` and each term, also per frame for reporting.
    """
    batch, t_max = target_mu.shape[:2]
    steps = torch.arange(t_max, device=lengths.device)
    frame_mask = (steps[None, :] < lengths[:, None]).to(target_mu.dtype)
    kl_frames = gaussian_kl(target_mu, target_log_sigma, pred_mu[:, :t_max], pred_log_sigma[:, :t_max]).sum(-1)
    kl_frames_sum = (kl_frames * frame_mask).sum()
    index = lengths.long().view(batch, 1, 1).expand(batch, 1, pred_mu.shape[-1])
    end_mu, end_ls = pred_mu.gather(1, index).squeeze(1), pred_log_sigma.gather(1, index).squeeze(1)
    kl_end_sum = end.kl_to(end_mu, end_ls).sum()
    n_frames = frame_mask.sum().clamp(min=1)
    return {
        "loss": (kl_frames_sum + lambda_end * kl_end_sum) / n_frames,
        "kl_frames_sum": kl_frames_sum,
        "kl_end_sum": kl_end_sum,
        "kl_per_frame": kl_frames_sum / n_frames,
        "kl_end": kl_end_sum / batch,
        "n_frames": n_frames,
    }
