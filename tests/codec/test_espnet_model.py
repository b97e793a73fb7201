"""FlowVAECodec (ESPnet GAN-codec wrapper) in-process: turns, warm-up, caching, padding, inference API."""

import math

import pytest
import torch

from espnet_kalle.codec.espnet_model import FlowVAECodec, lengths_from_zero_padding, random_segments

GEN = dict(
    latent_dim=8,
    downsample_rates=(4, 4, 4, 5),
    downsample_channels=(4, 8, 8, 8, 8),
    residual_dilations=(1, 3),
    flow_hidden_channels=16,
    flow_layers=2,
    flow_couplings=2,
    decoder_type="istft",
    decoder_conf=dict(hop_length=320, dim=32, intermediate_dim=64, num_layers=2),
)
DISC = dict(periods=(2, 3), resolutions=((512, 128, 512),), channel_mult=0.125)


def codec(**kw):
    torch.manual_seed(0)
    return FlowVAECodec(generator_params=GEN, discriminator_params=DISC, **kw)


def audio(batch=2, n=6400):
    torch.manual_seed(1)
    t = torch.arange(n) / 16000
    return torch.stack([0.3 * torch.sin(2 * math.pi * (150 + 50 * i) * t) for i in range(batch)]) + 0.01


def grads(module):
    return [p.grad for p in module.parameters() if p.grad is not None and p.grad.abs().sum() > 0]


def count_generator_calls(model):
    calls = []
    model.generator.register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_turns_return_espnet_contract_and_route_gradients():
    model = codec()
    x = audio()
    out = model(x, forward_generator=False)
    assert set(out) == {"loss", "stats", "weight", "optim_idx"} and out["optim_idx"] == 1
    assert out["loss"].shape == (1,) and out["weight"].item() == 2
    assert set(out["stats"]) == {"discriminator_loss", "real_loss", "fake_loss"}
    out["loss"].backward()
    assert grads(model.discriminator) and not grads(model.generator)  # D turn must not move G
    model.zero_grad()
    out = model(x, forward_generator=True)
    assert out["optim_idx"] == 0
    assert {"loss", "mel_loss", "kl_loss", "adv_loss", "feat_match_loss"} <= set(out["stats"])
    assert all(torch.isfinite(v).all() for v in out["stats"].values())
    out["loss"].backward()
    assert grads(model.generator)


