"""SLED's head (Ma et al., 2025, "Efficient Speech Language Modeling via Energy Distance in Continuous Latent Space").

A small residual MLP generator x = g(h, eps): the LM state h is the input, and every block's AdaLN (shift, scale,
gate) is modulated by Gaussian noise eps, so one forward pass draws one sample of the next latent. It is trained with
the generalized energy distance, estimated with two samples per step:

    ||x1 - y||^a + ||x2 - y||^a - ||x1 - x2||^a        (a = ``alpha`` in (0, 2), 1 by default)

The first two terms pull samples to the target; the last (repulsion) term keeps them apart, which is what makes the
score strictly proper: without it the head collapses to a point (the conditional median), i.e. plain regression.
The target is a posterior sample of the Flow-VAE (``target="sample"``, the teacher-forcing input) or its mean.
A stop classifier trained with BCE ends generation; classifier-free guidance acts on the hidden state.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from espnet_kalle.lm.heads.base import HeadStep, OutputHead, frame_mask, guide_hidden, stop_bce_sum


class AdaLNBlock(nn.Module):
    """x + gate * MLP(LN(x) * (1 + scale) + shift), with (shift, scale, gate) from the noise embedding."""

    def __init__(self, size: int):
        super().__init__()
        self.norm = nn.LayerNorm(size, elementwise_affine=False)
        self.modulation = nn.Linear(size, 3 * size)
        self.mlp = nn.Sequential(nn.Linear(size, size), nn.SiLU(), nn.Linear(size, size))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(cond).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class EnergyDistanceHead(OutputHead):
    def __init__(
        self,
        hidden_size: int,
        latent_dim: int,
        mlp_size: Optional[int] = None,
        num_blocks: int = 2,
        noise_dim: Optional[int] = None,
        alpha: float = 1.0,
        target: str = "sample",
        lambda_stop: float = 1.0,
        stop_pos_weight: float = 1.0,
    ):
        super().__init__(hidden_size, latent_dim)
        if not 0 < alpha < 2:
            raise ValueError(f"the energy distance needs 0 < alpha < 2, got {alpha}")
        if target not in ("sample", "mean"):
            raise ValueError(f"target must be 'sample' or 'mean', got {target!r}")
        mlp_size = mlp_size or hidden_size
        self.noise_dim = noise_dim or latent_dim
        self.input_linear = nn.Linear(hidden_size, mlp_size)
        self.noise_embed = nn.Sequential(nn.Linear(self.noise_dim, mlp_size), nn.SiLU())
        self.blocks = nn.ModuleList(AdaLNBlock(mlp_size) for _ in range(num_blocks))
        self.out_norm = nn.LayerNorm(mlp_size)
        self.out_linear = nn.Linear(mlp_size, latent_dim)
        self.stop_linear = nn.Linear(hidden_size, 1)
        self.alpha, self.target = alpha, target
        self.lambda_stop, self.stop_pos_weight = lambda_stop, stop_pos_weight

    @property
    def noise_shape(self) -> Tuple[int, ...]:
        return (self.noise_dim,)

    def generate(self, hidden: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One sample per row: hidden [.., H], noise [.., noise_dim] -> [.., D]."""
        x = self.input_linear(hidden)
        cond = self.noise_embed(noise)
        for block in self.blocks:
            x = block(x, cond)
        return self.out_linear(self.out_norm(x))

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """||a - b||^alpha over the last dim (a tiny floor keeps the gradient finite at a == b)."""
        return ((a - b).pow(2).sum(-1) + 1e-12).sqrt() ** self.alpha

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Stop logits [..] (the generator needs noise: use ``generate``)."""
        return self.stop_linear(hidden).squeeze(-1)

    def loss(self, hidden, target_mu, target_log_sigma, lengths, z_in=None,
             noise: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Dict[str, Any]:
        batch, t_max, _ = target_mu.shape
        h = hidden[:, :t_max]
        if noise is None:
            shape = (*h.shape[:-1], self.noise_dim)
            noise = (torch.randn(shape, dtype=h.dtype, device=h.device),
                     torch.randn(shape, dtype=h.dtype, device=h.device))
        x1, x2 = self.generate(h, noise[0]), self.generate(h, noise[1])
        y = z_in if self.target == "sample" and z_in is not None else target_mu
        mask = frame_mask(lengths, t_max, y.dtype)
        attraction_sum = ((self.distance(x1, y) + self.distance(x2, y)) * mask).sum()
        repulsion_sum = (self.distance(x1, x2) * mask).sum()
        n_steps = lengths.long()
        stop_sum = stop_bce_sum(self(hidden), n_steps, self.stop_pos_weight)
        n_frames = mask.sum().clamp(min=1)
        energy_sum = attraction_sum - repulsion_sum
        stats = dict(energy=energy_sum / n_frames, attraction=attraction_sum / n_frames,
                     repulsion=repulsion_sum / n_frames, stop_bce=stop_sum / batch)
        return {
            "loss": (energy_sum + self.lambda_stop * stop_sum) / n_frames,
            "attraction_sum": attraction_sum, "repulsion_sum": repulsion_sum, "stop_sum": stop_sum,
            "n_frames": n_frames,
            "stats": {k: v.detach() for k, v in stats.items()},
        }

    def predict(self, hidden: torch.Tensor, config: Any, batch: int) -> HeadStep:
        stop = torch.sigmoid(self(hidden[:batch])) > config.stop_probability
        return HeadStep(stop=stop, params=(guide_hidden(hidden, batch, config.guidance_weight),))

    def sample(self, step: HeadStep, noise: torch.Tensor, temperature: float) -> torch.Tensor:
        (hidden,) = step.params
        return self.generate(hidden, temperature * noise)[:, None]
