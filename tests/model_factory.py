"""Tiny random "kalle" models packed into model dirs, for tests of everything that loads a model dir.

Random weights make no speech, but they exercise the exact loading, tokenising, generation, streaming and
decoding paths of a trained model. Training-quality checks live with the recipe and the embedded model.

A random LM never reaches the end distribution, so ``build_stopping_model_dir`` sets the weights of one by hand
to speak exactly ``STOP_FRAMES`` frames per sentence and then predict the end: the stop rule itself (the head's
KL to N_end, not a frame limit) ends every sentence it speaks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
import yaml

from espnet_kalle.codec import FlowVAE
from espnet_kalle.lm.model import KalleLM
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


STOP_FRAMES = 6  # frames the stopping model speaks per sentence (its max_frames is 5x that)
CLOCK_STEP = 2.0  # how far latent dimension 0 (the clock) moves per frame
CLOCK_LOG_SIGMA = -3.0  # the clock's predicted log sigma: little noise, and a KL to N_end still below the threshold
CLOCK_AT_STOP = -0.7  # the clock's mean when the end fires: well inside the stop window, which is |mean - 1| < 2.7
CLOCK_SCALE, CLOCK_BIAS = 1e-3, 4.0  # the clock enters the hidden state small beside a constant: RMSNorm stays ~linear


def make_lm_stop_after(lm: KalleLM, frames: int) -> None:
    """Set ``lm``'s weights so that, from a prefix ending in its separator, it speaks ``frames`` frames and stops.

    Every layer's attention and MLP output is zeroed, so the state at a position is the final RMSNorm of that
    position's own input: the LM reads only the previous frame. Latent dimension 0 is a clock, N(c + CLOCK_STEP,
    e^CLOCK_LOG_SIGMA) after a frame whose clock was c, starting from the value the separator's embedding holds;
    every other dimension is predicted as N_end = N(1, e). KL(p_t || N_end) / D is then the clock's KL alone over D,
    below the stop threshold (0.5) only once the clock mean is within ~2.7 of 1 (D = 8), which it reaches at frame
    ``frames``. A voice with a prompt continues the clock of the prompt's last frame: use voices without one.
    """
    hidden, dim = lm.hidden_size, lm.latent_dim
    root = math.sqrt(hidden)  # RMSNorm(x) = x * sqrt(H) / |x| (unit norm weight)
    with torch.no_grad():
        for layer in lm.backbone.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        lm.backbone.norm.weight.fill_(1.0)
        lm.audio_linear.weight.zero_()
        lm.audio_linear.bias.zero_()
        lm.audio_linear.weight[0, 0] = CLOCK_SCALE
        lm.audio_linear.bias[1] = CLOCK_BIAS
        start = CLOCK_AT_STOP - CLOCK_STEP * (frames + 1)  # the clock the separator hands to the first frame
        separator = lm.backbone.embed_tokens.weight[int(lm.sep_ids[-1])]
        separator.zero_()
        separator[0], separator[1] = CLOCK_SCALE * start, CLOCK_BIAS
        head = lm.head.distribution_linear
        head.weight.zero_()
        head.bias.fill_(1.0)  # mean 1 and log sigma 1: N_end in every dimension but the clock
        head.weight[0, 0] = CLOCK_BIAS / (CLOCK_SCALE * root)  # the clock, read back from the normalised state
        head.weight[0, 1] = CLOCK_STEP / root  # plus one step, from the constant
        head.bias[0] = 0.0
        head.bias[dim] = CLOCK_LOG_SIGMA


def build_stopping_model_dir(root: Path, frames: int = STOP_FRAMES) -> Path:
    """A packed tiny model without speaker encoder or presets that speaks ``frames`` frames per sentence, then
    stops by its own end prediction (``make_lm_stop_after``); its frame limits are far from that."""
    return build_tiny_model_dir(root, with_speaker=False, n_voices=0, max_frames=5 * frames,
                                generation={"min_frames": 1, "maxlenratio": 0.0},
                                edit=lambda model: make_lm_stop_after(model.lm, frames))


def build_tiny_model_dir(root: Path, with_speaker: bool = True, n_voices: int = 3, max_frames: int = 30,
                         lm_extra: dict | None = None, generation: dict | None = None,
                         edit: Callable[[KallE], None] | None = None) -> Path:
    """Write ESPnet-style experiment files for a random LM and codec, then pack them like the recipe does."""
    from espnet_kalle.pretrained.pack import pack

    root.mkdir(parents=True, exist_ok=True)
    codec_config, codec_model = write_tiny_codec(root)

    tts_conf = {
        "latent_dim": LATENT,
        "lm_conf": {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
                    "max_position_embeddings": 1024, **(lm_extra or {})},
        "generation_conf": {"max_frames": max_frames, "maxlenratio": 2.0, **(generation or {})},
    }
    if with_speaker:
        tts_conf["speaker_conf"] = {"speaker_dim": 4, "channels": 16, "embed_dim": 8, "scale": 4,
                                    "se_channels": 8, "attention_channels": 8}
    odim = 2 * LATENT + (640 if with_speaker else 0)
    model = KallE(idim=len(TOKENS), odim=odim, **tts_conf)
    with torch.no_grad():  # a head bias that keeps the random model away from the end distribution
        model.lm.head.distribution_linear.bias.fill_(-2.0)
    if edit is not None:
        edit(model)
    lm_config = root / "kalle_config.yaml"
    lm_config.write_text(yaml.safe_dump({"tts": "kalle", "token_list": TOKENS, "token_type": "char",
                                         "cleaner": None, "g2p": None, "odim": odim, "tts_conf": tts_conf}))
    lm_model = root / "kalle.pth"
    torch.save({f"tts.{k}": v for k, v in model.state_dict().items()}, lm_model)
    # a few auditioned seeds per preset keep the fixture fast (the default is presets.CANDIDATES_PER_VOICE)
    return pack(lm_config, lm_model, codec_config, codec_model, root / "model", n_voices=n_voices, name="tiny",
                n_candidates=n_voices + 2)
