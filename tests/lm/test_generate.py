"""Generation: KV cache == full recompute, batch == one-by-one, seeds, stop rule, guidance, streaming."""

import pytest
import torch

from espnet_kalle.lm.generate import GenerationConfig, generate, iter_generate, seeded_generators

TEXTS = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7]), torch.tensor([8, 9, 10])]


def prefixes(model, speakers=None):
    return [model.prefix(t, None if speakers is None else speakers[i]) for i, t in enumerate(TEXTS)]


def test_cached_equals_full_recompute(tiny_lm):
    model = tiny_lm(speaker_dim=4)
    speakers = torch.randn(3, 4)
    cached = generate(model, prefixes(model, speakers), [5, 2, 3], GenerationConfig(max_frames=25),
                      seeded_generators([0, 1, 2]))
    full = generate(model, prefixes(model, speakers), [5, 2, 3], GenerationConfig(max_frames=25, use_cache=False),
                    seeded_generators([0, 1, 2]))
    for a, b in zip(cached, full):
        assert a.shape == b.shape and a.shape[0] > 0
        assert (a - b).abs().max() <= 1e-5


def test_batched_equals_one_by_one_with_per_item_stopping(tiny_lm):
    model = tiny_lm()
    config = GenerationConfig(max_frames=40, stop_threshold=0.6)  # near a random head's statistic
    batched = generate(model, prefixes(model), [5, 2, 3], config, seeded_generators([3, 4, 5]))
    single = [generate(model, [p], [n], config, seeded_generators([s]))[0]
              for p, n, s in zip(prefixes(model), [5, 2, 3], [3, 4, 5])]
    for a, b in zip(batched, single):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-5
    assert len({a.shape[0] for a in batched}) > 1, "items should stop at different steps"


def test_same_seed_same_output_and_different_seed_differs(tiny_lm):
    model = tiny_lm()
    config = GenerationConfig(max_frames=10, stop_threshold=0.0)
    a = generate(model, prefixes(model)[:1], [5], config, seeded_generators([7]))[0]
    torch.manual_seed(123)  # the global RNG must not matter
    b = generate(model, prefixes(model)[:1], [5], config, seeded_generators([7]))[0]
    c = generate(model, prefixes(model)[:1], [5], config, seeded_generators([8]))[0]
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.allclose(a, c)


def test_temperature_zero_is_the_mean_path_and_scales_spread(tiny_lm):
    """z = mu + tau * sigma * eps: tau = 0 gives the predicted mean whatever the seed; with the same seeds (the same
    eps) the first frame's offset from the mean grows linearly with tau, and at tau = 1 its spread over seeds is the
    predicted sigma (mu and sigma read from the head on the prefix's last state, outside the generation loop)."""
    model = tiny_lm()
    config = GenerationConfig(max_frames=6, stop_threshold=0.0, temperature=0.0)
    a = generate(model, prefixes(model)[:1], [5], config, seeded_generators([1]))[0]
    b = generate(model, prefixes(model)[:1], [5], config, seeded_generators([2]))[0]
    torch.testing.assert_close(a, b)

    prefix = prefixes(model)[:1]
    seeds = range(200)

    def first_frames(temperature):  # one batch, a generator per item (batched == one by one, tested above)
        one = GenerationConfig(max_frames=1, stop_threshold=0.0, temperature=temperature)
        return torch.stack([z[0] for z in generate(model, prefix * len(seeds), [5] * len(seeds), one,
                                                   seeded_generators(seeds))])

    with torch.no_grad():
        mu, log_sigma = model.head(model.backbone(inputs_embeds=prefix[0][None]).last_hidden_state[0, -1])
    mean, half, full = (first_frames(t) for t in (0.0, 0.5, 1.0))
    torch.testing.assert_close(mean, mu.expand_as(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(full - mean, 2 * (half - mean), atol=1e-5, rtol=1e-4)
    spread = ((full - mean) / log_sigma.exp()).std(dim=0)  # eps ~ N(0, 1) per dimension
    assert ((spread - 1.0).abs() < 0.2).all(), spread


def test_stop_rule_min_and_max_lengths(tiny_lm):
    model = tiny_lm()
    # Make the predicted distribution equal to N_end everywhere: stop as soon as allowed.
    with torch.no_grad():
        head = model.head.distribution_linear
        head.weight.zero_()
        head.bias.fill_(1.0)
    out = generate(model, prefixes(model)[:1], [5], GenerationConfig(min_frames=4), seeded_generators([0]))[0]
    assert out.shape[0] == 4  # "after more than 3 frames"; the stop frame itself is dropped
    out = generate(model, prefixes(model)[:1], [5], GenerationConfig(min_frames=0, minlenratio=2.0))[0]
    assert out.shape[0] == 10  # minimum from the text length: 2 frames per token
    # Never reaching the end distribution: the text-derived maximum holds.
    with torch.no_grad():
        head.bias.fill_(-3.0)
    out = generate(model, prefixes(model)[:1], [5], GenerationConfig(maxlenratio=3.0, max_frames=100))[0]
    assert out.shape[0] == 15


def test_iter_generate_yields_frame_by_frame(tiny_lm):
    model = tiny_lm()
    steps = iter_generate(model, prefixes(model)[:1], [5], GenerationConfig(max_frames=5, stop_threshold=0.0))
    first, emitted = next(steps)
    assert first.shape == (1, model.latent_dim) and emitted.tolist() == [True]
    assert len(list(steps)) == 4


def test_guidance_off_by_default_and_changes_output_when_on(tiny_lm):
    model = tiny_lm()
    p = prefixes(model)[:1]
    uncond = [model.prefix(TEXTS[0][:0])]
    base = GenerationConfig(max_frames=6, stop_threshold=0.0)
    plain = generate(model, p, [5], base, seeded_generators([0]))[0]
    zero = generate(model, p, [5], GenerationConfig(max_frames=6, stop_threshold=0.0, guidance_weight=0.0),
                    seeded_generators([0]), uncond)[0]
    torch.testing.assert_close(plain, zero)
    guided = generate(model, p, [5], GenerationConfig(max_frames=6, stop_threshold=0.0, guidance_weight=2.0),
                      seeded_generators([0]), uncond)[0]
    assert not torch.allclose(plain, guided)
    with pytest.raises(ValueError, match="unconditional"):
        generate(model, p, [5], GenerationConfig(guidance_weight=1.0))


def test_too_long_for_the_position_window_is_a_clear_error(tiny_lm):
    model = tiny_lm()
    long_text = torch.randint(0, 20, (600,))
    with pytest.raises(ValueError, match="positions"):
        generate(model, [model.prefix(long_text)], [600], GenerationConfig(max_frames=10))
