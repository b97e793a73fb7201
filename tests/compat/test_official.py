"""Importer of the released KALL-E checkpoints, checked against outputs of the released code itself.

``tests/data/official_release`` holds small random-weight checkpoints in the released naming scheme and what the
released ``flowvae.py`` / ``model.py`` / ``infer.py`` computed from them, made by ``make_release_fixtures.py``
(run against a checkout of github.com/xkx-hub/KALL-E in a scratch venv; the released code is not committed):
``release_small`` is the released JSON config with narrower channels, ``variant`` the other options the format
has (snake, linear-scale alphas, other rates, kernels and dilations).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from espnet_kalle.bin.convert_official import main as convert_main
from espnet_kalle.codec.flow_vae import FlowVAE
from espnet_kalle.compat.official import ConversionError, convert_flow_vae, convert_lm, flow_vae_params, lm_params

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "official_release"
SMALL = FIXTURES / "release_small"
LAYOUT = Path(__file__).resolve().parents[1] / "data" / "official_kalle"  # listings of the real checkpoints
HEAD_DIM = "8"  # the small LM's LlamaConfig (make_release_fixtures.py)
TOLERANCE = 1e-4  # relative L2 error in float32


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def converted_codec(name: str) -> FlowVAE:
    config = json.loads((FIXTURES / name / "config.json").read_text())
    params, state = convert_flow_vae(config, torch.load(FIXTURES / name / "flowvae.pt", weights_only=True))
    codec = FlowVAE(**params)
    codec.load_state_dict({k: v.float() for k, v in state.items()})
    return codec.prepare_for_inference()


@pytest.fixture(scope="module")
def release_checkout(tmp_path_factory):
    """The fixture files laid out as a checkout of the release with its weights in ckpt/ (as infer.py expects)."""
    root = tmp_path_factory.mktemp("KALL-E")
    (root / "configs").mkdir()
    shutil.copyfile(SMALL / "config.json", root / "configs" / "flowvae_dim1024_12p5hz.json")
    shutil.copytree(SMALL / "tokenizer_dir", root / "tokenizer_dir")
    (root / "ckpt").mkdir()
    shutil.copyfile(SMALL / "flowvae.pt", root / "ckpt" / "flowvae.pt")
    shutil.copyfile(SMALL / "model.pt", root / "ckpt" / "model.pt")
    return root


@pytest.fixture(scope="module")
def converted(release_checkout, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "kalle-official"
    convert_main(["--release", str(release_checkout), "--out", str(out), "--head-dim", HEAD_DIM])
    return out


@pytest.fixture(scope="module")
def synth(converted):
    from espnet_kalle.synthesizer import KalleSynthesizer

    return KalleSynthesizer.from_pretrained(converted)


# ------------------------------------------------------------------ numerics against the released code
@pytest.mark.parametrize("name", ["release_small", "variant"])
def test_codec_matches_the_released_code(name):
    codec = converted_codec(name)
    ref = np.load(FIXTURES / name / "outputs.npz")
    dim = codec.latent_dim
    with torch.no_grad():
        mu, log_sigma = codec.encode(torch.from_numpy(ref["encode_wav"]).view(1, 1, -1))
        assert rel_err(mu[0], ref["encode_stats"][:dim]) < TOLERANCE
        assert rel_err(log_sigma[0], ref["encode_stats"][dim:]) < TOLERANCE
        assert rel_err(codec.flow(torch.from_numpy(ref["flow_z"])[None])[0], ref["flow_zp"]) < TOLERANCE
        assert rel_err(codec.decode(torch.from_numpy(ref["decode_z"])[None])[0, 0], ref["decode_wav"]) < TOLERANCE
        # inference_from_latents(do_sample=True): z = mean + noise * exp(log_scale), the release's draw saved.
        dists = torch.from_numpy(ref["sample_dists"])[None]
        z = dists[:, :dim] + torch.from_numpy(ref["sample_noise"])[None] * dists[:, dim:].exp()
        assert rel_err(codec.decode(z)[0, 0], ref["sample_wav"]) < TOLERANCE


def test_lm_distributions_match_the_released_infer_loop(synth):
    """Teacher-forced on what the released Kalle.infer was fed, our LM gives the distributions it returned."""
    ref = np.load(SMALL / "lm_outputs.npz")
    ids = torch.from_numpy(ref["input_ids"]).long()[None]
    fed = torch.from_numpy(ref["fed_latents"])[None]  # prompt latents, then each sampled frame
    with torch.no_grad():
        mu, log_sigma = synth.lm.predict_distributions(ids, fed)
    steps = ref["dists"].shape[-1]
    first = ids.shape[1] + ref["prompt_latents"].shape[0] - 1  # the position that predicts the first new frame
    ours = torch.cat([mu, log_sigma], dim=-1)[0, first : first + steps].T
    assert rel_err(ours, ref["dists"]) < TOLERANCE


def test_clone_follows_the_released_prompt_wiring(synth, monkeypatch):
    """clone(prompt wav, transcript): the release's text ids and prompt posterior (last frame dropped)."""
    ref = np.load(SMALL / "lm_outputs.npz")
    text = (SMALL / "prompt.txt").read_text().strip()
    voice = synth.clone(str(SMALL / "prompt.wav"), text)
    assert voice.prompt_latents.shape == ref["prompt_latents"].shape
    posterior = synth._prompt_posterior(str(SMALL / "prompt.wav"), text)
    stats = ref["prompt_stats"][:, :-1]
    dim = synth.codec.latent_dim
    assert rel_err(posterior[2].T, stats[:dim]) < TOLERANCE and rel_err(posterior[3].T, stats[dim:]) < TOLERANCE
    seen = []
    original = synth.lm.prefix
    monkeypatch.setattr(synth.lm, "prefix", lambda ids, *a: seen.append(ids.tolist()) or original(ids, *a))
    synth.model.generation_conf["max_frames"] = 3
    synth.synthesize("we speak now and then !", voice=voice)
    assert seen[0] + synth.lm.sep_ids.tolist() == ref["input_ids"].tolist()


