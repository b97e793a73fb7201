"""Multi-period + multi-resolution discriminators: output structure, shapes, gradients, configuration."""

import pytest
import torch

from espnet_kalle.codec.discriminators import FlowVAEDiscriminator, PeriodDiscriminator, ResolutionDiscriminator


def test_combined_outputs_one_pair_per_member():
    torch.manual_seed(0)
    disc = FlowVAEDiscriminator(periods=(2, 3, 5), resolutions=((512, 128, 512), (256, 64, 256)), channel_mult=0.125)
    wav = torch.randn(2, 1, 4001)
    outs = disc(wav)
    assert len(outs) == 5
    for logits, feats in outs[:3]:  # period members: 5 convs + post
        assert logits.dim() == 2 and logits.shape[0] == 2 and logits.shape[1] > 0
        assert len(feats) == 6 and all(f.shape[0] == 2 for f in feats)
    for logits, feats in outs[3:]:  # resolution members: 5 convs + post
        assert logits.shape[0] == 2 and len(feats) == 6
    # [B, T] input is accepted as mono
    assert [o[0].shape for o in disc(wav.squeeze(1))] == [o[0].shape for o in outs]


@pytest.mark.parametrize("period", [2, 3, 5, 7, 11])
def test_period_fold_shape(period):
    disc = PeriodDiscriminator(period, channel_mult=0.125)
    wav = torch.randn(3, 1, 1000)  # not a multiple of most periods: padded to the next multiple
    logits, feats = disc(wav)
    rows = -(-1000 // period)
    assert feats[0].shape[-1] == period  # the period axis is kept through every conv
    assert feats[0].shape[-2] == -(-rows // 3)  # first conv strides 3 along time
    assert logits.shape[0] == 3


def test_resolution_spectrogram_shape_and_grad():
    disc = ResolutionDiscriminator(512, 128, 400, channel_mult=0.125)
    wav = torch.randn(2, 1, 3200, requires_grad=True)
    spec = disc.spectrogram(wav)
    assert spec.shape == (2, 1, 3200 // 128, 257)  # (n_fft - hop) / 2 padding each side: T / hop frames
    logits, _ = disc(wav)
    logits.sum().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0


def test_silence_has_finite_gradients():
    disc = FlowVAEDiscriminator(periods=(2,), resolutions=((256, 64, 256),), channel_mult=0.125)
    wav = torch.zeros(1, 1, 2000, requires_grad=True)
    sum(logits.sum() for logits, _ in disc(wav)).backward()
    assert torch.isfinite(wav.grad).all()


def test_channel_mult_and_weight_norm():
    def n_params(mult):
        return sum(p.numel() for p in FlowVAEDiscriminator(channel_mult=mult).parameters())

    assert n_params(0.25) < n_params(0.5) < n_params(1.0)
    names = [n for n, _ in FlowVAEDiscriminator(periods=(2,), resolutions=()).named_parameters()]
    assert any("parametrizations.weight.original0" in n for n in names)  # weight norm (g) ...
    assert any("parametrizations.weight.original1" in n for n in names)  # ... and (v)
    spectral_disc = FlowVAEDiscriminator(periods=(2,), resolutions=(), use_spectral_norm=True)
    spectral = [n for n, _ in spectral_disc.named_parameters()]
    assert not any("original1" in n for n in spectral)


def test_defaults_match_release_config():
    disc = FlowVAEDiscriminator()
    assert [d.period for d in disc.mpd.discriminators] == [2, 3, 5, 7, 11]
    assert [(d.n_fft, d.hop_length, d.win_length) for d in disc.mrd.discriminators] == [
        (1024, 120, 600),
        (2048, 240, 1200),
        (512, 50, 240),
    ]


def test_bad_configuration_raises():
    with pytest.raises(ValueError):
        FlowVAEDiscriminator(resolutions=((1024, 120),))
    with pytest.raises(ValueError):
        FlowVAEDiscriminator(periods=(), resolutions=())
