"""Test-time training (TTT): adapt the LM to one prompt utterance, leaving the base model untouched.

As in the paper: draw N latent sequences from the Flow-VAE posterior of the prompt (N = 200 was best), fine-tune
a copy of the LM only (the speaker encoder stays frozen: the speaker latent is computed once and fixed) with the
frame KL against the prompt posterior and no end term, on the prompt's own transcript. Heads with that KL:
``gaussian_kl`` (the paper's) and ``gaussian_mixture`` (its bound).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from espnet_kalle.lm.model import KalleLM


@dataclass
class AdaptedVoice:
    """An adapted LM state plus the conditioning it was adapted with (``KalleSynthesizer.adapt`` puts the state in a
    ``Voice``, whose file keeps it)."""

    lm_state: Dict[str, torch.Tensor]
    speaker: Optional[torch.Tensor]
    losses: List[float] = field(default_factory=list)
    meta: Dict[str, object] = field(default_factory=dict)


KL_HEADS = ("gaussian_kl", "gaussian_mixture")  # heads whose loss has the frame KL to the posterior


def _batch_loss(lm, text_ids, prompt_mu, prompt_log_sigma, speaker, samples) -> torch.Tensor:
    """The frame KL per frame on a batch of posterior samples of the prompt (no end or stop term)."""
    if getattr(lm, "head_type", "gaussian_kl") not in KL_HEADS:
        raise ValueError(f"test-time training is KALL-E's KL objective: needs one of the heads {KL_HEADS},"
                         f" not {lm.head_type}")
    batch, frames = samples.shape[0], samples.shape[1]
    text = text_ids[None].expand(batch, -1)
    text_lengths = torch.full((batch,), text_ids.shape[0], dtype=torch.long)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    spk = None if speaker is None else speaker.reshape(1, -1).expand(batch, -1)
    hidden = lm.hidden_states(text, text_lengths, samples, lengths, spk)
    target_mu = prompt_mu[None].expand(batch, -1, -1)
    target_ls = prompt_log_sigma[None].expand(batch, -1, -1)
    terms = lm.head.loss(hidden, target_mu, target_ls, lengths, samples)
    return terms["kl_frames_sum"] / terms["n_frames"]


def test_time_train(
    lm: KalleLM,
    text_ids: torch.Tensor,
    prompt_mu: torch.Tensor,
    prompt_log_sigma: torch.Tensor,
    speaker: Optional[torch.Tensor] = None,
    n_samples: int = 200,
    steps: int = 50,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    seed: int = 0,
) -> AdaptedVoice:
    """Fine-tune a copy of ``lm`` on one prompt. prompt_mu/log_sigma: [F, D] posterior; text_ids: [L]."""
    if prompt_mu.dim() != 2 or prompt_mu.shape != prompt_log_sigma.shape:
        raise ValueError("prompt posterior must be two [frames, latent_dim] tensors")
    if text_ids.numel() == 0:
        raise ValueError("TTT needs the prompt's transcript")
    adapted = copy.deepcopy(lm).train()
    for p in adapted.parameters():
        p.requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_samples,) + tuple(prompt_mu.shape), generator=gen)
    samples = (prompt_mu + prompt_log_sigma.exp() * noise).detach()
    optimizer = torch.optim.AdamW(adapted.parameters(), lr=learning_rate, weight_decay=0.0)
    losses = []
    with torch.enable_grad():
        for _ in range(steps):
            pick = torch.randint(n_samples, (min(batch_size, n_samples),), generator=gen)
            loss = _batch_loss(adapted, text_ids, prompt_mu, prompt_log_sigma, speaker, samples[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(adapted.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
    state = {k: v.detach().clone() for k, v in adapted.state_dict().items()}
    meta = {"n_samples": n_samples, "steps": steps, "learning_rate": learning_rate, "seed": seed}
    return AdaptedVoice(state, None if speaker is None else speaker.detach().clone(), losses, meta)


test_time_train.__test__ = False  # a library function whose name starts with "test", not a pytest test
