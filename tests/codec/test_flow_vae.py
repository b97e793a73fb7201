"""Flow-VAE generator: shapes, flow invertibility and KL, causality, streaming == offline."""

import math

import pytest
import torch

from espnet_kalle.codec import FlowVAE
from espnet_kalle.codec.flow import flow_kl

HEADS = {
    "bigvgan": dict(upsample_initial_channel=32, resblock_kernel_sizes=(3, 7),
                    resblock_dilation_sizes=((1, 3), (1, 3))),
    "istft": dict(dim=32, intermediate_dim=64, num_layers=2),
}


def tiny(decoder_type="istft", latent_dim=8, rates=(2, 2, 4, 4, 4, 5), lookahead=0, **decoder_extra):
    conf = dict(HEADS[decoder_type], lookahead_frames=lookahead, **decoder_extra)
    if decoder_type == "bigvgan":
        conf["upsample_initial_channel"] = 2 ** (len(rates) + 2)  # halves per stage, keep >= 4 at the end
        conf.setdefault("upsample_rates", tuple(reversed(rates)))
        conf.setdefault("upsample_kernel_sizes", tuple(2 * r for r in reversed(rates)))
    else:
        conf.setdefault("hop_length", math.prod(rates))
    torch.manual_seed(0)
    return FlowVAE(
        latent_dim=latent_dim,
        downsample_rates=rates,
        downsample_channels=(4,) + (8,) * len(rates),
        residual_dilations=(1, 3),
        flow_hidden_channels=16,
        flow_layers=2,
        flow_couplings=2,
        decoder_type=decoder_type,
        decoder_conf=conf,
    ).eval()


def randomize_flow(model):
    """The coupling output layers start at zero (identity flow); give them weights so tests see a real map."""
    for layer in model.flow.flows[::2]:
        torch.nn.init.normal_(layer.post.weight, std=0.2)


@pytest.mark.parametrize("decoder_type", ["bigvgan", "istft"])
@pytest.mark.parametrize("latent_dim,rates", [(8, (2, 2, 4, 4, 4, 5)), (6, (2, 4, 5)), (16, (4, 4))])
def test_shapes_and_hop(decoder_type, latent_dim, rates):
    model = tiny(decoder_type, latent_dim, rates)
    hop = math.prod(rates)
    assert model.hop_length == hop and model.sample_rate == 16000
    for n_samples in (hop * 3, hop * 3 + 1, hop * 5 - 7):
        mu, log_sigma = model.encode(torch.randn(2, 1, n_samples))
        frames = math.ceil(n_samples / hop)
        assert mu.shape == log_sigma.shape == (2, latent_dim, frames)
        wav = model.decode(mu)
        assert wav.shape == (2, 1, frames * hop)
        assert torch.isfinite(wav).all()


def test_posterior_starts_narrow_so_the_decoder_sees_the_signal():
    model = tiny()
    _, log_sigma = model.encode(0.1 * torch.randn(1, 1, 1280 * 4))
    assert abs(log_sigma.mean().item() - (-3.0)) < 0.5
    wider = FlowVAE(latent_dim=8, downsample_channels=(4,) + (8,) * 6, residual_dilations=(1,), init_log_sigma=-1.0,
                    decoder_type="istft", decoder_conf=HEADS["istft"])
    assert wider.encode(torch.zeros(1, 1, 1280))[1].mean().item() == pytest.approx(-1.0, abs=0.5)


def test_paper_size_builds_with_release_shapes():
    """The default config is the paper's: 512-dim latent, 12.5 Hz, BigVGAN from 1536 channels."""
    model = FlowVAE()
    assert model.hop_length == 1280 and model.frame_rate == 12.5 and model.latent_dim == 512
    n_params = sum(p.numel() for p in model.parameters())
    assert 150e6 < n_params < 260e6  # the release has about 204M
    assert model.decoder.conv_pre.conv.weight.shape == (1536, 512, 7)
    assert model.encoder.generator[-1].layer.conv.weight.shape == (1024, 768, 3)


