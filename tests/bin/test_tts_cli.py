"""kalle-tts as a user runs it: the console script in a subprocess, on a packed model dir."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_kalle.text import split_sentences
from espnet_kalle.voice import Voice

from model_factory import STOP_FRAMES

SCRIPT = shutil.which("kalle-tts", path=str(Path(sys.executable).parent)) or "kalle-tts"


def run(*args, stdin=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([SCRIPT, *map(str, args)], input=stdin, capture_output=True, timeout=300, env=env)


def test_speaks_to_a_wav_and_reports_rtf(tiny_model_dir, tmp_path):
    out = tmp_path / "out.wav"
    proc = run("hello world. this is a test.", "-o", out, "--model", tiny_model_dir, "--voice", "low-1")
    assert proc.returncode == 0, proc.stderr.decode()
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and wav.ndim == 1 and wav.size > 0 and wav.size % 1280 == 0
    message = proc.stderr.decode()
    assert "RTF" in message and "voice low-1" in message


def test_stdin_seed_stream_and_list_voices(tiny_model_dir, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    assert run("-", "-o", a, "--model", tiny_model_dir, "--seed", "7", stdin=b"hi there.").returncode == 0
    assert run("hi there.", "-o", b, "--model", tiny_model_dir, "--seed", "7", "--stream").returncode == 0
    np.testing.assert_array_equal(sf.read(a)[0], sf.read(b)[0])
    listing = run("--list-voices", "--model", tiny_model_dir)
    assert listing.returncode == 0
    names = [line.split("\t")[0].split(" ")[0] for line in listing.stdout.decode().splitlines()]
    assert names == ["high-1", "low-1", "mid-1"]


def test_a_5000_word_story_from_stdin_is_spoken_to_its_end(stopping_model_dir, tmp_path, monkeypatch):
    """Every piece of a 5,000-word text without punctuation is spoken, each ended by the model's stop rule
    (STOP_FRAMES frames, far below its max_frames), one frame of silence between pieces. In-process: the same
    entry point as the console script."""
    import io

    from espnet_kalle.bin.tts import main

    story = " ".join(["word"] * 5000)
    pieces = len(split_sentences(story))
    assert pieces >= len(story) // 300  # cut into pieces of at most 300 characters
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(story.encode())))
    out = tmp_path / "story.wav"
    assert main(["-", "-o", str(out), "--model", str(stopping_model_dir), "--stream", "--quiet"]) == 0
    wav, sr = sf.read(out, dtype="float32")
    assert sr == 16000 and wav.size == (pieces * (STOP_FRAMES + 1) - 1) * 1280


def test_clone_and_save_voice(tiny_model_dir, tmp_path):
    t = np.arange(2 * 16000) / 16000
    prompt = tmp_path / "p.wav"
    sf.write(prompt, (0.3 * np.sin(2 * np.pi * 140 * t)).astype(np.float32), 16000)
    saved = tmp_path / "me.voice.pt"
    out = tmp_path / "clone.wav"
    proc = run("hello.", "-o", out, "--model", tiny_model_dir, "--prompt-wav", prompt, "--prompt-text",
               "this is my voice.", "--save-voice", saved)
    assert proc.returncode == 0, proc.stderr.decode()
    again = tmp_path / "again.wav"
    assert run("hello.", "-o", again, "--model", tiny_model_dir, "--voice", saved).returncode == 0
    np.testing.assert_array_equal(sf.read(out)[0], sf.read(again)[0])
    only = tmp_path / "only.voice.pt"
    assert run("hello.", "-o", tmp_path / "only.wav", "--model", tiny_model_dir, "--prompt-wav", prompt,
               "--prompt-text", "this is my voice.", "--speaker-only", "--save-voice", only).returncode == 0
    continued, latent_only = Voice.load(saved), Voice.load(only)
    assert continued.prompt_latents is not None and latent_only.prompt_latents is None
    torch.testing.assert_close(continued.speaker, latent_only.speaker)


@pytest.mark.parametrize(
    "args,stdin,code,message",
    [
        (["", "-o", "{tmp}/x.wav"], None, 2, "empty text"),
        (["...", "-o", "{tmp}/x.wav"], None, 2, "nothing speakable"),
        (["hi.", "-o", "{tmp}/x.wav", "--voice", "nobody"], None, 2, "unknown voice"),
        (["-", "-o", "{tmp}/x.wav"], b"\xff\xfe\x00bad", 2, "not UTF-8"),
        (["hi.", "-o", "{tmp}/x.wav", "--prompt-wav", "{tmp}/none.wav"], None, 2, "go together"),
        (["hi.", "-o", "{tmp}/x.wav", "--speaker-only"], None, 2, "needs --prompt-wav"),
        (["hi.", "-o", "{tmp}/no/such/dir/x.wav"], None, 2, "does not exist"),
        (["hi.", "-o", "{tmp}/x.wav", "--model", "{tmp}/missing-model"], None, 3, "cannot load model"),
    ],
)
def test_bad_input_gives_clear_errors_and_no_file(tiny_model_dir, tmp_path, args, stdin, code, message, capsys,
                                                   monkeypatch):
    """Same entry point as the console script, called in-process (each subprocess costs seconds of imports)."""
    import io

    from espnet_kalle.bin.tts import main

    args = [a.format(tmp=tmp_path) for a in args]
    if "--model" not in args:
        args += ["--model", str(tiny_model_dir)]
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    assert main(args) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.wav").exists()
