"""Guided attention (tts_conf.guided_attention): the captured scores are the attention the LM uses (checked against
transformers' eager attention), the DC-TTS penalty by hand, frame centres from durations, training pulls the heads
onto the diagonal, durations are joined with their texts, and bad durations are refused."""

import math

import pytest
import torch

from espnet_kalle.lm.guided_attention import (
    GuidedAttention,
    TextAttentionCapture,
    frame_centres,
    guided_attention_loss,
    uniform_durations,
)
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.tts.kalle import KallE

LM_CONF = dict(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64)


def tiny_lm():
    torch.manual_seed(0)
    return KalleLM(vocab_size=30, latent_dim=8, **LM_CONF)


def text_attention_of_eager(lm, inputs, layer, heads, keys):
    """transformers' own eager attention probabilities [B, heads, L, keys] (as the capture's keys)."""
    lm.backbone.config._attn_implementation = "eager"
    out = lm.backbone(inputs_embeds=inputs, output_attentions=True)
    return out.attentions[layer][:, heads, :, :keys]


def test_captured_scores_are_the_attention_the_model_uses():
    lm = tiny_lm().eval()
    inputs = torch.randn(2, 11, 32)
    with torch.no_grad(), TextAttentionCapture(lm.backbone, [1], [0, 3], keys=5) as capture:
        lm.backbone(inputs_embeds=inputs)
    with torch.no_grad():
        eager = text_attention_of_eager(lm, inputs, 1, [0, 3], 5)
    rows = slice(5, 11)  # queries after the first 5 keys see all of them
    expected = eager[:, :, rows] / eager[:, :, rows].sum(-1, keepdim=True)
    torch.testing.assert_close(capture.scores[0][:, :, rows].softmax(-1), expected, atol=1e-5, rtol=1e-4)


def test_penalty_by_hand():
    # one item, text of 4 tokens at keys 1..4, frame j's query at position 6 + j, 3 frames
    scores = torch.randn(1, 1, 9, 5)
    centres = torch.tensor([[0.5, 2.0, 3.5]])
    loss = guided_attention_loss([scores], 1, torch.tensor([4]), torch.tensor([6]), torch.tensor([3]), centres, 0.3)
    total = 0.0
    for j in range(3):
        a = scores[0, 0, 6 + j, 1:5].softmax(-1)
        w = torch.tensor([1 - math.exp(-(((n + 0.5) - centres[0, j]) / 4) ** 2 / (2 * 0.3**2)) for n in range(4)])
        total += (a * w).sum()
    torch.testing.assert_close(loss, total / 3)
    on_path = torch.full((1, 1, 9, 5), -30.0)
    for j, n in enumerate([0, 1, 3]):
        on_path[0, 0, 6 + j, 1 + n] = 30.0
    off_path = torch.full((1, 1, 9, 5), -30.0)
    off_path[0, 0, 6:9, 4] = 30.0  # always the last token
    args = (1, torch.tensor([4]), torch.tensor([6]), torch.tensor([3]), centres, 0.3)
    assert guided_attention_loss([on_path], *args) < 0.1 < guided_attention_loss([off_path], *args)


def test_frame_centres_follow_the_durations_and_the_diagonal_splits_evenly():
    centres = frame_centres(torch.tensor([[2, 1, 3, -1]]), torch.tensor([3]), 7)
    torch.testing.assert_close(centres[0], torch.tensor([0.25, 0.75, 1.5, 2 + 1 / 6, 2.5, 2 + 5 / 6, 0.0]))
    (d,) = uniform_durations(torch.tensor([3]), torch.tensor([7]))
    assert d.tolist() == [2, 2, 3]
    (d,) = uniform_durations(torch.tensor([4]), torch.tensor([2]))  # fewer frames than tokens
    assert d.tolist() == [0, 1, 0, 1] and frame_centres(d[None], torch.tensor([4]), 2)[0].tolist() == [1.5, 3.5]


def test_options_and_annealing():
    ga = GuidedAttention(weight=4.0, anneal_start=10, anneal_steps=20)
    assert [ga.weight_at(s) for s in (0, 10, 20, 30, 99)] == [4.0, 4.0, 2.0, 0.0, 0.0]
    assert GuidedAttention(weight=4.0).weight_at(10**6) == 4.0
    with pytest.raises(ValueError, match="target"):
        GuidedAttention(target="timings")
    with pytest.raises(ValueError, match="not in this LM"):
        KallE(idim=30, odim=16, latent_dim=8, lm_conf=LM_CONF, guided_attention=dict(layers=[2]))


