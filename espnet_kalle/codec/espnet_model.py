"""Flow-VAE as an ESPnet GAN codec (``--codec flow_vae`` of ``espnet2.bin.gan_codec_train``).

ESPnet's ``GANTrainer`` alternates a discriminator turn and a generator turn on the same batch (discriminator
first unless ``--generator_first true``); each turn calls ``forward`` and steps optimizer ``optim_idx``
(0: ``--optim`` over ``.generator``, 1: ``--optim2`` over ``.discriminator``).

Generator loss = lambda_mel * mel L1 + lambda_kl * flow KL + lambda_adv * LSGAN + lambda_feat_match * FM.
``adv_warmup_steps`` trains on mel + KL only for the first N generator updates (the discriminator idles), because
GAN terms only help once reconstruction is roughly right, which on CPU budgets is most of a short run.
``kl_warmup_steps`` ramps lambda_kl linearly from 0 over the first N generator updates: with the full weight from
step 0 the posterior can collapse onto the prior before the decoder learns to use it (seen on CPU runs).

Padded batches: ``ESPnetGANCodecModel`` forwards only ``audio``, not ``audio_lengths``, so lengths are recovered
from the collator's zero padding (trailing exact zeros; trailing digital silence is then treated as padding,
which only drops silence from the losses). With ``segment_length`` each training item is cut to a random
segment of that many samples, as ESPnet/HiFi-GAN codec training does.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from espnet2.gan_codec.abs_gan_codec import AbsGANCodec
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_kalle.codec.discriminators import DEFAULT_PERIODS, DEFAULT_RESOLUTIONS, FlowVAEDiscriminator
from espnet_kalle.codec.flow_vae import FlowVAE
from espnet_kalle.codec.load import generator_kwargs
from espnet_kalle.codec.losses import (
    MelSpectrogramLoss,
    MultiResolutionMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def lengths_from_zero_padding(audio: torch.Tensor) -> torch.Tensor:
    """[B, T] -> index after the last non-zero sample per row (rows that are all zeros keep length T)."""
    nonzero = audio != 0
    last = audio.shape[-1] - nonzero.flip(-1).to(torch.int8).argmax(-1)
    return torch.where(nonzero.any(-1), last, torch.full_like(last, audio.shape[-1]))


def random_segments(
    audio: torch.Tensor, lengths: torch.Tensor, segment_length: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cut a random window of min(segment_length, max length) samples from each row of [B, T]."""
    out_len = int(min(segment_length, int(lengths.max())))
    room = (lengths - out_len).clamp(min=0)
    starts = (torch.rand(lengths.shape, device=audio.device) * (room + 1)).long().clamp(max=room)
    index = starts[:, None] + torch.arange(out_len, device=audio.device)[None, :]
    return audio.gather(1, index), (lengths - starts).clamp(max=out_len)


