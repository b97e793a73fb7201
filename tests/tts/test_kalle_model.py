"""The "kalle" AbsTTS in-process: loss terms and masking, speaker KL, text splitting and bad input."""

import pytest
import torch

from espnet_kalle.lm.generate import generate
from espnet_kalle.lm.next_distribution import next_distribution_loss
from espnet_kalle.tts.kalle import KallE

LATENT, MEL = 8, 640


def build(**overrides):
    torch.manual_seed(0)
    conf = dict(
        latent_dim=LATENT,
        lm_conf=dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=2048),
        speaker_conf=dict(speaker_dim=4, channels=16, embed_dim=8, scale=4, se_channels=8, attention_channels=8),
        generation_conf=dict(max_frames=12),
    )
    conf.update(overrides)
    return KallE(idim=30, odim=2 * LATENT + (MEL if conf.get("speaker_conf") else 0), **conf)


def batch(frames=(6, 4)):
    feats = torch.zeros(len(frames), max(frames), 2 * LATENT + MEL)
    for i, n in enumerate(frames):
        feats[i, :n, :LATENT] = torch.randn(n, LATENT)
        feats[i, :n, LATENT : 2 * LATENT] = -1.0
        feats[i, :n, 2 * LATENT :] = torch.randn(n, MEL) - 4
    text = torch.tensor([[3, 4, 5, 6], [7, 8, -1, -1]])
    return text, torch.tensor([4, 2]), feats, torch.tensor(frames)


def test_forward_reports_terms_and_speaker_kl():
    model = build().train()
    loss, stats, weight = model(*batch())
    assert loss.requires_grad and torch.isfinite(loss)
    assert set(stats) >= {"loss", "kl_frame", "kl_end", "kl_speaker"} and int(weight) == 2
    loss.backward()
    assert model.speaker.encoder.stem.conv.weight.grad.abs().sum() > 0  # the speaker encoder trains jointly


def test_speaker_free_bits_leave_a_small_speaker_kl_unpenalised():
    """Below the free bits the speaker KL costs a constant (no gradient pushes it to the prior); above, it counts."""
    plain, free = build().train(), build(speaker_free_bits=1e6).train()
    free.load_state_dict(plain.state_dict())
    torch.manual_seed(3)
    loss_plain, stats, _ = plain(*batch())
    torch.manual_seed(3)
    loss_free, stats_free, _ = free(*batch())
    torch.testing.assert_close(stats_free["kl_speaker"], stats["kl_speaker"])  # reports the true KL either way
    n_frames, batch_size = 10, 2
    kl_sum = stats["kl_speaker"] * batch_size
    torch.testing.assert_close(loss_free - loss_plain, (1e6 * batch_size - kl_sum) / n_frames)
    loss_free.backward()  # a constant cost: the speaker encoder is trained by the frame loss alone
    assert free.speaker.encoder.stem.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="speaker_free_bits"):
        build(speaker_free_bits=-1.0)


def test_loss_equals_terms_with_fixed_noise():
    model = build(speaker_conf=None).eval()
    text, text_lengths, feats, lengths = batch()
    feats = feats[..., : 2 * LATENT]
    torch.manual_seed(5)
    loss, stats, _ = model(text, text_lengths, feats, lengths)
    torch.manual_seed(5)
    mu, log_sigma = feats[..., :LATENT], feats[..., LATENT:]
    z = mu + log_sigma.exp() * torch.randn_like(mu)
    pred = model.lm(text, text_lengths, z, lengths)
    expected = next_distribution_loss(*pred, mu, log_sigma, lengths, model.lambda_end)["loss"]
    torch.testing.assert_close(loss.reshape(()), expected)  # force_gatherable returns shape [1]


def test_padding_does_not_change_an_items_loss():
    model = build(speaker_conf=None).eval()
    text, text_lengths, feats, lengths = batch()
    feats = feats[..., : 2 * LATENT]
    torch.manual_seed(1)
    alone, _, _ = model(text[1:, :2], text_lengths[1:], feats[1:, :4], lengths[1:])
    padded = torch.cat([feats[1:], torch.full((1, 3, 2 * LATENT), 7.0)], dim=1)  # garbage after the end
    torch.manual_seed(1)
    with_pad, _, _ = model(torch.tensor([[7, 8, -1, -1, -1]]), text_lengths[1:], padded, lengths[1:])
    torch.testing.assert_close(with_pad, alone)  # both [1] after force_gatherable


