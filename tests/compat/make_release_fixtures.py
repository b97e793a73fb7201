"""Write the fixtures of ``tests/compat/test_official.py`` by running the released KALL-E code itself.

    python tests/compat/make_release_fixtures.py --release /path/to/KALL-E-checkout --out tests/data/official_release

Run it in a scratch venv that has what the release imports (torch, transformers, alias-free-torch, librosa,
scipy, pyyaml, tqdm), never in the project's venv: the released code is not a dependency and is not committed.
The checkout is ``github.com/xkx-hub/KALL-E`` (flowvae.py, model.py, infer.py, configs/).

For each configuration (the released JSON with narrower channels, and a variant that exercises the other
options the JSON format has: ``snake``, linear-scale alphas, other rates, kernels and dilations) it builds the
released ``FlowVAE`` with random weights and saves, in the released naming scheme:

- ``<name>/flowvae.pt`` (``{"generator": state_dict}``, values rounded to float16 so the files stay small; the
  released code ran on exactly these values) and ``<name>/config.json``;
- ``<name>/outputs.npz``: ``extract_latents`` of a test waveform, the flow ``z -> z_p`` of a posterior sample,
  ``inference_from_latents`` without sampling and with sampling (the drawn noise saved alongside).

For the released configuration it also builds the released ``Kalle`` LM on a small LlamaConfig (its two linear
layers resized to the small sizes, as the class hard-codes the 1B sizes) and runs ``infer_tools.infer`` of the
release end to end on CPU with a prompt wav + transcript and a small tokenizer carrying the release's special
tokens, recording (through forward hooks, not by editing the code) the text ids, the prompt posterior, the
sampled latents fed back to the LM, the distributions ``Kalle.infer`` returned and the decoded audio.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<|TEXT_GENERATION_START|>", "<|TEXT_GENERATION_END|>", "<|TEXT_UNDERSTANDING_START|>",
            "<|TEXT_UNDERSTANDING_END|>", "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>",
            "<|SPEECH_UNDERSTANDING_START|>", "<|SPEECH_UNDERSTANDING_END|>"]
PROMPT_TEXT = "hello world this is a small test of the voice ."
TARGET_TEXT = "we speak now and then !"
LM_STEPS = 9  # Kalle.infer's max_length: the random LM would not reach the end distribution

# The released config (configs/flowvae_dim1024_12p5hz.json) with narrower channels: every structural choice
# (rates, kernels, resblocks, dilations, activation, causal) is the release's.
RELEASE_SMALL = {"upsample_initial_channel": 64, "downsample_channels": [12, 12, 12, 12, 12, 12, 16],
                 "latent_dim": 8, "flow_hidden_channels": 8}
# Other values the JSON format can express and the released code runs.
VARIANT = {"upsample_rates": [8, 8, 4, 5], "upsample_kernel_sizes": [16, 16, 8, 10], "upsample_initial_channel": 32,
           "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 2, 3], [1, 3, 5]],
           "downsample_rates": [4, 5, 8, 8], "downsample_channels": [12, 16, 16, 16, 16],
           "activation": "snake", "snake_logscale": False, "latent_dim": 6, "flow_hidden_channels": 8}


def randomize_flowvae(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random values of a size that keeps every layer's output in a useful range (tanh not saturated)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            elif name.endswith(".alpha") or name.endswith(".beta"):
                logscale = model.h.snake_logscale
                p.copy_(0.3 * torch.randn(p.shape, generator=gen) + (0.0 if logscale else 1.0))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:  # weight_v and the plain convs of the flow
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            p.copy_(p.half().float())  # stored as float16: compute on exactly the stored values


def randomize_lm(model: torch.nn.Module, gen: torch.Generator, latent_dim: int) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)
        model.distribution_linear.bias[latent_dim:] -= 1.0  # log-scales around -1
        for p in model.parameters():
            p.copy_(p.half().float())  # the release ships the LM in float16


def build_tokenizer(path: Path) -> None:
    """A word-level tokenizer with the release's special tokens and a BOS post-processor like Llama-3's."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|begin_of_text|>": 1, "<|eot_id|>": 2}
    for word in (PROMPT_TEXT + " " + TARGET_TEXT).split():
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   unk_token="[UNK]", pad_token="<|eot_id|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.save_pretrained(str(path))


