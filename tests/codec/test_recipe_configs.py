"""The recipe's Flow-VAE configs parse with the stock GAN-codec parser and build what they claim."""

import json
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
TUNING = ROOT / "egs/kalle/tts1/conf/tuning"
RELEASE = Path(__file__).resolve().parents[1] / "data" / "official_kalle" / "flowvae_config.json"  # the release's
RELEASE_GENERATOR = dict(n_tensors=1136, n_values=204_437_206)  # flowvae_state_dict.tsv of the release


def parse(config: Path, tmp_path: Path):
    from espnet2.tasks.gan_codec import GANCodecTask

    from espnet_kalle import register

    register(["gan_codec"])
    return GANCodecTask.get_parser().parse_args(["--config", str(config), "--output_dir", str(tmp_path)])


def test_mini_istft_config_builds_and_trains_one_step(tmp_path):
    from espnet2.tasks.gan_codec import GANCodecTask

    args = parse(TUNING / "train_flowvae_mini_istft.yaml", tmp_path)
    model = GANCodecTask.build_model(args)
    optimizers = GANCodecTask.build_optimizers(args, model)
    assert len(optimizers) == 2
    codec = model.codec
    assert codec.meta_info()["frame_rate"] == 12.5 and codec.generator.decoder_type == "istft"
    assert sum(p.numel() for p in codec.generator.parameters()) < 5e6  # CPU-sized
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(2, 16000)
    for turn, idx in ((False, 1), (True, 0)):
        out = model(audio, forward_generator=turn)
        assert out["optim_idx"] == idx
        out["loss"].backward()
        optimizers[idx].step()
        model.zero_grad()


def test_paper_config_matches_the_release(tmp_path):
    args = parse(TUNING / "train_flowvae_paper.yaml", tmp_path)
    conf = args.codec_conf
    release = json.loads(RELEASE.read_text())
    gen, dec = conf["generator_params"], conf["generator_params"]["decoder_conf"]
    for key in ("latent_dim", "downsample_rates", "downsample_channels", "flow_hidden_channels"):
        assert gen[key] == release[key], key
    for key in ("upsample_rates", "upsample_kernel_sizes", "upsample_initial_channel", "resblock_kernel_sizes",
                "resblock_dilation_sizes", "snake_logscale"):
        assert dec[key] == release[key], key
    disc = conf["discriminator_params"]
    assert disc["periods"] == release["mpd_reshapes"] and disc["resolutions"] == release["resolutions"]
    assert disc["channel_mult"] == release["discriminator_channel_mult"]
    mel = conf["mel_loss_params"]
    assert (mel["n_mels"], mel["n_fft"], mel["hop_length"], mel["win_length"]) == (
        release["num_mels"], release["n_fft"], release["hop_size"], release["win_size"])
    assert conf["sampling_rate"] == release["sampling_rate"]

    from espnet_kalle.codec import FlowVAE
    from espnet_kalle.codec.load import generator_kwargs

    with torch.device("meta"):  # shapes only: the real thing is ~0.8 GB
        generator = FlowVAE(**generator_kwargs(conf))
    state = generator.state_dict()
    assert len(state) == RELEASE_GENERATOR["n_tensors"]
    assert sum(v.numel() for v in state.values()) == RELEASE_GENERATOR["n_values"]
    assert generator.decoder_type == "bigvgan" and generator.frame_rate == 12.5


@pytest.mark.parametrize("name", ["flowvae_tiny_istft.yaml", "flowvae_tiny_bigvgan.yaml"])
def test_test_configs_parse(name, tmp_path):
    args = parse(ROOT / "tests/conf" / name, tmp_path)
    assert args.codec == "flow_vae"
    assert yaml.safe_load((ROOT / "tests/conf" / name).read_text())["codec_conf"] == args.codec_conf
