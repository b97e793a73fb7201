"""Importer of the released KALL-E checkpoints, on small checkpoints written with the release's naming scheme.

The release-style names and shapes come from ``release_flowvae_shapes`` / ``release_lm_shapes`` below, which are
first checked to reproduce the released tsv listings exactly at full size; the reference forward passes use
those raw release-named tensors (weight = g * v / ||v||) and never our modules.
"""

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from espnet_kalle.bin.convert_official import main as convert_main
from espnet_kalle.compat.official import ConversionError, convert_flow_vae, convert_lm

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "official_kalle"  # copied from shared/reference
SPECIALS = ["<|TEXT_GENERATION_START|>", "<|TEXT_GENERATION_END|>", "<|TEXT_UNDERSTANDING_START|>",
            "<|TEXT_UNDERSTANDING_END|>", "<|SPEECH_GENERATION_START|>", "<|SPEECH_GENERATION_END|>",
            "<|SPEECH_UNDERSTANDING_START|>", "<|SPEECH_UNDERSTANDING_END|>"]
SMALL_FLOWVAE = {
    "resblock": "1", "upsample_rates": [160, 8], "upsample_kernel_sizes": [320, 16], "upsample_initial_channel": 16,
    "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3], [1, 3]], "downsample_rates": [8, 160],
    "downsample_channels": [2, 4, 8], "activation": "snakebeta", "snake_logscale": True, "latent_dim": 4,
    "use_vae": True, "causal": True, "flow_hidden_channels": 8, "sampling_rate": 16000,
}
SMALL_ARCH = dict(units=2, flow_kernel=3, flow_layers=2, couplings=2)
ENCODER_DILATIONS = [1, 3]  # what the converter assumes for 2 units (1, 3, 9, ... repeated)
SMALL_LM = dict(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8, ffn=48, latent=4)
WORDS = "hello world this is a small test of the voice we speak now and then . , ! ?".split()