def test_wave(n: int, seed: int) -> torch.Tensor:
    """A voiced-like signal (harmonics, slow amplitude envelope) plus a little noise, in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000.0
    f0 = 120 + 30 * torch.sin(2 * torch.pi * 0.7 * t)
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / 16000.0
    wav = sum(torch.sin(k * phase) / k for k in range(1, 6)) * (0.2 + 0.15 * torch.sin(2 * torch.pi * 2 * t) ** 2)
    return (wav + 0.01 * torch.randn(n, generator=gen)).clamp(-1, 1).float()


def flowvae_fixture(flowvae, config: dict, out: Path, seed: int):
    from flowvae import FlowVAE  # the released module

    h = flowvae.AttrDict(config)
    model = FlowVAE(h)
    randomize_flowvae(model, torch.Generator().manual_seed(seed))
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    torch.save({"generator": {k: v.half() for k, v in model.state_dict().items()}}, out / "flowvae.pt",
               _use_new_zipfile_serialization=False)  # the older format has less overhead per tensor
    # Load the way infer.py does (from the saved file, eval, weight norm removed).
    model = FlowVAE(h)
    model.load_state_dict(torch.load(out / "flowvae.pt", map_location="cpu")["generator"])
    model.eval()
    model.remove_weight_norm()
    gen = torch.Generator().manual_seed(seed + 1)
    hop = int(np.prod(config["downsample_rates"]))
    arrays = {}
    with torch.no_grad():
        wav = test_wave(5 * hop + 517, seed)  # not a whole number of frames
        stats = model.extract_latents(wav.view(1, 1, -1))
        arrays.update(encode_wav=wav.numpy(), encode_stats=stats[0].numpy())
        mu, logs = stats.split(h.latent_dim, dim=1)
        noise = torch.randn(mu.shape, generator=gen)
        z = mu + noise * torch.exp(logs)
        z_p = model.flow(z, torch.ones(1, 1, z.shape[-1]))
        arrays.update(flow_z=z[0].numpy(), flow_zp=z_p[0].numpy())
        latents = torch.randn(1, h.latent_dim, 7, generator=gen)
        arrays.update(decode_z=latents[0].numpy(),
                      decode_wav=model.inference_from_latents(latents, do_sample=False)[0, 0].numpy())
        dists = torch.cat([torch.randn(1, h.latent_dim, 6, generator=gen),
                           -1.5 + 0.3 * torch.randn(1, h.latent_dim, 6, generator=gen)], dim=1)
        torch.manual_seed(seed + 2)
        sampled = model.inference_from_latents(dists, do_sample=True)
        torch.manual_seed(seed + 2)
        drawn = torch.randn_like(dists[:, : h.latent_dim])  # the draw inference_from_latents made
        arrays.update(sample_dists=dists[0].numpy(), sample_noise=drawn[0].numpy(), sample_wav=sampled[0, 0].numpy())
    np.savez_compressed(out / "outputs.npz", **arrays)
    for key in ("encode_stats", "flow_zp", "decode_wav", "sample_wav"):
        print(f"{out.name}: {key} {arrays[key].shape} std {arrays[key].std():.3f} max |x| {abs(arrays[key]).max():.3f}")
    return model, h


def lm_fixture(release: Path, generator, h, out: Path, seed: int) -> None:
    import soundfile as sf
    from infer import infer_tools  # the released module
    from model import Kalle
    from transformers import AutoTokenizer, LlamaConfig

    build_tokenizer(out / "tokenizer_dir")
    vocab = len(AutoTokenizer.from_pretrained(str(out / "tokenizer_dir")))
    config = LlamaConfig(
        attention_dropout=0.0, attention_bias=False, head_dim=8, hidden_act="silu", hidden_size=32,
        intermediate_size=48, max_position_embeddings=131072, mlp_bias=False, num_attention_heads=4,
        num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-05, rope_theta=500000.0,
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        tie_word_embeddings=True, torch_dtype=torch.float32, vocab_size=vocab, use_cache=True,
    )
    lm = Kalle(config)
    lm.audio_linear = torch.nn.Linear(h.latent_dim, config.hidden_size)  # hard-coded 512 -> 2048 in the class
    lm.distribution_linear = torch.nn.Linear(config.hidden_size, 2 * h.latent_dim)
    randomize_lm(lm, torch.Generator().manual_seed(seed), h.latent_dim)
    torch.save({k: v.half() for k, v in lm.state_dict().items()}, out / "model.pt",
               _use_new_zipfile_serialization=False)
    lm.load_state_dict(torch.load(out / "model.pt", map_location="cpu"))
    lm.eval()

    prompt = test_wave(int(2.5 * 16000), seed)
    sf.write(out / "prompt.wav", prompt.numpy(), 16000, subtype="PCM_16")
    (out / "prompt.txt").write_text(PROMPT_TEXT + "\n")

    tools = infer_tools.__new__(infer_tools)  # __init__ wants CUDA and the 1B checkpoints
    tools.device, tools.h, tools.generator, tools.model = "cpu", h, generator, lm
    tools.tokenizer_path = str(out / "tokenizer_dir")
    tools.init_tokenizer()
    seen = {"ids": [], "latents": [], "stats": []}
    lm.base_model.model.embed_tokens.register_forward_hook(lambda m, a, o: seen["ids"].append(a[0].clone()))
    lm.audio_linear.register_forward_hook(lambda m, a, o: seen["latents"].append(a[0].clone()))
    generator.audio_encoder.register_forward_hook(lambda m, a, o: seen["stats"].append(o.clone()))
    infer_loop = lm.infer
    results = {}

    def recorded_infer(*args, **kwargs):
        results["dists"] = infer_loop(*args, **kwargs)
        return results["dists"]

    lm.infer = functools.partial(recorded_infer, max_length=LM_STEPS)
    decode = generator.inference_from_latents

    def recorded_decode(*args, **kwargs):
        results["wav"] = decode(*args, **kwargs)
        return results["wav"]

    generator.inference_from_latents = recorded_decode
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # infer() writes output.wav into the working directory
        try:
            torch.manual_seed(seed)
            tools.infer(TARGET_TEXT, PROMPT_TEXT, str(out / "prompt.wav"))
        finally:
            os.chdir(cwd)
    ids = seen["ids"][0][0]
    latents = torch.cat(seen["latents"], dim=1)[0]
    np.savez_compressed(
        out / "lm_outputs.npz", input_ids=ids.numpy(), prompt_stats=seen["stats"][0][0].numpy(),
        prompt_latents=seen["latents"][0][0].numpy(), fed_latents=latents.numpy(),
        dists=results["dists"][0].numpy(), wav=results["wav"][0, 0].numpy(),
    )
    print(f"LM: {ids.numel()} text ids, {seen['latents'][0].shape[1]} prompt frames, "
          f"dists {tuple(results['dists'].shape)}, wav {tuple(results['wav'].shape)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", type=Path, required=True, help="checkout of github.com/xkx-hub/KALL-E")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out = args.out.resolve()
    sys.path.insert(0, str(args.release.resolve()))
    import flowvae

    torch.set_num_threads(1)
    base = json.loads((args.release / "configs" / "flowvae_dim1024_12p5hz.json").read_text())
    generator, h = flowvae_fixture(flowvae, dict(base, **RELEASE_SMALL), args.out / "release_small", seed=0)
    flowvae_fixture(flowvae, dict(base, **VARIANT), args.out / "variant", seed=10)
    lm_fixture(args.release, generator, h, args.out / "release_small", seed=20)


if __name__ == "__main__":
    main()
