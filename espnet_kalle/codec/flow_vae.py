"""The Flow-VAE generator: encoder -> posterior -> (flow for the KL) -> causal decoder.

Public API (what the LM, the synthesizer and the recipes use):
``encode(wav[B,1,T]) -> (mu, log_sigma)[B,D,F]``, ``decode(z[B,D,F]) -> wav[B,1,F*hop]``,
``stream_decoder()``, ``hop_length``, ``sample_rate``, ``latent_dim``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from espnet_kalle.codec.decoders import DECODERS
from espnet_kalle.codec.encoder import PosteriorEncoder
from espnet_kalle.codec.flow import ResidualCouplingFlow, flow_kl
from espnet_kalle.codec.mel_encoder import MelPosteriorEncoder
from espnet_kalle.codec.modules import remove_weight_norm_
from espnet_kalle.streaming import StreamDecoder


class FlowVAE(nn.Module):
    def __init__(
        self,
        sample_rate: int = 16000,
        latent_dim: int = 512,
        downsample_rates: Sequence[int] = (2, 2, 4, 4, 4, 5),
        downsample_channels: Sequence[int] = (12, 24, 48, 96, 192, 384, 768),
        residual_dilations: Sequence[int] = (1, 3, 9, 1, 3, 9),
        init_log_sigma: float = -3.0,
        flow_hidden_channels: int = 512,
        flow_kernel_size: int = 5,
        flow_layers: int = 4,
        flow_couplings: int = 4,
        decoder_type: str = "bigvgan",
        decoder_conf: Optional[Dict[str, Any]] = None,
        encoder_type: str = "waveform",
        encoder_conf: Optional[Dict[str, Any]] = None,
        prompt_drop_last: int = 0,
    ):
        """``encoder_type`` "waveform" is the paper's (and the release's) encoder and uses ``downsample_*`` and
        ``residual_dilations`` (``encoder_conf``: its ``causal`` and ``activation``); "mel" is the CPU-budget
        front end of ``mel_encoder`` configured by ``encoder_conf``. ``prompt_drop_last``: frames a voice prompt
        loses at its end (the released inference drops the last encoded frame: 1)."""
        super().__init__()
        if decoder_type not in DECODERS:
            raise ValueError(f"decoder_type must be one of {sorted(DECODERS)}, got {decoder_type!r}")
        self.sample_rate = sample_rate
        self.latent_dim = latent_dim
        if encoder_type == "waveform":
            self.encoder = PosteriorEncoder(
                latent_dim, downsample_rates, downsample_channels, residual_dilations, init_log_sigma,
                **(encoder_conf or {}),
            )
        elif encoder_type == "mel":
            self.encoder = MelPosteriorEncoder(
                latent_dim, sample_rate=sample_rate, init_log_sigma=init_log_sigma, **(encoder_conf or {})
            )
        else:
            raise ValueError(f"encoder_type must be 'waveform' or 'mel', got {encoder_type!r}")
        self.encoder_type = encoder_type
        self.flow = ResidualCouplingFlow(
            latent_dim, flow_hidden_channels, flow_kernel_size, 1, flow_layers, flow_couplings
        )
        self.decoder_type = decoder_type
        self.decoder = DECODERS[decoder_type](latent_dim=latent_dim, **(decoder_conf or {}))
        if self.decoder.hop_length != self.encoder.hop_length:
            raise ValueError(
                f"decoder hop {self.decoder.hop_length} != encoder hop {self.encoder.hop_length}: "
                "upsample and downsample rates must multiply to the same number"
            )
        self.hop_length = self.encoder.hop_length
        self.prompt_drop_last = int(prompt_drop_last)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def encode(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """wav [B, 1, T] in [-1, 1] -> posterior (mu, log_sigma), each [B, D, ceil(T / hop)]."""
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"encode expects a mono waveform [B, 1, T], got shape {tuple(wav.shape)}")
        return self.encoder(wav)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D, F] -> waveform [B, 1, F * hop]."""
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ValueError(f"decode expects latents [B, {self.latent_dim}, F], got shape {tuple(z.shape)}")
        return self.decoder(z)

    def prompt_posterior(self, wav: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``encode`` for a voice prompt: the posterior the LM continues from (less ``prompt_drop_last`` frames)."""
        mu, log_sigma = self.encode(wav)
        keep = mu.shape[-1] - self.prompt_drop_last
        return mu[..., :keep], log_sigma[..., :keep]

    def stream_decoder(self) -> StreamDecoder:
        """A fresh incremental decoder; ``push`` chunks of latents, then ``flush``."""
        return StreamDecoder(self.decoder, self.latent_dim)

    @staticmethod
    def sample(mu: torch.Tensor, log_sigma: torch.Tensor, generator: Optional[torch.Generator] = None):
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + noise * log_sigma.exp()

    def forward(self, wav: torch.Tensor, frame_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Training pass: reparameterised posterior sample, reconstruction and the flow KL.

        ``frame_mask`` [B, 1, F] marks valid latent frames of padded batches.
        """
        mu, log_sigma = self.encode(wav)
        noise = torch.randn_like(mu)
        z = mu + noise * log_sigma.exp()
        z_p = self.flow(z, frame_mask)
        wav_hat = self.decode(z)
        return {
            "wav_hat": wav_hat,
            "mu": mu,
            "log_sigma": log_sigma,
            "z": z,
            "z_p": z_p,
            "kl": flow_kl(z, z_p, mu, log_sigma, frame_mask, noise),
        }

    def prepare_for_inference(self) -> FlowVAE:
        """Fold weight norm and switch to eval mode (same output, fewer ops per call)."""
        remove_weight_norm_(self)
        return self.eval()