# ------------------------------------------------------------------ release layouts (checked against the tsv)
def release_flowvae_shapes(cfg, units, flow_kernel, flow_layers, couplings, conv_pre_kernel=7, filt=12):
    shapes = OrderedDict()

    def wn(name, out_c, in_c, k, g_rows=None):
        shapes[f"{name}.bias"] = (out_c,)
        shapes[f"{name}.weight_g"] = (g_rows or out_c, 1, 1)
        shapes[f"{name}.weight_v"] = (g_rows or out_c, in_c, k) if g_rows is None else (g_rows, out_c, k)

    ch, rates, enc = cfg["downsample_channels"], cfg["downsample_rates"], "audio_encoder.generator"
    wn(f"{enc}.0.layer", ch[0], 1, 3)
    for i, r in enumerate(rates):
        wn(f"{enc}.{2 + 3 * i}.layer", ch[i + 1], ch[i], 2 * r)
        for u in range(units):
            for j in (1, 3):
                wn(f"{enc}.{3 + 3 * i}.layers.{u}.{j}", ch[i + 1], ch[i + 1], 3)
    wn(f"{enc}.{2 + 3 * len(rates)}.layer", 2 * cfg["latent_dim"], ch[-1], 3)
    half, hid = cfg["latent_dim"] // 2, cfg["flow_hidden_channels"]
    for c in range(couplings):
        p = f"flow.flows.{2 * c}"
        shapes[f"{p}.pre.weight"], shapes[f"{p}.pre.bias"] = (hid, half, 1), (hid,)
        for layer in range(flow_layers):
            wn(f"{p}.enc.in_layers.{layer}", 2 * hid, hid, flow_kernel)
        for layer in range(flow_layers):
            wn(f"{p}.enc.res_skip_layers.{layer}", 2 * hid if layer < flow_layers - 1 else hid, hid, 1)
        shapes[f"{p}.post.weight"], shapes[f"{p}.post.bias"] = (half, hid, 1), (half,)
    c = cfg["upsample_initial_channel"]
    wn("conv_pre", c, cfg["latent_dim"], conv_pre_kernel)

    def act(name, channels):
        shapes[f"{name}.act.alpha"] = shapes[f"{name}.act.beta"] = (channels,)
        shapes[f"{name}.upsample.filter"] = shapes[f"{name}.downsample.lowpass.filter"] = (1, 1, filt)

    for i, k in enumerate(cfg["upsample_kernel_sizes"]):
        wn(f"ups.{i}.0", c // 2, None, k, g_rows=c)  # transposed conv: v is [in, out, k], g per input channel
        c //= 2
    c = cfg["upsample_initial_channel"]
    n_kernels = len(cfg["resblock_kernel_sizes"])
    for i in range(len(cfg["upsample_rates"])):
        c //= 2
        for j, (k, dil) in enumerate(zip(cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"])):
            p = f"resblocks.{i * n_kernels + j}"
            for m in range(len(dil)):
                wn(f"{p}.convs1.{m}", c, c, k)
            for m in range(len(dil)):
                wn(f"{p}.convs2.{m}", c, c, k)
            for m in range(2 * len(dil)):
                act(f"{p}.activations.{m}", c)
    act("activation_post", c)
    wn("conv_post", 1, c, 7)
    return shapes


def release_lm_shapes(vocab, hidden, layers, heads, kv_heads, head_dim, ffn, latent):
    shapes = OrderedDict({"base_model.model.embed_tokens.weight": (vocab, hidden)})
    for i in range(layers):
        p = f"base_model.model.layers.{i}"
        shapes.update({f"{p}.self_attn.q_proj.weight": (heads * head_dim, hidden),
                       f"{p}.self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
                       f"{p}.self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
                       f"{p}.self_attn.o_proj.weight": (hidden, heads * head_dim),
                       f"{p}.mlp.gate_proj.weight": (ffn, hidden), f"{p}.mlp.up_proj.weight": (ffn, hidden),
                       f"{p}.mlp.down_proj.weight": (hidden, ffn), f"{p}.input_layernorm.weight": (hidden,),
                       f"{p}.post_attention_layernorm.weight": (hidden,)})
    shapes.update({"base_model.model.norm.weight": (hidden,), "base_model.lm_head.weight": (vocab, hidden),
                   "audio_linear.weight": (hidden, latent), "audio_linear.bias": (hidden,),
                   "distribution_linear.weight": (2 * latent, hidden), "distribution_linear.bias": (2 * latent,)})
    return shapes


def read_tsv(name):
    rows = [line.split("\t") for line in (REFERENCE / name).read_text().splitlines()[1:]]
    return {n: tuple(int(x) for x in s.split("x")) for n, s, _ in rows}


def test_release_layout_generators_reproduce_the_tsv():
    cfg = json.loads((REFERENCE / "flowvae_config.json").read_text())
    assert dict(release_flowvae_shapes(cfg, 6, 5, 4, 4)) == read_tsv("flowvae_state_dict.tsv")
    assert dict(release_lm_shapes(128264, 2048, 16, 32, 8, 64, 8192, 512)) == read_tsv("kalle_lm_state_dict.tsv")


# ------------------------------------------------------------------ small release-style checkpoints
def kaiser_filter(ratio=2, k=12):
    """The anti-aliasing low-pass (BigVGAN's kaiser sinc) the release stores as a buffer."""
    half_width, cutoff, half = 0.6 / ratio, 0.5 / ratio, k // 2
    attenuation = 2.285 * (half - 1) * math.pi * 4 * half_width + 7.95
    beta = 0.1102 * (attenuation - 8.7) if attenuation > 50 else 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (
        attenuation - 21)
    time = torch.arange(-half, half) + 0.5
    filt = 2 * cutoff * torch.kaiser_window(k, beta=beta, periodic=False) * torch.sinc(2 * cutoff * time)
    return (filt / filt.sum()).view(1, 1, k)


def random_state(shapes, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith(".filter"):
            state[name] = kaiser_filter(k=shape[-1])
        elif name.endswith("weight_g"):
            state[name] = 0.5 + torch.rand(shape, generator=gen)
        elif name.endswith("layernorm.weight") or name.endswith("norm.weight"):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[name] = 0.3 * torch.randn(shape, generator=gen)
    if "base_model.lm_head.weight" in state:
        state["base_model.lm_head.weight"] = state["base_model.model.embed_tokens.weight"].clone()
        state["distribution_linear.bias"][SMALL_LM["latent"]:] = -2.0  # keep the random LM off the stop rule
    return {k: v.to(dtype) for k, v in state.items()}


def build_tokenizer_dir(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<|begin_of_text|>": 1, "<|end_of_text|>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>",
                                   eos_token="<|end_of_text|>", unk_token="[UNK]")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    flow_state = random_state(release_flowvae_shapes(SMALL_FLOWVAE, **SMALL_ARCH), 0)
    lm_state = random_state(release_lm_shapes(**SMALL_LM), 1, torch.float16)
    torch.save({"generator": flow_state}, root / "flowvae.pt")
    torch.save(lm_state, root / "model.pt")
    (root / "config.json").write_text(json.dumps(SMALL_FLOWVAE))
    build_tokenizer_dir(root / "tok")
    out = root / "converted"
    convert_main(["--flowvae", str(root / "flowvae.pt"), "--flowvae-config", str(root / "config.json"),
                  "--lm", str(root / "model.pt"), "--tokenizer", str(root / "tok"), "--out", str(out),
                  "--head-dim", str(SMALL_LM["head_dim"])])
    return dict(root=root, flow=flow_state, lm=lm_state, out=out)


@pytest.fixture(scope="module")
def synth(release):
    from espnet_kalle.synthesizer import KalleSynthesizer

    return KalleSynthesizer.from_pretrained(release["out"])


def test_every_tensor_is_mapped(release):
    _, ours = convert_flow_vae(SMALL_FLOWVAE, {"generator": release["flow"]})
    assert len(ours) == len(release["flow"])
    assert {id(v) for v in ours.values()} == {id(v) for v in release["flow"].values()}
    info, lm = convert_lm(release["lm"], head_dim=SMALL_LM["head_dim"], sep_token_ids=[0, 1])
    assert len(lm) == len(release["lm"]) - 1  # the tied lm_head is dropped
    assert info["lm_conf"]["num_heads"] == 4 and info["lm_conf"]["num_kv_heads"] == 2
    saved = torch.load(release["out"] / "codec" / "model.pth", weights_only=True)
    assert set(saved) == {f"codec.generator.{k}" for k in ours}


def test_missing_extra_and_misshaped_tensors_are_rejected(release):
    flow = dict(release["flow"])
    del flow["conv_post.weight_g"]
    with pytest.raises(ConversionError, match=r"1 missing: conv_post\.weight_g"):
        convert_flow_vae(SMALL_FLOWVAE, {"generator": flow})
    flow = dict(release["flow"], **{"ups.0.0.extra": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"1 unexpected: ups\.0\.0\.extra"):
        convert_flow_vae(SMALL_FLOWVAE, {"generator": flow})
    flow = dict(release["flow"], **{"conv_post.bias": torch.zeros(2)})
    with pytest.raises(ConversionError, match=r"mis-shaped: conv_post\.bias \(2,\)"):
        convert_flow_vae(SMALL_FLOWVAE, {"generator": flow})
    lm = dict(release["lm"], **{"base_model.model.rotary_emb.extra": torch.zeros(1)})
    del lm["audio_linear.bias"]
    with pytest.raises(ConversionError, match=r"1 missing: audio_linear\.bias; 1 unexpected: .*rotary_emb\.extra"):
        convert_lm(lm, head_dim=SMALL_LM["head_dim"], sep_token_ids=[0, 1])
    lm = dict(release["lm"])
    del lm["base_model.lm_head.weight"]
    with pytest.raises(ConversionError, match="lm_head"):
        convert_lm(lm, head_dim=SMALL_LM["head_dim"], sep_token_ids=[0, 1])


def test_cli_fails_loudly_on_a_bad_checkpoint(release, tmp_path, capsys):
    flow = dict(release["flow"])
    del flow["resblocks.0.activations.0.act.beta"]
    torch.save({"generator": flow}, tmp_path / "bad.pt")
    with pytest.raises(SystemExit) as exc:
        convert_main(["--flowvae", str(tmp_path / "bad.pt"), "--flowvae-config", str(release["root"] / "config.json"),
                      "--lm", str(release["root"] / "model.pt"), "--out", str(tmp_path / "out"),
                      "--head-dim", "8", "--tokenizer", str(release["root"] / "tok")])
    assert exc.value.code == 2
    assert "resblocks.0.activations.0.act.beta" in capsys.readouterr().err


# ------------------------------------------------------------------ independent reference computations
def wn(sd, name):
    g, v = sd[f"{name}.weight_g"], sd[f"{name}.weight_v"]
    return g * v / v.norm(dim=(1, 2), keepdim=True), sd[f"{name}.bias"]


def cconv(x, sd, name, stride=1, dilation=1):
    w, b = wn(sd, name)
    return F.conv1d(F.pad(x, ((w.shape[-1] - 1) * dilation, 0)), w, b, stride=stride, dilation=dilation)


def aa_snake(x, sd, name):
    c, up, down = x.shape[1], sd[f"{name}.upsample.filter"], sd[f"{name}.downsample.lowpass.filter"]
    y = F.conv_transpose1d(x, 2 * up.expand(c, 1, -1), stride=2, groups=c)[..., : 2 * x.shape[-1]]
    alpha, beta = sd[f"{name}.act.alpha"].exp()[:, None], sd[f"{name}.act.beta"].exp()[:, None]
    y = y + 1.0 / (beta + 1e-9) * torch.sin(alpha * y) ** 2
    return F.conv1d(F.pad(y, (down.shape[-1] - 1, 0)), down.expand(c, 1, -1), stride=2, groups=c)


def reference_encode(sd, cfg, wav):
    enc, x = "audio_encoder.generator", cconv(wav, sd, "audio_encoder.generator.0.layer")
    for i, r in enumerate(cfg["downsample_rates"]):
        x = cconv(F.elu(x), sd, f"{enc}.{2 + 3 * i}.layer", stride=r)
        for u, d in enumerate(ENCODER_DILATIONS):
            y = cconv(F.elu(x), sd, f"{enc}.{3 + 3 * i}.layers.{u}.1", dilation=d)
            x = x + cconv(F.elu(y), sd, f"{enc}.{3 + 3 * i}.layers.{u}.3")
    stats = cconv(F.elu(x), sd, f"{enc}.{2 + 3 * len(cfg['downsample_rates'])}.layer")
    return stats.split(cfg["latent_dim"], dim=1)


def reference_decode(sd, cfg, z):
    x, nk = cconv(z, sd, "conv_pre"), len(cfg["resblock_kernel_sizes"])
    for i, r in enumerate(cfg["upsample_rates"]):
        w, b = wn(sd, f"ups.{i}.0")
        x = F.conv_transpose1d(x, w, b, stride=r)[..., : x.shape[-1] * r]
        outs = []
        for j, dil in enumerate(cfg["resblock_dilation_sizes"]):
            p, h = f"resblocks.{i * nk + j}", x
            for m, d in enumerate(dil):
                y = cconv(aa_snake(h, sd, f"{p}.activations.{2 * m}"), sd, f"{p}.convs1.{m}", dilation=d)
                h = h + cconv(aa_snake(y, sd, f"{p}.activations.{2 * m + 1}"), sd, f"{p}.convs2.{m}")
            outs.append(h)
        x = sum(outs) / nk
    return torch.tanh(cconv(aa_snake(x, sd, "activation_post"), sd, "conv_post"))


def test_decode_and_encode_match_the_reference(synth, release):
    torch.manual_seed(0)
    z = torch.randn(1, SMALL_FLOWVAE["latent_dim"], 5)
    wav = 0.3 * torch.randn(1, 1, 4 * 1280)
    with torch.no_grad():
        torch.testing.assert_close(synth.codec.decode(z), reference_decode(release["flow"], SMALL_FLOWVAE, z),
                                   atol=1e-4, rtol=0)
        for ours, ref in zip(synth.codec.encode(wav), reference_encode(release["flow"], SMALL_FLOWVAE, wav)):
            torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_lm_distributions_match_transformers_llama(synth, release):
    from transformers import LlamaConfig, LlamaForCausalLM

    s = SMALL_LM
    config = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ffn"],
                         num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                         num_key_value_heads=s["kv_heads"], head_dim=s["head_dim"], max_position_embeddings=131072,
                         rope_theta=500000.0, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    ref = LlamaForCausalLM(config).eval()
    sd = release["lm"]
    ref.load_state_dict({k[len("base_model."):]: v.float() for k, v in sd.items() if k.startswith("base_model.")})
    torch.manual_seed(0)
    ids = torch.tensor([[1, 5, 6, 7, 8, 9]])
    latents = torch.randn(1, 7, s["latent"])
    with torch.no_grad():
        audio = F.linear(latents, sd["audio_linear.weight"].float(), sd["audio_linear.bias"].float())
        hidden = ref.model(inputs_embeds=torch.cat([ref.model.embed_tokens(ids), audio], 1)).last_hidden_state
        out = F.linear(hidden, sd["distribution_linear.weight"].float(), sd["distribution_linear.bias"].float())
        mu, log_sigma = synth.lm.predict_distributions(ids, latents)
    assert mu.shape == (1, 13, s["latent"])
    torch.testing.assert_close(torch.cat([mu, log_sigma], -1), out, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------ the converted dir as a model
def test_model_dir_says_voices_come_from_prompts(release, synth):
    import yaml

    meta = yaml.safe_load((release["out"] / "model.yaml").read_text())
    assert meta["speaker_encoder"] is False and "prompt" in meta["voices"]
    assert synth.model.speaker is None and not synth.voices
    vocab = synth.tokenizer.tokenizer.get_vocab()
    assert synth.lm.sep_ids.tolist() == [vocab["<|SPEECH_UNDERSTANDING_END|>"], vocab["<|SPEECH_GENERATION_START|>"]]
    conf = yaml.safe_load((release["out"] / "lm" / "config.yaml").read_text())["tts_conf"]["generation_conf"]
    assert conf["stop_threshold"] == 0.5 and conf["min_frames"] == 4 and conf["max_frames"] == 1000


def test_clone_and_synthesize_with_the_released_wiring(synth, monkeypatch):
    t = np.arange(2 * 16000) / 16000
    prompt = (0.3 * np.sin(2 * np.pi * 150 * t) * np.sin(2 * np.pi * 3 * t) ** 2).astype(np.float32)
    voice = synth.clone(prompt, "hello world this is a test")
    assert voice.prompt_ids.tolist()[0] == synth.tokenizer.bos_id
    assert voice.prompt_latents.shape == (2 * 16000 // 1280, SMALL_FLOWVAE["latent_dim"])
    synth.model.generation_conf["max_frames"] = 6
    seen = []
    original = synth.lm.prefix
    monkeypatch.setattr(synth.lm, "prefix", lambda ids, *a: seen.append(ids.tolist()) or original(ids, *a))
    wav = synth.synthesize("we speak now .", voice=voice)
    target = synth.tokenizer("we speak now .")
    assert seen == [voice.prompt_ids.tolist() + target[1:]]  # BOS dropped from the target after a prompt
    assert wav.dtype == np.float32 and 0 < wav.size <= 6 * 1280 and np.isfinite(wav).all()


def test_kalle_tts_speaks_with_a_converted_dir_from_a_prompt(release, tmp_path, capsys):
    """The CLI (and every entry point built on from_pretrained) loads a converted dir; voices come from prompts."""
    import shutil

    import soundfile as sf
    import yaml

    from espnet_kalle.bin.tts import main as tts_main

    model_dir = tmp_path / "converted"
    shutil.copytree(release["out"], model_dir)
    config_path = model_dir / "lm" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["tts_conf"]["generation_conf"]["max_frames"] = 6  # random weights never reach the end distribution
    config_path.write_text(yaml.safe_dump(config))
    t = np.arange(2 * 16000) / 16000
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, (0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 16000)
    out = tmp_path / "out.wav"
    code = tts_main(["we speak now .", "-o", str(out), "--model", str(model_dir), "--prompt-wav", str(prompt),
                     "--prompt-text", "hello world this is a test"])
    assert code == 0, capsys.readouterr().err
    wav, sr = sf.read(out)
    assert sr == 16000 and 0 < wav.size <= 6 * 1280