# ------------------------------------------------------------------ streaming with the released decoder
@pytest.mark.parametrize("chunking", [[1, 2, 13], [5, 3, 8]])  # many small pushes: tests/codec
def test_released_decoder_streams_like_offline(chunking):
    codec = converted_codec("release_small")
    z = torch.from_numpy(np.load(FIXTURES / "release_small" / "outputs.npz")["decode_z"])
    z = torch.cat([z, z.flip(-1), z[..., :2]], dim=-1)[None]  # 16 frames
    with torch.no_grad():
        offline = codec.decode(z)
    stream, pieces, pushed = codec.stream_decoder(), [], 0
    lag = stream.lookahead_samples
    for size in chunking:
        pieces.append(stream.push(z[..., pushed : pushed + size]))
        pushed += size
        assert sum(p.shape[-1] for p in pieces) == max(0, pushed * codec.hop_length - lag)
    pieces.append(stream.flush())
    assert rel_err(torch.cat(pieces, dim=-1), offline) < TOLERANCE


def first_change(module, x: torch.Tensor, at: int) -> int:
    """Index of the first output (float64) that changes when the input changes from index ``at`` on."""
    changed = x.clone()
    changed[..., at:] += 1.0
    with torch.no_grad():
        diff = (module(x) - module(changed)).abs().amax(dim=(0, 1))
    return int(torch.nonzero(diff > 0)[0])


