"""The embedded default model "mini-en" as users meet it: loading by name, presets, determinism, streaming, the
CLI's default model, and bad input. Short sentences only (these run on the committed weights)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet_kalle.pretrained import REGISTRY, resolve_model_dir
from espnet_kalle.synthesizer import KalleSynthesizer
from espnet_kalle.text import TextError

from golden_mini_en import PATH as GOLDEN
from golden_mini_en import compute as golden_record


@pytest.fixture(scope="module")
def mini():
    return KalleSynthesizer.from_pretrained("mini-en")


def test_ships_inside_the_package_small_and_complete():
    root = resolve_model_dir("mini-en")
    assert root == REGISTRY["mini-en"] and (root / "model.yaml").is_file()
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 100 * 2**20
    for name in ("RESULTS.md", "README.md"):
        assert (root / name).is_file(), f"mini-en ships its {name}"


def test_presets_and_sample_rate(mini):
    assert mini.sample_rate == 16000 and mini.hop_length == 1280
    assert len(mini.voices) >= 3 and mini.default_voice in mini.voices
    assert all(v.kind == "preset" and "F0" in v.description for v in mini.voices.values())


def test_presets_continue_their_own_prompt(mini):
    """A preset is its seed's speaker latent plus a prompt the model spoke in that voice (RESULTS.md: with the latent
    alone every preset drifted to the model's average voice); the prompt must reach generation."""
    for voice in mini.voices.values():
        assert voice.seed is not None and voice.prompt_latents.shape[1] == mini.model.lm.latent_dim
        assert voice.prompt_ids.tolist() == mini.tokenizer(voice.prompt_text)
    voice = mini.voices[mini.default_voice]
    with_prompt, latent_alone = (mini.synthesize("Good morning.", voice=v, seed=0) for v in (voice, voice.seed))
    n = min(with_prompt.size, latent_alone.size)
    assert not np.array_equal(with_prompt[:n], latent_alone[:n])


def test_numerics_match_the_golden_outputs(mini):
    """Token ids and each preset's first latents from a fixed seed, as tests/data/mini_en_golden.json recorded them.
    After a deliberate change of numerics: .venv/bin/python tests/golden_mini_en.py, and review the diff."""
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    actual = golden_record(mini)
    regenerate = "if the change is deliberate, run .venv/bin/python tests/golden_mini_en.py and review the diff"
    assert {k: actual[k] for k in ("text", "seed", "frames")} == {k: expected[k] for k in ("text", "seed", "frames")}
    assert actual["token_ids"] == expected["token_ids"], f"the tokenizer (g2p) changed: {regenerate}"
    assert sorted(actual["voices"]) == sorted(expected["voices"]), regenerate
    for name, want in expected["voices"].items():
        got = actual["voices"][name]
        assert got["prompt_ids"] == want["prompt_ids"], f"{name}: {regenerate}"
        np.testing.assert_allclose(got["latents"], want["latents"], atol=1e-3, rtol=0,
                                   err_msg=f"{name}'s latents changed: {regenerate}")


def test_speaks_a_sentence_deterministically(mini):
    text = "The quick brown fox jumps over the lazy dog."
    a = mini.synthesize(text, seed=0)
    assert a.dtype == np.float32 and a.ndim == 1
    seconds = a.size / mini.sample_rate
    assert 1.0 < seconds < 8.0, f"{seconds:.2f} s for nine words"  # it stops, and not at once
    assert 0.01 < float(np.sqrt(np.mean(a**2))) < 0.5 and np.abs(a).max() <= 1.0  # audible, not clipped garbage
    np.testing.assert_array_equal(a, mini.synthesize(text, seed=0))
    assert not np.array_equal(a, mini.synthesize(text, seed=1))


def test_samples_at_the_temperature_its_config_ships(mini):
    # mini-en's lm/config.yaml sets generation_conf.temperature 0.15 (its mixture head's dev-split best, RESULTS.md):
    # synthesize without a temperature must use it, and an explicit one must still override it.
    config = yaml.safe_load((resolve_model_dir("mini-en") / "lm" / "config.yaml").read_text(encoding="utf-8"))
    shipped = config["tts_conf"]["generation_conf"]["temperature"]
    assert shipped == 0.15
    text = "Good morning."
    default = mini.synthesize(text, seed=2)
    np.testing.assert_array_equal(default, mini.synthesize(text, seed=2, temperature=shipped))
    assert not np.array_equal(default, mini.synthesize(text, seed=2, temperature=0.5))


def test_voices_differ_and_streaming_matches(mini):
    names = sorted(mini.voices)
    first, last = (mini.synthesize("Good morning.", voice=n, seed=0) for n in (names[0], names[-1]))
    assert not np.array_equal(first[: min(first.size, last.size)], last[: min(first.size, last.size)])
    chunks = list(mini.stream("Good morning.", voice=names[0], seed=0))
    assert all(c.shape == (1280,) for c in chunks)
    np.testing.assert_allclose(np.concatenate(chunks), first, atol=1e-5, rtol=0)  # decoded in other blocks


@pytest.mark.parametrize("text", ["", "...", "?! ,"])
def test_unspeakable_text(mini, text):
    with pytest.raises(TextError):
        mini.synthesize(text)


def test_unknown_voice_and_missing_model(mini, tmp_path):
    with pytest.raises(KeyError, match="unknown voice"):
        mini.voice("nobody")
    with pytest.raises(FileNotFoundError):
        KalleSynthesizer.from_pretrained(tmp_path / "missing")


def test_cli_uses_mini_en_by_default(mini, tmp_path):
    script = shutil.which("kalle-tts", path=str(Path(sys.executable).parent)) or "kalle-tts"
    out = tmp_path / "hello.wav"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([script, "Hello there.", "-o", str(out)], capture_output=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "RTF" in proc.stderr.decode() and "voice" in proc.stderr.decode()
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and wav.size > 0
    bad = subprocess.run([script, "-", "-o", str(tmp_path / "x.wav")], input=b"\xff\xfe bad bytes",
                         capture_output=True, timeout=300, env=env)
    assert bad.returncode == 2 and b"UTF-8" in bad.stderr and not (tmp_path / "x.wav").exists()
