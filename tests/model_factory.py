"""Tiny random "kalle" models packed into model dirs, for tests of everything that loads a model dir.

Random weights make no speech, but they exercise the exact loading, tokenising, generation, streaming and
decoding paths of a trained model. Training-quality checks live with the recipe and the embedded model.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from espnet_kalle.codec import FlowVAE
from espnet_kalle.tts.kalle import KallE

LATENT = 8
CHARS = list("abcdefghijklmnopqrstuvwxyz'.,!?-")
TOKENS = ["<blank>", "<unk>", "<space>"] + CHARS + ["<sos/eos>"]
CODEC_PARAMS = dict(latent_dim=LATENT, downsample_channels=[4, 4, 4, 4, 4, 4, 8], residual_dilations=[1],
                    flow_hidden_channels=8, flow_layers=1, flow_couplings=1, decoder_type="istft",
                    decoder_conf=dict(dim=16, intermediate_dim=32, num_layers=1))


def write_tiny_codec(root: Path) -> tuple[Path, Path]:
    """A random Flow-VAE saved the way an ESPnet codec experiment is (config.yaml + model .pth)."""
    torch.manual_seed(0)
    codec = FlowVAE(**CODEC_PARAMS)
    codec_config = root / "codec_config.yaml"
    codec_config.write_text(yaml.safe_dump({"codec": "flow_vae", "codec_conf": {"sampling_rate": 16000,
                                                                               "generator_params": CODEC_PARAMS}}))
    codec_model = root / "codec.pth"
    torch.save({f"codec.generator.{k}": v for k, v in codec.state_dict().items()}, codec_model)
    return codec_config, codec_model


def build_tiny_model_dir(root: Path, with_speaker: bool = True, n_voices: int = 3, max_frames: int = 30,
                         lm_extra: dict | None = None) -> Path:
    """Write ESPnet-style experiment files for a random LM and codec, then pack them like the recipe does."""
    from espnet_kalle.pretrained.pack import pack

    root.mkdir(parents=True, exist_ok=True)
    codec_config, codec_model = write_tiny_codec(root)

    tts_conf = {
        "latent_dim": LATENT,
        "lm_conf": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
                    "max_position_embeddings": 1024, **(lm_extra or {})},
        "generation_conf": {"max_frames": max_frames, "maxlenratio": 2.0},
    }
    if with_speaker:
        tts_conf["speaker_conf"] = {"speaker_dim": 4, "channels": 16, "embed_dim": 8, "scale": 4,
                                    "se_channels": 8, "attention_channels": 8}
    odim = 2 * LATENT + (640 if with_speaker else 0)
    model = KallE(idim=len(TOKENS), odim=odim, **tts_conf)
    with torch.no_grad():  # a head bias that keeps the random model away from the end distribution
        model.lm.head.distribution_linear.bias.fill_(-2.0)
    lm_config = root / "kalle_config.yaml"
    lm_config.write_text(yaml.safe_dump({"tts": "kalle", "token_list": TOKENS, "token_type": "char",
                                         "cleaner": None, "g2p": None, "odim": odim, "tts_conf": tts_conf}))
    lm_model = root / "kalle.pth"
    torch.save({f"tts.{k}": v for k, v in model.state_dict().items()}, lm_model)
    # a few auditioned seeds per preset keep the fixture fast (the default is presets.CANDIDATES_PER_VOICE)
    return pack(lm_config, lm_model, codec_config, codec_model, root / "model", n_voices=n_voices, name="tiny",
                n_candidates=n_voices + 2)
