"""Guided attention on a few heads of the decoder-only LM, in training only (inference is unchanged).

DC-TTS (Tachibana et al., 2017, arXiv 1710.08969) penalises attention far from the text position being spoken,
W[j, n] = 1 - exp(-((n - c_j) / N)^2 / (2 g^2)), and ESPnet's Transformer-TTS guides 2 heads of 2 layers the same
way. In a decoder-only LM a speech-frame query also attends to the speaker, separators and earlier frames, so the
loss reads a guided head's attention over the text keys alone (renormalised): where in the text the head reads, not
how much. The centre c_j of frame j is the diagonal (each token an equal share of the frames) or comes from
per-token durations (ESPnet's ``durations``, which the recipe derives from the mini corpus's flite phone timings).
The weight can be annealed away once the heads align.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

TARGETS = ("diagonal", "durations")


@dataclass
class GuidedAttention:
    """The ``guided_attention`` options of the kalle model (its ``tts_conf``)."""

    layers: Sequence[int] = (1,)
    heads: Sequence[int] = (0, 1)
    sigma: float = 0.2  # g, relative to the text length (DC-TTS's value)
    weight: float = 1.0
    target: str = "diagonal"
    anneal_start: int = 0  # training steps at full weight before the annealing starts
    anneal_steps: int = 0  # steps of the linear decay to 0 (0: never annealed)

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"guided_attention.target must be one of {TARGETS}, got {self.target!r}")
        if not self.layers or not self.heads:
            raise ValueError("guided_attention needs at least one layer and one head")
        if self.sigma <= 0 or self.weight < 0 or self.anneal_start < 0 or self.anneal_steps < 0:
            raise ValueError("guided_attention: sigma must be > 0; weight, anneal_start and anneal_steps >= 0")

    def weight_at(self, step: int) -> float:
        if self.anneal_steps == 0 or step <= self.anneal_start:
            return self.weight
        return self.weight * max(0.0, 1.0 - (step - self.anneal_start) / self.anneal_steps)


class TextAttentionCapture:
    """Within the ``with`` block, every forward pass of the backbone records, for the chosen layers and heads, the
    attention scores [B, heads, L, keys] of all queries over the first ``keys`` positions (where the text is).

    The scores are recomputed from the layer's own projections and rotary embedding, so gradients reach the
    attention that the model uses, whatever attention kernel runs it."""

    def __init__(self, backbone: torch.nn.Module, layers: Sequence[int], heads: Sequence[int], keys: int):
        self.modules = [backbone.layers[i].self_attn for i in layers]
        self.heads, self.keys = list(heads), keys
        self.scores: List[torch.Tensor] = []
        self._handles: list = []

    def _hook(self, module, args, kwargs, output):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cos, sin = kwargs["position_embeddings"]
        batch, length, _ = hidden.shape
        heads = torch.tensor(self.heads, device=hidden.device)
        q = module.q_proj(hidden).view(batch, length, -1, module.head_dim).transpose(1, 2)[:, heads]
        k = module.k_proj(hidden).view(batch, length, -1, module.head_dim).transpose(1, 2)
        k = k[:, torch.div(heads, module.num_key_value_groups, rounding_mode="floor")]
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        self.scores.append(q @ k[:, :, : self.keys].transpose(-1, -2) * module.scaling)

    def __enter__(self) -> TextAttentionCapture:
        self._handles = [m.register_forward_hook(self._hook, with_kwargs=True) for m in self.modules]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()


def uniform_durations(n_tokens: torch.Tensor, n_frames: torch.Tensor) -> List[torch.Tensor]:
    """Per item, frames per token along the diagonal: token n gets frames [n T / N, (n + 1) T / N)."""
    out = []
    for n, t in zip(n_tokens.tolist(), n_frames.tolist()):
        bounds = torch.div(torch.arange(n + 1) * t, max(n, 1), rounding_mode="floor")
        out.append(bounds.diff())
    return out


def frame_centres(durations: torch.Tensor, lengths: torch.Tensor, t_max: int) -> torch.Tensor:
    """[B, t_max] the text position each frame speaks (token n, interpolated across its frames: n + (i + 0.5) / d_n
    for its i-th frame), from ``durations`` [B, N_max] (valid up to ``lengths``, each item summing to its frames)."""
    centres = durations.new_zeros(durations.shape[0], t_max, dtype=torch.float32)
    for b in range(durations.shape[0]):
        d = durations[b, : int(lengths[b])].long().clamp(min=0)
        tokens = torch.repeat_interleave(torch.arange(d.shape[0], device=d.device), d)
        first = torch.repeat_interleave(d.cumsum(0) - d, d)
        within = (torch.arange(tokens.shape[0], device=d.device) - first + 0.5) / d[tokens].float()
        centres[b, : tokens.shape[0]] = tokens.float() + within
    return centres


def guided_attention_loss(scores: Sequence[torch.Tensor], text_start: int, text_lengths: torch.Tensor,
                          query_starts: torch.Tensor, frame_lengths: torch.Tensor, centres: torch.Tensor,
                          sigma: float) -> torch.Tensor:
    """Mean over the guided heads, layers and valid frames of sum_n A[j, n] W[j, n] (A: the head's attention over
    the item's text keys, renormalised). Frame j's query is position ``query_starts[b] + j``; the text of item b
    sits at ``text_start`` .. ``text_start + text_lengths[b] - 1``; items without text are left out."""
    batch, t_max = centres.shape
    device = centres.device
    keep = text_lengths.to(device) > 0
    rows = query_starts.to(device)[:, None] + torch.arange(t_max, device=device)  # [B, T]
    n = torch.arange(scores[0].shape[-1], device=device) - text_start  # text index of each key
    n_text = text_lengths.to(device).clamp(min=1).float()
    in_text = (n[None] >= 0) & (n[None] < text_lengths.to(device)[:, None])  # [B, K]
    penalty = 1 - torch.exp(-((n[None, None] + 0.5 - centres[..., None]) / n_text[:, None, None]) ** 2
                            / (2 * sigma**2))  # [B, T, K]
    frames = (torch.arange(t_max, device=device)[None] < frame_lengths.to(device)[:, None]) & keep[:, None]
    total = centres.new_zeros(())
    for s in scores:
        picked = s.gather(2, rows.clamp(max=s.shape[2] - 1)[:, None, :, None].expand(-1, s.shape[1], -1, s.shape[3]))
        attention = picked.masked_fill(~in_text[:, None, None], float("-inf")).float().softmax(-1)
        attention = attention.nan_to_num(0.0)  # items without text
        total = total + ((attention * penalty[:, None]).sum(-1) * frames[:, None]).sum()
    count = frames.sum() * scores[0].shape[1] * len(scores)
    return total / count.clamp(min=1)