def test_loss_weights_are_applied():
    model = codec(lambda_mel=2.0, lambda_kl=3.0, lambda_adv=5.0, lambda_feat_match=7.0, cache_generator_outputs=False)
    s = model(audio(), forward_generator=True)["stats"]
    expected = 2 * s["mel_loss"] + 3 * s["kl_loss"] + 5 * s["adv_loss"] + 7 * s["feat_match_loss"]
    assert s["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_adversarial_warmup_then_gan():
    model = codec(adv_warmup_steps=2)
    x = audio()
    for _ in range(2):
        d = model(x, forward_generator=False)
        d["loss"].backward()  # the trainer always backwards: the warm-up loss must allow it
        assert d["loss"].item() == 0.0 and not grads(model.discriminator)
        assert all(v is None for v in d["stats"].values())
        g = model(x, forward_generator=True)
        assert g["stats"]["adv_loss"] is None and g["stats"]["feat_match_loss"] is None
        expected = 45 * g["stats"]["mel_loss"].item() + g["stats"]["kl_loss"].item()
        assert g["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert int(model.num_updates) == 2 and "num_updates" in dict(model.named_buffers())
    d = model(x, forward_generator=False)
    assert d["loss"].item() > 0
    d["loss"].backward()
    assert grads(model.discriminator)
    assert model(x, forward_generator=True)["stats"]["adv_loss"] is not None


def test_kl_weight_ramps_over_the_warmup():
    model = codec(lambda_kl=2.0, kl_warmup_steps=4, adv_warmup_steps=100)
    x = audio()
    weights = []
    for _ in range(6):
        weights.append(model.kl_weight)
        g = model(x, forward_generator=True)["stats"]
        expected = 45 * g["mel_loss"].item() + weights[-1] * g["kl_loss"].item()
        assert g["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert weights == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_kl_stays_finite_when_the_posterior_is_nearly_deterministic():
    """(z - mu) / sigma recomputed from z cancels catastrophically for tiny sigma; the sampled noise does not."""
    from espnet_kalle.codec.flow import flow_kl

    mu = torch.full((1, 4, 3), 3.0)
    log_sigma = torch.full((1, 4, 3), -40.0)
    noise = torch.randn(1, 4, 3)
    z = mu + noise * log_sigma.exp()
    kl = flow_kl(z, z, mu, log_sigma, noise=noise)
    assert torch.isfinite(kl)
    expected = (40.0 - 0.5 * noise**2 + 0.5 * z**2).sum() / 3
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)


def test_eval_does_not_advance_warmup():
    model = codec(adv_warmup_steps=1).eval()
    with torch.no_grad():
        model(audio(), forward_generator=True)
    assert int(model.num_updates) == 0


@pytest.mark.parametrize("generator_first", [False, True])
def test_one_generator_pass_serves_both_turns_of_a_batch(generator_first):
    model = codec()
    calls = count_generator_calls(model)
    x = audio()
    turns = [True, False] if generator_first else [False, True]
    for turn in turns:
        model(x, forward_generator=turn)["loss"].backward()
    assert len(calls) == 1 and model._cache is None
    # a new batch never reuses the previous batch's output
    y = audio() * 0.5
    for turn in turns:
        model(y, forward_generator=turn)["loss"].backward()
    assert len(calls) == 2
    model(x, forward_generator=True)
    model(y, forward_generator=True)
    assert len(calls) == 4


def test_lengths_from_zero_padding():
    x = torch.ones(3, 10)
    x[0, 7:] = 0
    x[1, 3] = 0  # an inner zero is not padding
    x[2] = 0  # all-zero row: real silence, full length
    assert lengths_from_zero_padding(x).tolist() == [7, 10, 10]


def test_random_segments_stay_inside_valid_audio():
    torch.manual_seed(0)
    lengths = torch.tensor([1000, 300, 800])
    x = torch.zeros(3, 1000)
    for i, n in enumerate(lengths.tolist()):
        x[i, :n] = torch.arange(1, n + 1)  # sample value = position + 1: zero marks padding
    for _ in range(20):
        seg, seg_len = random_segments(x, lengths, 500)
        assert seg.shape == (3, 500)
        assert seg_len.tolist()[0] == 500 and seg_len.tolist()[1] == 300 and seg_len.tolist()[2] == 500
        assert (seg[1, :300] == torch.arange(1, 301)).all()  # short item: whole, then padding
        for i in (0, 2):  # long items: a contiguous window of real samples
            assert (seg[i].diff() == 1).all() and seg[i].min() >= 1


def test_prepare_masks_padding_and_crops_in_training():
    model = codec(segment_length=3200)
    x = audio(n=6400)
    x[1, 1000:] = 0
    wav, sample_mask, frame_mask = model._prepare(x, None)
    assert wav.shape == (2, 1, 3200) and sample_mask.shape == (2, 1, 3200) and frame_mask.shape == (2, 1, 10)
    assert sample_mask[1].sum() == 1000 and frame_mask[1].sum() == math.ceil(1000 / 320)
    assert sample_mask[0].sum() == 3200 and frame_mask[0].sum() == 10
    model.eval()
    wav, _, frame_mask = model._prepare(x, torch.tensor([6400, 1000]))
    assert wav.shape == (2, 1, 6400) and frame_mask[1].sum() == 4  # no cropping at validation


def test_padding_does_not_change_masked_terms():
    """A zero-padded item encodes as it does alone (causal encoder) and its frame mask covers only its frames."""
    model = codec().eval()
    x = audio(batch=2, n=6400)
    short = x[1:, :3200]
    padded = x.clone()
    padded[1, 3200:] = 0
    torch.manual_seed(5)
    _, _, fm = model._prepare(short, None)
    alone = model.generator(short.unsqueeze(1), fm)
    wav, _, fm2 = model._prepare(padded, None)
    together = model.generator(wav, fm2)
    assert torch.allclose(alone["mu"], together["mu"][1:, :, :10], atol=1e-5)
    assert fm2[1].sum() == 10


def test_inference_api_and_meta_info():
    model = codec(sampling_rate=16000).eval()
    meta = model.meta_info()
    assert meta == {
        "fs": 16000, "frame_shift": 320, "frame_rate": 50.0, "latent_dim": 8, "feature_dim": 16,
        "continuous": True, "decoder_type": "istft",
    }
    assert model.fs == 16000
    x = audio(batch=1, n=3000)[0]
    with torch.no_grad():
        feats = model.encode(x)
        assert feats.shape == (1, 16, math.ceil(3000 / 320))
        mu, log_sigma = model.encode_continuous(x)
        assert torch.equal(feats, torch.cat([mu, log_sigma], 1))
        wav = model.decode(feats)
        assert wav.shape == (1, 1, 10 * 320)
        assert torch.equal(wav, model.decode_continuous(mu))  # decoding features uses the mean
        assert torch.equal(wav, model.decode(mu))
        assert not torch.allclose(model.decode(feats, sample=True), wav)
        out = model.inference(x)
        assert out["wav"].shape == (3000,) and out["codec"].shape == feats.shape
        assert torch.equal(out["mu"], mu) and torch.equal(out["log_sigma"], log_sigma)


def test_sampling_rate_conflict_is_an_error():
    with pytest.raises(ValueError, match="sampling_rate"):
        FlowVAECodec(sampling_rate=24000, generator_params=dict(GEN, sample_rate=16000))