def test_odim_must_match_the_feature_layout():
    with pytest.raises(ValueError, match="odim"):
        KallE(idim=10, odim=2 * LATENT + 5, latent_dim=LATENT, speaker_conf=dict(speaker_dim=4, channels=16))
    with pytest.raises(ValueError, match="odim"):
        KallE(idim=10, odim=2 * LATENT + 640, latent_dim=LATENT)


def test_inference_bad_text_and_long_text():
    model = build().eval()
    with pytest.raises(ValueError, match="empty"):
        model.inference(torch.tensor([], dtype=torch.long), decode_wav=False)
    with pytest.raises(ValueError, match="does not know"):
        model.inference(torch.tensor([1, 1, 0]), decode_wav=False)
    model.sentence_end_ids = {9}
    ids = torch.tensor(([3, 4, 5, 9] * 150)[:590])  # longer than max_text_tokens (400)
    pieces = model.split_text(ids)
    assert [p.numel() for p in pieces] == [400, 190] and pieces[0][-1] == 9
    # At temperature 0 (no sampling noise, whatever the per-piece seed rule) the result is each piece generated
    # alone, from its own text only, in order: computed here with the LM's own prefix and generation loop.
    out = model.inference(ids, decode_wav=False, temperature=0.0, seed=3)
    config = model.generation_config(temperature=0.0)
    speaker = model.voice_from_seed(3)
    alone = [generate(model.lm, [model.lm.prefix(p, speaker)], [p.numel()], config)[0] for p in pieces]
    assert all(a.shape[0] > 0 for a in alone) and not torch.allclose(alone[0][:1], alone[1][:1])
    torch.testing.assert_close(out["feat_gen"], torch.cat(alone), atol=1e-5, rtol=0)


def test_seed_gives_the_same_voice_and_different_seeds_differ():
    model = build()
    torch.testing.assert_close(model.voice_from_seed(42), model.voice_from_seed(42), atol=0, rtol=0)
    assert not torch.allclose(model.voice_from_seed(42), model.voice_from_seed(43))


def test_same_speaker_partners_pair_within_a_speaker():
    from espnet_kalle.tts.kalle import same_speaker_partners

    sids = torch.tensor([[3], [5], [3], [7], [3], [5]])
    for _ in range(20):
        partner = same_speaker_partners(sids)
        assert torch.equal(sids[partner], sids)  # always the same speaker
        assert partner[3] == 3  # the only utterance of speaker 7 reads itself
        others = [i for i in range(6) if i != 3]
        assert all(int(partner[i]) != i for i in others)  # everyone else reads another utterance


def test_other_utterance_feeds_the_speaker_encoder_the_partners_mel():
    """With speaker_reference: other_utterance the ECAPA reads the other same-speaker item's log-mel."""
    model = build(speaker_reference="other_utterance").train()
    text, text_lengths, feats, feats_lengths = batch((6, 4))
    seen = []
    original = model.speaker.from_logmel

    def spy(mel, lengths):  # records what the speaker encoder is given, then runs it
        seen.append((mel.detach().clone(), lengths.clone()))
        return original(mel, lengths)

    model.speaker.from_logmel = spy
    try:
        loss, _, _ = model(text, text_lengths, feats, feats_lengths, sids=torch.tensor([[1], [1]]))
    finally:
        del model.speaker.from_logmel
    mel_in, lengths_in = seen[0]
    _, _, own_mel = model.split_feats(feats)
    torch.testing.assert_close(mel_in[0], own_mel[1])  # item 0 hears item 1 (same speaker) and vice versa
    torch.testing.assert_close(mel_in[1], own_mel[0])
    assert lengths_in.tolist() == [4 * 8, 6 * 8]  # with the partner's length (8 mel frames per latent frame)
    loss.backward()
    assert model.speaker.encoder.stem.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs speaker ids"):
        model(text, text_lengths, feats, feats_lengths)
    with pytest.raises(ValueError, match="speaker_reference"):
        build(speaker_reference="neighbour")
