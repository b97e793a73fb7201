"""Tacotron 2's pre-net before the LM's latent inputs: dropout on at inference, reproducible by seed."""

import pytest
import torch

from espnet_kalle.lm.generate import GenerationConfig, generate, seeded_generators
from espnet_kalle.lm.model import KalleLM
from espnet_kalle.lm.prenet import Prenet

TEXTS = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 7])]


def lm_with_prenet(prenet=None):
    prenet = prenet or dict(units=16, layers=2, dropout=0.5)
    torch.manual_seed(0)
    return KalleLM(vocab_size=20, latent_dim=8, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                   max_position_embeddings=512, prenet=prenet).eval()


def test_prenet_drops_in_eval_mode_and_follows_its_generators():
    torch.manual_seed(0)
    net = Prenet(8, units=64, layers=1, dropout=0.5).eval()
    with torch.no_grad():
        net.linears[0].weight.zero_()
        net.linears[0].bias.fill_(1.0)  # every unit 1 before dropout
    x = torch.randn(3, 5, 8)
    out = net(x)
    assert set(out.unique().tolist()) == {0.0, 2.0}  # dropped or scaled by 1 / (1 - p), also in eval mode
    assert 0.4 < float((out == 0).float().mean()) < 0.6
    seeded = [net(x, seeded_generators([1, 2, 3])) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], net(x, seeded_generators([4, 2, 3])))
    assert torch.equal(seeded[0][1:], net(x, seeded_generators([4, 2, 3]))[1:])  # one generator per item
    with pytest.raises(ValueError, match="dropout"):
        Prenet(8, dropout=1.0)


def test_generation_with_a_prenet_varies_by_seed_even_greedy_and_repeats_itself():
    model = lm_with_prenet()
    config = GenerationConfig(max_frames=12, temperature=0.0, stop_threshold=0.0)
    prefixes = [model.prefix(t) for t in TEXTS]

    def run(seeds, **kw):
        return generate(model, prefixes, [5, 2], GenerationConfig(**{**config.__dict__, **kw}),
                        seeded_generators(seeds))

    first, again, other = run([0, 1]), run([0, 1]), run([5, 6])
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.allclose(first[0], other[0])  # temperature 0: only the pre-net's dropout differs
    full = run([0, 1], use_cache=False)
    assert all((a - b).abs().max() <= 1e-5 for a, b in zip(first, full))
    single = [generate(model, [p], [n], config, seeded_generators([s]))[0]
              for p, n, s in zip(prefixes, [5, 2], [0, 1])]
    assert all((a - b).abs().max() <= 1e-5 for a, b in zip(first, single))  # batch == one by one


def test_prompt_prefix_is_fixed_and_released_layout_unchanged_without_prenet():
    model = lm_with_prenet()
    prompt = torch.randn(6, 8)
    assert torch.equal(model.prefix(TEXTS[0], prompt_latents=prompt), model.prefix(TEXTS[0], prompt_latents=prompt))
    assert any(k.startswith("prenet.linears.0") for k in model.state_dict())
    assert model.audio_linear.in_features == 16
    plain = KalleLM(vocab_size=20, latent_dim=8, hidden_size=32, num_layers=2, num_heads=4)
    assert not any(k.startswith("prenet") for k in plain.state_dict()) and plain.audio_linear.in_features == 8


def test_a_packed_prenet_model_speaks_through_the_synthesizer(tmp_path):
    from espnet_kalle.synthesizer import KalleSynthesizer

    from model_factory import build_tiny_model_dir

    model_dir = build_tiny_model_dir(tmp_path, with_speaker=False, n_voices=0, max_frames=8,
                                     lm_extra={"prenet": {"units": 16, "layers": 2, "dropout": 0.5}})
    synth = KalleSynthesizer.from_pretrained(model_dir, int8=True)  # int8 backbone, onnxruntime step
    a, b = (synth.synthesize("hello there.", temperature=0.0, seed=s) for s in (3, 3))
    assert a.size > 0 and (a == b).all()
    assert not (a == synth.synthesize("hello there.", temperature=0.0, seed=4)).all()
