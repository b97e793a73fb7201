"""continuation_share: training items that go on from another utterance of their speaker, as prompts do."""

import pytest
import torch

from espnet_kalle.lm.continuation import continuation_pairs, join_continuations
from espnet_kalle.tts.kalle import KallE

LATENT, MEL = 8, 640
TINY_LM = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)
TINY_SPEAKER = dict(speaker_dim=4, channels=16, embed_dim=8, scale=4, se_channels=8, attention_channels=8)


def build(speaker: bool = False, **overrides) -> KallE:
    torch.manual_seed(0)
    conf = dict(latent_dim=LATENT, lm_conf=TINY_LM, speaker_conf=TINY_SPEAKER if speaker else None)
    conf.update(overrides)
    return KallE(idim=30, odim=2 * LATENT + (MEL if speaker else 0), **conf)


def batch(frames=(6, 4), width: int = 2 * LATENT):
    """Two items; log_sigma -30 makes the posterior samples the means, so two forwards see the same inputs."""
    feats = torch.zeros(len(frames), max(frames), width)
    for i, n in enumerate(frames):
        feats[i, :n, :LATENT] = 3 * torch.randn(n, LATENT)
        feats[i, :n, LATENT : 2 * LATENT] = -30.0
        feats[i, :n, 2 * LATENT :] = torch.randn(n, width - 2 * LATENT) - 4
    return torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2]), feats, torch.tensor(frames)


def test_pairs_are_disjoint_same_speaker_and_the_asked_share():
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([3, 5, 3, 7, 3, 5, 5, 3])
    for _ in range(50):
        pairs = continuation_pairs(groups, 8, 1.0, g)
        used = [i for pair in pairs for i in pair]
        assert len(used) == len(set(used))  # no item twice
        assert all(int(groups[a]) == int(groups[b]) for a, b in pairs)
        assert len(pairs) == 3  # 4 of speaker 3, 3 of speaker 5 (one left over), 1 of speaker 7
    assert len(continuation_pairs(None, 16, 0.5, g)) == 4  # a quarter of the items start a pair, a quarter end one
    assert continuation_pairs(None, 16, 0.0, g) == []
    counts = [len(continuation_pairs(None, 16, 0.3, g)) for _ in range(400)]  # 2.4 pairs: 2 or 3, 2.4 on average
    assert set(counts) == {2, 3} and 2.3 < sum(counts) / len(counts) < 2.5
    with pytest.raises(ValueError, match="continuation_share"):
        continuation_pairs(None, 4, 1.5)


def test_join_puts_the_first_utterance_before_the_second():
    text, text_lengths, feats, feats_lengths = batch((6, 4))
    third = (torch.tensor([[9, 9, 9, 0]]), torch.tensor([3]), torch.randn(1, 6, 2 * LATENT), torch.tensor([5]))
    text = torch.cat([text, third[0]])
    text_lengths, feats, feats_lengths = (torch.cat([text_lengths, third[1]]), torch.cat([feats, third[2]]),
                                          torch.cat([feats_lengths, third[3]]))
    new_text, new_text_lengths, new_feats, new_lengths, source = join_continuations(
        text, text_lengths, feats, feats_lengths, [(1, 0)])
    assert new_text_lengths.tolist() == [6, 3] and new_lengths.tolist() == [10, 5] and source == [0, 2]
    assert new_text[0].tolist() == [7, 8, 3, 4, 5, 6]
    torch.testing.assert_close(new_feats[0, :10], torch.cat([feats[1, :4], feats[0, :6]]))
    torch.testing.assert_close(new_feats[1, :5], feats[2, :5])  # the unpaired item stays as it was


def test_a_joined_batch_trains_as_one_utterance_that_continues_the_other():
    """The loss of a batch joined in training equals the loss of the pair joined by hand (inputs and targets)."""
    text, text_lengths, feats, feats_lengths = batch((6, 4))
    joined = build(continuation_share=1.0).train()
    loss, _, weight = joined(text, text_lengths, feats, feats_lengths)
    loss = loss.detach()
    assert int(weight) == 1  # two utterances became one item
    plain = build().train()
    by_hand = []
    for first, second in ((0, 1), (1, 0)):
        t = torch.cat([text[first, : text_lengths[first]], text[second, : text_lengths[second]]])[None]
        f = torch.cat([feats[first, : feats_lengths[first]], feats[second, : feats_lengths[second]]])[None]
        by_hand.append(float(plain(t, torch.tensor([t.shape[1]]), f, torch.tensor([f.shape[1]]))[0].detach()))
    assert min(abs(float(loss) - x) for x in by_hand) < 1e-4 * abs(float(loss))
    separate = float(plain(text, text_lengths, feats, feats_lengths)[0])
    assert min(abs(separate - x) for x in by_hand) > 1e-3 * abs(separate)  # joining changes what is learnt
    assert float(joined.eval()(text, text_lengths, feats, feats_lengths)[0]) == pytest.approx(
        float(plain.eval()(text, text_lengths, feats, feats_lengths)[0]))  # validation scores single utterances


def test_a_speaker_model_pairs_only_within_a_speaker():
    text, text_lengths, feats, feats_lengths = batch((6, 4), 2 * LATENT + MEL)
    model = build(speaker=True, continuation_share=1.0).train()
    _, _, weight = model(text, text_lengths, feats, feats_lengths, sids=torch.tensor([[1], [2]]))
    assert int(weight) == 2  # two speakers: nothing joined
    _, _, weight = model(text, text_lengths, feats, feats_lengths, sids=torch.tensor([[1], [1]]))
    assert int(weight) == 1
    with pytest.raises(ValueError, match="needs speaker ids"):
        model(text, text_lengths, feats, feats_lengths)
    with pytest.raises(ValueError, match="continuation_share"):
        build(continuation_share=-0.1)