def batch():
    torch.manual_seed(1)
    text = torch.tensor([[3, 4, 5, 6], [6, 7, 8, -1]])
    return text, torch.tensor([4, 3]), torch.randn(2, 8, 16), torch.tensor([8, 5])


def band_mass(model, text, text_lengths, feats, feats_lengths):
    """Share of the guided heads' text attention (eager, renormalised) within one token of the diagonal."""
    lm = model.lm
    mu = feats[..., :8]
    mass = []
    for b in range(2):
        n, t = int(text_lengths[b]), int(feats_lengths[b])
        inputs = torch.cat([lm.prefix(text[b, :n]), lm.embed_latents(mu[b : b + 1, : t - 1])[0]])[None]
        probs = text_attention_of_eager(lm, inputs, 1, [0, 1], n)[0]  # [heads, L, n]
        probs = probs[:, n + 1 : n + 1 + t]  # the frame queries
        probs = probs / probs.sum(-1, keepdim=True)
        centre = (torch.arange(t) + 0.5) * n / t
        near = ((torch.arange(n)[None] + 0.5 - centre[:, None]).abs() <= 1.0).float()
        mass.append((probs * near).sum(-1).mean())
    lm.backbone.config._attn_implementation = "sdpa"
    return float(torch.stack(mass).mean())


def trained_band_mass(guided: bool, steps: int = 60) -> float:
    torch.manual_seed(0)
    conf = dict(guided_attention=dict(layers=[1], heads=[0, 1], weight=5.0, sigma=0.2)) if guided else {}
    model = KallE(idim=30, odim=16, latent_dim=8, lm_conf=LM_CONF, **conf)
    text, text_lengths, feats, feats_lengths = batch()
    feats[..., 8:] = -3.0  # narrow posteriors
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss, _, _ = model(text, text_lengths, feats, feats_lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if guided:
        assert int(model.guided_step) == steps and "guided_step" in model.state_dict()
    with torch.no_grad():
        return band_mass(model.eval(), text, text_lengths, feats, feats_lengths)


def test_training_with_guided_attention_puts_the_heads_on_the_diagonal():
    guided, control = trained_band_mass(True), trained_band_mass(False)
    assert guided > 0.8 and guided > control + 0.2, (guided, control)


def test_durations_are_joined_with_their_texts_and_checked():
    model = KallE(idim=30, odim=16, latent_dim=8, lm_conf=LM_CONF, continuation_share=1.0,
                  guided_attention=dict(layers=[0], heads=[0], target="durations"))
    text, text_lengths, feats, feats_lengths = batch()
    durations, durations_lengths = torch.tensor([[1, 2, 2, 3], [2, 2, 1, -1]]), torch.tensor([4, 3])
    for _ in range(4):  # the pair's order is random: durations must follow the text either way
        joined = model.joined_continuations(text, text_lengths, feats, feats_lengths, None,
                                            (durations, durations_lengths))
        new_text, new_lengths, _, new_frames, _, (new_durations, new_dlengths) = joined
        first = 0 if int(new_text[0, 0]) == 3 else 1
        expected = torch.cat([durations[i, : int(durations_lengths[i])] for i in (first, 1 - first)])
        assert new_durations[0].tolist() == expected.tolist() and int(new_dlengths[0]) == int(new_lengths[0]) == 7
        assert int(new_durations[0].sum()) == int(new_frames[0]) == 13
    model.train()
    loss, stats, _ = model(text, text_lengths, feats, feats_lengths, durations=durations,
                           durations_lengths=durations_lengths)
    assert torch.isfinite(loss) and "guided_attention" in stats
    with pytest.raises(ValueError, match="needs per-token durations"):
        model(text, text_lengths, feats, feats_lengths)
    with pytest.raises(ValueError, match="sum to the utterance's frames"):
        model(text, text_lengths, feats, feats_lengths, durations=durations + 1, durations_lengths=durations_lengths)
    model.eval()  # inference and validation do not need them
    model(text, text_lengths, feats, feats_lengths)
