"""load_flow_vae: ESPnet experiment files -> FlowVAE, with loud errors for anything that does not match."""

import pytest
import torch
import yaml

from espnet_kalle.codec import FlowVAE
from espnet_kalle.codec.load import generator_kwargs, load_flow_vae

GEN = dict(
    latent_dim=8,
    downsample_rates=[4, 4, 4, 5],
    downsample_channels=[4, 8, 8, 8, 8],
    residual_dilations=[1],
    flow_hidden_channels=8,
    flow_layers=1,
    flow_couplings=1,
    decoder_type="istft",
    decoder_conf=dict(hop_length=320, dim=16, intermediate_dim=32, num_layers=1),
)


@pytest.fixture
def exp(tmp_path):
    """An ESPnet-shaped experiment: config.yaml + a model file with ``codec.*`` keys (as ESPnet saves them)."""
    torch.manual_seed(0)
    model = FlowVAE(sample_rate=16000, **GEN)
    state = {f"codec.generator.{k}": v for k, v in model.state_dict().items()}
    state["codec.discriminator.mpd.w"] = torch.zeros(1)  # other parts of the codec are ignored
    state["codec.num_updates"] = torch.tensor(3)
    config = tmp_path / "config.yaml"
    codec_conf = {"sampling_rate": 16000, "generator_params": GEN}
    config.write_text(yaml.safe_dump({"codec": "flow_vae", "codec_conf": codec_conf}))
    model_file = tmp_path / "latest.pth"
    torch.save(state, model_file)
    return model, config, model_file


def test_round_trip(exp):
    model, config, model_file = exp
    loaded = load_flow_vae(config, model_file)
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    wav = torch.randn(1, 1, 1280)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(wav)[0]), model.eval().decode(model.encode(wav)[0]))


def test_checkpoint_style_dict_with_model_key(exp, tmp_path):
    model, config, model_file = exp
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": torch.load(model_file, weights_only=True)}, wrapped)
    assert isinstance(load_flow_vae(config, wrapped), FlowVAE)


def test_missing_files(exp, tmp_path):
    _, config, model_file = exp
    with pytest.raises(FileNotFoundError, match="config"):
        load_flow_vae(tmp_path / "none.yaml", model_file)
    with pytest.raises(FileNotFoundError, match="model file"):
        load_flow_vae(config, tmp_path / "none.pth")


def test_corrupt_or_foreign_files(exp, tmp_path):
    _, config, model_file = exp
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(model_file.read_bytes()[:200])
    with pytest.raises(ValueError, match="weights-only"):
        load_flow_vae(config, truncated)
    not_a_model = tmp_path / "x.pth"
    not_a_model.write_text("hello")
    with pytest.raises(ValueError, match="weights-only"):
        load_flow_vae(config, not_a_model)
    pickled_object = tmp_path / "obj.pth"
    torch.save({"model": {}, "reporter": object()}, pickled_object)  # like ESPnet's checkpoint.pth: not weights-only
    with pytest.raises(ValueError, match="weights-only"):
        load_flow_vae(config, pickled_object)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("codec: [unclosed")
    with pytest.raises(ValueError, match="YAML"):
        load_flow_vae(bad_yaml, model_file)


def test_mismatches_are_reported(exp, tmp_path):
    _, config, model_file = exp
    state = torch.load(model_file, weights_only=True)
    dropped = dict(state)
    del dropped["codec.generator.decoder.out.weight"]
    torch.save(dropped, tmp_path / "dropped.pth")
    with pytest.raises(ValueError, match="1 missing"):
        load_flow_vae(config, tmp_path / "dropped.pth")
    extra = dict(state, **{"codec.generator.encoder.extra": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match="1 unexpected"):
        load_flow_vae(config, tmp_path / "extra.pth")
    wider = tmp_path / "wider.yaml"
    wider.write_text(yaml.safe_dump({"codec": "flow_vae", "codec_conf": {"generator_params": dict(GEN, latent_dim=4)}}))
    with pytest.raises(ValueError, match="shape"):
        load_flow_vae(wider, model_file)
    torch.save({"codec.encoder.w": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="no Flow-VAE generator"):
        load_flow_vae(config, tmp_path / "other.pth")
    other_codec = tmp_path / "dac.yaml"
    other_codec.write_text(yaml.safe_dump({"codec": "dac", "codec_conf": {}}))
    with pytest.raises(ValueError, match="dac"):
        load_flow_vae(other_codec, model_file)


def test_generator_kwargs():
    assert generator_kwargs(None) == {}
    assert generator_kwargs({"sampling_rate": 24000}) == {"sample_rate": 24000}
    assert generator_kwargs({"generator_params": {"latent_dim": 4}}) == {"latent_dim": 4}
    with pytest.raises(ValueError):
        generator_kwargs({"sampling_rate": 24000, "generator_params": {"sample_rate": 16000}})
