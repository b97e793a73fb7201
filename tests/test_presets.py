"""Preset voices: a seed's speaker latent plus a prompt the model speaks itself, picked for consistent and distinct
voices and named by pitch (espnet_kalle.pretrained.presets)."""

import shutil

import numpy as np
import pytest
import torch
import yaml

from espnet_kalle.pretrained.presets import Candidate, pick_distinct
from espnet_kalle.pretrained.presets import main as presets_main
from espnet_kalle.synthesizer import KalleSynthesizer
from espnet_kalle.voice import Voice


@pytest.fixture(scope="module")
def synth(tiny_model_dir):
    return KalleSynthesizer.from_pretrained(tiny_model_dir)


def candidate(seed, *directions, noise=0.0):
    """A candidate whose check sentences embed along ``directions`` (unit vectors in 4-D), plus noise."""
    rng = np.random.default_rng(seed)
    rows = [np.eye(4)[d] + noise * rng.standard_normal(4) for d in directions]
    rows = np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)
    return Candidate(seed, Voice(f"seed-{seed}", seed=seed), rows, [], 16000)


def test_pick_distinct_keeps_consistent_voices_far_from_the_average_and_unlike_each_other():
    crowd = [candidate(s, 0, 0, 0, noise=0.1) for s in range(6)]  # the model's average voice: direction 0
    apart = candidate(10, 1, 1, 1, noise=0.02)
    twin = candidate(11, 1, 1, 1, noise=0.03)  # the same voice as ``apart``
    other = candidate(12, 2, 2, 2, noise=0.02)
    blur = candidate(13, 3, 1, 2)  # sentences in three different voices: far from everything, but inconsistent
    assert blur.consistency < 0.1 < 0.9 < apart.consistency
    everyone = crowd + [blur, apart, twin, other]
    assert sorted(c.seed for c in pick_distinct(everyone, 2)) == [10, 12]  # not the twin, the blur or the crowd
    # a third preset: the twin (far from the average) before any voice of the crowd
    assert sorted(c.seed for c in pick_distinct(everyone, 3)) == [10, 11, 12]
    assert len(pick_distinct(crowd, 3)) == 3 and pick_distinct(crowd, 0) == []


def test_own_prompt_is_spoken_by_the_voice_and_repeatable_by_seed(synth):
    a = synth.with_own_prompt(5, "hello there.", seed=1)
    b = synth.with_own_prompt(5, "hello there.", seed=1)
    c = synth.with_own_prompt(5, "hello there.", seed=2)
    assert a.kind == "preset" and a.seed == 5 and a.prompt_text == "hello there."
    torch.testing.assert_close(a.speaker, synth.model.voice_from_seed(5), atol=0, rtol=0)
    assert a.prompt_ids.tolist() == synth.tokenizer("hello there.")
    torch.testing.assert_close(a.prompt_latents, b.prompt_latents, atol=0, rtol=0)
    assert not torch.equal(a.prompt_latents[: len(c.prompt_latents)], c.prompt_latents[: len(a.prompt_latents)])
    # sentences continue the prompt: same speaker latent and seed, other audio than the latent alone
    with_prompt, alone = synth.synthesize("hi.", voice=a, seed=0), synth.synthesize("hi.", voice=5, seed=0)
    n = min(with_prompt.size, alone.size)
    assert not np.array_equal(with_prompt[:n], alone[:n])
    with pytest.raises(Exception, match="empty|speak"):
        synth.with_own_prompt(5, "   ")


def test_presets_cli_rewrites_the_voices_of_a_model_dir(tiny_model_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    shutil.copy(model_dir / "voices" / "mid-1.voice.pt", model_dir / "voices" / "stale.voice.pt")
    presets_main(["--model-dir", str(model_dir), "--voices", "2", "--candidates", "3"])
    names = sorted(p.name for p in (model_dir / "voices").glob("*.voice.pt"))
    assert names == ["low-1.voice.pt", "mid-1.voice.pt"]  # the stale preset is gone
    assert yaml.safe_load((model_dir / "model.yaml").read_text())["default_voice"] == "mid-1"
    synth = KalleSynthesizer.from_pretrained(model_dir)
    low, high = synth.voices["low-1"], synth.voices["mid-1"]
    assert float(low.tags["median_f0"]) <= float(high.tags["median_f0"])
    assert {low.seed, high.seed} <= {0, 1, 2} and low.seed != high.seed
    assert all(v.prompt_latents is not None and 0 <= float(v.tags["consistency"]) <= 1 for v in (low, high))
    assert "seed 0: consistency" in capsys.readouterr().out
    assert synth.synthesize("hello.", voice="low-1").size > 0
