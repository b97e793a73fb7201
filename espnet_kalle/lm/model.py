"""KalleLM: [speaker][text][SEP][z_1 .. z_T] -> a causal LLaMA -> N(mu_t, sigma_t) of the next frame."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from espnet_kalle.lm.backbone import build_llama
from espnet_kalle.lm.heads import build_head, head_frames_per_step
from espnet_kalle.lm.prenet import Prenet


class KalleLM(nn.Module):
    """The next-distribution language model (no ESPnet here; ``tts/kalle.py`` wraps it).

    ``sep_token_ids`` are the two tokens between text and speech (the release uses
    <|SPEECH_UNDERSTANDING_END|>, <|SPEECH_GENERATION_START|>); when not given, two ids are appended after the
    text vocabulary. ``speaker_dim`` > 0 adds a projected speaker latent as the first position.

    ``head_type`` names the per-step output head (``espnet_kalle.lm.heads.HEADS``: ``gaussian_kl`` = KALL-E, the
    default; ``melle``; ``energy_distance``) and ``head_conf`` its options. A head with ``frames_per_step`` r > 1
    (MELLE's reduction factor) makes every LM step read the projection of r concatenated frames and predict the next r.

    ``prenet`` (``units``, ``layers``, ``dropout``; ``espnet_kalle.lm.prenet``) puts Tacotron 2's pre-net, dropout
    kept at inference, between the latents and ``audio_linear``; without it the latents go straight in (the release).
    """

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int = 512,
        hidden_size: int = 512,
        num_layers: int = 8,
        num_heads: int = 8,
        num_kv_heads: Optional[int] = None,
        intermediate_size: Optional[int] = None,
        max_position_embeddings: int = 4096,
        rope_theta: float = 10000.0,
        rope_scaling: Optional[dict] = None,
        head_dim: Optional[int] = None,
        speaker_dim: int = 0,
        sep_token_ids: Optional[Sequence[int]] = None,
        head_type: str = "gaussian_kl",
        head_conf: Optional[Dict[str, Any]] = None,
        prenet: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if sep_token_ids is None:
            sep_token_ids = (vocab_size, vocab_size + 1)
            vocab_size += 2
        self.text_vocab_size = vocab_size
        self.register_buffer("sep_ids", torch.tensor(list(sep_token_ids), dtype=torch.long), persistent=False)
        self.backbone = build_llama(
            vocab_size, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size,
            max_position_embeddings, rope_theta, rope_scaling, head_dim=head_dim,
        )
        self.latent_dim = latent_dim
        self.hidden_size = hidden_size
        self.max_positions = max_position_embeddings
        self.head_type = head_type
        # audio_linear is built before the head: the same seed gives the same weights as before heads existed.
        self.frames_per_step = head_frames_per_step(head_type, head_conf or {})
        in_dim = self.frames_per_step * latent_dim
        self.prenet = Prenet(in_dim, **prenet) if prenet else None
        self.audio_linear = nn.Linear(self.prenet.out_dim if self.prenet is not None else in_dim, hidden_size)
        self.head = build_head(head_type, hidden_size, latent_dim, **(head_conf or {}))
        self.speaker_dim = speaker_dim
        self.speaker_linear = nn.Linear(speaker_dim, hidden_size) if speaker_dim > 0 else None

    @property
    def speaker_positions(self) -> int:
        """Positions the speaker latent takes at the head of every ``prefix`` (0 without a speaker encoder)."""
        return int(self.speaker_linear is not None)

    def prefix(
        self,
        text_ids: torch.Tensor,
        speaker: Optional[torch.Tensor] = None,
        prompt_latents: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Embeddings [N, H] of one item: [speaker][text][SEP][prompt latents]."""
        parts = []
        if self.speaker_linear is not None:
            if speaker is None:
                raise ValueError("this model conditions on a speaker latent: pass speaker=[speaker_dim]")
            parts.append(self.speaker_linear(speaker.reshape(1, -1)))
        embed = self.backbone.embed_tokens
        parts.append(embed(text_ids.long()))
        parts.append(embed(self.sep_ids))
        if prompt_latents is not None and prompt_latents.shape[0] >= self.frames_per_step:
            # r > 1: the first P mod r prompt frames are dropped so the prompt ends on a whole step.
            skip = prompt_latents.shape[0] % self.frames_per_step
            # A fixed dropout draw for a prompt: the same voice gives the same prefix on every sentence.
            fixed = None if self.prenet is None else [torch.Generator(prompt_latents.device).manual_seed(0)]
            parts.append(self.embed_latents(prompt_latents[skip:][None], fixed)[0])
        return torch.cat(parts, dim=0)

    def group_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> [B, ceil(T / r), r * D] LM inputs (zero-padded to whole steps); identity for r = 1."""
        r = self.frames_per_step
        if r == 1:
            return latents
        pad = (-latents.shape[1]) % r
        if pad:
            latents = torch.cat([latents, latents.new_zeros(latents.shape[0], pad, latents.shape[2])], dim=1)
        return latents.reshape(latents.shape[0], latents.shape[1] // r, r * latents.shape[2])

    def embed_latents(self, latents: torch.Tensor,
                      generators: Optional[Sequence[Optional[torch.Generator]]] = None) -> torch.Tensor:
        """LM inputs [B, S, H] of latent frames [B, T, D] (grouped by r, through the pre-net if there is one;
        ``generators``, one per item, draw its dropout during generation)."""
        x = self.group_frames(latents)
        if self.prenet is not None:
            x = self.prenet(x, generators)
        return self.audio_linear(x)

    def predict_distributions(
        self, input_ids: torch.Tensor, latents: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced (mu, log_sigma) [B, L + F, D] for every position of [embed(input_ids) | audio(latents)].

        ``input_ids`` [B, L] are used as given (include the separator ids yourself); ``latents`` [B, F, D].
        Position i predicts the latent after it: a plain view of the released model's forward pass, for
        checking numerics and for scoring.
        """
        audio = self.embed_latents(latents)
        inputs = torch.cat([self.backbone.embed_tokens(input_ids.long()), audio], dim=1)
        return self.head(self.backbone(inputs_embeds=inputs).last_hidden_state)

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        latents_in: torch.Tensor,
        latent_lengths: torch.Tensor,
        speaker: Optional[torch.Tensor] = None,
        drop_text: Optional[torch.Tensor] = None,
    ) -> Any:
        """Teacher-forced pass. latents_in [B, T, D] (sampled posterior latents) -> (mu, log_sigma) [B, T+1, D].

        Output step t predicts frame t+1 (step T predicts the end). That is the ``gaussian_kl`` head's output;
        other heads return their own ``forward`` of ``hidden_states(...)``.
        """
        return self.head(self.hidden_states(text, text_lengths, latents_in, latent_lengths, speaker, drop_text))

    def hidden_states(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        latents_in: torch.Tensor,
        latent_lengths: torch.Tensor,
        speaker: Optional[torch.Tensor] = None,
        drop_text: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Teacher-forced LM states [B, S+1, H], S = ceil(T / r): step s predicts frames s*r .. s*r + r - 1.

        Items are right-padded, so with causal attention no valid position ever sees padding. ``drop_text`` [B]
        bool removes an item's text (classifier-free guidance training).
        """
        r = self.frames_per_step
        audio = self.embed_latents(latents_in)
        step_lengths = torch.div(latent_lengths + r - 1, r, rounding_mode="floor")
        sequences, starts = [], []
        for b in range(text.shape[0]):
            ids = text[b, : text_lengths[b]]
            if drop_text is not None and bool(drop_text[b]):
                ids = ids[:0]
            prefix = self.prefix(ids, None if speaker is None else speaker[b])
            starts.append(prefix.shape[0] - 1)
            sequences.append(torch.cat([prefix, audio[b, : step_lengths[b]]], dim=0))
        if max(s.shape[0] for s in sequences) > self.max_positions:
            raise ValueError(f"sequence longer than max_position_embeddings={self.max_positions}")
        inputs = pad_sequence(sequences, batch_first=True)
        hidden = self.backbone(inputs_embeds=inputs).last_hidden_state
        steps = audio.shape[1] + 1
        index = torch.tensor(starts, device=inputs.device)[:, None] + torch.arange(steps, device=inputs.device)
        index = index.clamp(max=inputs.shape[1] - 1)
        picked = hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        return picked