def test_reported_lookahead_is_the_released_decoders():
    """Audio before ``n * hop - lookahead_samples`` does not depend on frames from n on (so the stream may release
    it), and each replicate-padded activation looks exactly as far ahead as ``ready`` says."""
    codec = converted_codec("release_small").double()
    lag = codec.decoder.lookahead_samples
    assert lag > 3 * codec.hop_length  # conv_pre's 3 frames + every filter's samples
    torch.manual_seed(0)
    z = torch.randn(1, codec.latent_dim, 16, dtype=torch.float64)
    assert first_change(codec.decode, z, 13) >= 13 * codec.hop_length - lag
    assert first_change(codec.decoder.conv_pre, z, 13) == 13 - 3  # the release's centred kernel-7 conv
    activation = codec.decoder.resblocks[0].activations[0]
    x = torch.randn(1, activation.act.alpha.numel(), 200, dtype=torch.float64)
    assert 150 - first_change(activation, x, 150) == 150 - activation.ready(150) == 5


# ------------------------------------------------------------------ the real checkpoints' layout
def read_listing(name):
    rows = [line.split("\t") for line in (LAYOUT / name).read_text().splitlines()[1:]]
    return {n: torch.empty([int(x) for x in s.split("x")], device="meta") for n, s, _ in rows}


def test_the_released_checkpoint_layout_converts():
    config = json.loads((LAYOUT / "flowvae_config.json").read_text())
    _, ours = convert_flow_vae(config, {"generator": read_listing("flowvae_state_dict.tsv")})
    assert len(ours) == 1136
    info = lm_params(read_listing("kalle_lm_state_dict.tsv"))
    assert info["lm_conf"]["num_heads"] == 32 and info["lm_conf"]["num_kv_heads"] == 8


# ------------------------------------------------------------------ clear errors
def small_state():
    return dict(torch.load(SMALL / "flowvae.pt", weights_only=True)["generator"])


def small_config():
    return json.loads((SMALL / "config.json").read_text())


def test_missing_extra_and_misshaped_tensors_are_rejected():
    config, lm = small_config(), torch.load(SMALL / "model.pt", weights_only=True)
    flow = small_state()
    del flow["conv_post.weight_g"]
    with pytest.raises(ConversionError, match=r"1 missing: conv_post\.weight_g"):
        convert_flow_vae(config, {"generator": flow})
    flow = dict(small_state(), **{"ups.0.0.extra": torch.zeros(1)})
    with pytest.raises(ConversionError, match=r"1 unexpected: ups\.0\.0\.extra"):
        convert_flow_vae(config, {"generator": flow})
    flow = dict(small_state(), **{"conv_post.bias": torch.zeros(2)})
    with pytest.raises(ConversionError, match=r"mis-shaped: conv_post\.bias \(2,\)"):
        convert_flow_vae(config, {"generator": flow})
    with pytest.raises(ConversionError, match=r"audio_encoder\.generator\.3\.layers\.6"):  # the release has 6 units
        convert_flow_vae(config, {"generator": dict(small_state(), **{
            "audio_encoder.generator.3.layers.6.1.weight_v": torch.zeros(12, 12, 3)})})
    bad = dict(lm, **{"base_model.model.rotary_emb.extra": torch.zeros(1)})
    del bad["audio_linear.bias"]
    with pytest.raises(ConversionError, match=r"1 missing: audio_linear\.bias; 1 unexpected: .*rotary_emb\.extra"):
        convert_lm(bad, head_dim=8, sep_token_ids=[0, 1])


@pytest.mark.parametrize("change,message", [
    ({"causal": False}, "causal false"),
    ({"use_vae": False}, "use_vae"),
    ({"resblock": "2"}, "only AMP block '1'"),
    ({"activation": "relu"}, "'snake' and 'snakebeta'"),
    ({"downsample_channels": [16, 12, 12, 12, 12, 12, 16]}, "starting at 12"),
    ({"downsample_channels": [12, 16]}, "one more than downsample_rates"),
    ({"upsample_kernel_sizes": [11, 8, 8, 8, 4, 4]}, "twice upsample_rates"),
    ({"resblock_dilation_sizes": [[1, 3], [1, 3], [1, 3]]}, "exactly three"),
    ({"upsample_rates": [5, 4, 4, 4, 2, 4], "upsample_kernel_sizes": [10, 8, 8, 8, 4, 8]}, "same hop length"),
    ({"latent_dim": None}, "no 'latent_dim'"),
])
def test_configs_the_release_cannot_run_are_refused(change, message):
    config = small_config()
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConversionError, match=message):
        flow_vae_params(config)