class FlowVAECodec(AbsGANCodec):
    """ESPnet wrapper: ``.generator`` is the ``FlowVAE``, ``.discriminator`` the MPD + MRD."""

    def __init__(
        self,
        sampling_rate: int = 16000,
        generator_params: Optional[Dict[str, Any]] = None,
        discriminator_params: Optional[Dict[str, Any]] = None,
        mel_loss_params: Optional[Dict[str, Any]] = None,
        lambda_mel: float = 45.0,
        lambda_kl: float = 1.0,
        lambda_adv: float = 1.0,
        lambda_feat_match: float = 2.0,
        adv_warmup_steps: int = 0,
        kl_warmup_steps: int = 0,
        segment_length: Optional[int] = None,
        cache_generator_outputs: bool = True,
        sample_on_decode: bool = False,
    ):
        """Loss weights default to HiFi-GAN/BigVGAN (mel 45, FM 2) and VITS (KL 1)."""
        super().__init__()
        self.generator = FlowVAE(
            **generator_kwargs({"sampling_rate": sampling_rate, "generator_params": generator_params})
        )
        disc = dict(periods=DEFAULT_PERIODS, resolutions=DEFAULT_RESOLUTIONS, channel_mult=1.0)
        disc.update(discriminator_params or {})
        self.discriminator = FlowVAEDiscriminator(**disc)
        mel = dict(sample_rate=sampling_rate)
        mel.update(mel_loss_params or {})
        # mel_loss_params.resolutions: [[n_fft, hop, win], ...] averages the mel L1 over several resolutions.
        self.mel_loss = MultiResolutionMelLoss(**mel) if "resolutions" in mel else MelSpectrogramLoss(**mel)
        self.lambda_mel, self.lambda_kl = lambda_mel, lambda_kl
        self.lambda_adv, self.lambda_feat_match = lambda_adv, lambda_feat_match
        self.adv_warmup_steps = adv_warmup_steps
        self.kl_warmup_steps = kl_warmup_steps
        if segment_length is not None and segment_length <= 0:
            segment_length = None
        self.segment_length = segment_length
        self.cache_generator_outputs = cache_generator_outputs
        self.sample_on_decode = sample_on_decode
        # generator updates so far; a buffer so that resuming from checkpoint.pth keeps the warm-up schedule
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self._cache: Optional[Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]] = None
        self.fs = self.generator.sample_rate  # read by espnet2.bin.gan_codec_inference to write wavs

    # ---- ESPnet metadata -------------------------------------------------------------------------------------
    def meta_info(self) -> Dict[str, Any]:
        return {
            "fs": self.fs,
            "frame_shift": self.generator.hop_length,
            "frame_rate": self.generator.frame_rate,
            "latent_dim": self.generator.latent_dim,
            "feature_dim": 2 * self.generator.latent_dim,  # encode() returns mu | log_sigma
            "continuous": True,
            "decoder_type": self.generator.decoder_type,
        }

    @property
    def kl_weight(self) -> float:
        """lambda_kl, ramped linearly over the first ``kl_warmup_steps`` generator updates."""
        if self.kl_warmup_steps <= 0:
            return self.lambda_kl
        return self.lambda_kl * min(1.0, int(self.num_updates) / self.kl_warmup_steps)

    @property
    def adversarial(self) -> bool:
        return int(self.num_updates) >= self.adv_warmup_steps

    # ---- training --------------------------------------------------------------------------------------------
    def forward(
        self,
        audio: torch.Tensor,
        forward_generator: bool = True,
        audio_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Dict[str, Any]:
        """audio [B, T] (zero padded) -> {"loss", "stats", "weight", "optim_idx"} for one GAN turn."""
        if forward_generator:
            return self._forward_generator(audio, audio_lengths)
        return self._forward_discriminator(audio, audio_lengths)

    def _prepare(
        self, audio: torch.Tensor, audio_lengths: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> wav [B, 1, T'], sample mask [B, 1, T'], latent frame mask [B, 1, ceil(T' / hop)]."""
        if audio.dim() == 3:
            audio = audio.squeeze(1)
        if audio_lengths is None:
            lengths = lengths_from_zero_padding(audio)
        else:
            lengths = audio_lengths.to(audio.device).long().clamp(max=audio.shape[-1])
        if self.training and self.segment_length is not None:
            audio, lengths = random_segments(audio, lengths, self.segment_length)
        hop = self.generator.hop_length
        n = audio.shape[-1]
        sample_mask = (torch.arange(n, device=audio.device)[None, :] < lengths[:, None]).to(audio.dtype)
        n_frames = math.ceil(n / hop)
        valid_frames = torch.div(lengths + hop - 1, hop, rounding_mode="floor")
        frame_mask = (torch.arange(n_frames, device=audio.device)[None, :] < valid_frames[:, None]).to(audio.dtype)
        return audio.unsqueeze(1), sample_mask.unsqueeze(1), frame_mask.unsqueeze(1)

    def _generate(
        self, audio: torch.Tensor, audio_lengths: Optional[torch.Tensor], store: bool
    ) -> Tuple[torch.Tensor, ...]:
        """(wav, wav_hat (padding zeroed), sample_mask, kl); reuses the other turn's pass on the same batch."""
        if self._cache is not None and self._cache[0] is audio:
            result = self._cache[1]
            self._cache = None  # each generator pass serves at most the two turns of one batch
            return result
        self._cache = None
        wav, sample_mask, frame_mask = self._prepare(audio, audio_lengths)
        out = self.generator(wav, frame_mask)
        wav_hat = out["wav_hat"][..., : wav.shape[-1]] * sample_mask
        result = (wav, wav_hat, sample_mask, out["kl"])
        if store and self.training and self.cache_generator_outputs:
            self._cache = (audio, result)
        return result

    def _forward_generator(self, audio: torch.Tensor, audio_lengths: Optional[torch.Tensor]) -> Dict[str, Any]:
        adversarial = self.adversarial
        wav, wav_hat, sample_mask, kl = self._generate(audio, audio_lengths, store=adversarial)
        mel_loss = self.mel_loss(wav_hat, wav, sample_mask)
        loss = self.lambda_mel * mel_loss + self.kl_weight * kl
        stats: Dict[str, Any] = dict(mel_loss=mel_loss.item(), kl_loss=kl.item(), adv_loss=None, feat_match_loss=None)
        if adversarial:
            fake = self.discriminator(wav_hat)
            with torch.no_grad():  # real features are targets only
                real = self.discriminator(wav)
            adv_loss = generator_adversarial_loss(fake)
            fm_loss = feature_matching_loss(fake, real)
            loss = loss + self.lambda_adv * adv_loss + self.lambda_feat_match * fm_loss
            stats.update(adv_loss=adv_loss.item(), feat_match_loss=fm_loss.item())
        stats["loss"] = loss.item()
        if self.training:
            self.num_updates += 1
        loss, stats, weight = force_gatherable((loss, stats, audio.shape[0]), loss.device)
        return {"loss": loss, "stats": stats, "weight": weight, "optim_idx": 0}

    def _forward_discriminator(
        self, audio: torch.Tensor, audio_lengths: Optional[torch.Tensor]
    ) -> Dict[str, Any]:
        if not self.adversarial:
            # warm-up: nothing to learn yet; a grad-carrying zero keeps the trainer's backward/step a no-op
            self._cache = None
            loss = torch.zeros((), device=audio.device, requires_grad=True)
            stats: Dict[str, Any] = dict(discriminator_loss=None, real_loss=None, fake_loss=None)
        else:
            wav, wav_hat, _, _ = self._generate(audio, audio_lengths, store=True)
            real_loss, fake_loss = discriminator_adversarial_loss(
                self.discriminator(wav_hat.detach()), self.discriminator(wav)
            )
            loss = real_loss + fake_loss
            stats = dict(discriminator_loss=loss.item(), real_loss=real_loss.item(), fake_loss=fake_loss.item())
        loss, stats, weight = force_gatherable((loss, stats, audio.shape[0]), loss.device)
        return {"loss": loss, "stats": stats, "weight": weight, "optim_idx": 1}

    # ---- inference -------------------------------------------------------------------------------------------
    @staticmethod
    def _as_batch(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 1:
            return x.view(1, 1, -1)
        if x.dim() == 2:
            return x.unsqueeze(1)
        return x

    def encode_continuous(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """wav [T] | [B, T] | [B, 1, T] -> posterior (mu, log_sigma), each [B, D, F]."""
        return self.generator.encode(self._as_batch(x))

    def decode_continuous(self, z: torch.Tensor) -> torch.Tensor:
        """latents [B, D, F] -> wav [B, 1, F * hop]."""
        return self.generator.decode(z)

    def encode(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """wav -> features [B, 2D, F] = mu | log_sigma (what ``gan_codec_inference`` writes as "codes")."""
        mu, log_sigma = self.encode_continuous(x)
        return torch.cat([mu, log_sigma], dim=1)

    def decode(self, x: torch.Tensor, sample: Optional[bool] = None, **kwargs) -> torch.Tensor:
        """[B, 2D, F] features (decodes mu, or a sample if ``sample``) or [B, D, F] latents -> wav [B, 1, T]."""
        dim = self.generator.latent_dim
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.shape[1] == 2 * dim:
            mu, log_sigma = x.split(dim, dim=1)
            use_sample = self.sample_on_decode if sample is None else sample
            x = self.generator.sample(mu, log_sigma) if use_sample else mu
        return self.generator.decode(x)

    def inference(self, x: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        """Resynthesis: wav [T] (or batched) -> {"wav" (input length), "codec" (mu|log_sigma), "mu", "log_sigma"}."""
        wav = self._as_batch(x)
        feats = self.encode(wav)
        wav_hat = self.decode(feats, **kwargs)[..., : wav.shape[-1]]
        if x.dim() == 1:
            wav_hat = wav_hat.view(-1)
        mu, log_sigma = feats.split(self.generator.latent_dim, dim=1)
        return {"wav": wav_hat, "codec": feats, "mu": mu, "log_sigma": log_sigma}
