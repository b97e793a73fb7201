"""The LM learns real latent sequences (teacher-forced KL drops, free-running stops at the right length),
and test-time training lowers the prompt KL without touching the base model."""

import copy
import math

import pytest
import torch

from espnet_kalle.lm.generate import GenerationConfig, generate, seeded_generators
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.next_distribution import next_distribution_loss
from espnet_kalle.lm.ttt import test_time_train

LOG_SIGMA = math.log(0.3)  # the release latents are samples; give them a posterior width


def four_sequences(release_latents):
    a, b = release_latents
    seqs = [a[:38], a[38:], b[:60], b[60:]]
    lengths = torch.tensor([s.shape[0] for s in seqs])
    mu = torch.zeros(4, int(lengths.max()), a.shape[1])
    for i, s in enumerate(seqs):
        mu[i, : s.shape[0]] = s
    return mu, torch.full_like(mu, LOG_SIGMA), lengths


def prompt_kl(lm, text, prompt_mu, prompt_log_sigma, speaker, n_samples=8) -> float:
    """Mean per-frame KL(q(prompt) || p) of ``lm`` on the prompt, teacher-forced with posterior samples."""
    z = prompt_mu + prompt_log_sigma.exp() * torch.randn((n_samples,) + prompt_mu.shape,
                                                         generator=torch.Generator().manual_seed(0))
    lengths = torch.full((n_samples,), prompt_mu.shape[0])
    with torch.no_grad():
        pred = lm(text.expand(n_samples, -1), torch.full((n_samples,), text.numel()), z, lengths,
                  speaker.expand(n_samples, -1))
    target = (prompt_mu.expand_as(z), prompt_log_sigma.expand_as(z))
    return next_distribution_loss(*pred, *target, lengths, lambda_end=0.0)["kl_per_frame"].item()


def test_overfit_four_real_sequences(release_latents):
    torch.manual_seed(0)
    mu, log_sigma, lengths = four_sequences(release_latents)
    text = torch.randint(0, 20, (4, 12))
    text_lengths = torch.full((4,), 12)
    model = KalleLM(vocab_size=20, latent_dim=512, hidden_size=128, num_layers=2, num_heads=4,
                    max_position_embeddings=256)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3)

    def kl_per_frame():
        with torch.no_grad():
            pred = model(text, text_lengths, mu, lengths)
        return next_distribution_loss(*pred, mu, log_sigma, lengths)["kl_per_frame"].item()

    before = kl_per_frame()
    for _ in range(250):
        z = mu + log_sigma.exp() * torch.randn_like(mu)
        loss = next_distribution_loss(*model(text, text_lengths, z, lengths), mu, log_sigma, lengths)["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    after = kl_per_frame()
    assert after * 10 <= before, (before, after)

    out = generate(model, [model.prefix(text[i]) for i in range(4)], [12] * 4, GenerationConfig(max_frames=150),
                   seeded_generators(range(4)))
    for generated, true_length in zip(out, lengths.tolist()):
        assert abs(generated.shape[0] - true_length) <= 0.2 * true_length, ([o.shape[0] for o in out], lengths)


@pytest.fixture
def base_lm():
    torch.manual_seed(1)
    return KalleLM(vocab_size=20, latent_dim=512, hidden_size=64, num_layers=2, num_heads=4, speaker_dim=8,
                   max_position_embeddings=256).eval()


def test_ttt_lowers_prompt_kl_and_leaves_base_unchanged(base_lm, release_latents):
    prompt = release_latents[0][:30]
    prompt_ls = torch.full_like(prompt, LOG_SIGMA)
    text = torch.tensor([3, 4, 5, 6, 7, 8])
    speaker = torch.randn(8)
    base_state = {k: v.clone() for k, v in base_lm.state_dict().items()}
    before = prompt_kl(base_lm, text, prompt, prompt_ls, speaker)

    voice = test_time_train(base_lm, text, prompt, prompt_ls, speaker, n_samples=200, steps=30, batch_size=4,
                            learning_rate=3e-3)
    for k, v in base_lm.state_dict().items():
        torch.testing.assert_close(v, base_state[k], atol=0, rtol=0)
    torch.testing.assert_close(voice.speaker, speaker)
    adapted = copy.deepcopy(base_lm)
    adapted.load_state_dict(voice.lm_state)
    after = prompt_kl(adapted, text, prompt, prompt_ls, speaker)
    assert after < 0.5 * before, (before, after)


def test_ttt_rejects_bad_input(base_lm):
    with pytest.raises(ValueError, match="transcript"):
        test_time_train(base_lm, torch.tensor([], dtype=torch.long), torch.zeros(4, 512), torch.zeros(4, 512))
    with pytest.raises(ValueError, match="posterior"):
        test_time_train(base_lm, torch.tensor([1]), torch.zeros(4, 512), torch.zeros(4, 511))


def test_ttt_adapts_a_mixture_head_lm_and_refuses_heads_without_a_kl():
    torch.manual_seed(0)
    lm = KalleLM(vocab_size=20, latent_dim=16, hidden_size=64, num_layers=2, num_heads=4, speaker_dim=8,
                 max_position_embeddings=256, head_type="gaussian_mixture", head_conf={"num_components": 3}).eval()
    g = torch.Generator().manual_seed(1)
    prompt, prompt_ls = torch.randn(20, 16, generator=g), torch.full((20, 16), LOG_SIGMA)
    text, speaker = torch.tensor([3, 4, 5, 6]), torch.randn(8)

    def kl_bound(model):
        z = prompt + prompt_ls.exp() * torch.randn((8, 20, 16), generator=torch.Generator().manual_seed(0))
        lengths = torch.full((8,), 20)
        with torch.no_grad():
            hidden = model.hidden_states(text.expand(8, -1), torch.full((8,), 4), z, lengths, speaker.expand(8, -1))
            terms = model.head.loss(hidden, prompt.expand_as(z), prompt_ls.expand_as(z), lengths)
        return float(terms["kl_frames_sum"] / terms["n_frames"])

    voice = test_time_train(lm, text, prompt, prompt_ls, speaker, n_samples=50, steps=30, batch_size=4,
                            learning_rate=3e-3)
    adapted = copy.deepcopy(lm)
    adapted.load_state_dict(voice.lm_state)
    assert kl_bound(adapted) < 0.5 * kl_bound(lm)
    other = KalleLM(vocab_size=20, latent_dim=16, hidden_size=64, num_layers=2, num_heads=4, head_type="melle")
    with pytest.raises(ValueError, match="needs one of the heads"):
        test_time_train(other, text, prompt, prompt_ls, n_samples=4, steps=1)