def test_cli_fails_loudly_on_a_bad_checkpoint(release_checkout, tmp_path, capsys):
    flow = small_state()
    del flow["resblocks.0.activations.0.act.beta"]
    torch.save({"generator": flow}, tmp_path / "bad.pt")
    assert convert_main(["--release", str(release_checkout), "--flowvae", str(tmp_path / "bad.pt"),
                         "--out", str(tmp_path / "out"), "--head-dim", HEAD_DIM]) == 3  # a model it cannot use
    assert "resblocks.0.activations.0.act.beta" in capsys.readouterr().err
    assert convert_main(["--release", str(tmp_path), "--out", str(tmp_path / "out")]) == 3  # a model missing
    assert "ckpt/flowvae.pt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_prompt_check_tells_the_released_encoder_from_a_wrong_one(converted):
    """Latents the released encoder made from prompt.wav (its posterior means here) fit the converted encoder
    (corr 1, z ~ 0) and not one with a wrong activation between stages, on the same weights."""
    from espnet_kalle.audio import load_audio
    from espnet_kalle.codec.load import load_flow_vae
    from espnet_kalle.compat.prompt_check import compare_prompt_latents

    stats = np.load(SMALL / "lm_outputs.npz")["prompt_stats"]
    released = stats[None, : stats.shape[0] // 2]
    codec = load_flow_vae(converted / "codec" / "config.yaml", converted / "codec" / "model.pth").eval()
    wav = load_audio(SMALL / "prompt.wav")
    good = compare_prompt_latents(codec, wav, released)
    assert good["frames"] == good["release_frames"] == released.shape[-1]
    assert good["corr"] > 1 - 1e-6 and good["z_std"] < 1e-4
    codec.encoder.generator[1] = torch.nn.ELU()  # a wrong activation between stages
    bad = compare_prompt_latents(codec, wav, released)
    assert bad["corr"] < 0.999 and bad["z_std"] > 100 * good["z_std"]


# ------------------------------------------------------------------ the converted dir as a model
def test_model_dir_says_voices_come_from_prompts(converted, synth):
    import yaml

    meta = yaml.safe_load((converted / "model.yaml").read_text())
    assert meta["speaker_encoder"] is False and "prompt" in meta["voices"]
    assert synth.model.speaker is None and not synth.voices
    vocab = synth.tokenizer.tokenizer.get_vocab()
    assert synth.lm.sep_ids.tolist() == [vocab["<|SPEECH_UNDERSTANDING_END|>"], vocab["<|SPEECH_GENERATION_START|>"]]
    conf = yaml.safe_load((converted / "lm" / "config.yaml").read_text())["tts_conf"]["generation_conf"]
    assert conf["stop_threshold"] == 0.5 and conf["min_frames"] == 4 and conf["max_frames"] == 1000


def test_kalle_tts_speaks_with_a_converted_dir_from_a_prompt(converted, tmp_path, capsys):
    """The CLI (and every entry point built on from_pretrained) loads a converted dir; voices come from prompts."""
    import soundfile as sf
    import yaml

    from espnet_kalle.bin.tts import main as tts_main

    model_dir = tmp_path / "converted"
    shutil.copytree(converted, model_dir)
    config_path = model_dir / "lm" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["tts_conf"]["generation_conf"]["max_frames"] = 6  # random weights never reach the end distribution
    config_path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out.wav"
    code = tts_main(["we speak now .", "-o", str(out), "--model", str(model_dir), "--prompt-wav",
                     str(SMALL / "prompt.wav"), "--prompt-text", (SMALL / "prompt.txt").read_text().strip()])
    assert code == 0, capsys.readouterr().err
    wav, sr = sf.read(out)
    assert sr == 16000 and 0 < wav.size <= 6 * 1280
