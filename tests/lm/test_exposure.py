"""Scheduled sampling and history noise: the LM trains on inputs nearer to its own free-running draws."""

import pytest
import torch

from espnet_kalle.lm.exposure import ScheduledSampling, corrupt_history, mix_own_predictions
from espnet_kalle.tts.kalle import KallE

LATENT = 8


def build(**overrides) -> KallE:
    torch.manual_seed(0)
    conf = dict(latent_dim=LATENT, lm_conf=dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64))
    conf.update(overrides)
    return KallE(idim=30, odim=2 * LATENT, **conf)


def batch(log_sigma: float = -1.0):
    frames = (6, 4)
    feats = torch.zeros(2, 6, 2 * LATENT)
    for i, n in enumerate(frames):
        feats[i, :n, :LATENT] = 3 * torch.randn(n, LATENT)
        feats[i, :n, LATENT:] = log_sigma
    return torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2]), feats, torch.tensor(frames)


def audio_inputs(model: KallE, *args):
    """The latents each pass of one training forward feeds the LM (inputs of ``audio_linear``)."""
    seen = []
    hook = model.lm.audio_linear.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    try:
        loss, _, _ = model(*args)
    finally:
        hook.remove()
    return seen, loss


def test_schedule_waits_ramps_and_caps():
    s = ScheduledSampling(max_share=0.6, start_step=100, ramp_steps=200)
    assert [s.share(k) for k in (0, 99, 100, 200, 300, 10_000)] == pytest.approx([0, 0, 0, 0.3, 0.6, 0.6])
    assert ScheduledSampling(max_share=0.4, start_step=0, ramp_steps=0).share(0) == 0.4
    with pytest.raises(ValueError, match="max_share"):
        ScheduledSampling(max_share=1.5)


def test_mix_takes_the_prediction_made_for_each_frame():
    z = torch.zeros(2, 5, 3)
    mu = torch.arange(2 * 6 * 3, dtype=torch.float).reshape(2, 6, 3)  # one extra step: the end prediction
    log_sigma = torch.zeros(2, 6, 3)
    assert torch.equal(mix_own_predictions(z, mu, log_sigma, share=1.0, temperature=0.0), mu[:, :5])
    assert torch.equal(mix_own_predictions(z, mu, log_sigma, share=0.0, temperature=0.0), z)
    g = torch.Generator().manual_seed(0)
    mixed = mix_own_predictions(torch.zeros(4, 500, 1), torch.ones(4, 501, 1), torch.zeros(4, 501, 1), 0.3, 0.0, g)
    assert 0.25 < float(mixed.mean()) < 0.35  # whole frames replaced with probability `share`
    drawn = mix_own_predictions(torch.zeros(1, 4000, 1), torch.zeros(1, 4000, 1), torch.full((1, 4000, 1), 1.0),
                                1.0, 0.5, g)
    assert float(drawn.std()) == pytest.approx(0.5 * torch.e, rel=0.05)  # temperature scales the predicted sigma


def test_history_noise_is_relative_to_the_latents_spread():
    g = torch.Generator().manual_seed(0)
    z = 10 * torch.randn(64, 50, 4, generator=g)
    lengths = torch.full((64,), 50)
    assert torch.equal(corrupt_history(z, lengths, 0.0), z)
    noise = corrupt_history(z, lengths, 0.5, g) - z
    per_utt = noise.std(dim=(1, 2)) / z.std()
    assert float(per_utt.max()) < 0.55 and float(per_utt.min()) < 0.1 and float(per_utt.mean()) == pytest.approx(
        0.25, abs=0.05)  # levels ~ U(0, 0.5) per utterance


def test_scheduled_sampling_feeds_the_first_pass_predictions():
    model = build(scheduled_sampling=dict(max_share=1.0, start_step=0, ramp_steps=0, temperature=0.0)).train()
    text, text_lengths, feats, lengths = batch()
    seen, loss = audio_inputs(model, text, text_lengths, feats, lengths)
    assert len(seen) == 2  # a no-grad pass, then the pass that trains
    with torch.no_grad():
        pred_mu, _ = model.lm(text, text_lengths, seen[0], lengths)
    assert torch.allclose(seen[1], pred_mu[:, : seen[0].shape[1]], atol=1e-6)
    assert not torch.allclose(seen[1], seen[0], atol=1e-2)
    loss.backward()
    assert int(model.sampling_step) == 1 and "sampling_step" in model.state_dict()  # resumed runs keep the schedule


def test_scheduled_sampling_waits_for_its_start_and_stays_out_of_inference():
    model = build(scheduled_sampling=dict(max_share=1.0, start_step=2, ramp_steps=0, temperature=0.0)).train()
    args = batch()
    assert len(audio_inputs(model, *args)[0]) == 1 and len(audio_inputs(model, *args)[0]) == 1
    assert len(audio_inputs(model, *args)[0]) == 2 and int(model.sampling_step) == 3
    model.eval()
    with torch.no_grad():
        assert len(audio_inputs(model, *args)[0]) == 1  # validation scores plain teacher forcing
    assert int(model.sampling_step) == 3
    with pytest.raises(ValueError, match="gaussian_kl"):
        build(scheduled_sampling=dict(max_share=0.5), head="melle")


def test_history_noise_reaches_the_lm_inputs_in_training_only():
    text, text_lengths, feats, lengths = batch(log_sigma=-30.0)  # posterior samples equal the means
    means = feats[:, :, :LATENT]
    valid = torch.arange(6)[None] < lengths[:, None]

    def inputs(model):
        return audio_inputs(model, text, text_lengths, feats, lengths)[0][0][valid]

    assert torch.allclose(inputs(build().train()), means[valid], atol=1e-5)
    noisy = build(history_noise=0.5).train()
    torch.manual_seed(1)
    assert float((inputs(noisy) - means[valid]).abs().max()) > 0.05
    noisy.eval()
    with torch.no_grad():
        assert torch.allclose(inputs(noisy), means[valid], atol=1e-5)
    with pytest.raises(ValueError, match="history_noise"):
        build(history_noise=-1.0)