def test_flow_is_invertible_and_kl_matches_direct_computation():
    model = tiny()
    randomize_flow(model)
    mu, log_sigma = torch.randn(2, 8, 11), 0.3 * torch.randn(2, 8, 11)
    z = FlowVAE.sample(mu, log_sigma)
    with torch.no_grad():
        z_p = model.flow(z)
        assert not torch.allclose(z_p, z)
        torch.testing.assert_close(model.flow(z_p, reverse=True), z, atol=1e-5, rtol=0)
    # Direct: log N(z; mu, sigma) - log N(z_p; 0, I), with log|det J| = 0 for mean-only couplings.
    normal_q = torch.distributions.Normal(mu, log_sigma.exp())
    normal_p = torch.distributions.Normal(torch.zeros_like(z_p), torch.ones_like(z_p))
    direct = (normal_q.log_prob(z) - normal_p.log_prob(z_p)).sum() / (2 * 11)
    torch.testing.assert_close(flow_kl(z, z_p, mu, log_sigma), direct, atol=1e-4, rtol=1e-5)


def test_flow_kl_ignores_padded_frames():
    model = tiny()
    randomize_flow(model)
    mu, log_sigma = torch.randn(1, 8, 6), torch.zeros(1, 8, 6)
    z = mu + torch.randn_like(mu)
    mask = torch.ones(1, 1, 6)
    with torch.no_grad():
        kl_short = flow_kl(z[..., :4], model.flow(z[..., :4]), mu[..., :4], log_sigma[..., :4])
        mask[..., 4:] = 0
        padded = torch.cat([z[..., :4], 100 * torch.ones(1, 8, 2)], dim=-1)
        kl_masked = flow_kl(padded, model.flow(padded, mask), mu, log_sigma, mask)
    torch.testing.assert_close(kl_masked, kl_short, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decoder_type", ["bigvgan", "istft"])
def test_decoder_is_causal(decoder_type):
    model = tiny(decoder_type)
    z = torch.randn(1, 8, 10)
    changed = z.clone()
    changed[..., 6:] = torch.randn(1, 8, 4)
    with torch.no_grad():
        a, b = model.decode(z), model.decode(changed)
    hop = model.hop_length
    torch.testing.assert_close(a[..., : 6 * hop], b[..., : 6 * hop], atol=1e-6, rtol=0)
    assert (a[..., 6 * hop :] - b[..., 6 * hop :]).abs().max() > 1e-4


def test_lookahead_is_bounded():
    model = tiny("istft", lookahead=2)
    z = torch.randn(1, 8, 10)
    changed = z.clone()
    changed[..., 6:] += 1.0
    with torch.no_grad():
        a, b = model.decode(z), model.decode(changed)
    hop = model.hop_length
    torch.testing.assert_close(a[..., : 4 * hop], b[..., : 4 * hop], atol=1e-6, rtol=0)
    assert (a[..., 4 * hop : 5 * hop] - b[..., 4 * hop : 5 * hop]).abs().max() > 1e-5


@pytest.mark.parametrize("decoder_type,extra", [("bigvgan", {}), ("istft", {}),
                                                ("bigvgan", {"anti_alias_padding": "replicate"})])
@pytest.mark.parametrize("lookahead", [0, 2])
@pytest.mark.parametrize("chunking", [[1] * 12, [5, 7], [12], [3, 1, 4, 1, 2, 1]])
def test_streaming_equals_offline(decoder_type, extra, lookahead, chunking):
    model = tiny(decoder_type, lookahead=lookahead, **extra)
    z = torch.randn(2, 8, sum(chunking))
    with torch.no_grad():
        offline = model.decode(z)
    stream = model.stream_decoder()
    lag = model.decoder.lookahead_samples
    assert lag == lookahead * model.hop_length or extra  # replicate-padded anti-aliasing adds samples of its own
    pieces, start = [], 0
    for size in chunking:
        piece = stream.push(z[..., start : start + size])
        start += size
        # Audio comes out as soon as the lookahead allows: everything up to (frames pushed) * hop - lag.
        pieces.append(piece)
        assert sum(p.shape[-1] for p in pieces) == max(0, start * model.hop_length - lag)
    pieces.append(stream.flush())
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() <= 1e-4


def test_streaming_after_weight_norm_folding_matches():
    model = tiny("bigvgan")
    z = torch.randn(1, 8, 5)
    with torch.no_grad():
        before = model.decode(z)
        model.prepare_for_inference()
        after = model.decode(z)
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-4)
    stream = model.stream_decoder()
    streamed = torch.cat([stream.push(z[..., i : i + 1]) for i in range(5)] + [stream.flush()], dim=-1)
    assert (streamed - after).abs().max() <= 1e-4


