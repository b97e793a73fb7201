"""Mel L1, least-squares GAN and feature-matching losses."""

import math

import pytest
import torch

from espnet_kalle.codec.losses import (
    MelSpectrogramLoss,
    MultiResolutionMelLoss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def tone(n=16000, f0=220.0, sr=16000):
    t = torch.arange(n) / sr
    return (0.5 * torch.sin(2 * math.pi * f0 * t)).view(1, 1, -1)


@pytest.fixture(scope="module")
def mel_loss():
    return MelSpectrogramLoss()


def test_mel_loss_zero_for_identical_and_positive_otherwise(mel_loss):
    wav = tone()
    assert mel_loss(wav, wav.clone()).item() == 0.0
    small = mel_loss(wav + 0.001 * torch.randn_like(wav), wav).item()
    large = mel_loss(wav + 0.1 * torch.randn_like(wav), wav).item()
    assert 0.0 < small < large
    assert mel_loss(tone(f0=330.0), wav).item() > 0.5  # a different pitch is far away in log-mel


def test_mel_defaults_and_shape(mel_loss):
    mel = mel_loss.log_mel(tone(n=2400))
    assert mel.shape == (1, 100, 2400 // 240 + 1)
    assert mel_loss.mel.n_fft == 1024 and mel_loss.mel.win_length == 960 and mel_loss.mel.hop_length == 240
    assert mel_loss.mel.mel_scale.f_max == 8000.0


def test_mel_configurable_and_fmax_clamped_to_nyquist():
    loss = MelSpectrogramLoss(sample_rate=16000, n_fft=512, hop_length=128, win_length=512, n_mels=40, fmax=12000)
    assert loss.mel.mel_scale.f_max == 8000.0  # the release config says 12000 at 16 kHz: above Nyquist
    assert loss.log_mel(tone(n=1280)).shape == (1, 40, 11)


def test_mel_mask_ignores_padding(mel_loss):
    wav, hat = tone(), tone()
    hat[..., 8000:] = torch.randn(8000)
    mask = torch.ones_like(wav)
    mask[..., 8000:] = 0
    assert mel_loss(hat, wav, mask).item() == 0.0
    assert mel_loss(hat, wav).item() > 0.0


def test_mel_loss_gradient_reaches_prediction(mel_loss):
    hat = (tone() * 0.5).requires_grad_(True)
    mel_loss(hat, tone()).backward()
    assert hat.grad is not None and hat.grad.abs().sum() > 0


def fake_outputs(value, shapes=((2, 7), (2, 3))):
    return [(torch.full(s, float(value)), [torch.full((2, 4, 5), float(value))]) for s in shapes]


def test_lsgan_losses():
    assert generator_adversarial_loss(fake_outputs(1.0)).item() == 0.0
    assert generator_adversarial_loss(fake_outputs(0.0)).item() == pytest.approx(2.0)  # 2 members x (1 - 0)^2
    real_loss, fake_loss = discriminator_adversarial_loss(fake_outputs(0.0), fake_outputs(1.0))
    assert real_loss.item() == 0.0 and fake_loss.item() == 0.0
    real_loss, fake_loss = discriminator_adversarial_loss(fake_outputs(0.5), fake_outputs(0.5))
    assert real_loss.item() == pytest.approx(0.5) and fake_loss.item() == pytest.approx(0.5)


def test_feature_matching_loss_values_and_gradient_direction():
    real = fake_outputs(1.0)
    assert feature_matching_loss(fake_outputs(1.0), real).item() == 0.0
    fake_feat = torch.zeros(2, 4, 5, requires_grad=True)
    real_feat = torch.ones(2, 4, 5, requires_grad=True)
    loss = feature_matching_loss([(None, [fake_feat])], [(None, [real_feat])])
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    assert fake_feat.grad is not None and real_feat.grad is None  # real features are targets only


def test_multi_resolution_mel_loss_averages_its_resolutions():
    resolutions = [[1024, 240, 960], [256, 64, 256]]
    multi = MultiResolutionMelLoss(resolutions)
    assert [m.mel.n_fft for m in multi.losses] == [1024, 256]
    assert multi.losses[1].mel.mel_scale.n_mels == 32  # capped at n_fft // 8
    wav, other = tone(), tone(f0=330.0)
    expected = sum(MelSpectrogramLoss(n_fft=n, hop_length=h, win_length=w, n_mels=min(100, n // 8))(other, wav)
                   for n, h, w in resolutions) / 2
    torch.testing.assert_close(multi(other, wav), expected)
    assert multi(wav, wav.clone()).item() == 0.0
    with pytest.raises(ValueError, match="resolutions"):
        MultiResolutionMelLoss([])


def test_codec_model_uses_multi_resolution_mel_when_configured():
    from espnet_kalle.codec.espnet_model import FlowVAECodec

    params = dict(latent_dim=4, downsample_channels=[2, 2, 2, 2, 2, 2, 4], residual_dilations=[1],
                  flow_hidden_channels=4, flow_layers=1, flow_couplings=1, decoder_type="istft",
                  decoder_conf=dict(dim=8, intermediate_dim=8, num_layers=1))
    codec = FlowVAECodec(generator_params=params, discriminator_params=dict(periods=[2], resolutions=[[256, 64, 256]],
                                                                            channel_mult=0.125),
                         mel_loss_params=dict(resolutions=[[512, 128, 512], [256, 64, 256]]))
    assert isinstance(codec.mel_loss, MultiResolutionMelLoss) and len(codec.mel_loss.losses) == 2
