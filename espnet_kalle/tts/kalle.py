"""The ESPnet TTS model "kalle": KALL-E's next-distribution LM trained on pre-extracted Flow-VAE latents.

Features (``feats``, one row per 12.5 Hz frame, written by ``kalle-extract-latents``) are
``[mu (D) | log_sigma (D) | optional log-mel (mel_per_frame x n_mels)]``: the posterior the LM learns to predict
and, when the model has a speaker encoder, the un-normalised log-mel frames of the same 80 ms that its
ECAPA-TDNN reads from a random segment. ESPnet's ``Text2Speech`` can load a trained model after
``espnet_kalle.register()`` and gets ``wav`` through the Flow-VAE named by ``codec_config``/``codec_file``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.tts.abs_tts import AbsTTS
from torch.nn.utils.rnn import pad_sequence

from espnet_kalle.lm.continuation import continuation_pairs, join_continuations, join_rows, pair_groups
from espnet_kalle.lm.exposure import ScheduledSampling, corrupt_history, mix_own_predictions
from espnet_kalle.lm.generate import GenerationConfig, iter_generate, seeded_generators
from espnet_kalle.lm.guided_attention import (
    GuidedAttention,
    TextAttentionCapture,
    frame_centres,
    guided_attention_loss,
    uniform_durations,
)
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.next_distribution import EndDistribution
from espnet_kalle.lm.onnx_step import OnnxDecodeStep, PrefixState
from espnet_kalle.lm.speaker import SpeakerDistribution, kl_to_standard_normal, prior_sample

UNKNOWN_ID = 1  # ESPnet token lists start with <blank> (0) and <unk> (1)
SPEAKER_REFERENCES = ("same_utterance", "other_utterance")


def same_speaker_partners(sids: torch.Tensor) -> torch.Tensor:
    """For each batch item, the index of a random *other* item with the same speaker id (itself when none)."""
    sids = sids.reshape(-1)
    n = sids.numel()
    same = (sids[:, None] == sids[None, :]) & ~torch.eye(n, dtype=torch.bool, device=sids.device)
    scores = torch.rand(n, n, device=sids.device).masked_fill(~same, -1.0)
    best = scores.argmax(dim=1)
    return torch.where(same.any(dim=1), best, torch.arange(n, device=sids.device))


class KallE(AbsTTS):
    def __init__(
        self,
        idim: int,
        odim: int,
        latent_dim: int = 512,
        lm_conf: Optional[Dict[str, Any]] = None,
        speaker_conf: Optional[Dict[str, Any]] = None,
        lambda_end: float = 1.0,
        lambda_speaker: float = 1.0,
        speaker_free_bits: float = 0.0,
        speaker_reference: str = "same_utterance",
        end_mean: float = 1.0,
        end_log_sigma: float = 1.0,
        text_dropout: float = 0.0,
        codec_config: Optional[str] = None,
        codec_file: Optional[str] = None,
        sample_rate: int = 16000,
        sentence_end_ids: Optional[Sequence[int]] = None,
        max_text_tokens: int = 400,
        generation_conf: Optional[Dict[str, Any]] = None,
        head: str = "gaussian_kl",
        head_conf: Optional[Dict[str, Any]] = None,
        scheduled_sampling: Optional[Dict[str, Any]] = None,
        history_noise: float = 0.0,
        continuation_share: float = 0.0,
        guided_attention: Optional[Dict[str, Any]] = None,
    ):
        """``head`` picks the per-step objective (``espnet_kalle.lm.heads.HEADS``): ``gaussian_kl`` (KALL-E, default;
        ``lambda_end``/``end_*`` configure it), ``melle`` or ``energy_distance``; ``head_conf`` holds its options.

        ``speaker_free_bits`` (nats per utterance, 0 = the paper's plain KL) leaves the speaker KL unpenalised below
        that amount (free bits, Kingma et al. 2016). Without it the speaker distribution can collapse to the prior:
        an autoregressive LM reads the voice from its own previous frames, so a small KL price outweighs what the
        speaker latent adds, and presets, cloning and random voices all sound alike.

        ``speaker_reference`` says which recording the speaker encoder reads in training: ``same_utterance`` (the
        paper: a random segment of the utterance being predicted) or ``other_utterance`` (a random segment of
        another utterance of the same speaker in the batch; needs ESPnet's ``sids``). Read from the same utterance,
        the latent can carry what helps predict that one utterance (its pace, its words) rather than the voice;
        another utterance of the speaker shares only the voice.

        ``scheduled_sampling`` (``max_share``, ``start_step``, ``ramp_steps``, ``temperature``; see
        ``espnet_kalle.lm.exposure``) trains on the LM's own draws in two passes, and ``history_noise`` (a maximum
        level relative to the latents' spread) adds noise to the input latents: both meant to close the gap between
        teacher forcing and free running. Both are off by default (the paper's teacher forcing).

        ``continuation_share`` (0 = off) joins about that share of each training batch into pairs of one speaker,
        text to text and frames to frames (``espnet_kalle.lm.continuation``), so the LM learns to go on after a
        finished sentence, as it must after a prompt. A model with a speaker encoder pairs by ESPnet's ``sids``.

        ``guided_attention`` (``layers``, ``heads``, ``sigma``, ``weight``, ``target``, ``anneal_start``,
        ``anneal_steps``; ``espnet_kalle.lm.guided_attention``) pulls a few heads' reading of the text along the
        diagonal (``target: diagonal``) or along per-token ``durations`` (ESPnet's optional data name; the recipe
        writes them from flite timings). Training only; off by default."""
        super().__init__()
        self.latent_dim = latent_dim
        self.speaker = SpeakerDistribution(**speaker_conf) if speaker_conf else None
        speaker_dim = self.speaker.speaker_dim if self.speaker is not None else 0
        self.mel_dim = odim - 2 * latent_dim
        if self.speaker is None and self.mel_dim != 0:
            raise ValueError(f"odim {odim} != 2 x latent_dim {latent_dim} (mu | log_sigma) for a model without speaker")
        if self.speaker is not None and (self.mel_dim <= 0 or self.mel_dim % self.speaker.n_mels):
            raise ValueError(
                f"odim {odim} must be 2 x latent_dim + k x n_mels ({self.speaker.n_mels}) for the speaker log-mel"
            )
        head_conf = dict(head_conf or {})
        if head == "gaussian_kl":
            head_conf = dict(dict(lambda_end=lambda_end, end_mean=end_mean, end_log_sigma=end_log_sigma), **head_conf)
        self.head_type = head
        self.lm = KalleLM(vocab_size=idim, latent_dim=latent_dim, speaker_dim=speaker_dim, head_type=head,
                          head_conf=head_conf, **(lm_conf or {}))
        self.lambda_end = lambda_end
        self.lambda_speaker = lambda_speaker
        if speaker_free_bits < 0:
            raise ValueError(f"speaker_free_bits must be >= 0, got {speaker_free_bits}")
        self.speaker_free_bits = speaker_free_bits
        if speaker_reference not in SPEAKER_REFERENCES:
            raise ValueError(f"speaker_reference must be one of {SPEAKER_REFERENCES}, got {speaker_reference!r}")
        self.speaker_reference = speaker_reference
        self.end = EndDistribution(end_mean, end_log_sigma)
        self.text_dropout = text_dropout
        self.fs = sample_rate
        self.codec_config, self.codec_file = codec_config, codec_file
        self._codec: List[torch.nn.Module] = []  # a list keeps the codec out of this model's state dict
        self.sentence_end_ids = set(sentence_end_ids or [])
        self.max_text_tokens = max_text_tokens
        self.generation_conf = dict(generation_conf or {})
        self.scheduled_sampling = ScheduledSampling(**scheduled_sampling) if scheduled_sampling else None
        if self.scheduled_sampling is not None:
            if head != "gaussian_kl":
                raise ValueError(f"scheduled_sampling draws from predicted Gaussians: it needs head gaussian_kl,"
                                 f" not {head}")
            # Counted in the state dict, so a resumed run continues the schedule where it stopped.
            self.register_buffer("sampling_step", torch.zeros((), dtype=torch.long))
        if history_noise < 0:
            raise ValueError(f"history_noise must be >= 0, got {history_noise}")
        self.history_noise = history_noise
        if not 0.0 <= continuation_share <= 1.0:
            raise ValueError(f"continuation_share must be in [0, 1], got {continuation_share}")
        self.continuation_share = continuation_share
        self.guided_attention = GuidedAttention(**guided_attention) if guided_attention else None
        if self.guided_attention is not None:
            bad = [i for i in self.guided_attention.layers if not 0 <= i < len(self.lm.backbone.layers)]
            bad += [h for h in self.guided_attention.heads if not 0 <= h < self.lm.backbone.config.num_attention_heads]
            if bad:
                raise ValueError(f"guided_attention: layers/heads {bad} are not in this LM")
            self.register_buffer("guided_step", torch.zeros((), dtype=torch.long))  # annealing survives a resume
        # Attributes ESPnet's Text2Speech reads.
        self.spks = None
        self.langs = None
        self.spk_embed_dim = None

    @property
    def require_vocoder(self) -> bool:
        return False  # the model decodes latents with its own Flow-VAE

    # ------------------------------------------------------------------ training
    def split_feats(self, feats: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        d = self.latent_dim
        mel = None
        if self.speaker is not None:
            b, f = feats.shape[:2]
            mel = feats[..., 2 * d :].reshape(b, f * self.mel_dim // self.speaker.n_mels, self.speaker.n_mels)
            mel = mel.transpose(1, 2)  # [B, n_mels, frames]
        return feats[..., :d], feats[..., d : 2 * d], mel

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        feats: torch.Tensor,
        feats_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Teacher-forced head loss (KALL-E: KL frames + end) + speaker KL, normalised by the number of valid frames."""
        sids = kwargs.get("sids")
        durations = None
        if self.training and self.guided_attention is not None:
            durations = self.token_durations(text_lengths, feats_lengths, kwargs.get("durations"),
                                             kwargs.get("durations_lengths"))
        if self.training and self.continuation_share > 0:
            text, text_lengths, feats, feats_lengths, sids, durations = self.joined_continuations(
                text, text_lengths, feats, feats_lengths, sids, durations)
        feats = feats[:, : int(feats_lengths.max())]
        mu, log_sigma, mel = self.split_feats(feats)
        z_in = mu + log_sigma.exp() * torch.randn_like(mu)  # teacher forcing with posterior samples
        speaker, kl_speaker_sum, kl_speaker_cost = None, feats.new_zeros(()), feats.new_zeros(())
        if self.speaker is not None:
            mel_lengths = feats_lengths * (mel.shape[-1] // feats.shape[1])
            if self.speaker_reference == "other_utterance":
                if sids is None:
                    raise ValueError("speaker_reference: other_utterance needs speaker ids (ESPnet 'sids'; "
                                     "the recipe passes them with --use_sid true)")
                partner = same_speaker_partners(sids.to(feats.device))
                mel, mel_lengths = mel[partner], mel_lengths[partner]
            s_mu, s_log_sigma = self.speaker.from_logmel(mel, mel_lengths)
            speaker = self.speaker.sample(s_mu, s_log_sigma)
            kl_items = kl_to_standard_normal(s_mu, s_log_sigma, reduce=False)
            kl_speaker_sum = kl_items.sum()
            kl_speaker_cost = kl_items.clamp(min=self.speaker_free_bits).sum()
        drop = None
        if self.training and self.text_dropout > 0:
            drop = torch.rand(text.shape[0], device=text.device) < self.text_dropout
        if self.training:
            z_in = self.exposed_inputs(text, text_lengths, z_in, feats_lengths, speaker, drop)
        guided = None
        if durations is not None:
            guided = TextAttentionCapture(self.lm.backbone, self.guided_attention.layers, self.guided_attention.heads,
                                          self.lm.speaker_positions + int(text_lengths.max()))
        with guided or contextlib.nullcontext():
            hidden = self.lm.hidden_states(text, text_lengths, z_in, feats_lengths, speaker, drop)
        terms = self.lm.head.loss(hidden, mu, log_sigma, feats_lengths, z_in)
        n_frames = terms["n_frames"]
        loss = terms["loss"] + self.lambda_speaker * kl_speaker_cost / n_frames
        batch_size = text.shape[0]
        stats = dict(loss=loss.detach(), **terms["stats"], kl_speaker=(kl_speaker_sum / batch_size).detach())
        if guided is not None:
            attention_cost = self.guided_attention_cost(guided, text_lengths, feats_lengths, durations, drop)
            weight = self.guided_attention.weight_at(int(self.guided_step))
            self.guided_step += 1
            loss = loss + weight * attention_cost
            stats.update(loss=loss.detach(), guided_attention=attention_cost.detach())
        loss, stats, weight = force_gatherable((loss, stats, batch_size), loss.device)
        return loss, stats, weight

    def joined_continuations(self, text: torch.Tensor, text_lengths: torch.Tensor, feats: torch.Tensor,
                             feats_lengths: torch.Tensor, sids: Optional[torch.Tensor],
                             durations: Optional[Tuple[torch.Tensor, torch.Tensor]] = None):
        """The batch with ``continuation_share`` of its items joined into same-speaker pairs (and their sids and
        per-token durations, joined as their texts are)."""
        if sids is None and self.speaker is not None:
            raise ValueError("continuation_share pairs utterances of one speaker: it needs speaker ids (ESPnet "
                             "'sids'; the recipe passes them with --use_sid true)")
        groups = None if sids is None else sids.reshape(-1)
        pairs = continuation_pairs(groups, text.shape[0], self.continuation_share)
        if durations is not None and pairs:
            durations = join_rows(*durations, pair_groups(pairs, text.shape[0]))
        text, text_lengths, feats, feats_lengths, source = join_continuations(
            text, text_lengths, feats, feats_lengths, pairs)
        return text, text_lengths, feats, feats_lengths, None if groups is None else groups[source], durations

    def token_durations(self, text_lengths: torch.Tensor, feats_lengths: torch.Tensor,
                        durations: Optional[torch.Tensor], durations_lengths: Optional[torch.Tensor]
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frames per text token [B, N] and their counts [B]: the diagonal's, or ESPnet's ``durations`` checked
        against the batch (one per token, summing to the item's frames)."""
        if self.guided_attention.target == "diagonal":
            rows = uniform_durations(text_lengths.cpu(), feats_lengths.cpu())
            return pad_sequence(rows, batch_first=True).to(text_lengths.device), text_lengths
        if durations is None:
            raise ValueError("guided_attention target 'durations' needs per-token durations (ESPnet's 'durations';"
                             " the recipe writes them from the corpus's phone timings)")
        if durations_lengths is None:
            durations_lengths = (durations >= 0).sum(1)
        valid = torch.arange(durations.shape[1], device=durations.device)[None] < durations_lengths[:, None]
        sums = (durations.clamp(min=0) * valid).sum(1)
        if not torch.equal(durations_lengths.cpu(), text_lengths.cpu()) or not torch.equal(sums.cpu(),
                                                                                           feats_lengths.cpu()):
            raise ValueError("durations must give one count per text token and sum to the utterance's frames"
                             f" (tokens {text_lengths.tolist()} vs {durations_lengths.tolist()}, frames"
                             f" {feats_lengths.tolist()} vs {sums.tolist()})")
        return durations, durations_lengths

    def guided_attention_cost(self, capture: TextAttentionCapture, text_lengths: torch.Tensor,
                              feats_lengths: torch.Tensor, durations: Tuple[torch.Tensor, torch.Tensor],
                              drop: Optional[torch.Tensor]) -> torch.Tensor:
        """The guided heads' cost on this batch (items whose text was dropped are left out)."""
        spk = self.lm.speaker_positions
        text_in = text_lengths if drop is None else torch.where(drop, torch.zeros_like(text_lengths), text_lengths)
        query_starts = spk + text_in + len(self.lm.sep_ids) - 1  # the last separator predicts frame 0
        centres = frame_centres(durations[0], durations[1], int(feats_lengths.max()))
        return guided_attention_loss(capture.scores, spk, text_in, query_starts, feats_lengths, centres,
                                     self.guided_attention.sigma)

    def exposed_inputs(self, text: torch.Tensor, text_lengths: torch.Tensor, z_in: torch.Tensor,
                       lengths: torch.Tensor, speaker: Optional[torch.Tensor], drop: Optional[torch.Tensor]
                       ) -> torch.Tensor:
        """The training inputs after scheduled sampling and history noise (each only when configured)."""
        if self.scheduled_sampling is not None:
            share = self.scheduled_sampling.share(int(self.sampling_step))
            self.sampling_step += 1
            if share > 0:
                with torch.no_grad():
                    pred_mu, pred_log_sigma = self.lm(text, text_lengths, z_in, lengths, speaker, drop)
                z_in = mix_own_predictions(z_in, pred_mu, pred_log_sigma, share, self.scheduled_sampling.temperature)
        return corrupt_history(z_in, lengths, self.history_noise)

    # ------------------------------------------------------------------ inference
    @property
    def codec(self) -> torch.nn.Module:
        """The Flow-VAE used to turn latents into audio, loaded on first use."""
        if not self._codec:
            if not (self.codec_config and self.codec_file):
                raise RuntimeError("this kalle model has no codec_config/codec_file: cannot produce a waveform")
            from espnet_kalle.codec.load import load_flow_vae

            device = next(self.lm.parameters()).device
            self._codec.append(load_flow_vae(self.codec_config, self.codec_file, device).prepare_for_inference())
        return self._codec[0]

    def set_codec(self, codec: torch.nn.Module) -> None:
        self._codec[:] = [codec]

    def speaker_from_wav(self, wav: torch.Tensor) -> torch.Tensor:
        """Speaker latent (posterior mean) of a reference waveform [T] at 16 kHz."""
        if self.speaker is None:
            raise ValueError("this model has no speaker encoder; use a prompt (prompt continuation) instead")
        with torch.no_grad():
            mu, _ = self.speaker(wav.reshape(1, -1).float())
        return mu[0]

    def voice_from_seed(self, seed: int) -> Optional[torch.Tensor]:
        """S ~ N(0, I) drawn from ``seed`` alone: the same seed is the same voice on every run."""
        if self.speaker is None:
            return None
        return prior_sample(self.speaker.speaker_dim, seed).to(next(self.lm.parameters()).device)

    def split_text(self, ids: torch.Tensor) -> List[torch.Tensor]:
        """Pieces of at most ``max_text_tokens``, cut after the last sentence end when there is one."""
        pieces, start, n = [], 0, ids.shape[0]
        while n - start > self.max_text_tokens:
            window = ids[start : start + self.max_text_tokens].tolist()
            ends = [i for i, t in enumerate(window) if t in self.sentence_end_ids]
            cut = start + (ends[-1] + 1 if ends else self.max_text_tokens)
            pieces.append(ids[start:cut])
            start = cut
        pieces.append(ids[start:])
        return [p for p in pieces if p.numel() > 0]

    def generation_config(self, **overrides) -> GenerationConfig:
        conf = dict(self.generation_conf)
        conf.update({k: v for k, v in overrides.items() if v is not None})
        return GenerationConfig(end=self.end, **conf)

    # The tokenizer's BOS id, set by whoever tokenizes (the synthesizer; ESPnet token lists have none): after a
    # prompt it is dropped from the target text, the way the released model was fed.
    bos_id: Optional[int] = None

    def iter_frames(
        self,
        ids: torch.Tensor,
        config: GenerationConfig,
        generator: torch.Generator,
        speaker: Optional[torch.Tensor] = None,
        prompt_text: Optional[torch.Tensor] = None,
        prompt_latents: Optional[torch.Tensor] = None,
        lm: Optional[KalleLM] = None,
        decode_step: Optional[OnnxDecodeStep] = None,
        voice_start: Optional[Callable[[torch.Tensor], Optional[PrefixState]]] = None,
        cancel: Optional[threading.Event] = None,
    ) -> Iterator[torch.Tensor]:
        """The latent frames [D] of one text as the LM samples them (stop frame dropped): the one generation path,
        behind ``inference`` and every synthesizer call, so both speak a text the same way.

        Text longer than ``max_text_tokens`` is generated piece by piece (``split_text``), every piece continuing
        ``generator``. With a prompt, each piece is ``prompt_text`` + the piece without ``bos_id``. ``lm`` replaces
        the base LM (a voice's adapted copy); ``decode_step`` runs it in onnxruntime; ``voice_start(prefix)`` may
        return the precomputed keys and values of the prefix's start (``iter_generate``'s ``start``). ``cancel``
        stops before the next frame.
        """
        lm = self.lm if lm is None else lm
        guided = config.guidance_weight > 0
        for piece in self.split_text(ids.reshape(-1)):
            if prompt_text is not None and self.bos_id is not None and piece.numel() and int(piece[0]) == self.bos_id:
                piece = piece[1:]
            full = piece if prompt_text is None else torch.cat([prompt_text.reshape(-1), piece])
            with torch.inference_mode():
                prefix = lm.prefix(full, speaker, prompt_latents)
                uncond = [lm.prefix(full[:0], speaker, prompt_latents)] if guided else None
            start = voice_start(prefix) if voice_start is not None and not guided else None
            if start is not None:
                prefix = prefix[start.length :]
            steps = iter_generate(lm, [prefix], [piece.numel()], config, [generator], uncond, decode_step=decode_step,
                                  start=start)
            try:
                for z, _ in steps:
                    if cancel is not None and cancel.is_set():
                        return
                    yield z[0]
            finally:
                steps.close()

    @torch.no_grad()
    def inference(
        self,
        text: torch.Tensor,
        feats: Optional[torch.Tensor] = None,
        speech: Optional[torch.Tensor] = None,
        seed: int = 0,
        speaker: Optional[torch.Tensor] = None,
        prompt_text: Optional[torch.Tensor] = None,
        prompt_latents: Optional[torch.Tensor] = None,
        temperature: Optional[float] = None,
        stop_threshold: Optional[float] = None,
        minlenratio: Optional[float] = None,
        maxlenratio: Optional[float] = None,
        max_frames: Optional[int] = None,
        guidance_weight: Optional[float] = None,
        decode_wav: bool = True,
        **kwargs,
    ) -> Dict[str, torch.Tensor]:
        """text ids [L] -> {"feat_gen": latents [T, D], "wav": [T * hop]}.

        Voice: ``speaker`` (a latent, e.g. from ``speaker_from_wav``), else the voice of ``seed``. Zero-shot
        continuation: ``prompt_text`` ids + ``prompt_latents`` [P, D]. Frames come from ``iter_frames``.
        """
        if kwargs.get("use_teacher_forcing"):
            raise ValueError("kalle does not support teacher-forced inference")
        ids = text.reshape(-1)
        if ids.numel() == 0:
            raise ValueError("empty text: nothing to synthesize")
        if bool((ids <= UNKNOWN_ID).all()):
            raise ValueError("the text has only symbols the model does not know (<blank>/<unk>)")
        if speaker is None:
            speaker = self.voice_from_seed(seed)
        config = self.generation_config(
            temperature=temperature, stop_threshold=stop_threshold, minlenratio=minlenratio,
            maxlenratio=maxlenratio, max_frames=max_frames, guidance_weight=guidance_weight,
        )
        generator = seeded_generators([seed], ids.device)[0]
        frames = list(self.iter_frames(ids, config, generator, speaker, prompt_text, prompt_latents))
        feat_gen = torch.stack(frames) if frames else ids.new_zeros(0, self.lm.latent_dim, dtype=torch.float32)
        out = {"feat_gen": feat_gen}
        if decode_wav:
            if feat_gen.shape[0] == 0:
                out["wav"] = feat_gen.new_zeros(0)
            else:
                out["wav"] = self.codec.decode(feat_gen.T[None].to(torch.float32)).reshape(-1)
        return out