def test_stream_rejects_use_after_flush_and_bad_shapes():
    model = tiny()
    stream = model.stream_decoder()
    with pytest.raises(ValueError, match="latents"):
        stream.push(torch.randn(1, 3, 2))
    stream.push(torch.randn(1, 8, 2))
    stream.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        stream.push(torch.randn(1, 8, 1))


def test_encode_rejects_non_mono_layout():
    model = tiny()
    with pytest.raises(ValueError, match="mono"):
        model.encode(torch.randn(2, 2, 1280))
    with pytest.raises(ValueError, match="decoder_type"):
        FlowVAE(decoder_type="wavenet")


def tiny_mel_encoder_model(latent_dim=8):
    torch.manual_seed(0)
    return FlowVAE(
        latent_dim=latent_dim, encoder_type="mel", encoder_conf=dict(n_mels=16, channels=32, num_layers=2),
        flow_hidden_channels=16, flow_layers=2, flow_couplings=2, decoder_type="istft",
        decoder_conf=dict(HEADS["istft"], subframes=8),
    ).eval()


def test_mel_encoder_frames_and_narrow_start():
    model = tiny_mel_encoder_model()
    for n_samples in (1280, 1281, 1280 * 5 - 7):
        mu, log_sigma = model.encode(0.1 * torch.randn(2, 1, n_samples))
        assert mu.shape == log_sigma.shape == (2, 8, math.ceil(n_samples / 1280))
    assert log_sigma.mean().item() < -2.0  # narrow start: sigma well below the prior's 1
    silent_mu, _ = model.encode(torch.zeros(1, 1, 1280 * 3))
    assert torch.isfinite(silent_mu).all()  # the log floor keeps digital silence finite


def test_mel_encoder_is_causal_per_frame():
    """Latent frame f may only see samples before (f + 1) * hop, like the waveform encoder."""
    model = tiny_mel_encoder_model()
    wav = 0.1 * torch.randn(1, 1, 1280 * 6)
    mu, _ = model.encode(wav)
    changed = wav.clone()
    changed[..., 1280 * 3 + 200 :] += 0.3 * torch.randn(1280 * 3 - 200)
    mu2, _ = model.encode(changed)
    assert torch.allclose(mu[..., :3], mu2[..., :3], atol=1e-6)
    assert not torch.allclose(mu[..., 3:], mu2[..., 3:], atol=1e-4)


def test_mel_encoder_learns_from_its_input():
    """A gradient step through decoder and encoder changes the encoder's parameters (it is wired in)."""
    model = tiny_mel_encoder_model().train()
    out = model(0.1 * torch.randn(2, 1, 1280 * 4))
    (out["wav_hat"].pow(2).mean() + out["kl"]).backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0


def test_unknown_encoder_type_is_an_error():
    with pytest.raises(ValueError, match="encoder_type"):
        FlowVAE(latent_dim=8, encoder_type="spectral", decoder_type="istft", decoder_conf=HEADS["istft"])
