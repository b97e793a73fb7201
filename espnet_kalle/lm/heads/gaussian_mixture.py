"""A mixture-of-Gaussians next-distribution head: KALL-E's objective with K diagonal Gaussians instead of one.

Why: a single Gaussian must cover every way the next 80 ms can go (the same phone held on, or the next one begun),
so its mean is a blend of them and its sigma is wide; drawn or taken as the mean, such frames are unlike the
posterior samples the LM was trained on, and free running drifts (issue 25). A mixture (a mixture density network,
Bishop 1994) can give each way its own component: generation picks one, then draws near it.

Training keeps the paper's KL to the Flow-VAE posterior q. KL(q || p) has no closed form for a mixture p; Jensen's
inequality over the components gives a closed-form upper bound (the variational approximation of Hershey and Olsen,
2007):

    KL(q || sum_k pi_k p_k) <= -log sum_k pi_k exp(-KL(q || p_k))

which is exact when q sits inside one component (the posterior is much narrower than the LM's spread) and equal to
the ``gaussian_kl`` head's KL for K = 1. It has no sampling noise, unlike a sampled estimate of E_q[-log p(z)],
whose gradient is noisy when the components are only a few posterior sigmas wide. The end of speech is a stop
classifier (BCE, as MELLE and SLED), because KALL-E's stop rule compares one Gaussian with N_end.

The component means and log-sigmas are a shared centre (``distribution_linear``, the ``gaussian_kl`` head's layer
and name, so an ``--init_param`` of a KALL-E LM loads it) plus small per-component offsets: a warm-started head
begins as the single Gaussian it was, with the components slightly apart so that they can specialise.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from espnet_kalle.lm.heads.base import HeadStep, OutputHead, frame_mask, guide_hidden, stop_bce_sum
from espnet_kalle.lm.next_distribution import gaussian_kl


def standard_normal_to_uniform(noise: torch.Tensor) -> torch.Tensor:
    """Phi(noise): the one standard normal draw per step that picks the component, as a uniform in (0, 1)."""
    return 0.5 * (1 + torch.erf(noise / math.sqrt(2)))


class GaussianMixtureHead(OutputHead):
    def __init__(self, hidden_size: int, latent_dim: int, num_components: int = 4, lambda_stop: float = 1.0,
                 stop_pos_weight: float = 1.0, min_log_sigma: float = -5.0, offset_init_std: float = 0.01):
        super().__init__(hidden_size, latent_dim)
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.num_components = num_components
        self.distribution_linear = nn.Linear(hidden_size, 2 * latent_dim)
        self.component_linear = nn.Linear(hidden_size, num_components * 2 * latent_dim)
        self.weight_linear = nn.Linear(hidden_size, num_components)
        self.stop_linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.component_linear.weight, std=offset_init_std)
        nn.init.normal_(self.component_linear.bias, std=10 * offset_init_std)
        nn.init.zeros_(self.weight_linear.weight)
        nn.init.zeros_(self.weight_linear.bias)
        self.lambda_stop, self.stop_pos_weight = lambda_stop, stop_pos_weight
        self.min_log_sigma = min_log_sigma

    @property
    def noise_shape(self) -> Tuple[int, ...]:
        return (self.latent_dim + 1,)  # the component pick, then the frame's draw

    def mixture(self, hidden: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [.., K], mu [.., K, D], log_sigma [.., K, D]) of the next frame."""
        centre = self.distribution_linear(hidden)[..., None, :]
        offsets = self.component_linear(hidden).unflatten(-1, (self.num_components, 2 * self.latent_dim))
        mu, log_sigma = (centre + offsets).split(self.latent_dim, dim=-1)
        return self.weight_linear(hidden), mu, log_sigma.clamp(min=self.min_log_sigma)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Stop logits [..] (the mixture: ``mixture``)."""
        return self.stop_linear(hidden).squeeze(-1)

    def point(self, hidden: torch.Tensor) -> torch.Tensor:
        """The frame [.., D] generation emits at temperature 0: the mean of the most probable component."""
        logits, mu, _ = self.mixture(hidden)
        pick = logits.argmax(-1)[..., None, None].expand(*mu.shape[:-2], 1, mu.shape[-1])
        return mu.gather(-2, pick).squeeze(-2)

    def loss(self, hidden, target_mu, target_log_sigma, lengths, z_in=None, noise: Optional[Any] = None
             ) -> Dict[str, Any]:
        """The KL bound per frame (``z_in`` is not used: the bound compares with the posterior itself)."""
        batch, t_max, _ = target_mu.shape
        logits, mu, log_sigma = self.mixture(hidden[:, :t_max])
        kl_components = gaussian_kl(target_mu[..., None, :], target_log_sigma[..., None, :], mu, log_sigma).sum(-1)
        kl_bound = -torch.logsumexp(torch.log_softmax(logits, dim=-1) - kl_components, dim=-1)
        mask = frame_mask(lengths, t_max, target_mu.dtype)
        kl_sum = (kl_bound * mask).sum()
        stop_sum = stop_bce_sum(self(hidden), lengths.long(), self.stop_pos_weight)
        n_frames = mask.sum().clamp(min=1)
        top_share = (torch.softmax(logits.detach(), dim=-1).max(-1).values * mask).sum() / n_frames
        stats = dict(kl_frame=kl_sum / n_frames, stop_bce=stop_sum / batch, top_component=top_share,
                     pred_log_sigma=(log_sigma.mean((-1, -2)) * mask).sum() / n_frames)
        return {
            "loss": (kl_sum + self.lambda_stop * stop_sum) / n_frames,
            "kl_frames_sum": kl_sum, "stop_sum": stop_sum, "n_frames": n_frames,
            "stats": {k: v.detach() for k, v in stats.items()},
        }

    def predict(self, hidden: torch.Tensor, config: Any, batch: int) -> HeadStep:
        stop = torch.sigmoid(self(hidden[:batch])) > config.stop_probability
        return HeadStep(stop=stop, params=self.mixture(guide_hidden(hidden, batch, config.guidance_weight)))

    def sample(self, step: HeadStep, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        """Pick a component from softmax(logits / temperature) (the most probable at 0), then draw
        mu_k + temperature * sigma_k * eps, as the ``gaussian_kl`` head scales its sigma."""
        logits, mu, log_sigma = step.params
        if temperature > 0:
            cumulative = torch.softmax(logits / temperature, dim=-1).cumsum(-1)
            u = standard_normal_to_uniform(noise[:, :1]).to(cumulative.dtype)
            pick = torch.searchsorted(cumulative.contiguous(), u).clamp(max=self.num_components - 1)
        else:
            pick = logits.argmax(-1, keepdim=True)
        index = pick[..., None].expand(-1, 1, self.latent_dim)
        mu_k, log_sigma_k = mu.gather(1, index)[:, 0], log_sigma.gather(1, index)[:, 0]
        return (mu_k + temperature * log_sigma_k.exp() * noise[:, 1:])[:, None]
