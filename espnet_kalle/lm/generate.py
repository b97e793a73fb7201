"""Autoregressive generation of latent frames: the model's head draws the next frame(s), which are fed back, until it
says stop (KALL-E: sample z_t ~ N(mu_t, tau * sigma_t), stop near N_end; MELLE / SLED heads: a stop classifier).

One loop serves everything: KV-cached (default) or full-prefix recompute (the release's way, kept as a reference),
batches with per-item stopping (prefixes left-padded and masked), optional classifier-free guidance, and a
generator interface that yields each frame as soon as it exists (for streaming). Every item samples from its own
``torch.Generator``, so a batch reproduces one-by-one runs with the same seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from transformers import DynamicCache

from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.next_distribution import EndDistribution
from espnet_kalle.lm.onnx_step import OnnxDecodeStep, PrefixState


@dataclass
class GenerationConfig:
    temperature: float = 1.0  # scales sigma
    stop_threshold: float = 0.5  # gaussian_kl: stop when KL(p_t || N_end) / D falls below this
    stop_probability: float = 0.5  # heads with a stop classifier (melle, energy_distance): stop above this
    min_frames: int = 4  # the release stops only after more than 3 frames
    max_frames: int = 1000
    minlenratio: float = 0.0  # frames per text token (0: no text-derived minimum)
    maxlenratio: float = 0.0  # frames per text token (0: only max_frames)
    guidance_weight: float = 0.0  # classifier-free guidance (mean: gaussian_kl; hidden state: others); 0 = off
    use_cache: bool = True
    end: EndDistribution = field(default_factory=EndDistribution)

    def frame_limits(self, n_text_tokens: int) -> Tuple[int, int]:
        """(min, max) number of frames for a text of this many tokens."""
        low = max(self.min_frames, math.floor(self.minlenratio * n_text_tokens))
        high = self.max_frames
        if self.maxlenratio > 0:
            high = min(high, max(low + 1, math.ceil(self.maxlenratio * n_text_tokens)))
        return low, max(high, 1)


def _left_pad(prefixes: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    longest = max(p.shape[0] for p in prefixes)
    hidden = prefixes[0].shape[-1]
    inputs = prefixes[0].new_zeros(len(prefixes), longest, hidden)
    mask = torch.zeros(len(prefixes), longest, dtype=torch.long, device=inputs.device)
    for i, p in enumerate(prefixes):
        inputs[i, longest - p.shape[0] :] = p
        mask[i, longest - p.shape[0] :] = 1
    return inputs, mask


def _last_hidden(model: KalleLM, inputs, mask, positions, cache) -> torch.Tensor:
    # Without padding the causal mask is implied: skipping the explicit mask saves building one every step.
    out = model.backbone(
        inputs_embeds=inputs, attention_mask=None if bool(mask.all()) else mask, position_ids=positions,
        past_key_values=cache, use_cache=cache is not None,
    )
    return out.last_hidden_state[:, -1]


@torch.inference_mode()
def iter_generate(
    model: KalleLM,
    prefixes: Sequence[torch.Tensor],
    text_lengths: Sequence[int],
    config: Optional[GenerationConfig] = None,
    generators: Optional[Sequence[torch.Generator]] = None,
    unconditional_prefixes: Optional[Sequence[torch.Tensor]] = None,
    decode_step: Optional[OnnxDecodeStep] = None,
    start: Optional[PrefixState] = None,
) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """Yield (z [B, D], emitted [B] bool) once per frame until every item has stopped.

    ``prefixes`` are ``model.prefix(...)`` embeddings; ``unconditional_prefixes`` (same items without text) are
    needed when ``config.guidance_weight`` > 0. A stopped item's rows are still computed but not emitted.
    The head (``model.head``) decides stop and draws the frames of a step; a head with r frames per step (MELLE's
    reduction factor) yields r frames per LM step, so frame counts (min/max) may overshoot by up to r - 1.
    ``decode_step`` runs the prompt (its prefill graph, if exported) and every step after it in onnxruntime; it
    applies to one item with the KV cache and without guidance, and other calls ignore it. ``start`` (from
    ``decode_step.prefix_state``) holds the keys and values of positions before the prefix, computed once for many
    sentences (a voice's speaker and prompt text); the prefix then holds only the positions after them.
    """
    config = config or GenerationConfig()
    batch = len(prefixes)
    guided = config.guidance_weight > 0
    if guided and (unconditional_prefixes is None or len(unconditional_prefixes) != batch):
        raise ValueError("guidance_weight > 0 needs one unconditional prefix per item")
    if generators is not None and len(generators) != batch:
        raise ValueError("give one torch.Generator per item")
    onnx = decode_step is not None and config.use_cache and not guided and batch == 1  # the onnxruntime path
    onnx_prefill = onnx and decode_step.can_prefill
    if start is not None and not onnx_prefill:
        raise ValueError("a precomputed start needs one unguided item with the KV cache and a decode_step that"
                         " can prefill")
    offset = 0 if start is None else start.length
    limits = [config.frame_limits(n) for n in text_lengths]
    room = [model.max_positions - offset - p.shape[0] for p in prefixes]  # positions left for frames
    if min(room) < 1:
        raise ValueError(
            f"a prefix of {offset + max(p.shape[0] for p in prefixes)} positions fills the model's"
            f" {model.max_positions}: split the text into sentences"
        )
    head, r = model.head, model.frames_per_step
    min_frames = torch.tensor([lo for lo, _ in limits])
    max_frames = torch.tensor([min(hi, n * r) for (_, hi), n in zip(limits, room)])

    inputs, mask = _left_pad(list(prefixes) + list(unconditional_prefixes or []) if guided else list(prefixes))
    positions = (mask.cumsum(1) - 1).clamp(min=0) + offset
    cache = DynamicCache() if config.use_cache else None
    if onnx_prefill:
        hidden, onnx_past = decode_step.prefill(inputs, start)
    else:  # the prompt in PyTorch; an onnxruntime step takes over its cache
        hidden = _last_hidden(model, inputs, mask, positions, cache)
        onnx_past = decode_step.start(cache) if onnx else None
    active = torch.ones(batch, dtype=torch.bool)
    n_done = 0  # frames generated so far
    while True:
        predicted = head.predict(hidden, config, batch)
        stop = predicted.stop.cpu()
        active &= ~(stop & (n_done >= min_frames))
        active &= n_done < max_frames
        if not active.any():
            return
        # Only active items draw noise from their own generator: batched runs reproduce one-by-one runs.
        noise = hidden.new_zeros(batch, *head.noise_shape)
        for i in torch.nonzero(active).flatten().tolist():
            g = generators[i] if generators is not None else None
            noise[i] = torch.randn(head.noise_shape, generator=g, device=noise.device, dtype=noise.dtype)
        z = head.sample(predicted, noise, config.temperature)  # [B, r, D]
        emitted = active.clone()
        for k in range(r):
            yield z[:, k], emitted.clone()
        n_done += r

        step_generators = None if generators is None else list(generators) * (2 if guided else 1)
        step = model.embed_latents(torch.cat([z, z]) if guided else z, step_generators)  # z: [B, r, D]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        next_pos = positions[:, -1:] + 1
        if cache is not None:
            positions = next_pos
            if onnx_past is not None:
                hidden = decode_step(step, int(positions), onnx_past)
            else:
                hidden = _last_hidden(model, step, mask, positions, cache)
        else:
            inputs = torch.cat([inputs, step], dim=1)
            positions = torch.cat([positions, next_pos], dim=1)
            hidden = _last_hidden(model, inputs, mask, positions, None)


def generate(
    model: KalleLM,
    prefixes: Sequence[torch.Tensor],
    text_lengths: Sequence[int],
    config: Optional[GenerationConfig] = None,
    generators: Optional[Sequence[torch.Generator]] = None,
    unconditional_prefixes: Optional[Sequence[torch.Tensor]] = None,
    decode_step: Optional[OnnxDecodeStep] = None,
    start: Optional[PrefixState] = None,
) -> List[torch.Tensor]:
    """Run ``iter_generate`` to the end; returns one [T_i, D] tensor of latents per item (stop frame dropped)."""
    frames: List[List[torch.Tensor]] = [[] for _ in prefixes]
    for z, emitted in iter_generate(model, prefixes, text_lengths, config, generators, unconditional_prefixes,
                                    decode_step, start):
        for i in torch.nonzero(emitted).flatten().tolist():
            frames[i].append(z[i])
    dim = model.latent_dim
    return [torch.stack(f) if f else prefixes[0].new_zeros(0, dim) for f in frames]


def seeded_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> List[torch.Generator]:
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
